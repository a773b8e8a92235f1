"""The attention explorer's Token norms tab: how long every token's vector is after every layer, and the
high-norm patch tokens that Darcet et al. ("Vision Transformers Need Registers", 2024) found in large ViTs."""

from __future__ import annotations

import numpy as np
import streamlit as st

from vitviz import analysis, figures
from vitviz.i18n import N_
from vitviz.ui.controls import persistent, token_label
from vitviz.ui.drawing import show_figure, to_numpy, web_picture
from vitviz.ui.i18n import _, ngettext
from vitviz.ui.state import Traced

FINDING = N_(
    "**Why look at the norms.** Darcet, Oquab, Mairal and Bojanowski (*Vision Transformers Need Registers*, ICLR "
    "2024) found that large ViTs trained for long (DINOv2, OpenCLIP, DeiT-III) take over a few patch tokens, mostly "
    "in plain background, as scratch space for information about the whole image. From the middle layers on, these "
    "tokens' vectors grow about ten times longer than the rest, keep little of their own patch's content, and draw "
    "much of the CLS token's attention: the bright specks on the background of DINOv2's attention maps. Given a few "
    "extra tokens to use instead, *registers*, which are dropped at the output, the model leaves its patches alone "
    "and the maps come out clean. Small or briefly trained models, such as vitviz's built-in one, usually show no "
    "such tokens."
)
RULE = N_(  # shown as _(RULE).format(spreads=…, mad_to_sd=…, factor=…)
    "**The rule for “high-norm”.** A patch is marked at a layer when its norm is above both the median of that "
    "layer's patch norms plus {spreads:g} robust standard deviations ({mad_to_sd} × the "
    "median absolute deviation) and {factor:g} × that median. The median and the MAD hardly move "
    "when a few tokens are huge, whereas a mean and a standard deviation would be dragged up by the very tokens they "
    "should single out; the factor keeps a layer whose tokens are all about as long, or only moderately spread, "
    "from calling a somewhat longer one high, since the artifacts are several times (up to about ten times) the "
    "typical length. Only patches are judged: the special tokens are shown beside them."
)


def _norm_words() -> dict[str, str]:
    """figures.NORM_WORDS in the session's language."""
    return {"patches": _("patches"), "threshold": _("threshold"), "norm axis": _("L2 norm of the token"),
            "token": _("token"), "patch {index}": _("patch {index}"), "layer {layer}": _("layer {layer}"),
            "norm": _("norm"), "high-norm": _("high-norm")}


def show(traced: Traced, colorscale: str) -> None:
    trace = traced.trace
    s, grid, labels = trace.num_special, trace.grid, trace.special_labels
    depth = len(trace.layers)
    norms = analysis.token_norms(np.stack([to_numpy(layer.output) for layer in trace.layers]))  # (L, N)
    marked = [analysis.high_norm_patches(norms[layer, s:]) for layer in range(depth)]
    attentions = trace.attentions().numpy()
    st.markdown(_(FINDING))
    after_layer = _("after layer {layer}")  # translated now: Streamlit may call format_func later
    layer = persistent(st.select_slider, "norms_layer", depth - 1, label=_("Layer whose patch norms the image, the "
                       "histogram and the marks show"), options=list(range(depth)),
                       format_func=lambda i: after_layer.format(layer=i + 1))
    patch_norms, here = norms[layer, s:], marked[layer]
    threshold = analysis.high_norm_threshold(patch_norms)
    st.markdown(_what_this_image_shows(traced, norms, marked, layer, attentions))
    left, right = st.columns(2)
    picture = figures.attention_overlay(traced.display, analysis.patch_map(norms[layer], grid), size=320,
                                        colorscale=colorscale, opacity=0.6)
    left.image(web_picture(figures.mark_patches(picture, here, grid)), width="stretch",
               caption=_("Each patch's norm after layer {layer}; {marks}").format(layer=layer + 1, marks=(
                   _("none is high-norm") if not len(here) else _("the high-norm patch outlined") if len(here) == 1
                   else _("the {count} high-norm patches outlined").format(count=len(here)))))
    with right:
        show_figure(figures.norm_histogram(patch_norms, threshold, dict(zip(labels, norms[layer, :s], strict=True)),
                                           words=_norm_words(),
                                           title=_("Patch norms after layer {layer} (threshold {threshold:.2f})").format(
                                               layer=layer + 1, threshold=threshold)))
    show_figure(figures.norm_heatmap(norms, labels, marked, colorscale=colorscale, height=140 + 22 * min(depth, 24),
                                     words=_norm_words(),
                                     title=_("Every token's norm after every layer (× = high-norm patch)")))
    left, right = st.columns(2)
    with left:
        show_figure(figures.lines(_norm_series(norms, labels), x=np.arange(1, depth + 1),
                                  x_title=_("after layer"), y_title=_("L2 norm"),
                                  title=_("Norms: the special tokens beside the patches"),
                                  legend_right=True, whole_x=True))
    with right:
        show_figure(figures.lines(_attention_series(attentions, s, here, labels), x=np.arange(1, depth + 1),
                                  x_title=_("layer"), y_title=_("share of CLS attention"), legend_right=True,
                                  whole_x=True, title=_("Where CLS's attention goes (mean over heads)")))
        if len(here):
            st.caption(_("“Marked patches”: the ones high-norm after layer {layer}, followed through every layer.").format(
                layer=layer + 1))
    st.markdown(_(RULE).format(spreads=analysis.OUTLIER_SPREADS, mad_to_sd=analysis.MAD_TO_SD,
                               factor=analysis.OUTLIER_FACTOR))


