"""Every tensor in a Trace is what the maths says it is, given its neighbours.

A real image goes through `capture.trace`; each recorded tensor is then recomputed from the
tensor before it and the model's own parameters, with plain torch functions, and compared with
tight tolerances (exactly, where the model does the very same operation).
"""

from __future__ import annotations

import math
import threading
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from vitviz import capture, data, train
from vitviz.capture import LayerTrace, Trace
from vitviz.images import denormalise, normalise, preprocess
from vitviz.model import ViT, patchify

close = partial(assert_close, rtol=1e-5, atol=1e-5)
exact = partial(assert_close, rtol=0.0, atol=0.0)

EVAL_SEED = 777_000_001  # an int seed: never a training batch ([0, step]) and not the held-out set


def sharpen(model: ViT) -> ViT:
    """Re-draw the weights at unit scale so attention is peaked and every activation is O(1).

    With the usual 0.02 init, attention is almost uniform and a mix-up of axes (attn vs attnᵀ,
    q vs k) could hide inside the tolerance; with these weights it cannot.
    """
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if parameter.ndim == 2 and "pos_embed" not in name:
                parameter.copy_(noise / math.sqrt(parameter.shape[1]) * (3.0 if "qkv" in name else 1.0))
            elif name.endswith("norm1.weight") or name.endswith("norm2.weight") or name == "norm.weight":
                parameter.copy_(1 + 0.2 * noise)
            else:
                parameter.copy_(0.3 * noise)
    return model.eval()


@pytest.fixture(params=["small", "sharp"])
def math_model(request, small_model) -> ViT:
    return small_model if request.param == "small" else sharpen(small_model)


@pytest.fixture
def traced(math_model, real_image) -> tuple[ViT, Trace]:
    return math_model, capture.trace(math_model, preprocess(real_image, math_model.config))


# --- the checks, one per step; shared by the untrained models and the shipped one ------------------


def check_shapes(model: ViT, t: Trace) -> None:
    cfg = model.config
    c, (height, width), p = cfg.channels, cfg.image_size, cfg.patch_size
    n, d, h, dh, k = cfg.num_patches, cfg.dim, cfg.heads, cfg.head_dim, cfg.num_labels
    big_n = n + 1
    assert t.pixels.shape == (c, height, width)
    assert t.patches.shape == (n, p, p, c)
    assert t.flat_patches.shape == (n, p * p * c)
    assert t.patch_embeddings.shape == (n, d)
    assert t.cls_token.shape == (d,)
    assert t.with_cls.shape == (big_n, d)
    assert t.pos_embedding.shape == (big_n, d)
    assert t.tokens.shape == (big_n, d)
    assert len(t.layers) == cfg.depth
    expected = {
        "input": (big_n, d), "norm1": (big_n, d), "qkv": (big_n, 3 * d),
        "q": (h, big_n, dh), "k": (h, big_n, dh), "v": (h, big_n, dh),
        "scores": (h, big_n, big_n), "attn": (h, big_n, big_n), "context": (h, big_n, dh),
        "concat": (big_n, d), "attn_out": (big_n, d), "resid": (big_n, d), "norm2": (big_n, d),
        "mlp_hidden": (big_n, cfg.mlp_dim), "mlp_out": (big_n, d), "output": (big_n, d),
    }  # fmt: skip
    for layer in t.layers:
        assert isinstance(layer, LayerTrace)
        for name, shape in expected.items():
            assert tuple(getattr(layer, name).shape) == shape, name
    assert t.final_tokens.shape == (big_n, d)
    assert t.cls_output.shape == (d,)
    assert t.logits.shape == (k,)
    assert t.probs.shape == (k,)
    assert t.grid == cfg.grid
    assert t.attentions().shape == (cfg.depth, h, big_n, big_n)
    tensors = [t.pixels, t.patches, t.flat_patches, t.patch_embeddings, t.with_cls, t.tokens, t.logits]
    tensors += [getattr(layer, name) for layer in t.layers for name in expected]
    for tensor in tensors:
        assert tensor.dtype == torch.float32
        assert not tensor.requires_grad
        assert torch.isfinite(tensor).all()


