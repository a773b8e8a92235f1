"""Step 14: the loss, and what one gradient step does."""

from __future__ import annotations

import math
import re

import numpy as np
import streamlit as st

from vitviz import figures, gradients
from vitviz.facts import IMAGENET
from vitviz.i18n import N_
from vitviz.ui import about
from vitviz.ui.controls import View, class_picker, persistent
from vitviz.ui.drawing import caption, columns, hover_words, markdown, show_figure
from vitviz.ui.i18n import _, number_writer
from vitviz.ui.state import Traced
from vitviz.ui.steps.output import no_class_head
from vitviz.ui.steps.step import Section
from vitviz.ui.text import plain

SECTION = Section(N_("Training"))

STEP_LEARNING_RATES = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


@st.cache_resource(max_entries=16, show_spinner=False)
def _cached_gradient(image_key: str, model_key: str, label: int, lr: float, _model, _pixels):
    return gradients.one_step(_model, _pixels, label, lr)


def _gradient(image_key: str, model_key: str, label: int, lr: float, model, pixels):
    with st.spinner(_("Backpropagating…")):  # here, not in the decorator, so that it speaks the session's language
        return _cached_gradient(image_key, model_key, label, lr, model, pixels)


def _loss_scale(classes: int, loss: float) -> str:
    """How to read a cross-entropy for a model with `classes` classes: 0 is certain and right, log k is chance."""
    chance = math.log(classes)
    if loss < chance:
        verdict = _("this image's loss is below it.")
    else:
        verdict = _("this image's loss is above it.")
    return _(
        "How to read it: the loss is 0 when the model gives the true class all its probability, and grows without "
        "bound as that probability goes to 0. A model that spreads its probability evenly over its {classes:,} "
        "classes scores −log(1/{classes:,}) = {chance:.2f}: that is chance, and {verdict}"
    ).format(classes=classes, chance=chance, verdict=verdict)


def _real_training(traced: Traced) -> str:
    """How training differs from the single step above, for the model in use."""
    facts = traced.facts
    if facts.training != "shapes":  # a checkpoint: what its preset or metadata says of its training, if anything
        words = _(
            "Real training does not step on one image: it averages the loss over a batch of images before each "
            "step, and uses an optimiser that adapts each weight's step size, such as AdamW, instead of the plain "
            "step above."
        )
        return words + " " + (about.training(facts) or _("How this checkpoint was trained is not stored in it."))
    batch = _batch_size(traced.config.extra)
    if batch:
        return _(
            "Real training does not step on one image. When vitviz trains a model (the built-in one, the Training "
            "studio), each step averages the loss over a fresh batch of {batch:,} images, clips the gradient, and "
            "updates the weights with AdamW, which adapts every weight's step size and adds weight decay, under a "
            "learning rate that warms up and then decays; not the plain step above."
        ).format(batch=batch)
    return _(
        "Real training does not step on one image. When vitviz trains a model (the built-in one, the Training "
        "studio), each step averages the loss over a fresh batch, clips the gradient, and updates the weights with "
        "AdamW, which adapts every weight's step size and adds weight decay, under a learning rate that warms up and "
        "then decays; not the plain step above."
    )


def _why_so_much_data(traced: Traced) -> str:
    """Step 14 for an ImageNet model: why a ViT needs large pre-training or DeiT's recipe."""
    return _(
        "**Why a ViT needs so much data.** A convolutional network is built to look at small neighbourhoods and to "
        "treat a pattern the same wherever it appears; a ViT assumes almost none of that (only the cutting into "
        "patches), and must learn it from examples. Trained on ImageNet-1k alone with the usual recipe, it falls "
        "behind convolutional networks of its size; the ViT paper closed the gap by pre-training on far more images "
        "(ImageNet-21k, JFT-300M), and DeiT on ImageNet-1k alone with strong augmentation, regularisation and, in "
        "its distilled models, a convolutional teacher."
    )


def _batch_size(extra: dict) -> int | None:
    """The batch size this model was trained with, if it recorded one (the studio's field, the CLI's command)."""
    if isinstance(extra.get("batch_size"), int):
        return extra["batch_size"]
    found = re.search(r"--batch-size (\d+)", str(extra.get("command", "")))
    return int(found.group(1)) if found else None