def _norm_series(norms: np.ndarray, labels: tuple[str, ...]) -> dict[str, np.ndarray]:
    s = len(labels)
    series = {label: norms[:, i] for i, label in enumerate(labels)}
    series[_("patches: median")] = np.median(norms[:, s:], axis=1)
    series[_("patches: largest")] = norms[:, s:].max(axis=1)
    return series


def _attention_series(attentions: np.ndarray, s: int, marked: np.ndarray, labels: tuple[str, ...]) -> dict:
    """Per layer, the share of CLS's attention (mean over heads) that the marked patches, the registers and
    all patches take, and the marked patches' share of the tokens (what an even spread would give them)."""
    n = attentions.shape[-1] - s
    series = {_("all patches"): analysis.attention_share(attentions, 0, np.arange(s, s + n))}
    if len(marked):
        marked_name = ngettext("the {count} marked patch", "the {count} marked patches", len(marked))
        series[marked_name.format(count=len(marked))] = analysis.attention_share(attentions, 0, s + marked)
        series[_("their share of the tokens")] = np.full(len(attentions), len(marked) / (s + n))
    registers = [i for i, label in enumerate(labels) if label.startswith("register")]
    if registers:
        series[_("registers")] = analysis.attention_share(attentions, 0, np.array(registers))
    series[_("CLS itself")] = analysis.attention_share(attentions, 0, np.array([0]))
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
        if len(here) > 4:
            names = _("{names} and {count} more").format(names=names, count=len(here) - 4)
        share = analysis.attention_share(attentions, 0, s + here)
        peak = int(share.argmax())
        text = ngettext(
            "**This image.** After layer {layer}, {count} of the {n} patches is high-norm: {names}. Their norms reach "
            "{largest:.1f}, {ratio:.1f} × the median patch's {median:.1f}. They are {share:.1%} of the tokens; the "
            "CLS token's attention to them peaks at {peak_share:.1%} (mean over heads) in layer {peak}.",
            "**This image.** After layer {layer}, {count} of the {n} patches are high-norm: {names}. Their norms reach "
            "{largest:.1f}, {ratio:.1f} × the median patch's {median:.1f}. They are {share:.1%} of the tokens; the "
            "CLS token's attention to them peaks at {peak_share:.1%} (mean over heads) in layer {peak}.", len(here),
        ).format(layer=layer + 1, count=len(here), n=n, names=names, largest=patch_norms[here].max(),
                 ratio=patch_norms[here].max() / median, median=median, share=len(here) / trace.final_tokens.shape[0],
                 peak_share=share[peak], peak=peak + 1)
    else:
        text = _("**This image.** After layer {layer} no patch is high-norm: the longest has norm {longest:.1f}, "
                 "{ratio:.1f} × the median {median:.1f}, under the threshold {threshold:.1f}.").format(
            layer=layer + 1, longest=patch_norms.max(), ratio=patch_norms.max() / median, median=median,
            threshold=analysis.high_norm_threshold(patch_norms))
    if with_outliers and with_outliers != [layer + 1]:
        text += " " + _("Layers with high-norm patches for this image: {layers}.").format(
            layers=", ".join(map(str, with_outliers)))
    elif not with_outliers:
        text += " " + _("No layer has any for this image.")
    registers = [i for i, label in enumerate(labels) if label.startswith("register")]
    if registers:
        register_norms = norms[layer, registers]
        last = analysis.attention_share(attentions[-1:], 0, np.array(registers))[0]
        text += " " + _("This model has {count} registers: after layer {layer} their norms run from {low:.1f} to "
                        "{high:.1f} ({ratio:.1f} × the median patch), and in the last layer they take {last:.1%} of the "
                        "CLS token's attention.").format(count=len(registers), layer=layer + 1, low=register_norms.min(),
                                                         high=register_norms.max(),
                                                         ratio=register_norms.max() / median, last=last)
    return text
