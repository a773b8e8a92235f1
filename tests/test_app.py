"""The app, driven headlessly with Streamlit's AppTest: every page, samples and uploads, bad files."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import streamlit as st
from PIL import Image, ImageDraw
from streamlit.testing.v1 import AppTest

from vitviz import capture, steps, weights
from vitviz.images import load_image, preprocess

APP = str(Path(__file__).resolve().parent.parent / "app.py")
STEP_PAGES = [f"pages/{s.slug}.py" for s in steps.STEPS]
ALL_PAGES = ["pages/welcome.py", *STEP_PAGES, "pages/story.py"]


def photo_bytes(fmt: str = "JPEG", size=(300, 200)) -> bytes:
    """A non-square, photo-like picture with a shape in it."""
    image = Image.new("RGB", size, (40, 90, 160))
    draw = ImageDraw.Draw(image)
    for y in range(size[1]):
        draw.line([(0, y), (size[0], y)], fill=(40 + y // 3, 90, 160 - y // 4))
    draw.regular_polygon((size[0] // 2, size[1] // 2, min(size) // 3), 3, fill=(250, 240, 30))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def problems(at: AppTest) -> list[str]:
    """Exceptions, and error boundaries that caught something, on the current page."""
    found = [f"exception: {e.value}" for e in at.exception]
    found += [f"boundary: {w.value}" for w in at.warning if "could not be drawn" in str(w.value)]
    return found


def fresh_app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not problems(at), problems(at)
    return at


def open_page(at: AppTest, page: str) -> AppTest:
    at.switch_page(page)
    at.run()
    return at


def upload(at: AppTest, name: str, payload: bytes) -> AppTest:
    at.radio(key="image_source").set_value("Upload").run()
    at.file_uploader(key="upload").upload(name, payload, "image/jpeg").run()
    return at


def expected_prediction(payload: bytes) -> str:
    model = weights.load_default()
    logits = model(preprocess(load_image(payload), model.config)[None])[0]
    return model.config.labels[int(logits.argmax())]


@pytest.fixture(autouse=True)
def clean_caches():
    st.cache_resource.clear()
    st.cache_data.clear()
    yield


@pytest.mark.parametrize("page", ALL_PAGES)
def test_every_page_renders_with_a_sample(page):
    at = open_page(fresh_app(), page)
    assert not problems(at), problems(at)
    if page in STEP_PAGES:
        key = steps.STEPS[STEP_PAGES.index(page)].key
        assert at.title[0].value == steps.BY_KEY[key].label
        assert any("Shape" in m.value for m in at.markdown), "every step states its tensor's shape"


def test_every_page_renders_with_an_uploaded_photo():
    at = fresh_app()
    payload = photo_bytes()
    upload(at, "my-photo.jpg", payload)
    assert not at.error, [e.value for e in at.error]
    for page in ALL_PAGES:
        open_page(at, page)
        assert not problems(at), (page, problems(at))
        assert at.session_state["vitviz_image"]["name"] == "my-photo.jpg"
    open_page(at, "pages/step_13.py")
    shown = " ".join(m.value for m in at.markdown)
    assert f"Prediction: **{expected_prediction(payload)}**" in shown


def test_a_bad_upload_says_one_sentence_and_keeps_the_previous_image():
    at = open_page(fresh_app(), "pages/step_13.py")
    before = [m.value for m in at.markdown if m.value.startswith("Prediction")]
    upload(at, "notes.png", b"these are not the pixels you are looking for")
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].endswith(".") and ". " not in errors[0] and "\n" not in errors[0], errors
    assert not at.exception
    after = [m.value for m in at.markdown if m.value.startswith("Prediction")]
    assert after == before
    open_page(at, "pages/step_10_3.py")
    assert not problems(at)


def test_changing_layer_head_and_page_never_reruns_the_model(monkeypatch):
    calls = []
    real_trace = capture.trace

    def counting(model, pixels):
        calls.append(1)
        return real_trace(model, pixels)

    monkeypatch.setattr(capture, "trace", counting)
    at = open_page(fresh_app(), "pages/step_10_2.py")
    assert len(calls) == 1
    at.sidebar.selectbox(key="head").set_value(2).run()
    at.sidebar.selectbox(key="layer").set_value(3).run()
    at.sidebar.selectbox(key="colorscale").set_value("Inferno").run()
    for page in ("pages/step_10_3.py", "pages/step_10_6.py", "pages/step_11.py", "pages/step_3.py"):
        open_page(at, page)
        assert not problems(at)
    assert len(calls) == 1
    # The kept choices follow the user from page to page.
    open_page(at, "pages/step_10_3.py")
    assert at.sidebar.selectbox(key="layer").value == 3
    assert at.sidebar.selectbox(key="head").value == 2


def test_the_figures_show_the_chosen_layer_and_head():
    at = open_page(fresh_app(), "pages/step_10_2.py")
    at.sidebar.selectbox(key="layer").set_value(2).run()
    at.sidebar.selectbox(key="head").set_value(1).run()
    titles = " ".join(str(getattr(c, "proto", "")) for c in at.get("plotly_chart"))
    assert "layer 3, head 2" in titles


def test_sidebar_labels_start_with_the_step_number():
    for step in steps.STEPS:
        assert step.label.startswith(f"{step.key} · ")
    assert steps.BY_KEY["10.3"].label == "10.3 · Softmax"
    assert steps.BY_KEY["14"].label == "14 · Training"


def test_the_samples_are_predicted_like_a_direct_computation():
    from vitviz.ui import state

    at = open_page(fresh_app(), "pages/step_13.py")
    names = at.sidebar.selectbox(key="sample_name").options
    chosen = names[:2] + [n for n in names if n.startswith("Photo")][:1]
    for name in chosen:
        at.sidebar.selectbox(key="sample_name").set_value(name).run()
        shown = " ".join(m.value for m in at.markdown)
        assert f"Prediction: **{expected_prediction(state.sample_bytes(name))}**" in shown, name
