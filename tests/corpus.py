"""A corpus of good, strange and broken image files, generated here rather than checked in.

`valid()` yields (name, bytes, expected RGB picture or None); `invalid()` yields (name, bytes).
The expected picture, where given, is what the user should see after orientation: a 40×20
canvas whose top-left quarter is red, so a wrong rotation or flip is detectable.
"""

from __future__ import annotations

import functools
import io
import struct
import zlib

import numpy as np
from PIL import Image

W, H = 40, 20


def _save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def marker() -> Image.Image:
    """40×20, blue, with a red top-left quarter: its orientation is unambiguous."""
    pixels = np.zeros((H, W, 3), np.uint8)
    pixels[...] = (20, 40, 220)
    pixels[: H // 2, : W // 2] = (230, 20, 20)
    return Image.fromarray(pixels)


# What exif_transpose applies for each orientation, and so the inverse we store the pixels with.
_STORE = {
    1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def oriented(orientation: int) -> bytes:
    stored = marker() if _STORE[orientation] is None else marker().transpose(_STORE[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _save(stored, "JPEG", quality=95, exif=exif.tobytes())


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width×height: a decompression bomb's calling card."""
    data = bytearray(_save(Image.new("L", (1, 1)), "PNG"))
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13])) & 0xFFFFFFFF
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


def _animated(fmt: str) -> bytes:
    frames = [marker()] + [Image.new("RGB", (W, H), c) for c in ((0, 255, 0), (255, 255, 0))]
    return _save(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0,
                 **({"lossless": True} if fmt == "WEBP" else {}))


def _mode(mode: str) -> Image.Image:
    base = marker()
    if mode == "P":
        image = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
        image.info["transparency"] = 0
        return image
    if mode == "I;16":
        return Image.fromarray(np.asarray(base.convert("L"), np.uint16) * 257)  # uint16 arrays become I;16
    if mode == "F":
        return Image.fromarray(np.asarray(base.convert("L"), np.float32) / 255.0)
    return base.convert(mode)


def valid():
    for mode, fmt in (("1", "PNG"), ("L", "PNG"), ("LA", "PNG"), ("P", "PNG"), ("RGBA", "PNG"), ("CMYK", "JPEG"),
                      ("CMYK", "TIFF"), ("I;16", "PNG"), ("F", "TIFF"), ("RGB", "WEBP"), ("RGB", "BMP"),
                      ("RGB", "GIF")):
        yield f"mode-{mode.replace(';', '')}.{fmt.lower()}", _save(_mode(mode), fmt), None
    for orientation in range(1, 9):
        yield f"exif-orientation-{orientation}.jpg", oriented(orientation), marker()
    yield "animated.gif", _animated("GIF"), marker()
    yield "animated.webp", _animated("WEBP"), marker()
    yield "one-pixel.png", _save(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"), None
    yield "one-by-5000.png", _save(Image.new("RGB", (1, 5000), (10, 200, 10)), "PNG"), None
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (60, 40, 3), dtype=np.uint8)).resize((6000, 4000))
    yield "24-megapixel.jpg", _save(photo, "JPEG", quality=80), None
    yield "compressible-16-megapixel.png", _save(Image.new("L", (4000, 4000), 128), "PNG", optimize=True), None


def invalid():
    good_png = _save(marker(), "PNG")
    good_jpeg = _save(marker(), "JPEG")
    bad_crc = bytearray(good_png)
    bad_crc[29] ^= 0xFF  # inside the IHDR chunk's CRC
    yield "empty.png", b""
    yield "truncated.png", good_png[: len(good_png) // 2]
    yield "truncated.jpg", good_jpeg[: len(good_jpeg) // 2]
    yield "bad-crc.png", bytes(bad_crc)
    yield "text.png", b"Just some notes, not a picture.\n" * 20
    yield "page.jpg", b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>"
    yield "drawing.png", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>'
    yield "document.png", b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
    yield "random.webp", np.random.default_rng(1).integers(0, 255, 4096, dtype=np.uint8).tobytes()
    yield "bomb-50-megapixels.png", png_claiming(10_000, 5_000)  # under Pillow's limits, over vitviz's
    yield "bomb-100-megapixels.png", png_claiming(10_000, 10_000)  # over Pillow's warning limit
    yield "bomb-10-gigapixels.png", png_claiming(100_000, 100_000)  # over Pillow's error limit


@functools.cache
def _huge_png_body(width: int, height: int) -> bytes:
    image = Image.new("RGB", (width, height), (40, 90, 160))
    image.paste((250, 240, 30), (width // 4, height // 4, width // 2, height // 2))
    return _save(image, "PNG", compress_level=9)


def huge_png(note: str, width: int = 8000, height: int = 5000) -> bytes:
    """A PNG of width×height pixels (40 megapixels by default) in about 130 kB, different for every `note`.

    Encoding 40 megapixels takes seconds, so the picture is encoded once and `note` goes into a tEXt
    chunk before IEND: the bytes, and so the digest the app caches them under, differ; the pixels do not.
    """
    body = _huge_png_body(width, height)
    text = b"Comment\x00" + note.encode()
    chunk = struct.pack(">I", len(text)) + b"tEXt" + text + struct.pack(">I", zlib.crc32(b"tEXt" + text) & 0xFFFFFFFF)
    return body[:-12] + chunk + body[-12:]  # IEND is the last 12 bytes
