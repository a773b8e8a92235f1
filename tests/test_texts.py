"""Every page's words fit the model in use: the built-in one, a studio-sized one, a 1,000-class checkpoint and a
headless (DINO-like) one; the numbers in the explanations are this model's."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import streamlit as st
import torch
from conftest import ALL_PAGES, fresh_app, open_page, problems

from vitviz import data, figures, studio, weights
from vitviz.model import ViT, ViTConfig
from vitviz.ui import page
from vitviz.ui.steps.tokens import CLS_INIT_STD

# The shape names that never occur in vitviz's own prose ("square", "star", "plus" do: "square patches").
SHAPE_NAMES = re.compile(r"\b(circle|ring|triangle|heart|crescent)s?\b", re.IGNORECASE)
assert set(SHAPE_NAMES.pattern.split("(")[1].split(")")[0].split("|")) <= set(data.CLASSES)


def shown_text(at) -> str:
    parts = [e.value for kind in ("markdown", "caption", "info", "success", "text", "title") for e in at.get(kind)]
    parts += [caption for image in at.get("image") for caption in image.captions]
    return "\n".join(str(p) for p in parts)


def use_uploaded(at, model: ViT, name: str):
    open_page(at, "pages/model.py")
    at.radio(key="model_source").set_value("Upload").run()
    at.file_uploader(key="model_upload").upload(name, weights.to_bytes(model), "application/octet-stream").run()
    at.button(key="load_upload").click().run()
    assert not at.error, [e.value for e in at.error]
    return at


def block_parameters(config) -> tuple[int, int]:
    d, width = config.dim, config.mlp_dim
    return 4 * d * d + 4 * d, 2 * d * width + width + d


@pytest.fixture(autouse=True)
def clean_caches():
    st.cache_resource.clear()
    yield


def checks_for(page_file: str, config: ViTConfig, converted: bool) -> list[str]:
    """Sentences `page_file` must show for this model: its own numbers, and only what is true of where it came from."""
    (height, width), (gh, gw), k = config.image_size, config.grid, config.num_labels
    pixels, tokens = height * width, gh * gw + 1
    attention, mlp = block_parameters(config)
    expected = {
        "pages/step_3.py": [f"{pixels:,} tokens and {pixels**2:,} scores", f"{tokens:,} tokens (CLS included) and "
                            f"{tokens**2:,} scores", f"{config.depth * config.heads * tokens**2:,} per image"],
        "pages/step_7.py": ["was learned in its own training" if converted else f"standard deviation {CLS_INIT_STD})"],
        "pages/step_10_1.py": [f"ε = {config.layer_norm_eps:g}"],
        "pages/step_10_2.py": [f"√{config.head_dim} = {config.head_dim**0.5:.2f}"],
        "pages/step_10_6.py": [f"{config.heads} · {tokens}² · {config.head_dim} = {tokens}² · {config.dim} = "
                               f"{tokens**2 * config.dim:,}", f"Head {config.heads}: patches "],
        "pages/step_10_11.py": [f"{mlp:,} parameters per block and attention {attention:,}", "lowest, -0.170 at z = -0.75"],
        "pages/step_11.py": ["1 means the layer left CLS pointing the same way"],
    }
    if k:
        expected["pages/step_11.py"].append(f"trained only on what layer {config.depth} hands it")
        expected["pages/step_14.py"] = [f"classes scores −log(1/{k:,}) = {math.log(k):.2f}",
                                        "is not stored in it" if converted else "with AdamW"]
    if not converted:
        expected["pages/step_8.py"] = ["sine and cosine waves", "still at cosine"]
    return expected.get(page_file, [])


HUGGING_FACE = {"source": "huggingface"}


@pytest.mark.parametrize("kind", ["built-in", "studio", "checkpoint", "headless"])
def test_no_page_names_a_property_the_model_does_not_have(kind):
    torch.manual_seed(0)
    at = fresh_app()
    if kind == "built-in":
        config = weights.load_default().config
    elif kind == "studio":
        config = studio.Settings().config()
        at = use_uploaded(at, ViT(config), "studio-sized.safetensors")
    elif kind == "checkpoint":
        config = ViTConfig(image_size=(48, 48), patch_size=16, dim=48, depth=2, heads=3, mlp_dim=96,
                           labels=tuple(f"class {i}" for i in range(1000)), extra=HUGGING_FACE)
        at = use_uploaded(at, ViT(config), "imagenet-like.safetensors")
    else:  # a self-supervised checkpoint such as DINO: no class head
        config = ViTConfig(image_size=(32, 48), patch_size=16, dim=32, depth=2, heads=2, mlp_dim=64,
                           extra=HUGGING_FACE)
        at = use_uploaded(at, ViT(config), "dino-like.safetensors")
    converted = kind in ("checkpoint", "headless")
    for page_file in ALL_PAGES:
        open_page(at, page_file)
        assert not problems(at), (page_file, problems(at))
        text = shown_text(at)
        for sentence in checks_for(page_file, config, converted):
            assert sentence in text, (page_file, sentence)
        if kind != "built-in":
            assert "built-in model is" not in text and "The built-in model" not in text, page_file
        if converted:
            assert not SHAPE_NAMES.search(text), (page_file, SHAPE_NAMES.search(text))
            assert "8 classes" not in text and "eight shapes" not in text, page_file
            assert "sine and cosine waves" not in text, (page_file, "vitviz's own initialisation, for a checkpoint")
            assert "vitviz starts it" not in text and "When vitviz trains" not in text, page_file
        if kind == "headless":
            assert "−log(1/" not in text, page_file
            assert page_file != "pages/step_14.py" or "no class head" in text
            assert "trained only on what layer" not in text, page_file
    open_page(at, "pages/welcome.py")
    if kind == "checkpoint":
        assert "1,000 output classes" in shown_text(at)


def test_each_head_shows_its_own_range_or_one_shared_scale():
    at = open_page(fresh_app(), "pages/step_10_6.py")
    config = weights.load_default().config
    captions = [c for image in at.get("image") for c in image.captions if c.startswith("Head ")]
    assert len(captions) == config.heads
    ranges = [tuple(map(float, re.search(r"patches (\d\.\d\d)–(\d\.\d\d)", c).groups())) for c in captions]
    assert all(low <= high for low, high in ranges)
    at.toggle(key="heads_shared_scale").set_value(True).run()
    assert f"Colours run from 0 to {max(high for _, high in ranges):.2f}" in shown_text(at)


def test_the_cls_start_the_text_names_is_how_vitviz_starts_it():
    torch.manual_seed(0)
    wide = ViTConfig(image_size=(16, 16), patch_size=16, dim=1024, depth=1, heads=1, mlp_dim=8)
    assert ViT(wide).cls_token.std().item() == pytest.approx(CLS_INIT_STD, rel=0.1)


def test_the_numbering_rule_matches_the_controls_and_formulas():
    from vitviz.ui import steps
    from vitviz.ui.controls import token_label

    assert "layers, heads and the grid's rows and columns count from 1" in page.NOTATION
    assert "token 0 is CLS and patch i, read row by row, is token i + 1" in page.NOTATION
    assert token_label(1, (8, 8)) == "patch 0 (row 1, col 1)" and token_label(0, (8, 8)) == "CLS"
    assert "l = 1..L" in steps.BY_KEY["11"].formula and "m = 1..h" in steps.BY_KEY["10.6"].formula


def test_activation_curve_draws_the_curve_and_the_points():
    z = np.linspace(-4, 4, 9)
    fig = figures.activation_curve(z, np.maximum(z, 0), points=(np.array([1.0]), np.array([1.0])),
                                   points_name="<b>CLS</b>'s 1 hidden unit", title="t")
    curve, points = fig.data
    assert list(curve.x) == list(z) and list(points.y) == [1.0]
    assert "<b>" not in points.name  # plotly renders HTML in names: escaped like every label
