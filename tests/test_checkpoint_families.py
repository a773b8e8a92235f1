"""Distilled DeiT and DINOv2 (with registers, with a classifier): random-weight transformers models load into
vitviz's one ViT and compute the same thing, at the trained size and at another."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers.checkpoints import hf_deit_distilled, hf_dinov2, randomised
from test_checkpoints import CONFIGS

from vitviz import analysis, capture, weights
from vitviz.weights import CheckpointError

transformers = pytest.importorskip("transformers")

DEIT = CONFIGS[:2]  # DeiT takes ViT's configuration fields
DINOV2 = [
    dict(image_size=28, patch_size=7, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2),
    dict(image_size=42, patch_size=14, hidden_size=48, num_hidden_layers=3, num_attention_heads=3, mlp_ratio=4,
         qkv_bias=False, layerscale_value=0.1),
    dict(image_size=32, patch_size=8, hidden_size=24, num_hidden_layers=1, num_attention_heads=4, mlp_ratio=3,
         hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-5),
]
OTHER_SIZES = {28: (42, 56), 42: (28, 70), 32: (48, 24)}  # larger, smaller, non-square
REGISTERS = [dict(config, num_register_tokens=count) for config, count in zip(DINOV2, (4, 1, 2), strict=True)]


def reference(model, pixels: torch.Tensor, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' logits (or last hidden state, headless) and every layer's attention, eager."""
    with torch.no_grad():
        out = model(pixels[None], output_attentions=True, **kwargs)
    result = out.logits[0] if hasattr(out, "logits") else out.last_hidden_state[0]
    return result, torch.stack([a[0] for a in out.attentions])


def assert_same(trace: capture.Trace, expected: torch.Tensor, attentions: torch.Tensor) -> None:
    ours = trace.logits if trace.logits is not None else trace.last_hidden_state
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(trace.attentions(), attentions, atol=1e-5, rtol=0)


def check_both_sizes(hf, folder, size: int, **kwargs) -> None:
    hf.save_pretrained(folder)
    for shape in ((size, size), OTHER_SIZES.get(size, (size + hf.config.patch_size, 2 * size))):
        ours = weights.load(folder, image_size=shape)
        pixels = torch.randn(3, *shape)
        other = shape != (size, size)
        assert_same(capture.trace(ours, pixels), *reference(hf, pixels, **(kwargs if other else {})))


@pytest.mark.parametrize("values", DEIT)
def test_distilled_deit_matches_transformers(values, tmp_path):
    hf = hf_deit_distilled(values, seed=1)
    check_both_sizes(hf, tmp_path, values["image_size"], interpolate_pos_encoding=True)
    ours = weights.load(tmp_path)
    assert ours.config.special_labels == ("CLS", "distillation")
    assert ours.config.classifier == "cls_distillation_mean" and ours.config.labels[0] == "thing 0"


@pytest.mark.parametrize("values", DINOV2)
def test_dinov2_matches_transformers(values, tmp_path):
    check_both_sizes(hf_dinov2(values, seed=2), tmp_path, values["image_size"])
    config = weights.load(tmp_path).config
    assert config.layer_scale and config.special_labels == ("CLS",) and config.labels == ()


@pytest.mark.parametrize("values", REGISTERS)
def test_dinov2_with_registers_matches_transformers(values, tmp_path):
    check_both_sizes(hf_dinov2(values, seed=3, registers=True), tmp_path, values["image_size"])
    model = weights.load(tmp_path)
    count = values["num_register_tokens"]
    assert model.config.num_special == 1 + count and model.config.position_antialias
    assert torch.equal(model.pos_embed[1 : 1 + count], torch.zeros(count, values["hidden_size"]))  # no positions


@pytest.mark.parametrize(("values", "registers"), [(DINOV2[0], False), (DINOV2[1], False), (REGISTERS[2], True)])
def test_the_dinov2_classifiers_match_transformers(values, registers, tmp_path):
    # Their head reads [y_CLS; the mean of the patch tokens], registers left out.
    hf = hf_dinov2({**values, "num_labels": 6}, seed=4, registers=registers)
    check_both_sizes(hf, tmp_path, values["image_size"])
    assert weights.load(tmp_path).config.classifier == "cls_patch_mean"


def test_a_dinov2_runs_at_the_size_its_preprocessor_crops_to(tmp_path):
    # The Hub's DINOv2s are trained at 518 pixels and cropped to 224 by their preprocessor: 16×16 patches of 14,
    # the position embeddings resampled from 37×37 exactly as transformers resamples them.
    values = dict(image_size=518, patch_size=14, hidden_size=24, num_hidden_layers=1, num_attention_heads=2,
                  mlp_ratio=2, num_register_tokens=4)
    hf = hf_dinov2(values, seed=5, registers=True)
    hf.save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"crop_size": {"height": 224, "width": 224},
                                                                   "image_mean": [0.485, 0.456, 0.406],
                                                                   "image_std": [0.229, 0.224, 0.225]}))
    ours = weights.load(tmp_path)
    assert ours.config.image_size == (224, 224) and ours.config.grid == (16, 16)
    pixels = torch.randn(3, 224, 224)
    assert_same(capture.trace(ours, pixels), *reference(hf, pixels))


