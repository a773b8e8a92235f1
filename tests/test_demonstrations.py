"""Three checks the pages let a reader make: step 5's E is a convolution with kernel = stride = p; step 8's shuffled
patches change nothing without E_pos and change CLS with it; step 10.3's temperature τ moves every head's attention
entropy between 0 (one-hot rows) and log N (even rows)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import streamlit as st
import torch
from conftest import fresh_app, open_page, problems, use_uploaded
from test_links import linked_app, written_query

from vitviz import analysis, capture, convert, permutation
from vitviz.model import ViT, ViTConfig, conv_kernel, embed_by_convolution, patchify
from vitviz.ui import controls, story_file

DEIT = ViTConfig(image_size=(48, 64), patch_size=8, dim=32, depth=2, heads=2, mlp_dim=64, labels=("a", "b", "c"),
                 special_tokens=("cls", "distillation"), classifier="cls_distillation_mean")
REGISTERS = ViTConfig(image_size=56, patch_size=14, dim=48, depth=2, heads=3, mlp_dim=96, labels=("a", "b"),
                      special_tokens=("cls", "register", "register", "register", "register"), layer_scale=True,
                      classifier="cls_patch_mean")
HEADLESS_REGISTERS = ViTConfig(**{**REGISTERS.to_dict(), "labels": ()})


def random_model(config: ViTConfig, seed: int = 0) -> ViT:
    """`config` with every weight random, as loud as a trained model's (LayerScale, the special tokens too)."""
    torch.manual_seed(seed)
    model = ViT(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    return model


@pytest.fixture(autouse=True)
def clean_caches():
    st.cache_resource.clear()
    yield


# --- step 5: E is a convolution --------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [DEIT, REGISTERS], ids=["8-pixel patches", "14-pixel patches"])
def test_the_patch_embedding_is_a_convolution_with_kernel_and_stride_p(config):
    model = random_model(config)
    pixels = torch.randn(2, 3, *config.image_size)
    weight, bias = model.patch_embed.weight.detach(), model.patch_embed.bias.detach()
    with torch.no_grad():
        linear = model.patch_embed(patchify(pixels, config.patch_size))
        conv = embed_by_convolution(pixels, weight, bias, config.patch_size)
    assert conv.shape == (2, config.num_patches, config.dim)
    torch.testing.assert_close(conv, linear, atol=1e-5, rtol=1e-5)
    kernel = conv_kernel(weight, config.patch_size, config.channels)
    assert kernel.shape == (config.dim, config.channels, config.patch_size, config.patch_size)
    assert torch.equal(convert._patch_weight(kernel), weight)  # the layout checkpoints store, and back


def test_the_convolution_is_the_one_transformers_runs(tmp_path):
    pytest.importorskip("transformers")
    from helpers.checkpoints import hf_vit

    from vitviz import weights

    hf = hf_vit(dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64), seed=3)
    hf.save_pretrained(tmp_path / "vit")
    model = weights.load(tmp_path / "vit")
    pixels = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        theirs = hf.vit.embeddings.patch_embeddings(pixels)  # their Conv2d, on the checkpoint's own kernel
        ours = embed_by_convolution(pixels, model.patch_embed.weight, model.patch_embed.bias, 8)
    assert isinstance(hf.vit.embeddings.patch_embeddings.projection, torch.nn.Conv2d)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


# --- step 8: the shuffled patches ------------------------------------------------------------------------------


def test_a_patch_order_is_random_repeatable_and_never_the_identity():
    assert np.array_equal(permutation.patch_order(64, 7), permutation.patch_order(64, 7))
    assert not np.array_equal(permutation.patch_order(64, 7), permutation.patch_order(64, 8))
    for seed in range(30):
        order = permutation.patch_order(2, seed)
        assert order.tolist() == [1, 0]
        assert sorted(permutation.patch_order(5, seed).tolist()) == list(range(5))


