"""The attention explorer: one query's attention on the image, every head and layer, rollouts,
occlusion and the paper's Fig. 7. Everything reuses the cached Trace except occlusion."""

from __future__ import annotations

import numpy as np
import streamlit as st
import torch

from vitviz import analysis, capture, figures, gradients
from vitviz.i18n import N_
from vitviz.images import denormalise
from vitviz.ui import about, attribution, controls, navigation, page, paper, state, token_norms
from vitviz.ui.drawing import image_grid, show_figure, web_picture
from vitviz.ui.i18n import _, glossed, ngettext, number_writer, translator
from vitviz.ui.specials import patch_overlay, special_weights
from vitviz.ui.state import Traced
from vitviz.ui.text import plain

FUSIONS = ("mean", "max", "min")
# A select slider, so its labels are written the reader's way (a plain slider writes 0.60 in every language).
OPACITIES = tuple(round(0.05 * i, 2) for i in range(21))
FUSION_NAMES = {"mean": N_("mean"), "max": N_("max"), "min": N_("min")}  # shown translated
# In English, as links' tab= names them; the tabs show them translated (controls.kept_tabs).
TABS = (N_("All heads"), N_("Layers × heads"), N_("Attribution"), N_("Occlusion"), N_("Paper Fig. 7"),
        N_("Faithfulness"), N_("Token norms"))
OCCLUDED_KEY = "keep_occluded"


def head_options(heads: int) -> list:
    return list(range(heads)) + [f"all heads: {f}" for f in FUSIONS]


def head_label(choice, say=None) -> str:
    """"Head 3", or "All heads: mean"; `say` is the run's translator when Streamlit calls this later."""
    say = say or _
    if isinstance(choice, int):
        return say(N_("Head {head}")).format(head=choice + 1)
    return say(N_("All heads: {fusion}")).format(fusion=say(FUSION_NAMES[choice.removeprefix("all heads: ")]))


def head_map(attn: np.ndarray, choice) -> np.ndarray:
    """(h, N, N) -> (N, N) for one head, or all heads fused."""
    if isinstance(choice, int):
        return attn[choice]
    return analysis.fuse_heads(attn, choice.removeprefix("all heads: "))


def show() -> None:
    navigation.ensure_navigation()
    st.title(_("Attention explorer"))
    controls.image_picker()
    traced = page.load_traced()
    if traced is None:
        return
    st.markdown(glossed(_(
        "Click a patch to see where it looks, layer by layer and head by head. The default query is {cls}. Below: "
        "every head at once, attention rollout, occlusion, the three analyses of the ViT paper's Figure 7 for this "
        "model, a test of which attribution map to believe for this image, and the norms of every token."
    ).format(cls=about.cls_role(traced.facts))))
    config = traced.config
    colorscale = controls.colour_scale()
    layer, _head = controls.layer_head(config.depth, config.heads, with_head=False)
    say = translator()
    head = controls.persistent(
        st.sidebar.selectbox,
        "explorer_head",
        "all heads: mean",
        label=_("Heads"),
        options=head_options(config.heads),
        format_func=lambda choice: head_label(choice, say),
    )
    opacity = controls.persistent(
        st.sidebar.select_slider, "opacity", 0.6, label=_("Heatmap opacity"), options=OPACITIES,
        format_func=lambda value, write=number_writer(): write(value, ".0%"),
    )
    left, right = st.columns(2)
    with left:
        query = controls.query_picker(traced, key="query_click_explorer")
    attn = traced.trace.layers[layer].attn.numpy()
    row = head_map(attn, head)[query]
    with right:
        st.image(
            web_picture(patch_overlay(traced, row, query=query, size=320, opacity=opacity, colorscale=colorscale)),
            caption=_("{head}, layer {layer}: attention of {token} ({specials})").format(
                head=head_label(head), layer=layer + 1, token=_token(traced, query), specials=special_weights(traced, row)),
            width="stretch",
        )
    parts = {
        "All heads": lambda: _all_heads(traced, layer, query, colorscale, opacity),
        "Layers × heads": lambda: _overview(traced, query, colorscale, opacity),
        "Attribution": lambda: _attribution(traced, colorscale, opacity),
        "Occlusion": lambda: _occlusion(traced, layer, head, colorscale, opacity),
        "Paper Fig. 7": lambda: paper.fig7(traced),
        "Faithfulness": lambda: attribution.faithfulness_tab(traced, colorscale, opacity),
        "Token norms": lambda: token_norms.show(traced, colorscale),
    }
    # Only the open tab is drawn: a hidden tab's figures would cost the server and the browser all the same.
    for tab, name in zip(controls.kept_tabs(list(TABS), "explorer_tab"), TABS, strict=True):
        if tab.open:
            with tab:
                page.guarded(name, parts[name])


