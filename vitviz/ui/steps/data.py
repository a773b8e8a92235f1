"""Steps 0–2: the data, one image, and its label set aside."""

from __future__ import annotations

import numpy as np
import streamlit as st
import torch

from vitviz import data, figures
from vitviz.images import normalise, original_size
from vitviz.ui import state
from vitviz.ui.controls import View
from vitviz.ui.drawing import caption, columns, image, info, markdown, show_figure, to_numpy
from vitviz.ui.state import Traced
from vitviz.ui.steps.step import Section

SECTION = Section("Data")


@st.cache_resource(max_entries=4, show_spinner=False)
def _dataset_preview(model_key: str, _model, count: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    images, labels = data.generate(count, state.SCENE_SEED + 1, size=_model.config.image_size[0])
    with torch.no_grad():
        predicted = _model(normalise(images, _model.config)).argmax(-1).numpy()
    return images, labels, predicted


def _data_text(traced: Traced) -> str:
    intro = "A ViT learns from examples: images paired with the class a person gave them. "
    if tuple(traced.labels) == data.CLASSES:  # the built-in model, or one trained in the Training studio
        return intro + (
            "This model learned from generated pictures of eight shapes, drawn in random colours, "
            "sizes, angles and places on noisy backgrounds. Below is a fresh batch from the same generator, "
            "with the labels it was drawn with."
        )
    if not traced.labels:
        return (
            "This model learned without labels: self-supervised training shows it images only and asks it to "
            "describe two views of one image alike. Its training pictures are not part of vitviz."
        )
    return intro + (
        f"The model in use learned {len(traced.labels):,} classes from its own training set, which is not "
        "part of vitviz; vitviz's generated shapes are shown below only when the model was trained on them."
    )


@SECTION.step(
    "0",
    "The data",
    text=_data_text,
    shape="(H, W, c)",
)
def step_0(traced: Traced, view: View) -> None:
    names = traced.config.labels
    if traced.config.image_size[0] != traced.config.image_size[1] or tuple(names) != data.CLASSES:
        info("This model was not trained on the built-in shapes, so there is no dataset preview for it.")
        return
    images, labels, predicted = _dataset_preview(traced.model_key, traced.model)
    markdown(f"**{len(names)} classes:** " + ", ".join(names))
    cells = columns(8)
    for i in range(len(labels)):
        mark = "✓" if predicted[i] == labels[i] else f"✗ model says {names[predicted[i]]}"
        cells[i % 8].image(figures.upscale(images[i], 2), caption=f"{names[labels[i]]} {mark}", width="stretch")
    right = int((predicted == labels).sum())
    caption(
        f"Captions give the generator's label, and ✓ where the model predicts it ({right} of {len(labels)} here)."
    )


@SECTION.step(
    "1",
    "One image",
    text=(
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
        caption="Your image, {}×{} pixels".format(*original_size(traced.image)),
        width="stretch",
    )
    h, w = traced.config.image_size
    right.image(
        figures.upscale(traced.display, figures.enlargement(traced.display, 384)),
        caption=f"What the model sees: a centre crop resized to {w}×{h}",
        width="stretch",
    )
    pixels = to_numpy(traced.trace.pixels)
    mean, std = traced.config.mean, traced.config.std
    markdown(
        "Normalisation per channel: "
        + ", ".join(f"{name}: mean {m:.3f}, std {s:.3f}" for name, m, s in zip("RGB", mean, std, strict=False))
    )
    show_figure(figures.channel_histograms(pixels, title="Values of the normalised input, per channel"))


@SECTION.step(
    "2",
    "Set the label aside",
    text=(
        "During training every image comes with its label, but nothing in the forward pass uses it. The label"
        " returns only at the very end, when the loss compares it with the prediction (step 14)."
    ),
    shape="(c, H, W)",
)
def step_2(traced: Traced, view: View) -> None:
    image(
        figures.upscale(traced.display, figures.enlargement(traced.display, 384)),
        caption="The image, with no label attached",
        width=384,
    )