def test_shuffled_pixels_are_the_patches_in_the_new_order():
    pixels = torch.randn(3, 24, 40)
    order = permutation.patch_order(15, 1)
    shuffled = permutation.shuffle_pixels(pixels, order, 8)
    assert torch.equal(patchify(shuffled[None], 8)[0], patchify(pixels[None], 8)[0][torch.from_numpy(order)])
    image = np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    moved = analysis.shuffle_patches(image, order, 8)  # the picture the page shows, moved the same way
    assert np.array_equal(moved[8:16, 16:24], image[(order[7] // 5) * 8 : (order[7] // 5 + 1) * 8,
                                                    (order[7] % 5) * 8 : (order[7] % 5 + 1) * 8])


def check_shuffle(model: ViT, pixels: torch.Tensor, seed: int = 0) -> permutation.ShuffleTest:
    """The shuffle test of `model` on `pixels`, checked against the model's own forward passes."""
    config = model.config
    order = permutation.patch_order(config.num_patches, seed)
    test = permutation.shuffle_test(model, pixels, order)
    given = permutation.shuffle_test(model, pixels, order, capture.trace(model, pixels).final_tokens)  # as the page
    for outcome, same in ((test.without_positions, given.without_positions), (test.with_positions, given.with_positions)):
        assert outcome.patch_difference == pytest.approx(same.patch_difference, rel=1e-3, abs=1e-5)
        assert np.allclose(outcome.special_changes, same.special_changes, rtol=1e-3, atol=1e-5)
    s, scale = config.num_special, test.scale
    without, moved = test.without_positions, test.with_positions
    # Without positions: the same outputs, moved with their patches; every special token unchanged.
    assert without.patch_difference < 1e-5 * scale, without
    assert without.special_changes.shape == (s,) and without.special_changes.max() < 1e-5 * scale, without
    # With positions, which stay with the slots: CLS and the patch outputs change.
    assert moved.special_changes[0] > 1e-3 * scale and moved.patch_difference > 1e-3 * scale, moved
    # The same numbers from the model's own forward: the trace of the shuffled image, patches followed back.
    shuffled = capture.trace(model, permutation.shuffle_pixels(pixels, order, config.patch_size))
    original = capture.trace(model, pixels)
    followed = original.final_tokens[s:][torch.from_numpy(order)]
    assert moved.patch_difference == pytest.approx(float((shuffled.final_tokens[s:] - followed).abs().max()), rel=1e-3)
    assert np.allclose(moved.special_changes, (shuffled.final_tokens[:s] - original.final_tokens[:s]).abs().amax(-1),
                       rtol=1e-3, atol=1e-5)
    # And "without E_pos" is the model with its position embeddings set to zero.
    bare = copy.deepcopy(model)
    with torch.no_grad():
        bare.pos_embed.zero_()
    bare_original = capture.trace(bare, pixels)
    bare_shuffled = capture.trace(bare, permutation.shuffle_pixels(pixels, order, config.patch_size))
    assert float((bare_shuffled.final_tokens[:s] - bare_original.final_tokens[:s]).abs().max()) < 1e-5 * scale
    if model.head is None:
        assert without.probs is None and moved.probs is None
    else:
        assert np.allclose(without.probs[0], without.probs[1], atol=1e-5)  # the prediction too, whatever the head reads
        assert np.allclose(without.probs, [bare_original.probs.numpy(), bare_shuffled.probs.numpy()], atol=1e-5)
        assert np.allclose(moved.probs, [original.probs.numpy(), shuffled.probs.numpy()], atol=1e-5)
    return test


def test_the_built_in_model_cannot_tell_shuffled_patches_apart_without_positions(default_model, real_image):
    from vitviz.images import preprocess

    test = check_shuffle(default_model, preprocess(real_image, default_model.config))
    assert test.with_positions.special_changes[0] > 0.1  # trained positions matter to CLS


@pytest.mark.parametrize("config", [DEIT, REGISTERS, HEADLESS_REGISTERS], ids=["DeiT", "registers", "headless"])
def test_every_special_token_stays_without_positions_and_cls_moves_with_them(config):
    model = random_model(config, seed=1)
    check_shuffle(model, torch.randn(3, *config.image_size), seed=4)


def test_models_converted_from_transformers_behave_the_same(tmp_path):
    pytest.importorskip("transformers")
    from helpers.checkpoints import hf_deit_distilled, hf_dinov2

    from vitviz import weights

    hf_deit_distilled(dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, num_labels=3), seed=1).save_pretrained(tmp_path / "deit")
    hf_dinov2(dict(image_size=56, patch_size=14, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                   mlp_ratio=2, num_labels=3), seed=2, registers=True).save_pretrained(tmp_path / "dinov2")
    for name in ("deit", "dinov2"):
        model = weights.load(tmp_path / name).eval()
        check_shuffle(model, torch.randn(3, *model.config.image_size), seed=2)


