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
    display: np.ndarray  # (H, W, 3) uint8: the resized, cropped image
    crop_box: tuple[int, int, int, int]  # (left, top, right, bottom) in the image prepare() was given


def center_crop_box(width: int, height: int, target: tuple[int, int]) -> tuple[int, int, int, int]:
    """The largest centred box of the target's aspect ratio (H, W)."""
    th, tw = target
    scale = min(width / tw, height / th)
    cw, ch = max(1, round(tw * scale)), max(1, round(th * scale))
    left, top = (width - cw) // 2, (height - ch) // 2
    return (left, top, left + cw, top + ch)


def prepare(image: Image.Image, config: ViTConfig) -> Prepared:
    """Centre-crop to the model's aspect ratio, resize to its input size, normalise."""
    box = center_crop_box(image.width, image.height, config.image_size)
    h, w = config.image_size
    resized = image.convert("RGB").resize((w, h), Image.Resampling.BICUBIC, box=box, reducing_gap=3.0)
    display = np.asarray(resized, dtype=np.uint8).copy()
    return Prepared(pixels=normalise(display[None], config)[0], display=display, crop_box=box)


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
    return x.div_(255).sub_(mean).div_(std)


def denormalise(pixels: torch.Tensor, config: ViTConfig) -> np.ndarray:
    """(c, H, W) normalised -> (H, W, c) floats in [0, 1], for display."""
    mean = torch.tensor(config.mean).view(-1, 1, 1)
    std = torch.tensor(config.std).view(-1, 1, 1)
    return (pixels * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()
