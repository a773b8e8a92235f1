"""Safe image decoding and the preprocessing that turns an image into model input.

Decoding refuses anything that is not a plain, sane raster image with one clear
sentence (`ImageError`), and checks the declared size before any pixel is decoded, so a
decompression bomb costs a header read, not gigabytes. A large image is reduced right after
decoding to what vitviz ever uses (`kept_size`), so what the app caches stays small.
"""

from __future__ import annotations

import contextlib
import io
import math
import threading
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from vitviz import allocator, limits
from vitviz.i18n import Message
from vitviz.model import ViTConfig

MAX_SIDE = 20_000  # and at most limits.max_image_pixels() pixels in all
# What a large image is reduced to: the shorter side is more than any ViT's input (224 to 518 px)
# and than the 640 px preview; the pixel cap bounds a long, thin picture too (4 bytes a pixel).
KEPT_SIDE = 768
KEPT_PIXELS = 4_000_000
MAX_BYTES = 50 * 1024 * 1024
# Pillow opener names. A multi-picture JPEG (MPO, from many phone cameras) opens through the JPEG
# plugin; "MPO" is not an opener name, and listing it makes Image.open fail for every later format.
ALLOWED_FORMATS = {"PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"}


class ImageError(ValueError):
    """The bytes are not an image vitviz can use; the message is one sentence for the user (a `vitviz.i18n.Message`)."""