def check_patches(model: ViT, t: Trace) -> None:
    cfg = model.config
    p, (gh, gw) = cfg.patch_size, cfg.grid
    # flat_patches: the normalised pixels cut row-major into patches, each flattened as (p, p, c).
    for index in range(gh * gw):
        row, col = divmod(index, gw)
        block = t.pixels[:, row * p : (row + 1) * p, col * p : (col + 1) * p]  # (c, p, p)
        exact(t.flat_patches[index], block.permute(1, 2, 0).reshape(-1))
    exact(t.flat_patches, patchify(t.pixels[None], p)[0])
    # Spot-check two patches pixel by pixel, channel innermost.
    for index, (y, x, ch) in [(0, (0, 0, 0)), (gw + 2, (5, 3, 2))]:
        row, col = divmod(index, gw)
        assert t.flat_patches[index, (y * p + x) * cfg.channels + ch] == t.pixels[ch, row * p + y, col * p + x]
    # patches: the same cut in display space (denormalised), inside [0, 1].
    display = torch.from_numpy(denormalise(t.pixels, cfg))  # (H, W, c)
    for index in range(gh * gw):
        row, col = divmod(index, gw)
        exact(t.patches[index], display[row * p : (row + 1) * p, col * p : (col + 1) * p])
    assert t.patches.min() >= 0 and t.patches.max() <= 1
    mean, std = torch.tensor(cfg.mean), torch.tensor(cfg.std)
    close(t.patches, (t.flat_patches.reshape(-1, p, p, cfg.channels) * std + mean).clamp(0, 1))


def check_embedding(model: ViT, t: Trace) -> None:
    close(t.patch_embeddings, t.flat_patches @ model.patch_embed.weight.T + model.patch_embed.bias)
    exact(t.cls_token, model.cls_token.detach())
    exact(t.with_cls, torch.cat([t.cls_token[None], t.patch_embeddings]))
    exact(t.pos_embedding, model.pos_embed.detach())
    exact(t.tokens, t.with_cls + t.pos_embedding)


def check_layers(model: ViT, t: Trace) -> None:
    cfg = model.config
    h, dh, d, eps = cfg.heads, cfg.head_dim, cfg.dim, cfg.layer_norm_eps
    exact(t.layers[0].input, t.tokens)
    for i, (block, layer) in enumerate(zip(model.blocks, t.layers, strict=True)):
        if i:
            exact(layer.input, t.layers[i - 1].output)
        close(layer.norm1, F.layer_norm(layer.input, (d,), block.norm1.weight, block.norm1.bias, eps))
        close(layer.qkv, F.linear(layer.norm1, block.attn.qkv.weight, block.attn.qkv.bias))
        # qkv is [q | k | v], each part head-major.
        for head in range(h):
            exact(layer.q[head], layer.qkv[:, head * dh : (head + 1) * dh])
            exact(layer.k[head], layer.qkv[:, d + head * dh : d + (head + 1) * dh])
            exact(layer.v[head], layer.qkv[:, 2 * d + head * dh : 2 * d + (head + 1) * dh])
        close(layer.scores, layer.q @ layer.k.transpose(-2, -1) / math.sqrt(dh))
        close(layer.attn, torch.softmax(layer.scores, dim=-1))
        close(layer.attn.sum(-1), torch.ones(h, layer.attn.shape[1]), rtol=0, atol=1e-6)
        assert layer.attn.min() >= 0
        close(layer.context, layer.attn @ layer.v)
        for head in range(h):
            exact(layer.concat[:, head * dh : (head + 1) * dh], layer.context[head])
        close(layer.attn_out, F.linear(layer.concat, block.attn.proj.weight, block.attn.proj.bias))
        exact(layer.resid, layer.input + layer.attn_out)
        close(layer.norm2, F.layer_norm(layer.resid, (d,), block.norm2.weight, block.norm2.bias, eps))
        hidden = F.linear(layer.norm2, block.mlp.fc1.weight, block.mlp.fc1.bias)
        close(layer.mlp_hidden, F.gelu(hidden))
        close(layer.mlp_out, F.linear(layer.mlp_hidden, block.mlp.fc2.weight, block.mlp.fc2.bias))
        exact(layer.output, layer.resid + layer.mlp_out)


def check_output(model: ViT, t: Trace) -> None:
    cfg = model.config
    close(
        t.final_tokens,
        F.layer_norm(t.layers[-1].output, (cfg.dim,), model.norm.weight, model.norm.bias, cfg.layer_norm_eps),
    )
    exact(t.cls_output, t.final_tokens[0])
    close(t.logits, F.linear(t.cls_output, model.head.weight, model.head.bias))
    close(t.probs, torch.softmax(t.logits, dim=-1))
    close(t.probs.sum(), torch.tensor(1.0), rtol=0, atol=1e-6)
    with torch.no_grad():
        plain = model(t.pixels[None])[0]
    exact(t.logits, plain)


ALL_CHECKS = [check_shapes, check_patches, check_embedding, check_layers, check_output]


# --- the tests --------------------------------------------------------------------------------------


def test_shapes_follow_the_trace_table(traced):
    check_shapes(*traced)


def test_patches_are_the_images_pixels(traced):
    check_patches(*traced)


def test_embedding_cls_and_positions(traced):
    check_embedding(*traced)


def test_every_layer_tensor_follows_from_its_neighbours(traced):
    check_layers(*traced)


def test_final_norm_head_and_plain_forward(traced):
    check_output(*traced)


