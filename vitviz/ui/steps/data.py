"""Steps 0–2: the data, one image, and its label set aside."""

from __future__ import annotations

import numpy as np
import streamlit as st
import torch

from vitviz import data, figures
from vitviz.i18n import N_
from vitviz.images import PIXEL_SCALE, normalise, original_size
from vitviz.ui import about, state
from vitviz.ui.controls import View
from vitviz.ui.drawing import caption, columns, image, info, markdown, show_figure, to_numpy
from vitviz.ui.i18n import _, ngettext
from vitviz.ui.state import Traced
from vitviz.ui.steps.step import Section

SECTION = Section(N_("Data"))


@st.cache_resource(max_entries=4, show_spinner=False)
def _dataset_preview(model_key: str, _model, count: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    images, labels = data.generate(count, state.SCENE_SEED + 1, size=_model.config.image_size[0])
    with torch.no_grad():
        predicted = _model(normalise(images, _model.config)).argmax(-1).numpy()
    return images, labels, predicted


def _data_text(traced: Traced) -> str:
    facts = traced.facts
    if facts.training == "shapes":  # the built-in model, or one trained in the Training studio
        return _("A ViT learns from examples: images paired with the class a person gave them.") + " " + _(
            "This model learned from generated pictures of eight shapes, drawn in random colours, "
            "sizes, angles and places on noisy backgrounds. Below is a fresh batch from the same generator, "
            "with the labels it was drawn with."
        )
    if facts.self_supervised:  # DINO, DINOv2: what the objective is, since the preset says so
        words = about.training(facts)
        if facts.has_head:
            words += " " + ngettext("This checkpoint also has a class head, over {count:,} class.",
                                    "This checkpoint also has a class head, over {count:,} classes.",
                                    facts.classes).format(count=facts.classes)
        return words + " " + _("Its training pictures are not part of vitviz.")
    if facts.supervised:  # an ImageNet model its preset or its own metadata describes
        return about.training(facts) + " " + _("Its training pictures are not part of vitviz.")
    if not facts.has_head:
        return _("This model has no class head, and vitviz does not know how it was trained, so this step shows no "
                 "training data.")
    return ngettext(
        "This model has {count:,} output class. vitviz does not know how it was trained, so this step shows no "
        "training data.",
        "This model has {count:,} output classes. vitviz does not know how it was trained, so this step shows no "
        "training data.", facts.classes).format(count=facts.classes)


@SECTION.step(
    "0",
    N_("The data"),
    text=_data_text,
    shape="(H, W, c)",
)
def step_0(traced: Traced, view: View) -> None:
    names = traced.labels  # the shapes' names in the reader's language
    if traced.config.image_size[0] != traced.config.image_size[1] or traced.facts.training != "shapes":
        info(_("The dataset preview shows vitviz's built-in shapes, and only for a model vitviz trained on them."))
        return
    images, labels, predicted = _dataset_preview(traced.model_key, traced.model)
    markdown("**" + _("{count} classes:").format(count=len(names)) + "** " + ", ".join(names))
    cells = columns(8)
    for i in range(len(labels)):
        mark = "✓" if predicted[i] == labels[i] else _("✗ model says {name}").format(name=names[predicted[i]])
        cells[i % 8].image(figures.upscale(images[i], 2), caption=f"{names[labels[i]]} {mark}", width="stretch")
    right = int((predicted == labels).sum())
    caption(
        _("Captions give the generator's label, and ✓ where the model predicts it ({right} of {count} here).").format(
            right=right, count=len(labels))
    )


def _image_text(traced: Traced) -> str:
    return _("From here on we follow a single image: the model reads a batch of one, and shapes leave that batch "
             "dimension out. The model never sees your original file.") + " " + \
        about.preprocessing(traced.facts, traced.config.image_size) + " " + \
        _("Then each channel is shifted and scaled by the mean μ and standard deviation σ this model expects.")


def _image_formula(traced: Traced) -> str:
    rescale = traced.facts.preprocessing.rescale
    if rescale == PIXEL_SCALE:
        return r"x = \frac{I/255 - \mu_c}{\sigma_c}"
    return rf"x = \frac{{{rescale:g}\,I - \mu_c}}{{\sigma_c}}"


@SECTION.step(
    "1",
    N_("One image"),
    text=_image_text,
    formula=_image_formula,
    shape="(c, H, W)",
)
def step_1(traced: Traced, view: View) -> None:
    left, right = columns(2)
    width, height = original_size(traced.image)
    preview = state.preview_of(traced.image_key, traced.image)
    shown, whole = traced.prepared.crop_box, (0, 0, traced.image.width, traced.image.height)
    if shown != whole:  # outline the part the model sees
        scale = preview.width / traced.image.width
        preview = figures.outline_box(np.asarray(preview.convert("RGB")), tuple(round(v * scale) for v in shown))
    words = _("Your image, {width}×{height} pixels").format(width=width, height=height)
    left.image(preview, caption=words if shown == whole else _("{image}; outlined, the part the model sees").format(
        image=words), width="stretch")
    h, w = traced.config.image_size
    right.image(
        figures.upscale(traced.display, figures.enlargement(traced.display, 384)),
        caption=_("What the model sees, I: {width}×{height} pixels").format(width=w, height=h),
        width="stretch",
    )
    if (width, height) != traced.image.size:
        caption(_("vitviz keeps a large picture at {width}×{height} pixels before any of this, so the model's input can "
                  "differ slightly from what its processor would make of the original file.").format(
            width=traced.image.width, height=traced.image.height))
    pixels = to_numpy(traced.trace.pixels)
    mean, std = traced.config.mean, traced.config.std
    per_channel = _("{channel}: mean {mean:.3f}, std {std:.3f}")
    markdown(
        _("Normalisation per channel:") + " "
        + ", ".join(per_channel.format(channel=name, mean=m, std=s) for name, m, s in zip("RGB", mean, std, strict=False))
        + ". " + _("A value of 0 after it is {colour}.").format(colour=about.zero_colour(traced.facts))
    )
    show_figure(figures.channel_histograms(pixels, title=_("Values of the normalised input x, per channel"),
                                           x_title=_("value"), y_title=_("pixels")))


def _label_text(traced: Traced) -> str:
    facts = traced.facts
    if facts.self_supervised and not facts.has_head:
        return _("This model learned without labels, so there is no label to set aside: neither its forward pass "
                 "nor its training used one.")
    if not facts.has_head:
        return _("This model has no class head, so no label enters anywhere on these pages: the forward pass never "
                 "uses one.")
    if facts.supervised:
        return _("This model learned from images paired with their labels, but nothing in the forward pass uses the "
                 "label. It returns only at the very end, when the loss compares it with the prediction (step 14).")
    return _("A classifier is trained on images paired with their labels, but nothing in the forward pass uses the "
             "label. It returns only at the very end, when the loss compares it with the prediction (step 14).")


@SECTION.step(
    "2",
    N_("Set the label aside"),
    text=_label_text,
    shape="(c, H, W)",
)
def step_2(traced: Traced, view: View) -> None:
    image(
        figures.upscale(traced.display, figures.enlargement(traced.display, 384)),
        caption=_("The image, with no label attached"),
        width=384,
    )
