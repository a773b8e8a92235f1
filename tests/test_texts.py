"""The explanations' numbers are this model's: heads' ranges, the CLS start, the numbering rule, the GELU curve.
(Every page for every kind of model, and the facts it states: tests/test_family_pages.py.)"""

from __future__ import annotations

import re

import numpy as np
import pytest
import streamlit as st
import torch
from conftest import fresh_app, open_page

from vitviz import figures, weights
from vitviz.model import ViT, ViTConfig
from vitviz.ui import page
from vitviz.ui.steps.tokens import CLS_INIT_STD


def shown_text(at) -> str:
    parts = [e.value for kind in ("markdown", "caption", "info", "success", "text", "title") for e in at.get(kind)]
    parts += [caption for image in at.get("image") for caption in image.captions]
    return "\n".join(str(p) for p in parts)


@pytest.fixture(autouse=True)
def clean_caches():
    st.cache_resource.clear()
    yield


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
    assert "(token 0 is CLS) and patch i, read row by row, is token i + s" in page.NOTATION
    assert token_label(1, (8, 8)) == "patch 0 (row 1, col 1)" and token_label(0, (8, 8)) == "CLS"
    assert "l = 1..L" in steps.BY_KEY["11"].formula and "m = 1..h" in steps.BY_KEY["10.6"].formula


def test_activation_curve_draws_the_curve_and_the_points():
    z = np.linspace(-4, 4, 9)
    fig = figures.activation_curve(z, np.maximum(z, 0), points=(np.array([1.0]), np.array([1.0])),
                                   points_name="<b>CLS</b>'s 1 hidden unit", title="t")
    curve, points = fig.data
    assert list(curve.x) == list(z) and list(points.y) == [1.0]
    assert "<b>" not in points.name  # plotly renders HTML in names: escaped like every label
