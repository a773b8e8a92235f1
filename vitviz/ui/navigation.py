"""The app's page list and page config, shared by app.py and the first-deep-link guard below, and
the check-in that keeps a session's training run alive on every page."""

from __future__ import annotations

import streamlit as st

from vitviz.ui import controls, i18n, links, state, steps
from vitviz.ui.i18n import _


def page_path(key: str) -> str:
    return steps.BY_KEY[key].page


def configure() -> None:
    """The session's language (first: everything after speaks it) and the page config, at the start of every run."""
    i18n.choose_language()
    st.set_page_config(page_title=_("vitviz: a Vision Transformer, step by step"), page_icon="🔬", layout="wide")


def sections() -> dict[str, list]:
    """The pages by section, titled in the session's language (their URLs stay the same in every language)."""
    pages: dict[str, list] = {"": [st.Page("pages/welcome.py", title=_("Welcome"), icon=":material/home:",
                                           default=True)]}
    for step in steps.STEPS:
        pages.setdefault(_(step.section), []).append(st.Page(step.page, title=step.label, url_path=step.slug))
    pages[_(steps.training.SECTION.title)].append(st.Page("pages/training.py", title=_("Training studio"),
                                                          url_path="training"))
    pages[_("Explore")] = [
        st.Page("pages/explorer.py", title=_("Attention explorer"), url_path="explorer"),
        st.Page("pages/model.py", title=_("Model"), url_path="model"),
        st.Page("pages/story.py", title=_("Story: every step on one page"), url_path="story"),
    ]
    return pages


def navigation():
    """Declare the navigation; returns the page Streamlit resolved for this run."""
    return st.navigation(sections(), position="top")


CHECK_IN_SECONDS = 10  # how often an open tab checks in while its session trains, or a third of the heartbeat


def _touch_training_run() -> None:
    run = state.training_run()
    if run is not None:
        run.touch()


def keep_training_alive() -> None:
    """While this session's run trains, its open tab checks in every CHECK_IN_SECONDS, whatever page it shows.

    app.py calls this after the page. The check-in is a fragment that the browser reruns on a timer, so it
    ends when the tab closes, and the run then stops itself (`vitviz.quota.Allowance`); every rerun of a
    page checks in too (`ensure_navigation`). Browsers may wake a long-hidden tab's timers only about once
    a minute; the run's heartbeat limit says what happens then.
    """
    run = state.training_run()
    if run is None or not run.running:
        return
    every = CHECK_IN_SECONDS
    if run.allowance.heartbeat_seconds:
        every = max(1.0, min(every, run.allowance.heartbeat_seconds / 3))

    @st.fragment(run_every=every)
    def check_in() -> None:
        _touch_training_run()

    check_in()


def ensure_navigation() -> None:
    """Every page file calls this first, so a fresh server's first deep link behaves like any other visit,
    so that every rerun of any page tells this session's training run that its tab is open, so that a
    session's first page takes its view from the link that opened it (`links.restore`), and to settle the
    session's language and draw its switch at the top of the sidebar (here rather than in app.py: AppTest runs
    a page file without app.py after the first page).

    Works around Streamlit's legacy multipage mode (Streamlit 1.67.0, pinned in requirements.txt):
    until some session in the process has run st.navigation, Streamlit treats the pages/ folder
    beside app.py as a legacy multipage app (`PagesManager.uses_pages_directory` is True) and runs
    a deep-linked page file on its own, without app.py: no page config, no navigation, and widget
    ids that the next run will not recognise, so the user's first click would be lost. Streamlit has
    no public setting to turn that mode off, so this turns it off for the process, declares the
    navigation, and on a real server reruns, this time through app.py.
    tests/test_app.py::test_streamlit_still_has_the_legacy_pages_mode fails the day this changes.
    """
    from streamlit.runtime import Runtime
    from streamlit.runtime.pages_manager import PagesManager

    _touch_training_run()
    i18n.choose_language()
    i18n.language_switch()
    st.session_state.pop(controls.READERS, None)  # a page names its own keyed fragments, after drawing them
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        configure()
        navigation()
        # AppTest runs every script in legacy mode and would lose its button clicks to a rerun;
        # it stands in a mock runtime, a real server does not.
        if Runtime.exists() and type(Runtime.instance()) is Runtime:
            st.rerun()
    links.restore()
