"""Safe image decoding and the preprocessing that turns an image into model input.

Decoding refuses anything that is not a plain, sane raster image with one clear
sentence (`ImageError`), and checks the declared size before any pixel is decoded, so a
decompression bomb costs a header read, not gigabytes.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from vitviz.model import ViTConfig

MAX_PIXELS = 40_000_000  # a 40-megapixel photo is fine; a 1-gigapixel PNG is not
MAX_SIDE = 20_000
MAX_BYTES = 50 * 1024 * 1024
# Pillow opener names. A multi-picture JPEG (MPO, from many phone cameras) opens through the JPEG
# plugin; "MPO" is not an opener name, and listing it makes Image.open fail for every later format.
ALLOWED_FORMATS = {"PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"}


class ImageError(ValueError):
    """The bytes are not an image vitviz can use; the message is one sentence for the user."""


def load_image(data: bytes) -> Image.Image:
    """Decode `data` into an RGB PIL image with its EXIF orientation applied."""
    if not data:
        raise ImageError("The file is empty.")
    if len(data) > MAX_BYTES:
        raise ImageError(f"The file is larger than {MAX_BYTES // (1024 * 1024)} MB.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=sorted(ALLOWED_FORMATS))
            _check_size(image.size)
            image.seek(0)  # first frame of an animation
            image.load()
            image = ImageOps.exif_transpose(image)
            return _to_rgb(image)
    except ImageError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        if isinstance(exc, UnidentifiedImageError):
            raise ImageError("This file is not an image format vitviz can read (PNG, JPEG, WebP, GIF, BMP or TIFF).") from exc
        raise ImageError(f"The image has too many pixels (the limit is {MAX_PIXELS // 1_000_000} megapixels).") from exc
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError, IndexError, TypeError, KeyError, ZeroDivisionError) as exc:
        raise ImageError("The image file is damaged or truncated and cannot be decoded.") from exc


def _check_size(size: tuple[int, int]) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise ImageError("The image has no pixels.")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise ImageError(
            f"The image is {width}×{height} pixels, more than the {MAX_PIXELS // 1_000_000}-megapixel limit."
        )


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
    return image.convert("RGB")


@dataclass(frozen=True)
class Prepared:
    """What the model saw: the normalised input and the same pixels for display."""

    pixels: torch.Tensor  # (c, H, W), normalised
    display: np.ndarray  # (H, W, 3) uint8: the resized, cropped image
    crop_box: tuple[int, int, int, int]  # (left, top, right, bottom) in the original image


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
