"""Links that restore a view: the URL's query is read on a session's first run, checked against the model,
and written back (tests/test_browser_links.py sees it in a real browser, where the URL is rewritten)."""

from __future__ import annotations

import re
from urllib.parse import parse_qs

import pytest
from conftest import ALL_PAGES, APP, problems
from streamlit.testing.v1 import AppTest

from vitviz.ui import links, state

EVERY_PAGE = [*ALL_PAGES, "pages/explorer.py", "pages/model.py", "pages/training.py"]

HOSTILE = {
    "huge numbers": {"layer": "9" * 40, "head": "40", "query": str(10**30), "patch": "99999", "tab": "7"},
    "markup": {"image": "<script>alert(1)</script>", "colors": '<img src=x onerror="alert(1)">',
               "model": "javascript:alert(1)", "tab": "**bold** [link](https://example.com)", "query": "<b>cls</b>"},
    "unicode": {"layer": "٣", "head": "²", "image": "🐱 astronaut", "query": "ＣＬＳ", "colors": "Viridis\u202e",
                "model": "facebook/deit-tiny-patch16-224\u0000"},
    "odd shapes": {"layer": "", "head": " 1", "query": "-3", "patch": "1_0", "colors": "x" * 5000,
                   "unknown": "kept out", "embed_options": "show_toolbar"},
}
ALL_AT_ONCE = {name: value for values in HOSTILE.values() for name, value in values.items()}


def linked_app(values: dict[str, str], page: str | None = None) -> AppTest:
    """A new session that opened the app with `values` in its URL, then (as if following the menu) `page`.

    AppTest runs app.py only for the first page (Welcome) and its reruns; a page it switches to runs on its
    own, without app.py's share box (a real server runs every page through app.py).
    """
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update(values)
    at.run()
    if page is not None:
        at.switch_page(page)
        at.run()
    return at


def written_query(at: AppTest) -> dict[str, str]:
    """The query the share box keeps in the browser's URL (on a run of app.py)."""
    srcdoc = at.sidebar.get("iframe")[0].proto.srcdoc
    wanted = re.search(r"const wanted = \"([^\"]*)\";", srcdoc).group(1)
    return {name: values[-1] for name, values in parse_qs(wanted).items()}


def toasts(at: AppTest) -> str:
    return " ".join(str(toast.value) for toast in at.toast)


def test_a_link_restores_the_view_and_the_url_keeps_it():
    at = linked_app({"image": "astronaut", "layer": "3", "head": "2", "query": "27", "colors": "inferno", "patch": "5",
                     "tab": "occlusion"})
    assert not problems(at) and not at.toast, (problems(at), toasts(at))
    kept = {key: at.session_state[key] for key in ("keep_layer", "keep_head", "keep_query", "keep_patch",
                                                   "keep_colorscale", "keep_explorer_tab", "keep_sample_name")}
    assert kept == {"keep_layer": 2, "keep_head": 1, "keep_query": 28, "keep_patch": 5, "keep_colorscale": "Inferno",
                    "keep_explorer_tab": "Occlusion", "keep_sample_name": "Photo: astronaut"}
    assert written_query(at) == {"image": "astronaut", "layer": "3", "head": "2", "query": "27", "patch": "5",
                                 "colors": "Inferno", "tab": "Occlusion", "lang": "en"}
    at.switch_page("pages/step_10_4.py")
    at.run()
    assert not problems(at), problems(at)
    assert (at.selectbox(key="layer").value, at.selectbox(key="head").value) == (2, 1)
    assert "Query: **patch 27 (row 4, col 4)**" in [m.value for m in at.markdown]


def test_defaults_stay_out_of_the_url():
    at = linked_app({"layer": "1", "head": "2", "query": "cls", "colors": "Viridis", "image": "scene-1"})
    assert written_query(at) == {"head": "2", "lang": "en"}


def test_a_link_keeps_its_language_and_the_url_keeps_it_on_every_run():
    at = linked_app({"lang": "tr", "head": "2"})
    assert not problems(at) and not at.toast, (problems(at), toasts(at))
    assert at.session_state["vitviz_language"] == "tr" and written_query(at) == {"head": "2", "lang": "tr"}
    at.run()  # the next run leaves it as it is
    assert at.query_params.get("lang") in ("tr", ["tr"]) and at.session_state["vitviz_language"] == "tr"


def test_every_page_renders_a_hostile_link_at_its_defaults():
    at = linked_app(ALL_AT_ONCE)
    assert not problems(at), problems(at)
    note = toasts(at)
    for name in ("layer", "head", "query", "patch", "colors", "tab", "image", "model"):
        assert f"{name}=" in note, (name, note)
    assert "<script>" not in note and "<img" not in note  # shown as text, escaped for Markdown
    assert written_query(at) == {"lang": "en"}, "nothing hostile goes back into the URL"
    assert state.MODEL_KEY not in at.session_state, "the built-in model"
    for page in EVERY_PAGE:
        at.switch_page(page)
        at.run()
        assert not problems(at), (page, problems(at))


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_each_kind_of_hostile_link_alone(kind):
    at = linked_app(HOSTILE[kind], "pages/explorer.py")
    assert not problems(at), (kind, problems(at))
    assert at.session_state["keep_layer"] == 0 and at.session_state["keep_query"] == 0


def _share_box_with_an_upload() -> None:
    import sys

    sys.path.insert(0, "tests")
    from conftest import photo_bytes

    from vitviz.ui import links, state

    state.set_image("holiday.jpg", photo_bytes())
    links.share_box()


def test_an_upload_cannot_travel_and_the_box_says_so():
    at = AppTest.from_function(_share_box_with_an_upload, default_timeout=60)
    at.session_state["keep_head"] = 2
    at.run()
    assert not at.exception, at.exception
    assert "an upload cannot travel in a link" in " ".join(str(c.value) for c in at.sidebar.caption)
    assert written_query(at) == {"head": "3", "lang": "en"}


def test_next_and_previous_keep_the_view():
    at = linked_app({"layer": "4", "head": "3"}, "pages/step_10_4.py")
    at.button(key="next_bottom").click().run()
    assert not problems(at), problems(at)
    assert at.query_params.get("layer") in ("4", ["4"]) and at.query_params.get("head") in ("3", ["3"])


def test_a_link_to_a_preset_not_downloaded_offers_it_and_then_opens_the_view(fake_hub):
    # The fake Hub's DeiT-Tiny has 2 layers of 2 heads over 16 patches (tests/helpers/checkpoints.py).
    at = linked_app({"model": "facebook/deit-tiny-patch16-224", "head": "2", "layer": "2", "query": "5"},
                    "pages/step_10_4.py")
    assert not problems(at), problems(at)
    assert at.session_state["keep_head"] == 0, "the rest of the link waits for its model"
    offer = " ".join(str(m.value) for m in at.markdown)
    assert "has not downloaded yet" in offer and "facebook/deit-tiny-patch16-224" in offer
    at.button(key="links_fetch").click().run()
    assert not problems(at), problems(at)
    assert at.session_state[state.MODEL_KEY].key == "hub:facebook/deit-tiny-patch16-224"
    assert (at.session_state["keep_layer"], at.session_state["keep_head"], at.session_state["keep_query"]) == (1, 1, 6)
    assert links.WAITING_KEY not in at.session_state
