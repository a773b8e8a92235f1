"""vitviz: the Streamlit entry point. Page config and navigation only; pages draw themselves."""

import streamlit as st

from vitviz import steps
from vitviz.ui.page import page_path

st.set_page_config(page_title="vitviz: a Vision Transformer, step by step", page_icon="🔬", layout="wide")

sections: dict[str, list] = {"": [st.Page("pages/welcome.py", title="Welcome", icon=":material/home:", default=True)]}
for step in steps.STEPS:
    sections.setdefault(step.section, []).append(st.Page(page_path(step.key), title=step.label, url_path=step.slug))
sections["Explore"] = [
    st.Page("pages/explorer.py", title="Attention explorer", url_path="explorer"),
    st.Page("pages/story.py", title="Story: every step on one page", url_path="story"),
]

st.navigation(sections, position="top").run()
