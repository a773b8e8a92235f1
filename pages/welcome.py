"""The landing page: what vitviz is, pick an image, start the tour."""

import streamlit as st

from vitviz.ui import controls, links, navigation, page, presets, state, steps
from vitviz.ui.text import plain

navigation.ensure_navigation()
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
    st.subheader("… and a model")
    if state.current_model().key == "default":
        st.caption("In use: the built-in model, which knows only 8 drawn shapes. For a photo, pick a real ImageNet "
                   "or DINO model (downloaded once from the Hugging Face Hub), or any other on the Model page.")
    else:
        st.caption(f"In use: {plain(state.current_model().name)}. Other models are here and on the Model page.")
    with st.expander("Real models, one click away", expanded=state.current_model().key == "default"):
        presets.preset_picker("welcome")
with right:
    st.subheader("2. What the model says")
    traced = page.load_traced()
    if traced is not None:
        labels = traced.labels
        if traced.trace.probs is not None:
            probs = traced.trace.probs.numpy()
            order = probs.argsort()[::-1]
            st.metric("Prediction", labels[order[0]], f"{probs[order[0]]:.1%} probability", delta_color="off")
            if len(labels) > 5:
                st.text("\n".join(f"{probs[i]:6.1%}  {labels[i]}" for i in order[:5]))  # plain text: names are data
        config = traced.config
        size = (f"It cuts a {config.image_size[1]}×{config.image_size[0]} input into {config.num_patches} patches of "
                f"{config.patch_size}×{config.patch_size} pixels and runs {config.depth} encoder layers with "
                f"{config.heads} attention heads each.")
        if traced.model_key == "default":
            st.markdown(f"The built-in model is a small ViT trained by vitviz on generated pictures of {len(labels)} "
                        f"shapes ({', '.join(labels)}). {size} Photos are not shapes, so its guesses on them are only "
                        "a curiosity, but every step still shows what it computes.")
        elif labels:
            st.markdown(f"The model in use is {plain(state.current_model().name)}, a ViT with "
                        f"{len(labels):,} output classes. {size}")
        else:
            st.markdown(f"The model in use is {plain(state.current_model().name)}, a ViT trained "
                        f"without labels, so it makes no prediction; its attention maps are the thing to see. {size}")
    st.subheader("3. Follow the steps")
    if st.button(f"Start with {steps.STEPS[0].label} →", type="primary"):
        st.switch_page(steps.STEPS[0].page, query_params=links.query())
    st.caption("Or read everything on one page in the Story, under Explore.")
