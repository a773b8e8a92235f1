"""Hardening: every corpus file, error boundaries, bounded memory under many uploads."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tracemalloc
from pathlib import Path

import corpus
import numpy as np
import pytest
import streamlit as st
from conftest import fresh_app, open_page, photo_bytes, problems, upload

from vitviz import weights
from vitviz.images import ImageError, load_image

VALID = list(corpus.valid())
INVALID = list(corpus.invalid())
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("name", "payload", "expected"), VALID, ids=[v[0] for v in VALID])
def test_every_valid_file_loads_in_rgb_the_right_way_up(name, payload, expected):
    image = load_image(payload)
    assert image.mode == "RGB"
    if expected is not None:
        assert image.size == expected.size, name
        pixels = np.asarray(image, np.float64)
        top_left = pixels[: corpus.H // 2 - 2, : corpus.W // 2 - 2].mean(axis=(0, 1))
        bottom_right = pixels[corpus.H // 2 + 2 :, corpus.W // 2 + 2 :].mean(axis=(0, 1))
        assert top_left[0] > 150 and top_left[2] < 100, (name, top_left)  # red where red belongs
        assert bottom_right[2] > 150 and bottom_right[0] < 100, (name, bottom_right)


@pytest.mark.parametrize(("name", "payload"), INVALID, ids=[v[0] for v in INVALID])
def test_every_invalid_file_is_one_sentence_without_decoding(name, payload):
    tracemalloc.start()
    with pytest.raises(ImageError) as error:
        load_image(payload)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    message = str(error.value)
    assert message.endswith(".") and "\n" not in message and ". " not in message, message
    assert peak < 20 * 1024 * 1024, f"{name} allocated {peak / 1e6:.0f} MB before being refused"


PEAK_SCRIPT = """
import json, resource, sys
sys.path[:0] = [{root!r}, {tests!r}]
import corpus
from vitviz.images import load_image, prepare
from vitviz import weights
files = dict((n, p) for n, p, _ in corpus.valid())
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
image = load_image(files[sys.argv[1]])
prepare(image, weights.load_default().config)
print(json.dumps({{"before_kb": before, "after_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}))
"""


@pytest.mark.parametrize("name", ["24-megapixel.jpg", "compressible-16-megapixel.png"])
def test_peak_memory_of_the_largest_valid_images_is_bounded(name):
    script = PEAK_SCRIPT.format(root=str(ROOT), tests=str(ROOT / "tests"))
    result = subprocess.run([sys.executable, "-c", script, name], capture_output=True, text=True, check=True)
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    grown_mb = (figures["after_kb"] - figures["before_kb"]) / 1024
    # A 24-megapixel RGB image is 72 MB decoded; allow a few copies, refuse anything unbounded.
    assert grown_mb < 400, f"{name}: peak RSS grew by {grown_mb:.0f} MB"


def test_an_exception_in_one_figure_leaves_the_rest_of_the_page(monkeypatch, caplog):
    import dataclasses

    from vitviz.ui import steps

    def broken(traced, view):
        raise RuntimeError("a bug in one figure")

    monkeypatch.setitem(steps.BY_KEY, "10.3", dataclasses.replace(steps.BY_KEY["10.3"], draw=broken))
    st.cache_resource.clear()
    at = open_page(fresh_app(), "pages/step_10_3.py")
    assert not at.exception
    warnings = [w.value for w in at.warning]
    assert len(warnings) == 1 and "could not be drawn" in warnings[0]
    assert at.title[0].value == "10.3 · Softmax"
    assert [b.label for b in at.button][-1].startswith("10.4")  # the navigation still renders
    assert "a bug in one figure" in caplog.text and "Traceback" in caplog.text


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def test_two_hundred_uploads_keep_memory_bounded(capsys):
    st.cache_resource.clear()
    st.cache_data.clear()
    at = open_page(fresh_app(), "pages/step_10_2.py")
    rng = np.random.default_rng(0)
    readings = []
    for i in range(200):
        size = (int(rng.integers(64, 400)), int(rng.integers(64, 400)))
        upload(at, f"upload-{i}.jpg", photo_bytes(size=size)) if i == 0 else at.file_uploader(key="upload").upload(
            f"upload-{i}.jpg", photo_bytes(size=size), "image/jpeg").run()
        assert not problems(at), problems(at)
        if i in (49, 199):
            readings.append(_rss_mb())
    with capsys.disabled():
        print(f"\nRSS after 50 uploads: {readings[0]:.0f} MB, after 200: {readings[1]:.0f} MB")
    assert readings[1] - readings[0] < 150, readings
    assert at.session_state["vitviz_image"]["name"] == "upload-199.jpg"
    assert weights.load_default() is weights.load_default()


HOSTILE = ("[win a prize](https://evil.example/phish)", "![tracker](https://evil.example/pixel.png)",
           '<a href="https://evil.example">click</a>', "www.evil.example", "**bold** $x^2$")


def test_labels_and_names_from_visitors_are_shown_as_plain_text():
    # Class names come from a checkpoint and file names from a visitor: neither may become a link, an image or
    # markup, in Markdown (st.markdown, captions, messages) or in plotly's labels.
    import torch

    from vitviz.model import ViT, ViTConfig

    torch.manual_seed(0)
    labels = (*HOSTILE, "cat", "dog", "eel")
    model = ViT(ViTConfig(image_size=(32, 32), patch_size=8, dim=32, depth=1, heads=2, mlp_dim=64, labels=labels))
    at = open_page(fresh_app(), "pages/model.py")
    at.radio(key="model_source").set_value("Upload").run()
    at.file_uploader(key="model_upload").upload(f"{HOSTILE[0]}.safetensors", weights.to_bytes(model),
                                                "application/octet-stream").run()
    at.button(key="load_upload").click().run()
    assert not at.error, [e.value for e in at.error]
    open_page(at, "pages/step_13.py")
    upload(at, f"{HOSTILE[1]}.png", photo_bytes(fmt="PNG"))
    for page in ("pages/model.py", "pages/welcome.py", "pages/step_11.py", "pages/step_13.py", "pages/step_14.py",
                 "pages/explorer.py"):
        open_page(at, page)
        assert not problems(at), (page, problems(at))
        texts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [s.value for s in at.success]
        for text in texts:
            active = re.sub(r"\\.", "·", text)  # what Markdown still reads as markup: escapes become inert dots
            assert "](" not in active and "<a" not in active and "**bold**" not in active, (page, text)
            assert "https://" not in active and "www.evil" not in active, (page, text)
        for chart in at.get("plotly_chart"):
            shown = json.dumps(json.loads(chart.proto.spec), ensure_ascii=False)
            assert "<a href" not in shown, (page, shown[:300])
    open_page(at, "pages/step_13.py")
    assert any(HOSTILE[0] in t.value for t in at.text), "the top 5 shows the name itself, as plain text"
