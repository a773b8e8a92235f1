"""The app, driven headlessly with Streamlit's AppTest: every page, samples and uploads, bad files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import streamlit as st
from conftest import ALL_PAGES, STEP_PAGES, expected_prediction, fresh_app, open_page, photo_bytes, problems, upload

from vitviz import capture
from vitviz.ui import state, steps


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
    real_trace = capture.Recorder.trace

    def counting(recorder, pixels):
        calls.append(1)
        return real_trace(recorder, pixels)

    monkeypatch.setattr(capture.Recorder, "trace", counting)
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
    at = open_page(fresh_app(), "pages/step_13.py")
    names = at.sidebar.selectbox(key="sample_name").options
    chosen = names[:2] + [n for n in names if n.startswith("Photo")][:1]
    for name in chosen:
        at.sidebar.selectbox(key="sample_name").set_value(name).run()
        shown = " ".join(m.value for m in at.markdown)
        assert f"Prediction: **{expected_prediction(state.sample_bytes(name))}**" in shown, name


def test_every_step_is_declared_once_with_a_page_file_that_shows_it():
    root = Path(__file__).resolve().parent.parent
    assert len(steps.BY_KEY) == len(steps.STEPS) == 26
    for step in steps.STEPS:
        source = (root / step.page).read_text()
        assert f'show_step("{step.key}")' in source, step.page
        assert step.controls <= {steps.LAYER, steps.HEAD, steps.QUERY}
        assert steps.HEAD not in step.controls or steps.LAYER in step.controls, step.key
    step_files = {p.name for p in (root / "pages").glob("step_*.py")}
    assert step_files == {Path(step.page).name for step in steps.STEPS}


def test_streamlit_still_has_the_legacy_pages_mode():
    # navigation.ensure_navigation works around this Streamlit behaviour (see its docstring): with a
    # pages/ folder beside the main script, a fresh process starts in the legacy multipage mode. If this
    # fails, Streamlit changed: check a fresh server's first deep link, then simplify or drop the guard.
    import streamlit

    from vitviz.ui import navigation

    root = Path(__file__).resolve().parent.parent
    script = (
        "from streamlit.runtime.pages_manager import PagesManager\n"
        f"PagesManager({str(root / 'app.py')!r})  # what a fresh server makes for its first session\n"
        "print(PagesManager.uses_pages_directory)\n"
    )
    fresh = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert fresh.stdout.strip() == "True", fresh.stdout
    assert streamlit.__version__ == "1.67.0", "the guard was checked against Streamlit 1.67.0"
    assert "PagesManager.uses_pages_directory" in navigation.ensure_navigation.__doc__
