"""The attention explorer's Token norms tab: how long every token's vector is after every layer, and the
high-norm patch tokens that Darcet et al. ("Vision Transformers Need Registers", 2024) found in large ViTs."""

from __future__ import annotations

import numpy as np
import streamlit as st

from vitviz import analysis, figures
from vitviz.ui.controls import persistent, token_label
from vitviz.ui.drawing import show_figure, to_numpy
from vitviz.ui.state import Traced

FINDING = (
    "**Why look at the norms.** Darcet, Oquab, Mairal and Bojanowski (*Vision Transformers Need Registers*, ICLR "
    "2024) found that large ViTs trained for long (DINOv2, OpenCLIP, DeiT-III) take over a few patch tokens, mostly "
    "in plain background, as scratch space for information about the whole image. From the middle layers on, these "
    "tokens' vectors grow about ten times longer than the rest, keep little of their own patch's content, and draw "
    "much of the CLS token's attention: the bright specks on the background of DINOv2's attention maps. Given a few "
    "extra tokens to use instead, *registers*, which are dropped at the output, the model leaves its patches alone "
    "and the maps come out clean. Small or briefly trained models, such as vitviz's built-in one, usually show no "
    "such tokens."
)
RULE = (
    "**The rule for “high-norm”.** A patch is marked at a layer when its norm is above both the median of that "
    f"layer's patch norms plus {analysis.OUTLIER_SPREADS:g} robust standard deviations ({analysis.MAD_TO_SD} × the "
    f"median absolute deviation) and {analysis.OUTLIER_FACTOR:g} × that median. The median and the MAD hardly move "
    "when a few tokens are huge, whereas a mean and a standard deviation would be dragged up by the very tokens they "
    "should single out; the factor keeps a layer whose tokens are all about as long, or only moderately spread, "
    "from calling a somewhat longer one high, since the artifacts are several times (up to about ten times) the "
    "typical length. Only patches are judged: the special tokens are shown beside them."
)


def show(traced: Traced, colorscale: str) -> None:
    trace = traced.trace
    s, grid, labels = trace.num_special, trace.grid, trace.special_labels
    depth = len(trace.layers)
    norms = analysis.token_norms(np.stack([to_numpy(layer.output) for layer in trace.layers]))  # (L, N)
    marked = [analysis.high_norm_patches(norms[layer, s:]) for layer in range(depth)]
    attentions = trace.attentions().numpy()
    st.markdown(FINDING)
    layer = persistent(st.select_slider, "norms_layer", depth - 1, label="Layer whose patch norms the image, the "
                       "histogram and the marks show", options=list(range(depth)),
                       format_func=lambda i: f"after layer {i + 1}")
    patch_norms, here = norms[layer, s:], marked[layer]
    threshold = analysis.high_norm_threshold(patch_norms)
    st.markdown(_what_this_image_shows(traced, norms, marked, layer, attentions))
    left, right = st.columns(2)
    picture = figures.attention_overlay(traced.display, analysis.patch_map(norms[layer], grid), size=320,
                                        colorscale=colorscale, opacity=0.6)
    left.image(figures.mark_patches(picture, here, grid), width="stretch",
               caption=f"Each patch's norm after layer {layer + 1}; " + (
                   "none is high-norm" if not len(here) else "the high-norm patch outlined" if len(here) == 1 else
                   f"the {len(here)} high-norm patches outlined"))
    with right:
        show_figure(figures.norm_histogram(patch_norms, threshold, dict(zip(labels, norms[layer, :s], strict=True)),
                                           title=f"Patch norms after layer {layer + 1} (threshold {threshold:.2f})"))
    show_figure(figures.norm_heatmap(norms, labels, marked, colorscale=colorscale, height=140 + 22 * min(depth, 24),
                                     title="Every token's norm after every layer (× = high-norm patch)"))
    left, right = st.columns(2)
    with left:
        show_figure(figures.lines(_norm_series(norms, labels), x=np.arange(1, depth + 1), x_title="after layer",
                                  y_title="L2 norm", title="Norms: the special tokens beside the patches",
                                  legend_right=True, whole_x=True))
    with right:
        show_figure(figures.lines(_attention_series(attentions, s, here, labels), x=np.arange(1, depth + 1),
                                  x_title="layer", y_title="share of CLS attention", legend_right=True, whole_x=True,
                                  title="Where CLS's attention goes (mean over heads)"))
        if len(here):
            st.caption(f"“Marked patches”: the ones high-norm after layer {layer + 1}, followed through every layer.")
    st.markdown(RULE)


