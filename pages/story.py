"""Every step on one scrolling page, drawn by the same code as the step pages."""

import streamlit as st

from vitviz.ui import controls, downloads, navigation, page, steps

navigation.ensure_navigation()
controls.image_picker()
traced = page.load_traced()
if traced is not None:
    page.sidebar_controls(frozenset({steps.LAYER, steps.HEAD}), traced)
    downloads.story_button(traced)
    st.caption("The whole guide on one page. Layer, head and colour scale in the sidebar apply to every step below.")
    for step in steps.STEPS:
        page.body(step, traced)
        st.divider()
