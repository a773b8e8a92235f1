"""Every page's words fit the model in use: the built-in one, a studio-sized one, and a 1,000-class checkpoint."""

from __future__ import annotations

import re

import pytest
import streamlit as st
import torch
from conftest import ALL_PAGES, fresh_app, open_page, problems

from vitviz import data, studio, weights
from vitviz.model import ViT, ViTConfig

# The shape names that never occur in vitviz's own prose ("square", "star", "plus" do: "square patches").
SHAPE_NAMES = re.compile(r"\b(circle|ring|triangle|heart|crescent)s?\b", re.IGNORECASE)
assert set(SHAPE_NAMES.pattern.split("(")[1].split(")")[0].split("|")) <= set(data.CLASSES)


def shown_text(at) -> str:
    parts = [e.value for kind in ("markdown", "caption", "info", "success", "text", "title") for e in at.get(kind)]
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


@pytest.mark.parametrize("kind", ["built-in", "studio", "checkpoint"])
def test_no_page_names_a_property_the_model_does_not_have(kind):
    torch.manual_seed(0)
    at = fresh_app()
    if kind == "built-in":
        config = weights.load_default().config
    elif kind == "studio":
        config = studio.Settings().config()
        at = use_uploaded(at, ViT(config), "studio-sized.safetensors")
    else:
        config = ViTConfig(image_size=(48, 48), patch_size=16, dim=48, depth=2, heads=3, mlp_dim=96,
                           labels=tuple(f"class {i}" for i in range(1000)), extra={"source": "huggingface"})
        at = use_uploaded(at, ViT(config), "imagenet-like.safetensors")
    attention, mlp = block_parameters(config)
    for page in ALL_PAGES:
        open_page(at, page)
        assert not problems(at), (page, problems(at))
        text = shown_text(at)
        if kind != "built-in":
            assert "built-in model is" not in text and "The built-in model" not in text, page
        if kind == "checkpoint":
            assert not SHAPE_NAMES.search(text), (page, SHAPE_NAMES.search(text))
            assert "8 classes" not in text and "eight shapes" not in text, page
            assert "sine and cosine waves" not in text, (page, "vitviz's own initialisation, for a checkpoint")
        if page == "pages/step_10_11.py":
            assert f"{mlp:,} parameters per block and attention {attention:,}" in text, text
        if page == "pages/step_8.py" and kind != "checkpoint":
            assert "sine and cosine waves" in text and "still at cosine" in text
    open_page(at, "pages/welcome.py")
    if kind == "checkpoint":
        assert "1,000 output classes" in shown_text(at)