def _norm_series(norms: np.ndarray, labels: tuple[str, ...]) -> dict[str, np.ndarray]:
    s = len(labels)
    series = {label: norms[:, i] for i, label in enumerate(labels)}
    series["patches: median"] = np.median(norms[:, s:], axis=1)
    series["patches: largest"] = norms[:, s:].max(axis=1)
    return series


def _attention_series(attentions: np.ndarray, s: int, marked: np.ndarray, labels: tuple[str, ...]) -> dict:
    """Per layer, the share of CLS's attention (mean over heads) that the marked patches, the registers and
    all patches take, and the marked patches' share of the tokens (what an even spread would give them)."""
    n = attentions.shape[-1] - s
    series = {"all patches": analysis.attention_share(attentions, 0, np.arange(s, s + n))}
    if len(marked):
        series[f"the {len(marked)} marked patches"] = analysis.attention_share(attentions, 0, s + marked)
        series["their share of the tokens"] = np.full(len(attentions), len(marked) / (s + n))
    registers = [i for i, label in enumerate(labels) if label.startswith("register")]
    if registers:
        series["registers"] = analysis.attention_share(attentions, 0, np.array(registers))
    series["CLS itself"] = analysis.attention_share(attentions, 0, np.array([0]))
    return series


def _what_this_image_shows(traced: Traced, norms: np.ndarray, marked: list[np.ndarray], layer: int,
                           attentions: np.ndarray) -> str:
    """A few sentences of facts about this image through this model, each computed here."""
    trace = traced.trace
    s, labels = trace.num_special, trace.special_labels
    patch_norms, here = norms[layer, s:], marked[layer]
    median = float(np.median(patch_norms))
    n = patch_norms.size
    with_outliers = [i + 1 for i, found in enumerate(marked) if len(found)]
    if len(here):
        names = ", ".join(token_label(s + int(i), trace.grid, labels) for i in here[:4])
        names += f" and {len(here) - 4} more" if len(here) > 4 else ""
        share = analysis.attention_share(attentions, 0, s + here)
        peak = int(share.argmax())
        verb = "is" if len(here) == 1 else "are"
        text = (f"**This image.** After layer {layer + 1}, {len(here)} of the {n} patches {verb} high-norm: {names}. "
                f"Their norms reach {patch_norms[here].max():.1f}, {patch_norms[here].max() / median:.1f} × the median "
                f"patch's {median:.1f}. They are {len(here) / trace.final_tokens.shape[0]:.1%} of the tokens; the CLS "
                f"token's attention to them peaks at {share[peak]:.1%} (mean over heads) in layer {peak + 1}.")
    else:
        text = (f"**This image.** After layer {layer + 1} no patch is high-norm: the longest has norm "
                f"{patch_norms.max():.1f}, {patch_norms.max() / median:.1f} × the median {median:.1f}, under the "
                f"threshold {analysis.high_norm_threshold(patch_norms):.1f}.")
    if with_outliers and with_outliers != [layer + 1]:
        text += " Layers with high-norm patches for this image: " + ", ".join(map(str, with_outliers)) + "."
    elif not with_outliers:
        text += " No layer has any for this image."
    registers = [i for i, label in enumerate(labels) if label.startswith("register")]
    if registers:
        register_norms = norms[layer, registers]
        last = analysis.attention_share(attentions[-1:], 0, np.array(registers))[0]
        text += (f" This model has {len(registers)} registers: after layer {layer + 1} their norms run from "
                 f"{register_norms.min():.1f} to {register_norms.max():.1f} ({register_norms.max() / median:.1f} × the "
                 f"median patch), and in the last layer they take {last:.1%} of the CLS token's attention.")
    return text
