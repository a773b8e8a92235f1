"""Decoding untrusted bytes safely, and turning an image into model input."""

from __future__ import annotations

import io
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, PngImagePlugin
from torch.testing import assert_close

from vitviz.images import (
    ImageError,
    center_crop_box,
    denormalise,
    load_image,
    normalise,
    prepare,
    preprocess,
)
from vitviz.model import ViTConfig
from vitviz.train import default_config


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def blocks(width: int = 32, height: int = 24) -> Image.Image:
    """An RGB image of four flat colour blocks (survives lossy codecs and palettes well)."""
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[: height // 2, : width // 2] = (200, 30, 30)
    array[: height // 2, width // 2 :] = (30, 200, 30)
    array[height // 2 :, : width // 2] = (30, 30, 200)
    array[height // 2 :, width // 2 :] = (240, 240, 240)
    return Image.fromarray(array)


def assert_one_sentence(message: str) -> None:
    assert message and message[0].isupper(), message
    assert message.endswith("."), message
    assert "\n" not in message and "Traceback" not in message, message
    assert ". " not in message, message


# --- decoding ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "options", "lossless"),
    [
        ("PNG", {}, True),
        ("JPEG", {"quality": 95}, False),
        ("WEBP", {"lossless": True}, True),
        ("WEBP", {"quality": 90}, False),
        ("GIF", {}, True),
        ("BMP", {}, True),
        ("TIFF", {}, True),
        ("TIFF", {"compression": "tiff_lzw"}, True),
    ],
)
def test_formats_round_trip_to_rgb(fmt, options, lossless):
    original = blocks()
    image = load_image(encode(original, fmt, **options))
    assert image.mode == "RGB"
    assert image.size == original.size
    got, want = np.asarray(image, dtype=int), np.asarray(original, dtype=int)
    if lossless:
        np.testing.assert_array_equal(got, want)
    else:
        assert np.abs(got - want).mean() < 6


def test_first_frame_of_an_animated_gif():
    frames = [Image.new("RGB", (16, 16), colour) for colour in [(255, 0, 0), (0, 0, 255)]]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    image = load_image(data)
    assert image.mode == "RGB" and image.size == (16, 16)
    assert image.getpixel((8, 8)) == (255, 0, 0)


def mode_cases() -> list[tuple[str, bytes, dict]]:
    """(mode, encoded bytes, {(x, y): expected RGB}) for every PIL mode an upload may carry."""
    cases = []
    grey = Image.new("L", (10, 8), 100)
    cases.append(("L", encode(grey, "PNG"), {(0, 0): (100, 100, 100)}))
    la = Image.new("LA", (10, 8), (50, 255))
    la.putpixel((1, 1), (50, 0))  # fully transparent: shows the white background
    cases.append(("LA", encode(la, "PNG"), {(0, 0): (50, 50, 50), (1, 1): (255, 255, 255)}))
    palette = Image.new("P", (10, 8), 0)
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    palette.putpixel((0, 0), 1)
    cases.append(("P", encode(palette, "PNG", transparency=0), {(0, 0): (10, 200, 30), (5, 5): (255, 255, 255)}))
    cases.append(("P-gif", encode(palette, "GIF", transparency=0), {(0, 0): (10, 200, 30), (5, 5): (255, 255, 255)}))
    rgba = Image.new("RGBA", (10, 8), (0, 0, 255, 255))
    rgba.putpixel((2, 2), (0, 0, 0, 0))
    rgba.putpixel((3, 3), (0, 0, 0, 128))
    cases.append(("RGBA", encode(rgba, "PNG"), {(0, 0): (0, 0, 255), (2, 2): (255, 255, 255), (3, 3): (127, 127, 127)}))
    cmyk = Image.new("CMYK", (10, 8), (0, 255, 255, 0))  # pure red in ink
    cases.append(("CMYK", encode(cmyk, "TIFF"), {(0, 0): (255, 0, 0)}))
    cases.append(("CMYK-jpeg", encode(cmyk, "JPEG", quality=95), {}))
    deep = np.tile(np.linspace(1000, 60000, 10, dtype=np.uint16), (8, 1))
    cases.append(("I;16", encode(Image.fromarray(deep), "PNG"), {(0, 0): (0, 0, 0), (9, 0): (255, 255, 255)}))
    floats = np.tile(np.linspace(-3.0, 5.0, 10, dtype=np.float32), (8, 1))
    cases.append(("F", encode(Image.fromarray(floats), "TIFF"), {(0, 0): (0, 0, 0), (9, 7): (255, 255, 255)}))
    bits = Image.new("1", (10, 8), 0)
    bits.putpixel((4, 4), 1)
    cases.append(("1", encode(bits, "PNG"), {(0, 0): (0, 0, 0), (4, 4): (255, 255, 255)}))
    cases.append(("1-bmp", encode(bits, "BMP"), {(0, 0): (0, 0, 0), (4, 4): (255, 255, 255)}))
    return cases


@pytest.mark.parametrize(("mode", "data", "pixels"), mode_cases(), ids=[case[0] for case in mode_cases()])
def test_every_mode_becomes_rgb(mode, data, pixels):
    assert Image.open(io.BytesIO(data)).mode == mode.split("-")[0]  # the conversion path really runs
    image = load_image(data)
    assert image.mode == "RGB"
    assert image.size == (10, 8)
    for xy, rgb in pixels.items():
        assert max(abs(a - b) for a, b in zip(image.getpixel(xy), rgb, strict=True)) <= 1, (mode, xy)


def test_high_bit_depth_is_rescaled_not_clipped():
    deep = np.tile(np.linspace(1000, 60000, 10, dtype=np.uint16), (8, 1))
    row = np.asarray(load_image(encode(Image.fromarray(deep), "PNG")))[0, :, 0].astype(int)
    assert (np.diff(row) > 0).all()  # a ramp stays a ramp (a plain convert would saturate at 255)


def test_exif_orientation_is_applied():
    stored = Image.new("RGB", (40, 20), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 10, 10))  # a red block in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    image = load_image(encode(stored, "JPEG", quality=95, exif=exif.tobytes()))
    assert image.size == (20, 40)
    # Turned clockwise, the stored top-left corner is now the top-right corner.
    red, blue = (255, 0, 0), (0, 0, 255)

    def near(xy: tuple[int, int], want: tuple[int, int, int]) -> bool:
        return max(abs(a - b) for a, b in zip(image.getpixel(xy), want, strict=True)) < 40

    assert near((15, 4), red)
    assert near((4, 4), blue)
    assert near((15, 35), blue)


def test_orientation_without_exif_is_untouched():
    image = load_image(encode(Image.new("RGB", (40, 20)), "JPEG"))
    assert image.size == (40, 20)


def png_with_size(width: int, height: int) -> bytes:
    """A tiny valid PNG whose IHDR claims width×height (with a correct IHDR CRC)."""
    data = bytearray(encode(Image.new("RGB", (4, 4), (1, 2, 3)), "PNG"))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def truncated_png() -> bytes:
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = encode(noisy, "PNG")
    return data[: len(data) // 2]


def bad_crc_png() -> bytes:
    data = bytearray(encode(blocks(), "PNG"))
    data[29:33] = bytes(b ^ 0xFF for b in data[29:33])  # IHDR checksum
    return bytes(data)


def corrupt_idat_png() -> bytes:
    data = bytearray(encode(blocks(), "PNG"))
    start = data.index(b"IDAT") + 4
    data[start : start + 16] = b"\x00" * 16  # zlib stream destroyed
    return bytes(data)


BAD_INPUTS = {
    "empty": b"",
    "random": np.random.default_rng(5).bytes(4096),
    "text": b"just some words, saved as photo.png\n" * 20,
    "html": b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>",
    "svg": b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>',
    "truncated-png": truncated_png(),
    "png-bad-crc": bad_crc_png(),
    "png-corrupt-idat": corrupt_idat_png(),
    "png-signature-only": b"\x89PNG\r\n\x1a\n",
    "zero-size-png": png_with_size(0, 0),
    "truncated-jpeg": encode(blocks(64, 64), "JPEG")[:300],
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_bytes_give_one_clear_sentence(name):
    with pytest.raises(ImageError) as info:
        load_image(BAD_INPUTS[name])
    assert isinstance(info.value, ValueError)
    assert_one_sentence(str(info.value))


@pytest.mark.parametrize(("width", "height"), [(100_000, 100_000), (30_000, 10), (8_000, 6_000)])
def test_decompression_bomb_is_refused_before_decoding(monkeypatch, width, height):
    """The first is over Pillow's own bomb limit, the others only over vitviz's side / pixel limits."""
    decoded = []
    original_load = PngImagePlugin.PngImageFile.load

    def spy(self, *args, **kwargs):
        decoded.append(self.size)
        return original_load(self, *args, **kwargs)

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", spy)
    data = png_with_size(width, height)
    tracemalloc.start()
    try:
        with pytest.raises(ImageError) as info:
            load_image(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert decoded == []
    assert peak < 50 * 1024 * 1024
    assert_one_sentence(str(info.value))
    assert "pixels" in str(info.value)


def test_too_many_bytes_is_refused():
    from vitviz import images

    with pytest.raises(ImageError, match="larger than"):
        load_image(b"\x89PNG" + b"\x00" * images.MAX_BYTES)


# --- preprocessing -------------------------------------------------------------------------------


def test_prepare_shapes_and_types(photo_image):
    config = default_config()
    prepared = prepare(photo_image, config)
    assert prepared.pixels.shape == (3, 64, 64)
    assert prepared.pixels.dtype == torch.float32
    assert prepared.display.shape == (64, 64, 3)
    assert prepared.display.dtype == np.uint8
    assert_close(preprocess(photo_image, config), prepared.pixels, rtol=0, atol=0)
    # The display image is exactly what the model saw.
    assert_close(prepared.pixels, normalise(prepared.display[None], config)[0], rtol=0, atol=0)


@pytest.mark.parametrize("image_size", [(64, 64), (32, 64), (64, 32), (48, 80)])
def test_centre_crop_keeps_the_models_aspect_ratio(photo_image, image_size):
    config = ViTConfig(image_size=image_size, patch_size=8)
    assert photo_image.size == (300, 200)
    left, top, right, bottom = box = prepare(photo_image, config).crop_box
    assert box == center_crop_box(300, 200, image_size)
    h, w = image_size
    assert (right - left) / (bottom - top) == pytest.approx(w / h, rel=0.01)
    assert 0 <= left and 0 <= top and right <= 300 and bottom <= 200
    assert (right - left == 300) or (bottom - top == 200)  # the largest such box
    assert abs(left - (300 - right)) <= 1 and abs(top - (200 - bottom)) <= 1  # centred
    assert preprocess(photo_image, config).shape == (3, h, w)


def test_centre_crop_cuts_away_the_edges(photo_image):
    prepared = prepare(photo_image, default_config())
    assert prepared.crop_box == (50, 0, 250, 200)
    display = prepared.display.astype(int)
    red = (display[..., 0] > 200) & (display[..., 1] < 60) & (display[..., 2] < 60)
    assert not red.any()  # the red bar on the left edge lies outside the crop
    original = np.asarray(photo_image)
    assert (original[115, 125] > 240).all()  # inside the white disc, clear of the triangle and line
    assert (display[115 * 64 // 200, (125 - 50) * 64 // 200] > 200).all()  # ... and where the crop puts it
    assert (original[:, :30] == (255, 0, 0)).all(axis=-1).all()


def test_normalise_and_denormalise_round_trip():
    images = np.random.default_rng(3).integers(0, 256, (2, 16, 24, 3), dtype=np.uint8)
    for config in [
        default_config(),
        ViTConfig(image_size=(16, 24), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
    ]:
        pixels = normalise(images, config)
        assert pixels.shape == (2, 3, 16, 24) and pixels.dtype == torch.float32
        mean = torch.tensor(config.mean).view(1, 3, 1, 1)
        std = torch.tensor(config.std).view(1, 3, 1, 1)
        assert_close(pixels, (torch.from_numpy(images).permute(0, 3, 1, 2) / 255 - mean) / std)
        for i in range(2):
            back = denormalise(pixels[i], config)
            assert back.shape == (16, 24, 3)
            np.testing.assert_allclose(back * 255, images[i], atol=1e-3)
    # Out-of-range values are clamped for display.
    assert denormalise(torch.full((3, 2, 2), 10.0), default_config()).max() == 1.0
    assert denormalise(torch.full((3, 2, 2), -10.0), default_config()).min() == 0.0
