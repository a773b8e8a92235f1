"""Steps 11–13: the stack of blocks, the CLS output and the class probabilities."""

from __future__ import annotations

import numpy as np
import streamlit as st
import torch

from vitviz import analysis, figures
from vitviz.i18n import N_
from vitviz.ui import about, attribution, drawing, paper
from vitviz.ui.controls import View
from vitviz.ui.drawing import caption, columns, hover_words, image, info, markdown, show_figure, text, to_numpy
from vitviz.ui.i18n import _, number, number_writer
from vitviz.ui.specials import patch_overlay
from vitviz.ui.state import Traced
from vitviz.ui.steps.step import Section
from vitviz.ui.text import plain

SECTION = Section(N_("Output"))


@SECTION.step(
    "11",
    N_("Repeat the block"),
    text=lambda traced: _(
        "The model stacks L such blocks, each with its own weights. Watching the {tokens} from block to block shows "
        "the prediction taking shape."
    ).format(tokens=about.head_reads(traced.facts)) if traced.facts.has_head else _(
        "The model stacks L such blocks, each with its own weights. Watching the CLS token from block to "
        "block shows its description of the image taking shape."
    ),
    formula=r"X_l = \mathrm{Block}_l(X_{l-1}),\quad l = 1..L",
    shape="(L, n+1, d)",
)
def step_11(traced: Traced, view: View) -> None:
    gh, gw = traced.trace.grid
    depth = len(traced.trace.layers)
    markdown(_("**What CLS attends to in each layer** (mean over heads):"))
    cls_rows = [to_numpy(layer.attn[:, 0].mean(0)) for layer in traced.trace.layers]
    tiles = np.stack([patch_overlay(traced, row, size=160, colorscale=view.colorscale) for row in cls_rows])
    per_row = min(depth, 6)
    image(figures.captioned_mosaic(tiles, per_row, [_("Layer {layer}").format(layer=i + 1) for i in range(depth)]),
          width=min(1100, per_row * (tiles.shape[2] + 6)))
    cls = np.stack([to_numpy(layer.output[0]) for layer in traced.trace.layers])
    first = to_numpy(traced.trace.tokens[0])
    all_cls = np.vstack([first[None], cls])
    turns = analysis.cosine_to_next(all_cls)
    left, right = columns(2)
    with left:
        show_figure(
            figures.lines(
                {_("cosine(CLS before, CLS after)"): turns},
                x=np.arange(1, depth + 1),
                title=_("How much each layer turns the CLS token"),
                x_title=_("layer"),
                y_title=_("cosine (1 = unchanged)"),
            )
        )
        caption(_(
            "1 means the layer left CLS pointing the same way; the lower the dot, the more the layer turned it. "
            "Here layer {layer} turns it most (cosine {cosine:.2f})."
        ).format(layer=int(turns.argmin()) + 1, cosine=turns.min()))
    with right:
        show_figure(
            figures.lines(
                {"‖CLS‖": np.linalg.norm(all_cls, axis=1)},
                title=_("Length of the CLS token"),
                x_title=_("after layer (0 = input)"),
                y_title=_("L2 norm"),
            )
        )
    paper.attention_distance(traced)
    if drawing.live():
        st.page_link("pages/explorer.py", label=_("How long each token's vector grows, layer by layer, and the tokens "
                                                  "that grow far longer than the rest: the attention explorer's Token "
                                                  "norms tab"),
                     icon=":material/bar_chart:")
    if traced.model.head is None:
        caption(_("This model has no class head, so there is no prediction to read from each layer's CLS token."))
        return
    model = traced.model
    with torch.no_grad():  # every layer's tokens through the final LayerNorm and the model's own head
        outputs = torch.stack([layer.output for layer in traced.trace.layers])
        probs = model.classify(model.norm(outputs)).softmax(-1).numpy()
    labels = traced.labels
    shown = np.argsort(-probs[-1])[:10]  # the final top classes; a 1000-class model stays readable
    fig = figures.heatmap(
        probs[:, shown],
        title=_("Prediction read from each layer's {tokens} (final LayerNorm + head)").format(
            tokens=about.head_reads(traced.facts)),
        x_title=_("class"),
        y_title=_("layer"),
        colorscale=view.colorscale,
        centred=False,
        x_labels=[labels[i] for i in shown],
        y_labels=[_("layer {layer}").format(layer=i + 1) for i in range(depth)],
        value_name=_("probability"),
        height=140 + 30 * min(depth, 24), words=hover_words(),
    )
    show_figure(fig)
    caption(_(
        "Each row puts that layer's {tokens} through the final LayerNorm and the class head, as the model does with "
        "the last layer's. The head is made for what layer {depth} hands it, so the earlier rows give it vectors it "
        "was not made for: an early row that is flat or wrong may mean the reading fails there rather than that the "
        "layer knows nothing yet."
    ).format(tokens=about.head_reads(traced.facts), depth=depth))