def _token(traced: Traced, index: int) -> str:
    return controls.token_label(index, traced.trace.grid, traced.trace.special_labels)


def _all_heads(traced: Traced, layer: int, query: int, colorscale: str, opacity: float) -> None:
    attn = traced.trace.layers[layer].attn.numpy()
    items = [
        (
            patch_overlay(traced, attn[h, query], query=query, size=200, opacity=opacity, colorscale=colorscale),
            _("Head {head}").format(head=h + 1),
        )
        for h in range(traced.config.heads)
    ]
    image_grid(items, per_row=min(traced.config.heads, 6))


def _overview(traced: Traced, query: int, colorscale: str, opacity: float) -> None:
    heads = traced.config.heads
    st.caption(_("Rows are layers, columns heads; each shows the attention of {token}.").format(token=_token(traced, query)))
    columns = min(heads, 12)
    tiles = [
        patch_overlay(traced, layer.attn[h, query].numpy(), query=query, size=96, opacity=opacity, colorscale=colorscale)
        for layer in traced.trace.layers
        for h in range(columns)
    ]
    st.image(web_picture(figures.labelled_mosaic(np.stack(tiles), columns, [f"L{i + 1}" for i in range(traced.config.depth)],
                                                 [f"H{h + 1}" for h in range(columns)])))
    if heads > columns:
        st.caption(_("Showing the first {count} of {heads} heads.").format(count=columns, heads=heads))


def _gradients(traced: Traced, target: int) -> tuple[np.ndarray, np.ndarray]:
    def make() -> tuple[np.ndarray, np.ndarray]:
        maps, grads = gradients.attention_gradients(traced.recorder, traced.trace.pixels, target)
        return maps.numpy(), grads.numpy()

    # In the trace cache, bounded in bytes: a ViT-B's maps and gradients are 45 MB.
    return state.cached_run(("gradients", traced.image_key, traced.model_key, target), make, _("Computing gradients…"))


def _attribution(traced: Traced, colorscale: str, opacity: float) -> None:
    labels = traced.labels
    say = translator()
    fusion_column, discard_column, class_column = st.columns(3)
    fusion = controls.persistent(
        fusion_column.selectbox, "rollout_fusion", "mean", label=_("Head fusion"), options=list(FUSIONS),
        format_func=lambda fusion: say(FUSION_NAMES[fusion]),
    )
    discard = controls.persistent(
        discard_column.slider,
        "rollout_discard",
        0.0,
        label=_("Discard the weakest"),
        min_value=0.0,
        max_value=0.95,
        step=0.05,
    )
    attentions = traced.trace.attentions().numpy()
    rollout = analysis.attention_rollout(attentions, head_fusion=fusion, discard_ratio=discard)[0]
    left, right = st.columns(2)
    left.image(
        web_picture(patch_overlay(traced, rollout, size=320, opacity=opacity, colorscale=colorscale)),
        caption=_("Attention rollout from CLS ({fusion} over heads), a heuristic (Abnar and Zuidema, 2020): each "
                  "layer's attention plus the identity for the residual path, each row rescaled to sum to 1 (0.5·A + "
                  "0.5·I for averaged heads), multiplied through the layers. It ignores the values, W_o and the MLPs, "
                  "so it estimates rather than measures how much each patch feeds the CLS token.").format(
            fusion=_(FUSION_NAMES[fusion])),
        width="stretch",
    )
    if traced.trace.probs is None:
        right.info(_("Gradient rollout follows the gradient of a class score, and this model has no class head."))
        return
    index = controls.class_picker(class_column.selectbox, "rollout_class", traced, int(traced.trace.probs.argmax()),
                                  _("Class for the gradient"))
    target = labels[index]
    maps, grads = _gradients(traced, index)
    weighted = analysis.gradient_rollout(maps, grads, discard_ratio=discard)[0]
    right.image(
        web_picture(patch_overlay(traced, weighted, size=320, opacity=opacity, colorscale=colorscale)),
        caption=_("Gradient-weighted rollout for “{label}”, the same heuristic with each layer's attention first "
                  "multiplied by its gradient for that class's score, averaged over heads, negative parts dropped: "
                  "attention that raises the score.").format(label=plain(target)),
        width="stretch",
    )


