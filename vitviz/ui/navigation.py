"""The app's page list and page config, shared by app.py and the legacy-mode guard in page.py."""

from __future__ import annotations

import streamlit as st

from vitviz import steps


def page_path(key: str) -> str:
    return f"pages/{steps.BY_KEY[key].slug}.py"


def configure() -> None:
    st.set_page_config(page_title="vitviz: a Vision Transformer, step by step", page_icon="🔬", layout="wide")


def sections() -> dict[str, list]:
    pages: dict[str, list] = {"": [st.Page("pages/welcome.py", title="Welcome", icon=":material/home:", default=True)]}
    for step in steps.STEPS:
        pages.setdefault(step.section, []).append(st.Page(page_path(step.key), title=step.label, url_path=step.slug))
    pages[steps.TRAINING].append(st.Page("pages/training.py", title="Training studio", url_path="training"))
    pages["Explore"] = [
        st.Page("pages/explorer.py", title="Attention explorer", url_path="explorer"),
        st.Page("pages/model.py", title="Model", url_path="model"),
        st.Page("pages/story.py", title="Story: every step on one page", url_path="story"),
    ]
    return pages


def navigation():
    """Declare the navigation; returns the page Streamlit resolved for this run."""
    return st.navigation(sections(), position="top")