# What step 12 says this model keeps of its final tokens (English, marked with N_; shown translated).
_OUTPUT_TEXT = {
    "cls": N_(
        "After the last block and a final LayerNorm, only the CLS token's vector is read by the class head. The patch "
        "tokens' final vectors are not read by it: what the patches contribute reached CLS through attention."
    ),
    "cls_distillation_mean": N_(
        "After the last block and a final LayerNorm, two vectors are read: the CLS token's and the distillation "
        "token's, each by a head of its own. The patch tokens' final vectors are not read: what the patches contribute "
        "reached these two through attention."
    ),
    "cls_patch_mean": N_(
        "After the last block and a final LayerNorm, the CLS token's vector is kept, and beside it the mean of the "
        "patch tokens' vectors: this model's classifier reads both."
    ),
    "none": N_(
        "After the last block and a final LayerNorm, every token has its final vector. This model has no class head: "
        "y, the CLS token's vector, describes the whole image, and each patch token's vector describes its patch in "
        "the context of the image."
    ),
}


_OUTPUT_FORMULA = {
    "cls_distillation_mean": r"y = \mathrm{LN}(X_L)_0,\quad y_\text{dist} = \mathrm{LN}(X_L)_1",
    "cls_patch_mean": r"y = \mathrm{LN}(X_L)_0,\quad \bar y_\text{patches} = \frac{1}{n}\sum_{i=0}^{n-1}"
                      r" \mathrm{LN}(X_L)_{i+s}",
}


def _output_text(traced: Traced) -> str:
    words = _(_OUTPUT_TEXT[traced.facts.head])
    if traced.facts.training == "dinov2":
        words += " " + _("DINOv2 trains the patch tokens' outputs directly (iBOT's masked patches), and they are its "
                         "main product: features for segmentation, depth estimation and matching.")
    return words


@SECTION.step(
    "12",
    N_("The CLS output"),
    text=_output_text,
    formula=lambda traced: _OUTPUT_FORMULA.get(traced.facts.head, r"y = \mathrm{LN}(X_L)_0"),
    shape="(d,)",
)
def step_12(traced: Traced, view: View) -> None:
    raw = to_numpy(traced.trace.layers[-1].output[0])
    show_figure(figures.vector_strip(raw, title=_("CLS after the last block"), x_title=_("index"), words=hover_words()))
    show_figure(
        figures.vector_strip(
            to_numpy(traced.trace.cls_output), title=_("After the final LayerNorm: y, 1×{d}").format(d=traced.config.dim),
            x_title=_("index"), words=hover_words(),
        )
    )
    config, final = traced.config, to_numpy(traced.trace.final_tokens)
    if config.classifier == "cls_distillation_mean":
        show_figure(figures.vector_strip(final[config.special_tokens.index("distillation")],
                                         title=_("The distillation token after the final LayerNorm: y_dist, 1×{d}").format(
                                             d=config.dim), x_title=_("index"), words=hover_words()))
    if config.classifier == "cls_patch_mean":
        show_figure(figures.vector_strip(final[config.num_special :].mean(axis=0),
                                         title=_("The mean of the {count} patch tokens after the final LayerNorm, "
                                                 "1×{d}").format(count=config.num_patches, d=config.dim),
                                         x_title=_("index"), words=hover_words()))
    if "register" in config.special_tokens:
        caption(_("The registers' final vectors are not read by anything: they are dropped."))