def _occluded_probabilities(labels: list[str], before: np.ndarray, after: np.ndarray, hidden: int) -> None:
    top = int(before.argmax())
    st.markdown(ngettext(
        "**{count}** patch hidden. “{label}”: {before:.1%} → **{after:.1%}**; the model now says **{now}** "
        "({now_probability:.1%}).",
        "**{count}** patches hidden. “{label}”: {before:.1%} → **{after:.1%}**; the model now says **{now}** "
        "({now_probability:.1%}).", hidden,
    ).format(count=hidden, label=plain(labels[top]), before=before[top], after=after[top],
             now=plain(labels[int(after.argmax())]), now_probability=after.max()))
    order = np.argsort(-before)[: min(8, len(labels))]
    show_figure(
        figures.lines(
            {_("original"): before[order], _("occluded"): after[order]},
            x=np.array([labels[i] for i in order]),
            title=_("Probabilities"),
            y_title=_("probability"),
            height=260,
        )
    )


def occlude(pixels: torch.Tensor, hidden: tuple[int, ...], grid: tuple[int, int], patch: int) -> torch.Tensor:
    """Set the hidden patches to zero in normalised space: the colour whose normalised value is 0, the model's
    normalisation mean (`ModelFacts.zero_colour`)."""
    out = pixels.clone()
    for index in hidden:
        r, c = divmod(index, grid[1])
        out[:, r * patch : (r + 1) * patch, c * patch : (c + 1) * patch] = 0.0
    return out


def _occluded_trace(traced: Traced, hidden: tuple[int, ...]) -> capture.Trace:
    config = traced.config
    return state.cached_run(  # in the trace cache, bounded in bytes: one ViT-B trace is 150 MB
        ("occluded", traced.image_key, traced.model_key, hidden),
        lambda: traced.recorder.trace(occlude(traced.trace.pixels, hidden, config.grid, config.patch_size)),
        _("Running the model on the occluded image…"),
    )


def _occlusion(traced: Traced, layer: int, head, colorscale: str, opacity: float) -> None:
    config = traced.config
    grid, patch = traced.trace.grid, config.patch_size
    hidden = tuple(sorted(i for i in st.session_state.get(OCCLUDED_KEY, ()) if i < grid[0] * grid[1]))
    trace = _occluded_trace(traced, hidden) if hidden else traced.trace
    shown = figures.to_uint8(denormalise(trace.pixels, config))
    factor = figures.enlargement(shown, 320)
    left, right = st.columns(2)
    with left:
        st.caption(_("Click patches to hide or show them. A hidden patch is set to 0 after normalisation, which for "
                     "this model is {colour}.").format(colour=about.zero_colour(traced.facts)))
        index = controls.clicked_patch(
            figures.draw_grid(shown, patch, factor), grid, patch * factor, key="occlusion_click"
        )
        if index is not None:
            st.session_state[OCCLUDED_KEY] = tuple(sorted(set(hidden) ^ {index}))
            st.rerun()
        if st.button(_("Show every patch"), disabled=not hidden, key="occlusion_clear"):
            st.session_state[OCCLUDED_KEY] = ()
            st.rerun()
    with right:
        if traced.trace.probs is None:
            similarity = float(torch.nn.functional.cosine_similarity(traced.trace.cls_output, trace.cls_output, dim=0))
            st.markdown(ngettext(
                "**{count}** patch hidden. This model has no class head; its CLS output y with the patch hidden has "
                "cosine similarity **{similarity:.3f}** with y for the whole image (1 = unchanged).",
                "**{count}** patches hidden. This model has no class head; its CLS output y with the patches hidden "
                "has cosine similarity **{similarity:.3f}** with y for the whole image (1 = unchanged).", len(hidden),
            ).format(count=len(hidden), similarity=similarity))
        else:
            _occluded_probabilities(traced.labels, traced.trace.probs.numpy(), trace.probs.numpy(), len(hidden))
    cls_before = head_map(traced.trace.layers[layer].attn.numpy(), head)[0]
    cls_after = head_map(trace.layers[layer].attn.numpy(), head)[0]
    before_column, after_column = st.columns(2)
    before_column.image(
        web_picture(patch_overlay(traced, cls_before, size=256, opacity=opacity, colorscale=colorscale)),
        caption=_("CLS attention before, layer {layer}").format(layer=layer + 1),
        width="stretch",
    )
    after_column.image(
        web_picture(figures.attention_overlay(shown, analysis.patch_map(cls_after, grid), size=256, opacity=opacity,
                                              colorscale=colorscale)),
        caption=_("CLS attention with the patches hidden, layer {layer}").format(layer=layer + 1),
        width="stretch",
    )
