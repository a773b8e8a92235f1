"""Step 14: the loss, and what one gradient step does."""

from __future__ import annotations

import math
import re

import numpy as np
import streamlit as st

from vitviz import figures, gradients
from vitviz.ui.controls import View, persistent
from vitviz.ui.drawing import caption, columns, markdown, show_figure
from vitviz.ui.state import Traced
from vitviz.ui.steps.output import no_class_head
from vitviz.ui.steps.step import Section
from vitviz.ui.text import plain

SECTION = Section("Training")

STEP_LEARNING_RATES = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


@st.cache_resource(max_entries=16, show_spinner="Backpropagating…")
def _gradient(image_key: str, model_key: str, label: int, lr: float, _model, _pixels):
    return gradients.one_step(_model, _pixels, label, lr)


def _loss_scale(classes: int, loss: float) -> str:
    """How to read a cross-entropy for a model with `classes` classes: 0 is certain and right, log k is chance."""
    chance = math.log(classes)
    where = "below" if loss < chance else "above"
    return (
        f"How to read it: the loss is 0 when the model gives the true class all its probability, and grows without "
        f"bound as that probability goes to 0. A model that spreads its probability evenly over its {classes:,} "
        f"classes scores −log(1/{classes:,}) = {chance:.2f}: that is chance, and this image's loss is {where} it."
    )


def _real_training(traced: Traced) -> str:
    """How training differs from the single step above, for the model in use."""
    if "source" in traced.config.extra:  # a converted checkpoint: its training recipe is not stored with it
        return (
            "Real training does not step on one image: it averages the loss over a batch of images before each "
            "step, and uses an optimiser that adapts each weight's step size, such as AdamW, instead of the plain "
            "step above. How this checkpoint was trained is not stored in it."
        )
    batch = _batch_size(traced.config.extra)
    batch_words = f" of {batch:,} images" if batch else ""
    return (
        f"Real training does not step on one image. When vitviz trains a model (the built-in one, the Training "
        f"studio), each step averages the loss over a fresh batch{batch_words}, clips the gradient, and updates "
        "the weights with AdamW, which adapts every weight's step size and adds weight decay, under a learning rate "
        "that warms up and then decays; not the plain step above."
    )


def _batch_size(extra: dict) -> int | None:
    """The batch size this model was trained with, if it recorded one (the studio's field, the CLI's command)."""
    if isinstance(extra.get("batch_size"), int):
        return extra["batch_size"]
    found = re.search(r"--batch-size (\d+)", str(extra.get("command", "")))
    return int(found.group(1)) if found else None


@SECTION.step(
    "14",
    "Training",
    text=(
        "Training compares the probabilities with the true label t through the cross-entropy loss, and "
        "backpropagation gives every weight the direction that lowers it. Training moves only weights; the "
        "gradient with respect to the pixels, shown below, is a diagnostic of which pixels the loss is sensitive to."
    ),
    formula=r"\mathcal{L} = -\log \hat p_t",
    shape="()",
)
def step_14(traced: Traced, view: View) -> None:
    if traced.trace.logits is None:
        no_class_head(traced, key="no_head_14")
        return
    labels = traced.labels
    predicted = int(traced.trace.probs.argmax())
    left, right = columns(2)
    with left:
        label = persistent(
            st.selectbox, "true_label", labels[predicted], label="The true label, as you see it", options=labels
        )
    with right:
        lr = persistent(
            st.select_slider,
            "step_lr",
            0.01,
            label="Learning rate η of the one step",
            options=list(STEP_LEARNING_RATES),
            format_func=lambda v: f"{v:g}",
        )
    index = labels.index(label)
    result = _gradient(traced.image_key, traced.model_key, index, float(lr), traced.model, traced.trace.pixels)
    markdown(
        f"Cross-entropy against **{plain(label)}**: **{result.loss:.4f}** "
        f"(the model gives it {result.probs_before[index]:.1%})."
    )
    caption(_loss_scale(len(labels), result.loss))
    per_patch = gradients.per_patch_norm(result.pixel_grad, traced.config.patch_size)
    left, right = columns(2)
    left.image(
        figures.attention_overlay(traced.display, per_patch, colorscale=view.colorscale, opacity=0.7),
        caption="Size of ∂L/∂pixels: the L2 norm over each patch",
        width="stretch",
    )
    with right:
        show_figure(
            figures.heatmap(
                per_patch,
                title="‖∂L/∂x‖ per patch",
                x_title="grid column",
                y_title="grid row",
                x_labels=[
                    str(c + 1) for c in range(per_patch.shape[1])
                ],  # the grid counts from 1, as in "row 1, col 1"
                y_labels=[str(r + 1) for r in range(per_patch.shape[0])],
                colorscale=view.colorscale,
                centred=False,
                height=320,
                value_name="gradient norm",
            )
        )
    markdown(
        f"**One gradient step.** On a copy of the model, every weight moves against its gradient, "
        f"w ← w − {lr:g} · ∂L/∂w, and the same image goes through again: the probability of **{plain(label)}** goes from "
        f"{result.probs_before[index]:.1%} to **{result.probs_after[index]:.1%}**, and the loss from "
        f"{result.loss:.4f} to {result.loss_after:.4f}. The model the pages show is not changed."
    )
    caption(_real_training(traced))
    order = np.argsort(-result.probs_before)[: min(10, len(labels))]
    names = [labels[i] for i in order]
    mark = names.index(label) if label in names else None
    top = float(max(result.probs_before.max(), result.probs_after.max())) * 1.05  # one scale for both
    left, right = columns(2)
    for column, probs, title in (
        (left, result.probs_before, "Probabilities before the step"),
        (right, result.probs_after, "Probabilities after one step"),
    ):
        with column:
            fig = figures.bars(probs[order], names, title=title, value_format=".1%", highlight=mark)
            show_figure(fig.update_xaxes(range=[0, top], tickformat=".0%"))