def test_a_wrong_order_is_refused():
    model = random_model(DEIT)
    with pytest.raises(ValueError):
        permutation.shuffle_test(model, torch.randn(3, 48, 64), np.zeros(DEIT.num_patches, dtype=int))


# --- step 10.3: the temperature ----------------------------------------------------------------------------------


def entropies_from_q_and_k(layer: capture.LayerTrace, tau: float) -> np.ndarray:
    """Each head's mean row entropy of softmax(q kᵀ / (τ √d_h)), from the recorded q and k: −Σ p log p, as defined."""
    q, k = layer.q.double(), layer.k.double()
    weights = torch.softmax(q @ k.transpose(-1, -2) / (tau * q.shape[-1] ** 0.5), dim=-1)
    return (-torch.special.xlogy(weights, weights).sum(dim=-1)).mean(dim=-1).numpy()


@pytest.mark.parametrize("tau", [*controls.TEMPERATURES, 1 / 24**0.5])
def test_attention_entropy_matches_a_direct_computation(default_model, real_image, tau):
    from vitviz.images import preprocess

    trace = capture.trace(default_model, preprocess(real_image, default_model.config))
    for layer in trace.layers:
        ours = analysis.attention_entropy(layer.scores.numpy(), tau)
        assert ours.shape == (default_model.config.heads,)
        np.testing.assert_allclose(ours, entropies_from_q_and_k(layer, tau), rtol=1e-4, atol=1e-6)


def test_attention_entropy_goes_from_one_hot_to_uniform():
    scores = np.random.default_rng(0).normal(size=(3, 20, 20)) * 4
    assert np.all(analysis.attention_entropy(scores, 1e-6) < 1e-9)  # τ → 0: each row all on its largest score
    np.testing.assert_allclose(analysis.attention_entropy(scores, 1e9), np.log(20), atol=1e-7)  # τ → ∞: even rows
    taus = np.geomspace(1e-3, 1e3, 25)
    curve = np.stack([analysis.attention_entropy(scores, tau) for tau in taus])
    assert np.all(np.diff(curve, axis=0) >= -1e-12)  # never less spread as τ grows
    equal = np.zeros((2, 5, 5))
    np.testing.assert_allclose(analysis.attention_entropy(equal, 0.01), np.log(5))  # ties stay even at any τ
    with pytest.raises(ValueError):
        analysis.attention_entropy(scores, 0.0)


# --- the pages ----------------------------------------------------------------------------------------------------


def shown(at) -> str:
    return "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption])


def test_step_5_checks_e_as_a_convolution_on_the_image():
    at = open_page(fresh_app(), "pages/step_5.py")
    assert not problems(at)
    assert "**E is a convolution.** Checkpoints store it as 96 kernels of c×p×p = 3×8×8" in shown(at)
    assert "conv2d(pixels, E as (96, 3, 8, 8), stride 8) and x E + b" in shown(at)


@pytest.mark.parametrize("config", [None, DEIT, REGISTERS, HEADLESS_REGISTERS],
                         ids=["built-in", "DeiT", "registers", "headless"])
def test_step_8_shows_the_shuffle_for_every_kind_of_model(config):
    at = fresh_app()
    if config is not None:
        use_uploaded(at, random_model(config, seed=2), "model.safetensors")
    open_page(at, "pages/step_8.py")
    assert not problems(at), problems(at)
    text = shown(at)
    assert "| Patch outputs, each followed to its new slot: largest difference |" in text
    assert "| Output of CLS: largest change |" in text
    assert ("| Output of the distillation token: largest change |" in text) == (config is DEIT)
    assert ("| Outputs of the 4 registers: largest change |" in text) == (config in (REGISTERS, HEADLESS_REGISTERS))
    assert ("| Prediction: original → shuffled |" in text) == (config is not HEADLESS_REGISTERS)
    assert "Without E_pos the model cannot tell the two orders apart" in text
    assert "With E_pos each patch arrives at another position, and CLS's output changes by up to" in text
    # "Shuffle again" draws another order: the table's numbers change.
    table = next(m.value for m in at.markdown if m.value.startswith("|  | without"))
    at.button(key="shuffle_again").click().run()
    assert at.session_state["keep_shuffle"] == 1
    assert next(m.value for m in at.markdown if m.value.startswith("|  | without")) != table