def load_image(data: bytes) -> Image.Image:
    """Decode `data` into an RGB PIL image with its EXIF orientation applied, reduced to `kept_size`.

    `original_size(image)` is the size of the picture in the file, the right way up.
    """
    if not data:
        raise ImageError(Message("The file is empty."))
    if len(data) > MAX_BYTES:
        raise ImageError(Message("The file is larger than {mb} MB.", mb=MAX_BYTES // (1024 * 1024)))
    max_pixels = limits.max_image_pixels()  # read first: a bad setting is not a damaged file
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=sorted(ALLOWED_FORMATS))
            _check_size(image.size, max_pixels)
            width, height = image.size
            image.seek(0)  # first frame of an animation
            image.draft(None, kept_size(width, height))  # a JPEG decodes at 1/2, 1/4 or 1/8 scale straight away
            large = image.width * image.height > KEPT_PIXELS
            with _ONE_LARGE_DECODE if large else contextlib.nullcontext():
                turned, image = _decode(image)
                if large:
                    allocator.give_back_freed_memory()
            image.info["original_size"] = (height, width) if turned else (width, height)
            return image
    except ImageError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        if isinstance(exc, UnidentifiedImageError):
            raise ImageError(Message("This file is not an image format vitviz can read (PNG, JPEG, WebP, GIF, BMP or "
                                     "TIFF).")) from exc
        raise ImageError(Message("The image has too many pixels (the limit is {megapixels} megapixels).",
                                 megapixels=max_pixels // 1_000_000)) from exc
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError, IndexError, TypeError, KeyError, ZeroDivisionError) as exc:
        raise ImageError(Message("The image file is damaged or truncated and cannot be decoded.")) from exc


# Decoding a large image needs all its pixels at once (4 bytes each): one such decode at a time, so
# a class uploading big photos together needs the memory of one.
_ONE_LARGE_DECODE = threading.Lock()


def _decode(image: Image.Image) -> tuple[bool, Image.Image]:
    """(whether EXIF turned it a quarter, the image right way up in RGB at kept_size)."""
    image.load()
    turned = image.getexif().get(ExifTags.Base.Orientation) in (5, 6, 7, 8)
    ImageOps.exif_transpose(image, in_place=True)
    if image.mode in ("1", "P", "PA"):  # palette indices and bits cannot be averaged: colours first
        image = _to_rgb(image)
    return turned, _to_rgb(_reduced(image))


def _check_size(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise ImageError(Message("The image has no pixels."))
    if width > MAX_SIDE or height > MAX_SIDE or width * height > max_pixels:
        raise ImageError(Message("The image is {width}×{height} pixels, more than the {megapixels}-megapixel limit.",
                                 width=width, height=height, megapixels=max_pixels // 1_000_000))


def kept_size(width: int, height: int) -> tuple[int, int]:
    """The size an image of width×height is kept at: at most KEPT_SIDE on its shorter side and KEPT_PIXELS in all."""
    scale = min(1.0, KEPT_SIDE / min(width, height), math.sqrt(KEPT_PIXELS / (width * height)))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _reduced(image: Image.Image) -> Image.Image:
    """A new in-memory image at kept_size (never the opened file, which holds on to the upload's bytes)."""
    size = kept_size(*image.size)
    return image.copy() if size == image.size else image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def original_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) of the picture `load_image` read, before it was reduced."""
    return image.info.get("original_size", image.size)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode to RGB; transparency is composited on white, high-bit-depth is rescaled."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / (high - low) * 255 if high > low else np.zeros_like(values)
        return Image.fromarray(scaled.astype(np.uint8)).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


@dataclass(frozen=True)
class Prepared:
    """What the model saw: the normalised input and the same pixels for display."""

    pixels: torch.Tensor  # (c, H, W), normalised
    display: np.ndarray  # (H, W, 3) uint8: the picture the model saw, before normalisation
    crop_box: tuple[int, int, int, int]  # (left, top, right, bottom): the part of the given image it shows
    preprocessing: Preprocessing = None  # how it was made (None only in code that built one by hand)


# PIL's filters by the numbers preprocessor_config.json files use for "resample" (PIL's own numbering).
RESAMPLE_NAMES = {0: "nearest", 1: "Lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "Hamming"}
PIXEL_SCALE = 1 / 255  # 8-bit pixels to [0, 1]: the rescale vitviz uses and every known processor's default
MAX_PROCESSOR_SIDE = 2  # a processor may resize to at most twice the model's input before it crops


@dataclass(frozen=True)
class Preprocessing:
    """How a picture becomes the model's (H, W) input before normalisation.

    vitviz's own (`kind` "vitviz", for vitviz's models and any checkpoint whose processor is not known): the
    largest centred box of the input's shape, resized to it (bicubic). A checkpoint's own processor (`kind`
    "processor": its preprocessor_config.json, or timm's pretrained_cfg): resize, to (h, w) or with the shorter
    side at `resize` pixels (the longer rounded down), then a centre crop, as transformers' PIL image processors
    (and timm's eval transform) do. `declined` is True when the checkpoint's processor was set aside because
    the model runs at another size than it makes.
    """

    kind: str = "vitviz"
    resize: tuple[int, int] | int | None = None  # (h, w), or the shorter side's length; None: no resize
    crop: tuple[int, int] | None = None  # (h, w) centre crop after the resize; None: no crop
    resample: int = 3  # a PIL filter (RESAMPLE_NAMES)
    rescale: float = PIXEL_SCALE  # what a 0–255 pixel is multiplied by before the mean is taken away
    offsets: str = "floor"  # a crop's odd margin: transformers floors it, torchvision (timm) rounds half to even
    origin: str = ""  # where the settings came from: "preprocessor_config.json" or "timm"
    declined: bool = False

    def output_size(self, image_size: tuple[int, int]) -> tuple[int, int] | None:
        """The (h, w) this makes whatever the picture: the crop, or an exact resize; None when it depends on the
        picture (a shorter-side resize with no crop). vitviz's own always makes the model's `image_size`."""
        if self.kind == "vitviz":
            return tuple(image_size)
        if self.crop is not None:
            return self.crop
        return self.resize if isinstance(self.resize, tuple) else None


VITVIZ_OWN = Preprocessing()


def _side(value: object, top: int) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= top else None


def _pair(value: object, top: int) -> tuple[int, int] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        sides = (_side(value[0], top), _side(value[1], top))
        return sides if None not in sides else None
    return None


def recorded_preprocessing(settings: object, image_size: tuple[int, int]) -> Preprocessing | None:
    """The processor settings `convert` records in a configuration's `extra["preprocessing"]`, checked (they may
    come from an uploaded file), or None when they are missing, malformed or too large for a model whose input
    is `image_size`."""
    if not isinstance(settings, dict):
        return None
    top = MAX_PROCESSOR_SIDE * max(image_size)
    resize, crop = settings.get("resize"), settings.get("crop")
    resize = _pair(resize, top) if isinstance(resize, (list, tuple)) else _side(resize, top) if resize is not None \
        else None
    crop = _pair(crop, top) if crop is not None else None
    resample, rescale = settings.get("resample"), settings.get("rescale", PIXEL_SCALE)
    offsets, origin = settings.get("offsets", "floor"), settings.get("origin", "")
    if (settings.get("resize") is not None and resize is None) or (settings.get("crop") is not None and crop is None) \
            or resample not in RESAMPLE_NAMES or offsets not in ("floor", "round") or not isinstance(origin, str) \
            or not isinstance(rescale, (int, float)) or isinstance(rescale, bool) or not 0 < rescale <= 1:
        return None
    return Preprocessing("processor", resize, crop, int(resample), float(rescale), offsets, origin[:40])


def preprocessing(config: ViTConfig) -> Preprocessing:
    """How pictures become this model's input: the checkpoint's own processor when one was recorded and it makes
    the model's input size, else vitviz's own (`declined` when a recorded one was set aside)."""
    recorded = recorded_preprocessing(config.extra.get("preprocessing"), config.image_size)
    if recorded is None:
        return VITVIZ_OWN
    if recorded.output_size(config.image_size) != tuple(config.image_size):
        return Preprocessing(rescale=recorded.rescale, declined=True)
    return recorded


def center_crop_box(width: int, height: int, target: tuple[int, int]) -> tuple[int, int, int, int]:
    """The largest centred box of the target's aspect ratio (H, W)."""
    th, tw = target
    scale = min(width / tw, height / th)
    cw, ch = max(1, round(tw * scale)), max(1, round(th * scale))
    left, top = (width - cw) // 2, (height - ch) // 2
    return (left, top, left + cw, top + ch)


def resized_size(width: int, height: int, resize: tuple[int, int] | int) -> tuple[int, int]:
    """(width, height) after a resize to (h, w), or with the shorter side at `resize` and the longer rounded down,
    as transformers' get_resize_output_image_size and torchvision's Resize compute it."""
    if isinstance(resize, tuple):
        return resize[1], resize[0]
    if width <= height:
        return resize, int(resize * height / width)
    return int(resize * width / height), resize


def _processed(image: Image.Image, plan: Preprocessing) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A checkpoint processor's picture (h, w, 3) uint8, and the part of `image` it shows (left, top, right,
    bottom)."""
    width, height = image.size
    size = resized_size(width, height, plan.resize) if plan.resize is not None else (width, height)
    picture = np.asarray(image.resize(size, plan.resample) if size != (width, height) else image, dtype=np.uint8)
    left, top, right, bottom = 0, 0, size[0], size[1]
    if plan.crop is not None:
        (ch, cw), (rh, rw) = plan.crop, picture.shape[:2]
        # Smaller than the crop: padded with black first, the odd pixel of padding before the picture
        # (transformers) or after it (torchvision), as each pads.
        before = [(need - have + (plan.offsets == "floor")) // 2 if need > have else 0
                  for need, have in ((ch, rh), (cw, rw))]
        if rh < ch or rw < cw:
            padded = np.zeros((max(ch, rh), max(cw, rw), 3), dtype=np.uint8)
            padded[before[0] : before[0] + rh, before[1] : before[1] + rw] = picture
            picture = padded
        margins = (picture.shape[0] - ch, picture.shape[1] - cw)
        # transformers floors a crop's odd margin; torchvision rounds it half to even (Python's round)
        top, left = (round(m / 2) if plan.offsets == "round" else m // 2 for m in margins)
        picture = picture[top : top + ch, left : left + cw]
        top, left = top - before[0], left - before[1]
        right, bottom = left + cw, top + ch
    sx, sy = width / size[0], height / size[1]  # back into the given image's pixels
    box = (round(left * sx), round(top * sy), round(right * sx), round(bottom * sy))
    return np.array(picture), tuple(max(0, min(v, limit)) for v, limit in zip(box, (width, height) * 2, strict=True))


def prepare(image: Image.Image, config: ViTConfig) -> Prepared:
    """The model's input for `image`: its processor's resize and crop (or vitviz's centre crop and resize), then
    normalised with its mean and std."""
    plan = preprocessing(config)
    image = image.convert("RGB")
    if plan.kind == "vitviz":
        box = center_crop_box(image.width, image.height, config.image_size)
        h, w = config.image_size
        resized = image.resize((w, h), Image.Resampling.BICUBIC, box=box, reducing_gap=3.0)
        display = np.asarray(resized, dtype=np.uint8).copy()
    else:
        display, box = _processed(image, plan)
    return Prepared(pixels=normalise(display[None], config)[0], display=display, crop_box=box, preprocessing=plan)


def preprocess(image: Image.Image, config: ViTConfig) -> torch.Tensor:
    """The model input (c, H, W) for `image`."""
    return prepare(image, config).pixels


def normalise(images: np.ndarray, config: ViTConfig) -> torch.Tensor:
    """uint8 (N, H, W, c) -> float (N, c, H, W) with the model's mean and std."""
    if any(stride < 0 for stride in images.strides):  # torch cannot view a flipped array
        images = images.copy()
    # Generated batches are channels-last views of channels-first memory: the permute undoes that
    # for free, and the arithmetic runs in place on the one float copy.
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    mean = torch.tensor(config.mean).view(1, -1, 1, 1)
    std = torch.tensor(config.std).view(1, -1, 1, 1)
    return _rescaled(x, preprocessing(config).rescale).sub_(mean).div_(std)


def _rescaled(x: torch.Tensor, rescale: float) -> torch.Tensor:
    """x · rescale in place; the usual 1/255 as a division by 255 (exact for every 8-bit value, as torchvision's)."""
    return x.div_(255) if rescale == PIXEL_SCALE else x.mul_(rescale)


def denormalise(pixels: torch.Tensor, config: ViTConfig) -> np.ndarray:
    """(c, H, W) normalised -> (H, W, c) floats in [0, 1], for display."""
    mean = torch.tensor(config.mean).view(-1, 1, 1)
    std = torch.tensor(config.std).view(-1, 1, 1)
    scale = preprocessing(config).rescale * 255  # 1 for the usual 1/255
    return ((pixels * std + mean) / scale).clamp(0, 1).permute(1, 2, 0).numpy()