def test_sharpened_model_really_has_peaked_attention(small_model, real_image):
    t = capture.trace(sharpen(small_model), preprocess(real_image, small_model.config))
    assert t.attentions().amax(-1).mean() > 0.3  # uniform over 65 tokens would be 0.015


def test_default_model_trace_obeys_the_maths(default_model, real_image_and_label):
    image, label = real_image_and_label
    t = capture.trace(default_model, preprocess(image, default_model.config))
    for check in ALL_CHECKS:
        check(default_model, t)
    assert default_model.config.labels == data.CLASSES


def test_default_model_accuracy_on_unseen_data(default_model):
    assert EVAL_SEED != train.HELD_OUT_SEED
    images, labels = data.generate(2000, seed=EVAL_SEED)
    _, accuracy = train.evaluate(default_model, normalise(images, default_model.config), torch.from_numpy(labels))
    assert accuracy >= 0.97, f"default model accuracy {accuracy:.4f} on 2000 unseen images"


def test_trace_of_photo_crop(small_model, photo_image):
    """A non-square photo goes through the crop and the trace like any other image."""
    t = capture.trace(small_model, preprocess(photo_image, small_model.config))
    check_shapes(small_model, t)
    check_patches(small_model, t)


def test_trace_rejects_a_batch(small_model):
    with pytest.raises(ValueError, match="one image"):
        capture.trace(small_model, torch.zeros(2, 3, 64, 64))


def test_a_recorder_leaves_no_state_behind_and_ejects_cleanly(small_model, real_image):
    model = sharpen(small_model)
    pixels = preprocess(real_image, model.config)
    recorder = capture.Recorder(model)
    t = recorder.trace(pixels)
    kept = {name: getattr(t.layers[-1], name).clone() for name in ("attn", "output")}
    logits = t.logits.clone()
    with torch.no_grad():
        model(torch.randn(3, *pixels.shape))  # hooks are attached but nobody is recording
    exact(t.logits, logits)
    for name, value in kept.items():
        exact(getattr(t.layers[-1], name), value)
    # A second trace of the same image is identical: nothing accumulated between calls.
    again = recorder.trace(pixels)
    exact(again.logits, t.logits)
    exact(again.attentions(), t.attentions())
    recorder.eject()
    assert all(not module._forward_hooks for module in model.modules())
    exact(capture.trace(model, pixels).logits, t.logits)  # the one-off form attaches and ejects its own
    assert all(not module._forward_hooks for module in model.modules())


def test_a_trace_is_frozen_and_outlives_changes_to_its_model(small_model, real_image):
    import dataclasses

    model = sharpen(small_model)
    t = capture.trace(model, preprocess(real_image, model.config))
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.logits = torch.zeros(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.layers[0].attn = torch.zeros(1)
    before = {name: getattr(t, name).clone() for name in ("cls_token", "pos_embedding")}
    with torch.no_grad():  # the model goes on training after the trace was taken
        for parameter in model.parameters():
            parameter.add_(1.0)
    for name, value in before.items():
        exact(getattr(t, name), value)
    exact(t.tokens, t.with_cls + t.pos_embedding)


def test_concurrent_traces_never_mix(small_model):
    model = sharpen(small_model)
    images, _ = data.generate(10, seed=31_337)
    pixels = normalise(images, model.config)
    tracers, rounds = 8, 5
    recorder = capture.Recorder(model)  # one for every thread, as the app shares one per model
    references = [recorder.trace(pixels[i]) for i in range(tracers)]
    for i in range(1, tracers):  # every thread's image gives a visibly different trace
        assert not torch.allclose(references[i].layers[0].attn, references[0].layers[0].attn)
    with torch.no_grad():
        plain_batch = pixels[tracers:]
        plain_reference = model(plain_batch)

    barrier = threading.Barrier(tracers + 2)
    results: list[list[Trace]] = [[] for _ in range(tracers)]
    plain_results: list[torch.Tensor] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def tracer(i: int) -> None:
        try:
            barrier.wait()
            for _ in range(rounds):
                results[i].append(recorder.trace(pixels[i]))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def plain() -> None:
        try:
            barrier.wait()
            with torch.no_grad():
                while not done.is_set():
                    plain_results.append(model(plain_batch))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=tracer, args=(i,)) for i in range(tracers)]
    threads += [threading.Thread(target=plain) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads[:tracers]:
        thread.join(timeout=120)
    done.set()
    for thread in threads[tracers:]:
        thread.join(timeout=120)
    assert not errors, errors
    assert all(not thread.is_alive() for thread in threads)
    assert plain_results
    for output in plain_results:
        exact(output, plain_reference)
    for i in range(tracers):
        assert len(results[i]) == rounds
        for t in results[i]:
            exact(t.pixels, references[i].pixels)
            exact(t.logits, references[i].logits)
            for layer, reference in zip(t.layers, references[i].layers, strict=True):
                exact(layer.attn, reference.attn)
                exact(layer.input, reference.input)