_PROBABILITIES_TEXT = {
    "cls": N_(
        "A linear layer turns the CLS vector into one score per class (the logits), and a softmax turns the "
        "scores into probabilities."
    ),
    "cls_distillation_mean": N_(
        "Two linear layers each turn their token's vector into one score per class: the CLS head and the "
        "distillation head. The model's logits are the average of the two, and a softmax turns them into probabilities."
    ),
    "cls_patch_mean": N_(
        "A linear layer turns the CLS vector and the mean patch vector, side by side, into one score per class (the "
        "logits), and a softmax turns the scores into probabilities."
    ),
    "none": N_("This model has no class head, so no vector is turned into class scores here: there are no logits "
               "and no probabilities."),
}
_PROBABILITIES_FORMULA = {
    "cls": r"\hat p = \mathrm{softmax}(y\,W_\text{head} + b_\text{head})",
    "cls_distillation_mean": r"\hat p = \mathrm{softmax}\big(\tfrac12\,[(y\,W_\text{cls} + b_\text{cls})"
                             r" + (y_\text{dist}\,W_\text{dist} + b_\text{dist})]\big)",
    "cls_patch_mean": r"\hat p = \mathrm{softmax}([\,y;\ \bar y_\text{patches}\,]\,W_\text{head} + b_\text{head})",
}


@SECTION.step(
    "13",
    N_("Class probabilities"),
    text=lambda traced: _(_PROBABILITIES_TEXT[traced.facts.head]),
    formula=lambda traced: _PROBABILITIES_FORMULA.get(traced.facts.head),  # none without a class head
    shape=lambda traced: "(k,)" if traced.facts.has_head else "",
)
def step_13(traced: Traced, view: View) -> None:
    if traced.trace.logits is None:
        no_class_head(traced, key="no_head_13")
        return
    logits, probs = to_numpy(traced.trace.logits), to_numpy(traced.trace.probs)
    labels = traced.labels
    order = np.argsort(-probs)
    top = order[0]
    markdown(_("Prediction: **{label}** with probability **{probability:.1%}**.").format(label=plain(labels[top]),
                                                                                       probability=probs[top]))
    if traced.config.classifier == "cls_distillation_mean":
        _two_heads(traced)
    if len(labels) > 5:  # plain text: class names come from the checkpoint
        text(_("Top 5:") + "\n" + "\n".join(f"{number(probs[i], '6.1%')}  {labels[i]}" for i in order[:5]))
    shown = order[: min(10, len(labels))]
    rest = len(labels) - len(shown)
    left, right = columns(2)
    with left:
        show_figure(
            figures.bars(logits[shown], [labels[i] for i in shown], title=_("Logits (top classes)"), value_format=".2f",
                         number=number_writer())
        )
    with right:
        values, names = probs[shown], [labels[i] for i in shown]
        if rest:  # a 1,000-class model: the top ten, and what all the others share
            values, names = np.append(values, probs[order[len(shown) :]].sum()), [*names, _("the other {count} classes").format(count=rest)]
        show_figure(
            figures.bars(values, names, title=_("Probabilities (softmax of the logits)"), value_format=".1%", highlight=0,
                         number=number_writer())
        )
    attribution.which_patches(traced, view.colorscale)


def _two_heads(traced: Traced) -> None:
    """What DeiT's CLS head and distillation head each say alone, before their logits are averaged."""
    model, final, labels = traced.model, traced.trace.final_tokens, traced.labels
    with torch.no_grad():
        alone = {_("the CLS head alone says **{label}** ({probability:.1%})"): model.head(final[0]),
                 _("the distillation head alone says **{label}** ({probability:.1%})"):
                     model.dist_head(final[traced.config.special_tokens.index("distillation")])}
    said = []
    for words, logits in alone.items():
        probs = logits.softmax(-1)
        best = int(probs.argmax())
        said.append(words.format(label=plain(labels[best]), probability=float(probs[best])))
    markdown(_("Before averaging, {cls_head}, and {distillation_head}.").format(cls_head=said[0],
                                                                              distillation_head=said[1]))


def no_class_head(traced: Traced, *, key: str) -> None:
    """What a model without a class head (DINO, a plain ViTModel) offers instead of probabilities: y."""
    if traced.facts.self_supervised:
        info(_(
            "This model learned without labels, so it has no class head: there are no logits, probabilities or loss "
            "for this image. What it does have is the CLS output y below, a description of the whole image that "
            "other tasks build on."
        ))
    else:
        info(_(
            "This model has no class head: there are no logits, probabilities or loss for this image. What it does "
            "have is the CLS output y below, a description of the whole image that other tasks can build on."
        ))
    show_figure(figures.vector_strip(to_numpy(traced.trace.cls_output), title=f"y, 1×{traced.config.dim}",
                                        x_title=_("index"), words=hover_words()), key=key)
