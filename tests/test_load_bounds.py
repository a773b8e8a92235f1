"""What one visitor's long computations may take from the shared server: a place among `limits.heavy_tasks`
(`quota.HEAVY`), one torch thread, and nothing at all for a repeat. The faithfulness score, the story file and
the trace's zip; the Hub cache's limit is in tests/test_hub.py."""

from __future__ import annotations

import json
import threading
import zipfile
from io import BytesIO

import pytest
import streamlit as st
import torch
from test_trace_file import traced_photo

from vitviz import capture, faithfulness, quota
from vitviz.ui import attribution, downloads
from vitviz.ui.controls import View

BUSY = "^The server is busy with other visitors' long computations; try again in a moment.$"


@pytest.fixture
def heavy(monkeypatch):
    """The server's places for long computations, none taken before or after; downloads do not wait for one."""
    assert quota.HEAVY.taken == 0, "an earlier test still holds a place"
    for name in ("HEAVY_TASKS", "HEAVY_WAIT_SECONDS", "NUMBERS_MAX_MB", "DOWNLOAD_CACHE_MB"):
        monkeypatch.delenv(f"VITVIZ_{name}", raising=False)
    monkeypatch.setenv("VITVIZ_HEAVY_WAIT_SECONDS", "0")
    yield quota.HEAVY
    assert quota.HEAVY.taken == 0


def test_a_place_is_refused_with_one_sentence_waited_for_and_given_back_however_the_work_ends(heavy):
    with heavy.holding(1), pytest.raises(quota.ServerBusy, match=BUSY):
        heavy.take(1)
    with pytest.raises(quota.ServerBusy, match="^Long computations are turned off on this server.$"):
        heavy.take(0)
    with pytest.raises(RuntimeError), heavy.holding(1):
        raise RuntimeError("the work failed")
    assert heavy.taken == 0

    inside, release, waited = threading.Event(), threading.Event(), []

    def first() -> None:
        with heavy.holding(1):
            inside.set()
            release.wait()

    def second() -> None:
        with heavy.holding(1, wait=600):  # waits for the first to give its place back
            waited.append(heavy.taken)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    inside.wait()
    threads[1].start()
    assert not waited, "the second cannot have a place while the first holds the only one"
    release.set()
    for thread in threads:
        thread.join()
    assert waited == [1]


def test_a_faithfulness_score_holds_a_place_on_one_thread_and_a_repeat_costs_nothing(default_model, heavy, monkeypatch):
    traced = traced_photo(default_model, "bounds-faithfulness")
    calls, real = [], faithfulness.score

    def counted(*args, **kwargs):
        calls.append((heavy.taken, torch.get_num_threads()))
        return real(*args, **kwargs)

    monkeypatch.setattr(faithfulness, "score", counted)
    with heavy.holding(1), pytest.raises(quota.ServerBusy, match=BUSY):
        attribution.score(traced, 0)  # another visitor's long computation holds the only place
    assert calls == [] and attribution.cached(traced, 0) is None

    first = attribution.score(traced, 0)
    assert calls == [(1, 1)], "scored in a place of its own, on one torch thread"
    assert attribution.score(traced, 0) is first and attribution.cached(traced, 0) is first
    with heavy.holding(1):
        assert attribution.score(traced, 0) is first, "a kept score needs no place"
    assert len(calls) == 1


def test_a_story_file_is_made_once_in_a_place_and_a_refusal_is_kept_for_the_page_to_say(default_model, heavy):
    traced = traced_photo(default_model, "bounds-story")
    made = []

    def make() -> bytes:
        made.append((heavy.taken, torch.get_num_threads()))
        return b"<html>a story</html>"

    view = View(layer=1)
    key = downloads.story_key(traced, view, {"keep_patch": 2}, "m", "en")
    assert key != downloads.story_key(traced, View(layer=2), {"keep_patch": 2}, "m", "en")
    assert key != downloads.story_key(traced, view, {"keep_patch": 3}, "m", "en")
    assert key != downloads.story_key(traced, view, {"keep_patch": 2}, "m", "tr")
    assert downloads.made_once(key, make) == downloads.made_once(key, make) == b"<html>a story</html>"
    assert made == [(1, 1)], "one file, made in a place on one torch thread; the second click sends it again"
    downloads.download_cache().discard(key)  # as a story made while an average was still computing is
    assert downloads.made_once(key, make) == b"<html>a story</html>" and len(made) == 2

    notes = {}
    other = downloads.story_key(traced, View(layer=3), {}, "m", "en")
    with heavy.holding(1), pytest.raises(quota.ServerBusy):
        downloads.made_once(other, make, notes, "story")
    assert len(made) == 2 and str(notes["story"]).startswith("The server is busy")


