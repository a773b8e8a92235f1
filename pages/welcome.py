"""The landing page: what vitviz is, pick an image, start the tour."""

import streamlit as st

from vitviz.ui import controls, links, navigation, page, presets, state, steps
from vitviz.ui.i18n import _, glossed, ngettext, number
from vitviz.ui.text import plain

navigation.ensure_navigation()
st.title(_("vitviz: see a Vision Transformer think"))
st.markdown(glossed(_(
    "Pick an image and follow it through a real Vision Transformer, one step per page: cut into patches, "
    "embedded, mixed by attention in every layer, and turned into a prediction. Every number and picture "
    "is computed by the model for *your* image, nothing is a mock-up."
)))
model = state.current_model()
left, right = st.columns([1, 1])
with left:
    st.subheader(_("1. Choose an image"))
    controls.image_picker(st.container(), preview_width=320)
    st.subheader(_("… and a model"))
    if model.key == "default":
        st.caption(_("In use: the built-in model, which knows only 8 drawn shapes. For a photo, pick a real ImageNet "
                     "or DINO model (downloaded once from the Hugging Face Hub), or any other on the Model page."))
    else:
        st.caption(_("In use: {name}. Other models are here and on the Model page.").format(name=plain(model.title)))
    with st.expander(_("Real models, one click away"), expanded=model.key == "default"):
        presets.preset_picker("welcome")
with right:
    st.subheader(_("2. What the model says"))
    traced = page.load_traced()
    if traced is not None:
        labels = traced.labels
        if traced.trace.probs is not None:
            probs = traced.trace.probs.numpy()
            order = probs.argsort()[::-1]
            st.metric(_("Prediction"), labels[order[0]], _("{probability:.1%} probability").format(
                probability=probs[order[0]]), delta_color="off")
            if len(labels) > 5:
                st.text("\n".join(f"{number(probs[i], '6.1%')}  {labels[i]}" for i in order[:5]))  # plain text: names are data
        config = traced.config
        size = _("It cuts a {width}×{height} input into {patches} patches of {patch}×{patch} pixels and runs {depth} "
                 "encoder layers with {heads} attention heads each.").format(
            width=config.image_size[1], height=config.image_size[0], patches=config.num_patches,
            patch=config.patch_size, depth=config.depth, heads=config.heads)
        if traced.model_key == "default":
            st.markdown(_("The built-in model is a small ViT trained by vitviz on generated pictures of {count} shapes "
                          "({names}). {size} Photos are not shapes, so its guesses on them are only a curiosity, but "
                          "every step still shows what it computes.").format(count=len(labels),
                                                                             names=", ".join(labels), size=size))
        elif labels:
            st.markdown(ngettext("The model in use is {name}, a ViT with {count:,} output class. {size}",
                                 "The model in use is {name}, a ViT with {count:,} output classes. {size}",
                                 len(labels)).format(name=plain(model.title), count=len(labels), size=size))
        elif traced.facts.self_supervised:
            st.markdown(_("The model in use is {name}, a ViT trained without labels, so it makes no prediction; its "
                          "attention maps are the thing to see. {size}").format(name=plain(model.title), size=size))
        else:
            st.markdown(_("The model in use is {name}, a ViT without a class head, so it makes no prediction; its "
                          "attention maps are the thing to see. {size}").format(name=plain(model.title), size=size))
    st.subheader(_("3. Follow the steps"))
    if st.button(_("Start with {step} →").format(step=steps.STEPS[0].label), type="primary", key="start"):
        st.switch_page(steps.STEPS[0].page, query_params=links.query())
    st.caption(_("Or read everything on one page in the Story, under Explore."))