def first_sample_trace(model: ViT) -> capture.Trace:
    """The trace of the image the pages open with, through `model`."""
    from vitviz.images import load_image, prepare
    from vitviz.ui import state

    image = load_image(state.sample_bytes(state.sample_names()[0]))
    return capture.trace(model, prepare(image, model.config).pixels)


def test_step_10_3_shows_each_heads_entropy_at_the_chosen_temperature(default_model):
    at = open_page(fresh_app(), "pages/step_10_3.py")
    assert not problems(at)
    assert "At τ = 1, the rows of head 1 have an entropy of" in shown(at)
    at.select_slider(key="temperature").set_value(0.2).run()
    assert not problems(at)
    scores = first_sample_trace(default_model).layers[0].scores.numpy()
    entropy, trained = analysis.attention_entropy(scores, 0.2)[0], analysis.attention_entropy(scores, 1.0)[0]
    assert (f"At τ = 0.2, the rows of head 1 have an entropy of {entropy:.2f} nats on average "
            f"(at τ = 1: {trained:.2f})") in shown(at)
    bare = analysis.attention_entropy(scores, 1 / 24**0.5).mean()
    assert f"that is τ = 1/√24 = 0.204, this layer's heads would average {bare:.2f} nats" in shown(at)
    open_page(at, "pages/step_10_2.py")
    open_page(at, "pages/step_10_3.py")  # kept across pages
    assert at.select_slider(key="temperature").value == 0.2


def test_the_story_file_states_the_kept_temperature_and_draws_the_kept_shuffle(default_model):
    from test_trace_file import traced_photo

    from vitviz.ui.controls import View

    traced = traced_photo(default_model, "default")
    kept = {"keep_temperature": 5.0, "keep_shuffle": 2}
    page = story_file.story_html(traced, View(), model_name="m", kept=kept).decode()
    page = page.replace("&#x27;", "'")
    assert "Temperature τ: <strong>5</strong>" in page and "At τ = 5, the rows of head 1" in page
    order = permutation.patch_order(default_model.config.num_patches, 2)
    test = permutation.shuffle_test(default_model, traced.trace.pixels, order)
    assert f"<td>{test.with_positions.special_changes[0]:.2g}</td>" in page  # the kept order's numbers
    assert "Shuffle again" not in page and "E is a convolution." in page


def test_a_link_keeps_the_temperature_and_the_shuffle():
    at = linked_app({"temperature": "0.5", "shuffle": "3"})
    assert not problems(at) and not at.toast
    assert at.session_state["keep_temperature"] == 0.5 and at.session_state["keep_shuffle"] == 3
    assert written_query(at)["temperature"] == "0.5" and written_query(at)["shuffle"] == "3"
    at = linked_app({"temperature": "0.3", "shuffle": "9" * 40})
    assert not problems(at)
    assert "keep_temperature" not in at.session_state and "keep_shuffle" not in at.session_state
    toast = " ".join(str(t.value) for t in at.toast).replace("\\", "")  # shown as plain text, escaped
    assert "temperature=0.3 (the temperature is one of 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20)" in toast
    assert "shuffle=" in toast
    assert "temperature" not in written_query(linked_app({"temperature": "1"}))


def test_shuffling_again_and_again_keeps_every_trace_in_the_cache():
    from vitviz.ui import state

    at = open_page(fresh_app(), "pages/step_5.py")
    open_page(at, "pages/step_8.py")
    kept = list(state.trace_cache()._values)
    for _ in range(3):
        at.button(key="shuffle_again").click().run()
    assert not problems(at) and at.session_state["keep_shuffle"] == 3
    assert list(state.trace_cache()._values) == kept  # the trace cache's entries are counted: traces only