def test_the_numbers_are_float16_above_their_limit_and_say_so_and_not_offered_above_it_even_then(
        default_model, heavy, monkeypatch, tmp_path):
    traced = traced_photo(default_model, "bounds-numbers")
    full, half = traced.trace.file_size(), traced.trace.file_size(torch.float16)
    assert half < full / 1.9 and 1_000_000 < half < 2_000_000 < full < 3_000_000  # the limits below are in MB
    monkeypatch.setenv("VITVIZ_NUMBERS_MAX_MB", "3")
    assert downloads.numbers_precision(traced) == torch.float32
    monkeypatch.setenv("VITVIZ_NUMBERS_MAX_MB", "1")
    assert downloads.numbers_precision(traced) is None

    monkeypatch.setenv("VITVIZ_NUMBERS_MAX_MB", "2")
    assert downloads.numbers_precision(traced) == torch.float16
    archive = zipfile.ZipFile(BytesIO(downloads.numbers_zip(traced, "m", torch.float16)))
    about = json.loads(archive.read("trace.json"))
    assert about["precision"].startswith("float16 (about 3 significant digits)") and "limit of 2 MB" in about["precision"]
    (tmp_path / "trace.safetensors").write_bytes(archive.read("trace.safetensors"))
    assert archive.getinfo("trace.safetensors").file_size == half
    back = capture.Trace.load(tmp_path / "trace.safetensors")
    assert back.layers[2].attn.dtype == torch.float16 and list(back.layers[2].attn.shape) == about["tensors"][
        "layers.2.attn"]
    torch.testing.assert_close(back.layers[2].attn.float(), traced.trace.layers[2].attn, atol=1e-3, rtol=1e-3)
    assert back.patch_size == traced.trace.patch_size and back.logits.dtype == torch.float16


def test_the_pages_say_busy_in_one_sentence_and_what_the_numbers_download_holds(heavy, monkeypatch):
    from conftest import APP, fresh_app, open_page, problems
    from streamlit.testing.v1 import AppTest

    from vitviz.i18n import Message

    monkeypatch.setattr(attribution, "QUICK_SECONDS", float("inf"))  # score without asking
    monkeypatch.setenv("VITVIZ_NUMBERS_MAX_MB", "2")
    st.cache_resource.clear()  # no score kept from an earlier test: this one must ask for a place
    at = fresh_app()
    at.session_state["keep_explorer_tab"] = "Faithfulness"
    heavy.take(1)  # another visitor's long computation
    try:
        open_page(at, "pages/explorer.py")
        assert not problems(at), problems(at)
        assert [info.value for info in at.info] == [
            "The server is busy with other visitors' long computations; try again in a moment."]
    finally:
        heavy.give_back()
    at.button(key="faithfulness_retry").click().run()
    assert not problems(at), problems(at)
    assert not at.info and any("random order" in markdown.value for markdown in at.markdown), "scored on a retry"

    # The numbers' button is drawn by app.py, which AppTest runs on a test's first run only: a fresh app each time.
    # The image and model are those traced above, so the button is there at once.
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state[downloads.NOTES_KEY] = {"numbers": Message(BUSY.strip("^$"))}  # a refused click
    at.run()
    assert not problems(at), problems(at)
    button = at.sidebar.get("download_button")[0]
    assert "float16" in button.proto.help and "limit of 2 MB" in button.proto.help
    assert [info.value for info in at.sidebar.info] == [
        "The server is busy with other visitors' long computations; try again in a moment. Your file was not made: "
        "click the button again."]
    monkeypatch.setenv("VITVIZ_NUMBERS_MAX_MB", "1")
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not problems(at), problems(at)
    assert not at.sidebar.get("download_button") and not at.sidebar.info
    assert any("even in float16, more than this server allows" in caption.value for caption in at.sidebar.caption)