def _loss_text(traced: Traced) -> str:
    facts = traced.facts
    if not facts.has_head:
        return _("Training compares a class probability with a true label, and this model has no class head: there is "
                 "no probability to compare, so this step has no loss to show for it.")
    words = _(
        "Training compares the probabilities with the true label t through the cross-entropy loss, and "
        "backpropagation gives every weight the direction that lowers it. Training moves only weights; the "
        "gradient with respect to the input x, shown below, is a diagnostic of which pixels the loss is sensitive to."
    )
    if facts.head == "cls_distillation_mean":
        if facts.training == "deit-distilled":
            words += " " + _("This DeiT was trained with two losses, one per head: half the cross-entropy of the CLS "
                             "head against the true label, plus half the cross-entropy of the distillation head against "
                             "the class a teacher network predicted.")
        else:
            words += " " + _("DeiT trains a model like this one with two losses, one per head: half the cross-entropy "
                             "of the CLS head against the true label, plus half the cross-entropy of the distillation "
                             "head against the class a teacher network predicts.")
        words += " " + _("The one step below instead uses the cross-entropy of the averaged logits, the model's output, "
                         "against the label you choose.")
    return words


_LOSS_FORMULA = {
    "cls_distillation_mean": r"\mathcal{L} = -\log \hat p_t,\qquad \mathcal{L}_\text{DeiT} = \tfrac12\,"
                             r"\mathrm{CE}(y\,W_\text{cls} + b_\text{cls},\ t) + \tfrac12\,"
                             r"\mathrm{CE}(y_\text{dist}\,W_\text{dist} + b_\text{dist},\ t_\text{teacher})",
    "none": None,
}


@SECTION.step(
    "14",
    N_("Training"),
    text=_loss_text,
    formula=lambda traced: _LOSS_FORMULA.get(traced.facts.head, r"\mathcal{L} = -\log \hat p_t"),
    shape=lambda traced: "()" if traced.facts.has_head else "",
)
def step_14(traced: Traced, view: View) -> None:
    if traced.trace.logits is None:
        no_class_head(traced, key="no_head_14")
        return
    labels = traced.labels
    predicted = int(traced.trace.probs.argmax())
    left, right = columns(2)
    with left:
        index = class_picker(st.selectbox, "true_label", traced, predicted, _("The true label, as you see it"))
    with right:
        lr = persistent(
            st.select_slider,
            "step_lr",
            0.01,
            label=_("Learning rate η of the one step"),
            options=list(STEP_LEARNING_RATES),
            format_func=lambda v, write=number_writer(): write(v, "g"),
        )
    label = labels[index]
    result = _gradient(traced.image_key, traced.model_key, index, float(lr), traced.model, traced.trace.pixels)
    markdown(
        _("Cross-entropy against **{label}**: **{loss:.4f}** (the model gives it {probability:.1%}).").format(
            label=plain(label), loss=result.loss, probability=result.probs_before[index])
    )
    caption(_loss_scale(len(labels), result.loss))
    per_patch = gradients.per_patch_norm(result.pixel_grad, traced.config.patch_size)
    left, right = columns(2)
    left.image(
        figures.attention_overlay(traced.display, per_patch, colorscale=view.colorscale, opacity=0.7),
        caption=_("Size of ∂L/∂x, the loss's gradient with respect to the normalised input: its L2 norm over each "
                  "patch"),
        width="stretch",
    )
    with right:
        show_figure(
            figures.heatmap(
                per_patch,
                title=_("‖∂L/∂x‖ per patch"),
                x_title=_("grid column"),
                y_title=_("grid row"),
                x_labels=[
                    str(c + 1) for c in range(per_patch.shape[1])
                ],  # the grid counts from 1, as in "row 1, col 1"
                y_labels=[str(r + 1) for r in range(per_patch.shape[0])],
                colorscale=view.colorscale,
                centred=False,
                height=320,
                value_name=_("gradient norm"), words=hover_words(),
            )
        )
    markdown(
        _("**One gradient step.** On a copy of the model, every weight moves against its gradient, "
          "w ← w − {lr:g} · ∂L/∂w, and the same image goes through again: the probability of **{label}** goes from "
          "{before:.1%} to **{after:.1%}**, and the loss from {loss:.4f} to {loss_after:.4f}. The model the pages "
          "show is not changed.").format(lr=lr, label=plain(label), before=result.probs_before[index],
                                         after=result.probs_after[index], loss=result.loss, loss_after=result.loss_after)
    )
    caption(_real_training(traced))
    if traced.facts.training in IMAGENET:
        markdown(_why_so_much_data(traced))
    order = np.argsort(-result.probs_before)[: min(10, len(labels))]
    names = [labels[i] for i in order]
    mark = names.index(label) if label in names else None
    top = float(max(result.probs_before.max(), result.probs_after.max())) * 1.05  # one scale for both
    left, right = columns(2)
    for column, probs, title in (
        (left, result.probs_before, _("Probabilities before the step")),
        (right, result.probs_after, _("Probabilities after one step")),
    ):
        with column:
            show_figure(figures.bars(probs[order], names, title=title, value_format=".1%", highlight=mark, top=top,
                                     number=number_writer()))
