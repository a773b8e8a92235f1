"""Special tokens in the analyses and figures, and the Token norms view: high-norm patches are found by a rule
set from their layer's own norms, and a patch made loud on purpose is the one marked."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from vitviz import analysis, capture, figures, weights

LOUD = 5  # patch (row 2, col 2) of a 4×4 grid


def test_patch_map_takes_the_last_n_tokens_whatever_comes_before():
    values = np.arange(2 * 11).reshape(2, 11)  # 5 special tokens, then a 2×3 grid
    np.testing.assert_array_equal(analysis.patch_map(values, (2, 3)), values[:, 5:].reshape(2, 2, 3))


def test_the_paper_analyses_leave_the_special_tokens_out():
    rng = np.random.default_rng(0)
    grid, n = (3, 4), 12
    patches = rng.random((2, 3, n, n))
    with_registers = rng.random((2, 3, 5 + n, 5 + n))  # CLS and 4 registers in front, the same patch block
    with_registers[..., 5:, 5:] = patches
    with_cls = rng.random((2, 3, 1 + n, 1 + n))
    with_cls[..., 1:, 1:] = patches
    np.testing.assert_allclose(analysis.mean_attention_distance(with_registers, grid, 16),
                               analysis.mean_attention_distance(with_cls, grid, 16))
    positions = rng.normal(size=(n, 8))
    registers = np.vstack([rng.normal(size=(1, 8)), np.zeros((4, 8)), positions])
    np.testing.assert_allclose(analysis.position_similarity(registers, grid), analysis.position_similarity(positions, grid))


def test_the_high_norm_rule_follows_the_layers_own_distribution():
    rng = np.random.default_rng(1)
    norms = 10 + rng.normal(scale=0.5, size=200)
    assert analysis.high_norm_patches(norms).size == 0  # a bell of norms has no outliers
    loud = norms.copy()
    loud[[7, 70, 150]] = [60.0, 90.0, 45.0]
    np.testing.assert_array_equal(analysis.high_norm_patches(loud), [70, 7, 150])  # largest first
    # The same tokens at a hundredth of the scale: the rule has no absolute number in it.
    np.testing.assert_array_equal(analysis.high_norm_patches(loud / 100), [70, 7, 150])
    # Nearly equal norms: a slightly longer token is not "high" (the factor of three), though it is many MADs away.
    flat = np.full(50, 10.0)
    flat[3] = 10.5
    assert analysis.high_norm_patches(flat).size == 0
    assert analysis.high_norm_threshold(flat) == pytest.approx(30.0)


def test_attention_share_sums_a_query_rows_weights_over_keys_and_averages_the_heads():
    attentions = np.zeros((2, 2, 4, 4))
    attentions[0, 0, 0] = [0.1, 0.2, 0.3, 0.4]
    attentions[0, 1, 0] = [0.4, 0.3, 0.2, 0.1]
    attentions[1, :, 0] = [0.25, 0.25, 0.25, 0.25]
    np.testing.assert_allclose(analysis.attention_share(attentions, 0, np.array([2, 3])), [0.5, 0.5])
    np.testing.assert_allclose(analysis.attention_share(attentions, 0, np.array([0])), [0.25, 0.25])


def test_a_token_heatmap_keeps_each_special_tokens_row_and_averages_only_the_patches():
    matrix = np.random.default_rng(2).normal(size=(5 + 400, 12))
    specials = ("CLS", "register 1", "register 2", "register 3", "register 4")
    fig = figures.heatmap(matrix, special_rows=specials)
    trace = fig.data[0]
    assert list(trace.y[:5]) == list(specials) and trace.y[5] == "patches 0–2"
    assert len(trace.y) <= figures.MAX_CELLS
    np.testing.assert_array_equal(np.asarray(trace.z)[:5], matrix[:5])
    np.testing.assert_allclose(np.asarray(trace.z)[5], matrix[5:8].mean(axis=0))
    starts, names = figures.token_groups(5 + 10, specials)
    assert list(starts) == list(range(15)) and names[5:7] == ["patch 0", "patch 1"]


@pytest.fixture(scope="module")
def loud_model(tmp_path_factory):
    """A DINOv2 with 4 registers at 56 pixels (a 4×4 grid of 14-pixel patches), random weights, whose patch LOUD
    has a long vector added to its position embedding: its token is made high-norm in every layer."""
    pytest.importorskip("transformers")
    from helpers.checkpoints import hf_dinov2

    folder = tmp_path_factory.mktemp("models") / "loud-dinov2"
    hf_dinov2(dict(image_size=56, patch_size=14, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                   mlp_ratio=2), seed=0, registers=True, loud_patches=(LOUD,)).save_pretrained(folder)
    return folder


def test_the_loud_patch_is_the_one_marked_in_every_layer(loud_model):
    model = weights.load(loud_model)
    for pixels in (torch.randn(3, 56, 56), torch.zeros(3, 56, 56)):
        trace = capture.trace(model, pixels)
        norms = analysis.token_norms(np.stack([layer.output.numpy() for layer in trace.layers]))
        assert [analysis.high_norm_patches(norms[layer, 5:]).tolist() for layer in range(3)] == [[LOUD]] * 3


def test_the_token_norms_tab_marks_the_loud_patch(loud_model, monkeypatch):
    import streamlit as st
    from conftest import fresh_app, open_page, problems, upload
    from PIL import Image

    from vitviz import limits

    monkeypatch.setattr(limits, "SECRETS_FILES", ())
    monkeypatch.setenv("VITVIZ_MODELS_DIR", str(loud_model.parent))
    st.cache_resource.clear()
    at = fresh_app()
    open_page(at, "pages/model.py")
    at.radio(key="model_source").set_value("Local path").run()
    at.text_input(key="model_path").set_value(loud_model.name).run()
    at.button(key="load_path").click().run()
    assert not at.error, [e.value for e in at.error]
    buffer = io.BytesIO()
    Image.new("RGB", (56, 56), (120, 130, 140)).save(buffer, format="PNG")  # every patch alike but for its position
    at.session_state["keep_explorer_tab"] = "Token norms"  # only the open tab is drawn
    open_page(at, "pages/explorer.py")
    upload(at, "grey.png", buffer.getvalue())
    assert not problems(at), problems(at)
    shown = " ".join(m.value for m in at.markdown)
    assert "After layer 3, 1 of the 16 patches is high-norm: patch 5 (row 2, col 2)." in shown, shown
    assert "Layers with high-norm patches for this image: 1, 2, 3." in shown
    assert "This model has 4 registers" in shown
    captions = [caption for image in at.get("image") for caption in image.captions]
    assert "Each patch's norm after layer 3; the high-norm patch outlined" in captions, captions
    at.session_state["keep_norms_layer"] = 0
    at.run()
    assert "After layer 1, 1 of the 16 patches is high-norm: patch 5" in " ".join(m.value for m in at.markdown)
