"""Steps 11–13: the stack of blocks, the CLS output and the class probabilities."""

from __future__ import annotations

import numpy as np

from vitviz import analysis, figures
from vitviz.ui import attribution, paper
from vitviz.ui.controls import View
from vitviz.ui.drawing import caption, columns, image_grid, info, markdown, show_figure, text, to_numpy
from vitviz.ui.state import Traced
from vitviz.ui.steps.step import Section
from vitviz.ui.text import plain

SECTION = Section("Output")


@SECTION.step(
    "11",
    "Repeat the block",
    text=(
        "The model stacks L such blocks, each with its own weights. Watching the CLS token from block to "
        "block shows the prediction taking shape."
    ),
    formula=r"X_l = \mathrm{Block}_l(X_{l-1}),\quad l = 1..L",
    shape="(L, n+1, d)",
)
def step_11(traced: Traced, view: View) -> None:
    gh, gw = traced.trace.grid
    depth = len(traced.trace.layers)
    markdown("**What CLS attends to in each layer** (mean over heads):")
    cls_rows = [to_numpy(layer.attn[:, 0].mean(0)) for layer in traced.trace.layers]
    image_grid(
        [
            (
                figures.attention_overlay(
                    traced.display, row[1:].reshape(gh, gw), size=160, colorscale=view.colorscale
                ),
                f"Layer {i + 1}",
            )
            for i, row in enumerate(cls_rows)
        ],
        per_row=min(depth, 6),
    )
    cls = np.stack([to_numpy(layer.output[0]) for layer in traced.trace.layers])
    first = to_numpy(traced.trace.tokens[0])
    all_cls = np.vstack([first[None], cls])
    turns = analysis.cosine_to_next(all_cls)
    left, right = columns(2)
    with left:
        show_figure(
            figures.lines(
                {"cosine(CLS before, CLS after)": turns},
                x=np.arange(1, depth + 1),
                title="How much each layer turns the CLS token",
                x_title="layer",
                y_title="cosine (1 = unchanged)",
            )
        )
        caption(
            "1 means the layer left CLS pointing the same way; the lower the dot, the more the layer turned it. "
            f"Here layer {int(turns.argmin()) + 1} turns it most (cosine {turns.min():.2f})."
        )
    with right:
        show_figure(
            figures.lines(
                {"‖CLS‖": np.linalg.norm(all_cls, axis=1)},
                title="Length of the CLS token",
                x_title="after layer (0 = input)",
                y_title="L2 norm",
            )
        )
    paper.attention_distance(traced)
    norm, head = traced.model.norm, traced.model.head
    if head is None:
        caption("This model has no class head, so there is no prediction to read from each layer's CLS token.")
        return
    probs = analysis.logit_lens(
        cls, to_numpy(norm.weight), to_numpy(norm.bias), norm.eps, to_numpy(head.weight), to_numpy(head.bias)
    )
    labels = traced.labels
    shown = np.argsort(-probs[-1])[:10]  # the final top classes; a 1000-class model stays readable
    fig = figures.heatmap(
        probs[:, shown],
        title="Prediction read from each layer's CLS (final LayerNorm + head)",
        x_title="class",
        y_title="layer",
        colorscale=view.colorscale,
        centred=False,
        x_labels=[labels[i] for i in shown],
        y_labels=[f"layer {i + 1}" for i in range(depth)],
        value_name="probability",
        height=140 + 30 * min(depth, 24),
    )
    show_figure(fig)
    caption(
        f"Each row puts that layer's CLS token through the final LayerNorm and the class head. The head was trained "
        f"only on what layer {depth} hands it, so the earlier rows read vectors it was never fitted to: an early "
        "row that is flat or wrong may mean the reading fails there rather than that the layer knows nothing yet."
    )


@SECTION.step(
    "12",
    "The CLS output",
    text=(
        "After the last block and a final LayerNorm, only the CLS token's vector is kept. The patch tokens "
        "have done their job by feeding it through attention."
    ),
    formula=r"y = \mathrm{LN}(X_L)_0",
    shape="(d,)",
)
def step_12(traced: Traced, view: View) -> None:
    raw = to_numpy(traced.trace.layers[-1].output[0])
    show_figure(figures.vector_strip(raw, title="CLS after the last block"))
    show_figure(
        figures.vector_strip(
            to_numpy(traced.trace.cls_output), title=f"After the final LayerNorm: y, 1×{traced.config.dim}"
        )
    )


@SECTION.step(
    "13",
    "Class probabilities",
    text=(
        "A linear layer turns the CLS vector into one score per class (the logits), and a softmax turns the "
        "scores into probabilities."
    ),
    formula=r"\hat p = \mathrm{softmax}(y\,W_\text{head} + b_\text{head})",
    shape="(k,)",
)
def step_13(traced: Traced, view: View) -> None:
    if traced.trace.logits is None:
        no_class_head(traced, key="no_head_13")
        return
    logits, probs = to_numpy(traced.trace.logits), to_numpy(traced.trace.probs)
    labels = traced.labels
    order = np.argsort(-probs)
    top = order[0]
    markdown(f"Prediction: **{plain(labels[top])}** with probability **{probs[top]:.1%}**.")
    if len(labels) > 5:  # plain text: class names come from the checkpoint
        text("Top 5:\n" + "\n".join(f"{probs[i]:7.2%}  {labels[i]}" for i in order[:5]))
    shown = order[: min(10, len(labels))]
    rest = len(labels) - len(shown)
    left, right = columns(2)
    with left:
        show_figure(
            figures.bars(logits[shown], [labels[i] for i in shown], title="Logits (top classes)", value_format=".2f")
        )
    with right:
        values, names = probs[shown], [labels[i] for i in shown]
        if rest:  # a 1,000-class model: the top ten, and what all the others share
            values, names = np.append(values, probs[order[len(shown) :]].sum()), [*names, f"the other {rest} classes"]
        show_figure(
            figures.bars(values, names, title="Probabilities (softmax of the logits)", value_format=".1%", highlight=0)
        )
    attribution.which_patches(traced, view.colorscale)


def no_class_head(traced: Traced, *, key: str) -> None:
    """What a model without a class head (DINO, a plain ViTModel) offers instead of probabilities: y."""
    info(
        "This model learned without labels (self-supervised), so it has no class head: there are no logits, "
        "probabilities or loss for this image. What it does have is the CLS output y below, a description of "
        "the whole image that other tasks build on."
    )
    show_figure(figures.vector_strip(to_numpy(traced.trace.cls_output), title=f"y, 1×{traced.config.dim}"), key=key)
