"""The app's page list and page config, shared by app.py and the first-deep-link guard below."""

from __future__ import annotations

import streamlit as st

from vitviz.ui import steps


def page_path(key: str) -> str:
    return steps.BY_KEY[key].page


def configure() -> None:
    st.set_page_config(page_title="vitviz: a Vision Transformer, step by step", page_icon="🔬", layout="wide")


def sections() -> dict[str, list]:
    pages: dict[str, list] = {"": [st.Page("pages/welcome.py", title="Welcome", icon=":material/home:", default=True)]}
    for step in steps.STEPS:
        pages.setdefault(step.section, []).append(st.Page(step.page, title=step.label, url_path=step.slug))
    pages[steps.training.SECTION.title].append(st.Page("pages/training.py", title="Training studio", url_path="training"))
    pages["Explore"] = [
        st.Page("pages/explorer.py", title="Attention explorer", url_path="explorer"),
        st.Page("pages/model.py", title="Model", url_path="model"),
        st.Page("pages/story.py", title="Story: every step on one page", url_path="story"),
    ]
    return pages


def navigation():
    """Declare the navigation; returns the page Streamlit resolved for this run."""
    return st.navigation(sections(), position="top")


def ensure_navigation() -> None:
    """Every page file calls this first, so a fresh server's first deep link behaves like any other visit.

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

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        configure()
        navigation()
        # AppTest runs every script in legacy mode and would lose its button clicks to a rerun;
        # it stands in a mock runtime, a real server does not.
        if Runtime.exists() and type(Runtime.instance()) is Runtime:
            st.rerun()
