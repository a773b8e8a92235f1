"""ModelFacts: what the pages may say about a model comes from its configuration and recorded provenance only."""

from __future__ import annotations

import pytest
import torch

from vitviz import facts, hub, weights
from vitviz.facts import ModelFacts
from vitviz.model import ViT, ViTConfig

SMALL = dict(image_size=(32, 32), patch_size=8, dim=32, depth=1, heads=2, mlp_dim=64)


def test_the_built_in_model_is_vitvizs_own_recipe():
    known = ModelFacts.of(weights.load_default().config)
    assert (known.training, known.head, known.classes, known.num_special) == ("shapes", "cls", 8, 1)
    assert known.supervised and not known.self_supervised
    assert (known.zero_kind, known.zero_colour) == ("mid-grey", (128, 128, 128))
    assert known.positions == "sincos-start" and known.position_grid is None
    assert known.preprocessing.kind == "vitviz"


def test_a_headless_checkpoint_is_not_assumed_self_supervised():
    config = ViTConfig(**SMALL, extra={"source": "huggingface", "model_type": "vit"})
    known = ModelFacts.of(config)
    assert known.training == "unknown" and not known.self_supervised and not known.supervised
    assert known.head == "none" and known.classes is None and not known.has_head  # never k = 1
    assert known.positions == "learned"


@pytest.mark.parametrize(("extra", "training"), [
    ({}, "unknown"),  # a vitviz ViT nobody trained
    ({"trained_with": "vitviz training studio"}, "shapes"),
    ({"command": "python -m vitviz.train --steps 5"}, "shapes"),
    ({"source": "huggingface", "training": "dinov2"}, "dinov2"),  # recorded from a preset or the file itself
    ({"source": "huggingface", "training": "a secret recipe"}, "unknown"),  # not a recipe vitviz can name
    ({"source": "huggingface", "trained_with": "vitviz training studio"}, "unknown"),  # a checkpoint is not vitviz's
])
def test_the_training_recipe_is_what_the_configuration_records(extra, training):
    assert ModelFacts.of(ViTConfig(**SMALL, labels=("a", "b"), extra=extra)).training == training


def test_normalisation_says_what_a_zero_input_is():
    imagenet = ModelFacts.of(ViTConfig(**SMALL, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)))
    assert (imagenet.zero_kind, imagenet.zero_colour) == ("imagenet-mean", (124, 116, 104))
    other = ModelFacts.of(ViTConfig(**SMALL, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)))
    assert (other.zero_kind, other.zero_colour) == ("colour", (0, 0, 0))


def test_heads_and_special_tokens():
    deit = ModelFacts.of(ViTConfig(**SMALL, labels=("a", "b"), special_tokens=("cls", "distillation"),
                                   classifier="cls_distillation_mean"))
    assert deit.reads_more_than_cls and deit.distillation and deit.special_labels == ("CLS", "distillation")
    registers = ModelFacts.of(ViTConfig(**SMALL, special_tokens=("cls",) + ("register",) * 4, layer_scale=True))
    assert registers.num_special == 5 and registers.registers == 4 and registers.head == "none"


def test_resampled_positions_remember_the_grid_they_were_learned_on(tmp_path):
    model = ViT(ViTConfig(**SMALL, extra={"source": "huggingface"}))
    larger = weights.resize(model, (48, 40))
    assert ModelFacts.of(larger.config).position_grid == (4, 4)
    assert ModelFacts.of(weights.resize(larger, (32, 32)).config).position_grid is None  # back on its own grid
    weights.save(larger, tmp_path / "larger.safetensors")  # the record survives vitviz's own format
    assert ModelFacts.of(weights.load(tmp_path / "larger.safetensors").config).position_grid == (4, 4)


def test_a_checkpoints_facts_survive_vitvizs_own_format(tmp_path):
    from helpers.checkpoints import hf_deit_distilled

    pytest.importorskip("transformers")
    import transformers

    hf_deit_distilled(dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=64, num_labels=3), seed=1).save_pretrained(tmp_path)
    transformers.DeiTImageProcessorPil(size={"height": 40, "width": 40}, crop_size={"height": 32, "width": 32}
                                       ).save_pretrained(tmp_path)
    model = weights.load(tmp_path)
    model.config.extra["training"] = "deit-distilled"  # as a preset records it
    weights.save(model, tmp_path / "own.safetensors")
    assert ModelFacts.of(weights.load(tmp_path / "own.safetensors").config) == ModelFacts.of(model.config)


def test_every_preset_names_a_recipe_vitviz_knows():
    assert all(preset.training in facts.TRAINING and preset.training != "unknown" for preset in hub.PRESETS)
    assert all((preset.training in facts.SELF_SUPERVISED) == (not preset.has_classifier) for preset in hub.PRESETS)


def test_a_hub_model_records_its_repo_and_its_presets_recipe():
    model = ViT(ViTConfig(**SMALL, extra={"source": "huggingface"}))
    hub.provenance("facebook/dino-vits16", model)
    assert model.config.extra == {"source": "huggingface", "repo": "facebook/dino-vits16", "training": "dino"}
    other = ViT(ViTConfig(**SMALL, extra={"source": "huggingface"}))
    hub.provenance("someone/their-vit", other)  # not a preset: nothing known of its training
    assert ModelFacts.of(other.config).training == "unknown" and other.config.extra["repo"] == "someone/their-vit"
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 32)  # recording changes nothing the model computes