def test_the_in_memory_key_names_of_transformers_5_load_too(tmp_path):
    # save_pretrained writes the older names ("attention.attention.query"); a state dict saved by hand has the new.
    hf = hf_dinov2({**DINOV2[0], "num_labels": 3}, seed=6, registers=True)
    hf.save_pretrained(tmp_path)
    assert any("attention.q_proj" in key for key in hf.state_dict())
    (tmp_path / "model.safetensors").unlink()
    torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    pixels = torch.randn(3, 28, 28)
    assert_same(capture.trace(weights.load(tmp_path), pixels), *reference(hf, pixels))


def test_a_dinov2_with_a_swiglu_mlp_is_refused_in_one_sentence(tmp_path):
    config = transformers.Dinov2Config(**DINOV2[0], use_swiglu_ffn=True)
    randomised(transformers.Dinov2Model(config), 7).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError) as error:
        weights.load(tmp_path)
    message = str(error.value)
    assert "SwiGLU" in message and message.endswith(".") and message.count(". ") == 0 and "\n" not in message


def test_special_tokens_and_layer_scale_survive_vitvizs_own_format(tmp_path):
    hf = hf_dinov2({**REGISTERS[0], "num_labels": 2}, seed=8, registers=True)
    hf.save_pretrained(tmp_path)
    model = weights.load(tmp_path, image_size=(42, 56))
    weights.save(model, tmp_path / "own.safetensors")
    again = weights.load(tmp_path / "own.safetensors")
    assert again.config == model.config and again.config.extra["model_type"] == "dinov2_with_registers"
    pixels = torch.randn(1, 3, 42, 56)
    with torch.no_grad():
        torch.testing.assert_close(again(pixels), model(pixels), atol=0, rtol=0)
    copy = weights.copy_model(model)  # the studio's and one_step's independent copy
    with torch.no_grad():
        torch.testing.assert_close(copy(pixels), model(pixels), atol=0, rtol=0)


def test_the_trace_of_a_layer_scale_model_records_what_each_branch_adds(tmp_path):
    hf_dinov2(REGISTERS[0], seed=9, registers=True).save_pretrained(tmp_path)
    model = weights.load(tmp_path)
    recorder = capture.Recorder(model)
    assert len(recorder._handles) == 3 + 8 * model.config.depth  # two LayerScale taps more per block
    trace = recorder.trace(torch.randn(3, 28, 28))
    for block, layer in zip(model.blocks, trace.layers, strict=True):
        torch.testing.assert_close(layer.attn_update, layer.attn_out * block.ls1.gamma.detach(), atol=0, rtol=0)
        torch.testing.assert_close(layer.mlp_update, layer.mlp_out * block.ls2.gamma.detach(), atol=0, rtol=0)
        torch.testing.assert_close(layer.resid, layer.input + layer.attn_update, atol=1e-6, rtol=0)
        torch.testing.assert_close(layer.output, layer.resid + layer.mlp_update, atol=1e-6, rtol=0)
    assert trace.special_labels == ("CLS", "register 1", "register 2", "register 3", "register 4")
    assert trace.last_hidden_state is trace.final_tokens and trace.final_tokens.shape == (5 + 16, 32)


def test_a_vit_trace_has_no_extra_hooks_and_its_updates_are_the_branches_outputs(small_model):
    recorder = capture.Recorder(small_model)
    assert len(recorder._handles) == 3 + 6 * small_model.config.depth
    layer = recorder.trace(torch.randn(3, 64, 64)).layers[0]
    assert layer.attn_update is layer.attn_out and layer.mlp_update is layer.mlp_out


@pytest.mark.parametrize("registers", [False, True])
def test_every_layers_prediction_is_read_through_the_models_own_head(registers, tmp_path):
    # Step 11 reads each layer's tokens through the final LayerNorm and the head; at the last layer that is the
    # model's own prediction, and for a DINOv2 head the numpy computation agrees.
    hf = hf_dinov2({**DINOV2[0], "num_labels": 4}, seed=10, registers=registers)
    hf.save_pretrained(tmp_path)
    model = weights.load(tmp_path)
    trace = capture.trace(model, torch.randn(3, 28, 28))
    outputs = torch.stack([layer.output for layer in trace.layers])
    with torch.no_grad():
        read = model.classify(model.norm(outputs))
    torch.testing.assert_close(read[-1], trace.logits, atol=1e-5, rtol=0)
    weight, bias = (p.detach().numpy() for p in (model.norm.weight, model.norm.bias))
    s = model.config.num_special
    for layer, tokens in enumerate(outputs.numpy()):
        y = analysis.layer_norm(tokens, weight, bias, model.norm.eps)
        pooled = np.concatenate([y[0], y[s:].mean(axis=0)])
        expected = pooled @ model.head.weight.detach().numpy().T + model.head.bias.detach().numpy()
        np.testing.assert_allclose(read[layer].numpy(), expected, atol=1e-4)


def test_a_distilled_deits_logits_average_its_two_heads(tmp_path):
    hf = hf_deit_distilled(DEIT[0], seed=11)
    hf.save_pretrained(tmp_path)
    model = weights.load(tmp_path)
    pixels = torch.randn(3, 32, 32)
    trace = capture.trace(model, pixels)
    with torch.no_grad():
        out = hf(pixels[None])
        cls, distillation = model.head(trace.final_tokens[0]), model.dist_head(trace.final_tokens[1])
    torch.testing.assert_close(cls, out.cls_logits[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(distillation, out.distillation_logits[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(trace.logits, (cls + distillation) / 2, atol=1e-6, rtol=0)
