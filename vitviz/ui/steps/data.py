"""Steps 0–2: the data, one image, and its label set aside."""

from __future__ import annotations

import numpy as np
import streamlit as st
import torch

from vitviz import data, figures
from vitviz.i18n import N_
from vitviz.images import normalise, original_size
from vitviz.ui import state
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
    intro = _("A ViT learns from examples: images paired with the class a person gave them.")
    if traced.config.labels == data.CLASSES:  # the built-in model, or one trained in the Training studio
        return intro + " " + _(
            "This model learned from generated pictures of eight shapes, drawn in random colours, "
            "sizes, angles and places on noisy backgrounds. Below is a fresh batch from the same generator, "
            "with the labels it was drawn with."
        )
    if not traced.labels:
        return _(
            "This model learned without labels: self-supervised training shows it images only and asks it to "
            "describe two views of one image alike. Its training pictures are not part of vitviz."
        )
    return intro + " " + ngettext(
        "The model in use learned {count:,} class from its own training set, which is not part of vitviz; "
        "vitviz's generated shapes are shown below only when the model was trained on them.",
        "The model in use learned {count:,} classes from its own training set, which is not part of vitviz; "
        "vitviz's generated shapes are shown below only when the model was trained on them.",
        len(traced.labels),
    ).format(count=len(traced.labels))


@SECTION.step(
    "0",
    N_("The data"),
    text=_data_text,
    shape="(H, W, c)",
)
def step_0(traced: Traced, view: View) -> None:
    names = traced.labels  # the shapes' names in the reader's language
    if traced.config.image_size[0] != traced.config.image_size[1] or traced.config.labels != data.CLASSES:
        info(_("This model was not trained on the built-in shapes, so there is no dataset preview for it."))
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


@SECTION.step(
    "1",
    N_("One image"),
    text=N_(
        "From here on we follow a single image, a batch of one. The model never sees your original file: it "
        "sees a centre crop resized to its input size, with each channel shifted and scaled by the mean and "
        "standard deviation it was trained with."
    ),
    formula=r"x' = \frac{x/255 - \mu_c}{\sigma_c}",
    shape="(1, c, H, W)",
)
def step_1(traced: Traced, view: View) -> None:
    left, right = columns(2)
    left.image(
        state.preview_of(traced.image_key, traced.image),
        caption=_("Your image, {width}×{height} pixels").format(width=original_size(traced.image)[0],
                                                               height=original_size(traced.image)[1]),
        width="stretch",
    )
    h, w = traced.config.image_size
    right.image(
        figures.upscale(traced.display, figures.enlargement(traced.display, 384)),
        caption=_("What the model sees: a centre crop resized to {width}×{height}").format(width=w, height=h),
        width="stretch",
    )
    pixels = to_numpy(traced.trace.pixels)
    mean, std = traced.config.mean, traced.config.std
    per_channel = _("{channel}: mean {mean:.3f}, std {std:.3f}")
    markdown(
        _("Normalisation per channel:") + " "
        + ", ".join(per_channel.format(channel=name, mean=m, std=s) for name, m, s in zip("RGB", mean, std, strict=False))
    )
    show_figure(figures.channel_histograms(pixels, title=_("Values of the normalised input, per channel"),
                                           x_title=_("value"), y_title=_("pixels")))


@SECTION.step(
    "2",
    N_("Set the label aside"),
    text=N_(
        "During training every image comes with its label, but nothing in the forward pass uses it. The label"
        " returns only at the very end, when the loss compares it with the prediction (step 14)."
    ),
    shape="(c, H, W)",
)
def step_2(traced: Traced, view: View) -> None:
    image(
        figures.upscale(traced.display, figures.enlargement(traced.display, 384)),
        caption=_("The image, with no label attached"),
        width=384,
    )
