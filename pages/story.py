"""Every step on one scrolling page, drawn by the same code as the step pages."""

import streamlit as st

from vitviz import steps
from vitviz.ui import controls, page

page.ensure_navigation()
controls.image_picker()
analysis = page.load_analysis()
if analysis is not None:
    controls.layer_head(analysis.config.depth, analysis.config.heads)
    controls.colour_scale()
    st.caption("The whole guide on one page. Layer, head and colour scale in the sidebar apply to every step below.")
    for step in steps.STEPS:
        page.body(step.key, analysis)
        st.divider()
