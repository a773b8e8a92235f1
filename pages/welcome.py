"""The landing page: what vitviz is, pick an image, start the tour."""

import streamlit as st

from vitviz import steps
from vitviz.ui import controls, page

page.ensure_navigation()
st.title("vitviz: see a Vision Transformer think")
st.markdown(
    "Pick an image and follow it through a real Vision Transformer, one step per page: cut into patches, "
    "embedded, mixed by attention in every layer, and turned into a prediction. Every number and picture "
    "is computed by the model for *your* image, nothing is a mock-up."
)
left, right = st.columns([1, 1])
with left:
    st.subheader("1. Choose an image")
    controls.image_picker(st.container(), preview_width=320)
with right:
    st.subheader("2. What the model says")
    analysis = page.load_analysis()
    if analysis is not None:
        probs = analysis.trace.probs.numpy()
        labels = list(analysis.config.labels)
        top = int(probs.argmax())
        st.metric("Prediction", labels[top] if labels else str(top), f"{probs[top]:.1%} probability", delta_color="off")
        config = analysis.config
        st.markdown(
            f"The built-in model is a small ViT trained by vitviz on generated pictures of "
            f"{len(labels)} shapes ({', '.join(labels)}). It cuts a {config.image_size[1]}×{config.image_size[0]} "
            f"input into {config.num_patches} patches of {config.patch_size}×{config.patch_size} pixels and runs "
            f"{config.depth} encoder layers with {config.heads} attention heads each. Photos are not shapes, so its "
            "guesses on them are only a curiosity, but every step still shows what it computes."
        )
    st.subheader("3. Follow the steps")
    if st.button(f"Start with {steps.STEPS[0].label} →", type="primary"):
        st.switch_page(page.page_path("0"))
    st.caption("Or read everything on one page in the Story, under Explore.")
