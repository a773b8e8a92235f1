"""The analysis functions against small hand-computed cases and known properties."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from vitviz import analysis, capture, gradients
from vitviz.model import ViT, ViTConfig


def random_attention(rng, layers=3, heads=2, tokens=5) -> np.ndarray:
    scores = rng.normal(size=(layers, heads, tokens, tokens))
    return analysis.softmax(scores)


def test_rollout_of_one_uniform_layer_by_hand():
    uniform = np.full((1, 1, 2, 2), 0.5)
    # (A + I) row-normalised: [[1.5, .5], [.5, 1.5]] / 2
    np.testing.assert_allclose(analysis.attention_rollout(uniform), [[0.75, 0.25], [0.25, 0.75]])


def test_rollout_multiplies_later_layers_on_the_left():
    first = np.array([[[1.0, 0.0], [1.0, 0.0]]])  # everyone reads token 0
    second = np.array([[[0.0, 1.0], [0.0, 1.0]]])  # everyone reads token 1
    a1 = np.array([[1.0, 0.0], [0.5, 0.5]])  # (first + I) / rows
    a2 = np.array([[0.5, 0.5], [0.0, 1.0]])
    result = analysis.attention_rollout(np.stack([first, second]))
    np.testing.assert_allclose(result, a2 @ a1)
    assert not np.allclose(result, a1 @ a2)


def test_rollout_rows_sum_to_one():
    rng = np.random.default_rng(0)
    for fusion, ratio in itertools.product(("mean", "max", "min"), (0.0, 0.5, 0.9)):
        result = analysis.attention_rollout(random_attention(rng), head_fusion=fusion, discard_ratio=ratio)
        np.testing.assert_allclose(result.sum(axis=1), 1.0, atol=1e-12)
        assert (result >= 0).all()


def test_head_fusion_by_hand():
    heads = np.array([[[0.2, 0.8], [0.6, 0.4]], [[0.6, 0.4], [0.2, 0.8]]])
    np.testing.assert_allclose(analysis.fuse_heads(heads, "mean"), [[0.4, 0.6], [0.4, 0.6]])
    np.testing.assert_allclose(analysis.fuse_heads(heads, "max"), [[0.6, 0.8], [0.6, 0.8]])
    np.testing.assert_allclose(analysis.fuse_heads(heads, "min"), [[0.2, 0.4], [0.2, 0.4]])
    with pytest.raises(ValueError):
        analysis.fuse_heads(heads, "median")


def test_discard_zeroes_the_weakest_but_never_cls_to_cls():
    # CLS→CLS is the weakest entry, then (1, 0); with a quarter discarded one entry goes, and it must be (1, 0).
    layer = np.array([[[0.01, 0.99], [0.02, 0.98]]])
    kept = layer[0].copy()
    kept[1, 0] = 0.0
    expected = (kept + np.eye(2)) / (kept + np.eye(2)).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(analysis.attention_rollout(layer[None], discard_ratio=0.5), expected)


def test_gradient_rollout_with_unit_gradients_is_the_mean_rollout():
    rng = np.random.default_rng(1)
    attention = random_attention(rng)
    np.testing.assert_allclose(
        analysis.gradient_rollout(attention, np.ones_like(attention)), analysis.attention_rollout(attention)
    )
    # Negative evidence is clipped: with all-negative gradients only the identity path is left.
    np.testing.assert_allclose(analysis.gradient_rollout(attention, -np.ones_like(attention)), np.eye(5))


def test_mean_attention_distance_by_hand():
    # A 1×2 grid of 16-pixel patches: full attention to the other patch is 16 px away.
    attention = np.zeros((1, 1, 3, 3))
    attention[0, 0, 0] = [1.0, 0.0, 0.0]
    attention[0, 0, 1] = [0.5, 0.0, 0.5]  # half to CLS, dropped and renormalised away
    attention[0, 0, 2] = [0.0, 1.0, 0.0]
    np.testing.assert_allclose(analysis.mean_attention_distance(attention, (1, 2), 16), [[16.0]])


def test_uniform_attention_gives_the_mean_pairwise_patch_distance():
    grid, patch = (3, 4), 8
    n = grid[0] * grid[1]
    uniform = np.full((2, 3, n + 1, n + 1), 1.0 / (n + 1))
    centres = [((r + 0.5) * patch, (c + 0.5) * patch) for r in range(grid[0]) for c in range(grid[1])]
    pairwise = np.mean([np.hypot(a[0] - b[0], a[1] - b[1]) for a in centres for b in centres])
    np.testing.assert_allclose(analysis.mean_attention_distance(uniform, grid, patch), pairwise)
    # Attending only to yourself is distance zero.
    own = np.broadcast_to(np.eye(n + 1), (1, 1, n + 1, n + 1))
    np.testing.assert_allclose(analysis.mean_attention_distance(own, grid, patch), 0.0, atol=1e-12)


def test_identical_position_embeddings_are_similarity_one():
    pos = np.tile(np.array([0.3, -1.2, 2.0]), (2 * 3 + 1, 1))
    similarity = analysis.position_similarity(pos, (2, 3))
    assert similarity.shape == (2, 3, 2, 3)
    np.testing.assert_allclose(similarity, 1.0)


def test_position_similarity_by_hand_and_cls_dropped():
    pos = np.array([[9.0, 9.0], [1.0, 0.0], [0.0, 1.0]])  # CLS, then a 1×2 grid
    similarity = analysis.position_similarity(pos, (1, 2))
    np.testing.assert_allclose(similarity.reshape(2, 2), [[1.0, 0.0], [0.0, 1.0]], atol=1e-12)
    np.testing.assert_allclose(analysis.position_similarity(pos[1:], (1, 2)), similarity)
    with pytest.raises(ValueError):
        analysis.position_similarity(pos, (2, 2))


def test_embedding_filter_components():
    rng = np.random.default_rng(2)
    direction = rng.normal(size=12)
    filters = rng.normal(size=(20, 1)) * direction + 1e-9 * rng.normal(size=(20, 12))  # rank one
    components, share = analysis.embedding_filter_components(filters, count=5)
    assert components.shape == (5, 12) and share.shape == (5,)
    np.testing.assert_allclose(components @ components.T, np.eye(5), atol=1e-9)
    assert share[0] > 0.999 and np.all(np.diff(share) <= 1e-12)
    np.testing.assert_allclose(abs(components[0] @ direction) / np.linalg.norm(direction), 1.0, atol=1e-6)


def test_attention_gradients_match_autograd_on_the_rollout_inputs():
    torch.manual_seed(0)
    model = ViT(ViTConfig(image_size=(16, 16), patch_size=4, dim=16, depth=2, heads=2, mlp_dim=32, labels=("a", "b"))).eval()
    pixels = torch.randn(3, 16, 16)
    maps, grads = gradients.attention_gradients(capture.Recorder(model), pixels, 1)
    torch.testing.assert_close(maps, capture.trace(model, pixels).attentions())
    # Finite-difference check of one entry: nudge one attention weight through a forward hook.
    layer, head, row, col, eps = 1, 0, 3, 5, 1e-3

    def nudge(module, args, output):
        output = output.clone()
        output[0, head, row, col] += eps
        return output

    handle = model.blocks[layer].attn.softmax.register_forward_hook(nudge)
    with torch.no_grad():
        up = model(pixels[None])[0, 1]
    handle.remove()
    with torch.no_grad():
        base = model(pixels[None])[0, 1]
    assert abs(((up - base) / eps).item() - grads[layer, head, row, col].item()) < 1e-2


def test_mean_and_halfwidth_by_hand():
    samples = np.array([[1.0, 10.0], [3.0, 10.0], [5.0, 10.0]])  # std 2 (ddof 1) and 0
    mean, halfwidth = analysis.mean_and_halfwidth(samples)
    np.testing.assert_allclose(mean, [3.0, 10.0])
    np.testing.assert_allclose(halfwidth, [1.96 * 2 / np.sqrt(3), 0.0])
    assert np.isinf(analysis.mean_and_halfwidth(samples[:1])[1]).all()  # one sample says nothing of the spread
