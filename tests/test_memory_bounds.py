"""Memory a visitor can make the server hold: huge images are kept small, caches are bounded in bytes."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import corpus
import numpy as np
import pytest
import streamlit as st
import torch
from conftest import fresh_app, make_photo, open_page, photo_bytes, png_bytes, problems, upload
from PIL import Image

from vitviz import bytecache, capture, images, weights

HUGE_UPLOADS = 5
RSS_GROWTH_MB = 150  # what five more 40-megapixel uploads may add; kept decoded in full, they took 850 MB


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def test_several_40_megapixel_uploads_keep_memory_bounded(capsys):
    st.cache_resource.clear()
    st.cache_data.clear()
    at = open_page(fresh_app(), "pages/step_1.py")
    # The baseline follows one upload, so it holds what the first one brings in once (code, the page's trace).
    upload(at, "huge-0.png", corpus.huge_png("0"))
    assert not problems(at) and not at.error, [e.value for e in at.error]
    before = rss_mb()
    for i in range(1, HUGE_UPLOADS + 1):
        at.file_uploader(key="upload").upload(f"huge-{i}.png", corpus.huge_png(str(i)), "image/png").run()
        assert not problems(at) and not at.error, [e.value for e in at.error]
    after = rss_mb()
    with capsys.disabled():
        print(f"\nRSS after one 40-megapixel upload: {before:.0f} MB, after {HUGE_UPLOADS} more: {after:.0f} MB")
    assert after - before < RSS_GROWTH_MB, (before, after)
    assert at.session_state["vitviz_image"]["name"] == f"huge-{HUGE_UPLOADS}.png"
    shown = " ".join(str(image.proto) for image in at.get("image"))
    assert 'caption: "Your image, 8000×5000 pixels' in shown  # the size of the file's picture


# --- images: decoded, then kept no larger than vitviz needs ------------------------------------------------


def test_a_huge_image_is_kept_small_and_remembers_its_size():
    image = images.load_image(corpus.huge_png("kept"))
    assert image.mode == "RGB" and image.size == images.kept_size(8000, 5000) == (1229, 768)
    assert images.original_size(image) == (8000, 5000)
    pixels = np.asarray(image)
    assert tuple(pixels[300, 450]) == (250, 240, 30) and tuple(pixels[100, 100]) == (40, 90, 160)  # the same picture


def test_a_large_turned_jpeg_is_decoded_small_the_right_way_up():
    stored = make_photo(3000, 1200)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned a quarter clockwise
    buffer = io.BytesIO()
    stored.save(buffer, format="JPEG", quality=90, exif=exif.tobytes())
    image = images.load_image(buffer.getvalue())
    assert images.original_size(image) == (1200, 3000)
    assert image.size == images.kept_size(1200, 3000) == (768, 1920)
    reference = stored.transpose(Image.Transpose.ROTATE_270).resize(image.size, Image.Resampling.LANCZOS)
    assert np.abs(np.asarray(image, np.float64) - np.asarray(reference, np.float64)).mean() < 4


def test_the_model_sees_the_same_picture_from_a_kept_image(default_model):
    photo = make_photo(4000, 3000)
    kept = images.load_image(png_bytes(photo))
    assert kept.size == (1024, 768)
    shown, expected = images.prepare(kept, default_model.config), images.prepare(photo, default_model.config)
    assert np.abs(shown.display.astype(np.float64) - expected.display).mean() < 2  # of 255


def test_the_pixel_limit_is_a_setting(monkeypatch):
    monkeypatch.setenv("VITVIZ_MAX_IMAGE_MEGAPIXELS", "1")
    with pytest.raises(images.ImageError, match="^The image is 1500×1000 pixels, more than the 1-megapixel limit.$"):
        images.load_image(photo_bytes(size=(1500, 1000)))
    monkeypatch.delenv("VITVIZ_MAX_IMAGE_MEGAPIXELS")
    assert images.load_image(photo_bytes(size=(1500, 1000))).size == (1152, 768)


# --- caches bounded in bytes ------------------------------------------------------------------------------


def test_the_cache_keeps_the_recently_used_within_its_bytes_and_entries():
    cache = bytecache.ByteCache(max_bytes=100, size_of=len, max_entries=3)
    for key in "abc":
        assert cache.get(key, lambda key=key: key * 30) == key * 30
    assert cache.bytes == 90 and len(cache) == 3
    cache.get("a", lambda: pytest.fail("kept, not made again"))  # a is now the most recently used
    cache.get("d", lambda: "d" * 30)  # 120 bytes: b, the least recently used, goes
    assert "b" not in cache and all(key in cache for key in "acd") and cache.bytes == 90
    cache.get("e", lambda: "e" * 5)  # four entries: c goes
    assert "c" not in cache and len(cache) == 3 and cache.bytes == 65
    assert cache.get("huge", lambda: "h" * 101) == "h" * 101  # too big to keep: returned, nothing pushed out
    assert "huge" not in cache and len(cache) == 3


def test_sessions_asking_together_make_a_value_once():
    cache, made = bytecache.ByteCache(max_bytes=1000, size_of=len), []

    def make() -> str:
        made.append(1)
        time.sleep(0.2)
        return "value"

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("key", make))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["value"] * 8 and made == [1]
    with pytest.raises(ZeroDivisionError):  # a failure is not kept
        cache.get("other", lambda: 1 / 0)
    assert cache.get("other", lambda: "fine") == "fine"


def test_a_trace_is_measured_by_its_tensors(default_model):
    from vitviz.ui import state

    trace = capture.trace(default_model, torch.zeros(3, *default_model.config.image_size))
    config, tokens = default_model.config, default_model.config.num_patches + 1
    attention = config.depth * 2 * config.heads * tokens * tokens * 4  # scores and probabilities, float32
    held = state.held_bytes(trace)
    assert attention < held < 4 * attention
    assert state.held_bytes((trace, trace)) == held  # shared memory counts once


def test_traces_are_kept_within_their_megabytes(monkeypatch):
    from vitviz.ui import state

    monkeypatch.setenv("VITVIZ_TRACE_CACHE_MB", "5")  # a trace of the built-in model is about 2 MB
    st.cache_resource.clear()
    at = open_page(fresh_app(), "pages/step_10_2.py")
    for i in range(4):
        upload(at, f"photo-{i}.png", photo_bytes("PNG", size=(300 + i, 200)))
        assert not problems(at), problems(at)
    cache = state.trace_cache()
    assert cache.max_bytes == 5_000_000 and 0 < cache.bytes <= 5_000_000 and len(cache) < 4
    assert ("trace", at.session_state[state.IMAGE_KEY]["key"], "default") in cache  # the latest one stays
    assert weights.load_default() is weights.load_default()
