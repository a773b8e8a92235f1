"""The generated dataset, the checkpoint format and the training loop."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import save as save_bytes
from safetensors.torch import save_file

from vitviz import capture, data, train, weights
from vitviz.model import ViT, ViTConfig
from vitviz.weights import CheckpointError

TINY = ViTConfig(image_size=(32, 32), patch_size=8, dim=32, depth=1, heads=2, mlp_dim=64, labels=data.CLASSES)


def assert_same_state(a: ViT, b: ViT) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


# --- data --------------------------------------------------------------------------------------------


def test_generate_is_deterministic_by_seed():
    a_images, a_labels = data.generate(16, seed=123)
    b_images, b_labels = data.generate(16, seed=123)
    np.testing.assert_array_equal(a_images, b_images)
    np.testing.assert_array_equal(a_labels, b_labels)
    c_images, _ = data.generate(16, seed=124)
    assert not np.array_equal(a_images, c_images)
    # Training draws batches with [seed, step] seeds: consecutive steps differ too.
    step_1, _ = data.generate(16, seed=[0, 1])
    step_2, _ = data.generate(16, seed=[0, 2])
    assert not np.array_equal(step_1, step_2)


def test_generate_types_shapes_and_classes():
    images, labels = data.generate(400, seed=99)
    assert images.dtype == np.uint8 and images.shape == (400, 64, 64, 3)
    assert labels.dtype == np.int64 and labels.shape == (400,)
    assert labels.min() >= 0 and labels.max() < len(data.CLASSES)
    assert set(labels.tolist()) == set(range(len(data.CLASSES)))
    assert isinstance(data.CLASSES, tuple) and len(data.CLASSES) == 8
    assert all(isinstance(name, str) and name for name in data.CLASSES)
    assert len(set(data.CLASSES)) == 8
    assert images.std() > 20  # real pictures, not blank arrays
    small, _ = data.generate(3, seed=99, size=32)
    assert small.shape == (3, 32, 32, 3)


# --- weights -----------------------------------------------------------------------------------------


def test_save_and_load_file_round_trip(small_model, tmp_path):
    small_model.config.extra.update({"note": "round trip"})
    path = tmp_path / "model.safetensors"
    weights.save(small_model, path)
    loaded = weights.load_file_model(path)
    assert_same_state(small_model, loaded)
    assert loaded.config == small_model.config
    assert loaded.config.extra == {"note": "round trip"}
    assert not loaded.training
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(pixels), small_model(pixels))


def test_load_bytes_round_trip(small_model):
    loaded = weights.load_bytes_model(weights.to_bytes(small_model))
    assert_same_state(small_model, loaded)
    assert loaded.config == small_model.config


def test_round_trip_of_a_non_square_model():
    torch.manual_seed(1)
    model = ViT(ViTConfig(image_size=(32, 48), patch_size=16, dim=24, depth=2, heads=3, mlp_dim=40, labels=("a", "b")))
    loaded = weights.load_bytes_model(weights.to_bytes(model))
    assert loaded.config == model.config and loaded.config.image_size == (32, 48)
    assert_same_state(model, loaded)


def state_of(model: ViT) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}


def metadata_of(config: ViTConfig) -> dict[str, str]:
    return {weights.CONFIG_KEY: json.dumps(config.to_dict())}


def bad_checkpoints(model: ViT) -> dict[str, tuple[bytes, str | tuple[str, ...]]]:
    """name -> (file bytes, a phrase the error message must contain, or a tuple of alternatives)."""
    good = weights.to_bytes(model)
    state, meta = state_of(model), metadata_of(model.config)
    cases = {
        "empty": (b"", "not a safetensors"),
        "garbage": (b"this is not a checkpoint at all " * 40, "not a safetensors"),
        "truncated-data": (good[: len(good) // 2], "damaged or truncated"),
        "truncated-header": (good[:40], ("not a safetensors", "header is damaged")),
        "no-vitviz-metadata": (save_bytes(state), "no vitviz configuration"),
        "other-metadata": (save_bytes(state, metadata={"format": "pt"}), "no vitviz configuration"),
        "config-not-json": (save_bytes(state, metadata={weights.CONFIG_KEY: "{dim: 96"}), "configuration"),
        "config-not-an-object": (save_bytes(state, metadata={weights.CONFIG_KEY: "[1, 2]"}), "configuration"),
        "config-impossible": (
            save_bytes(state, metadata={weights.CONFIG_KEY: json.dumps({**model.config.to_dict(), "heads": 5})}),
            "configuration",
        ),
    }
    # Wrong shapes: the tensors of a narrower model under this model's configuration.
    torch.manual_seed(0)
    narrow = ViT(ViTConfig(**{**model.config.to_dict(), "dim": 64, "mlp_dim": 128}))
    cases["wrong-shapes"] = (save_bytes(state_of(narrow), metadata=meta), "shape")
    fewer_labels = ViT(ViTConfig(**{**model.config.to_dict(), "labels": model.config.labels[:3]}))
    cases["wrong-head-shape"] = (save_bytes(state_of(fewer_labels), metadata=meta), "head.weight")
    missing = {k: v for k, v in state.items() if k != "blocks.0.attn.qkv.bias"}
    cases["missing-key"] = (save_bytes(missing, metadata=meta), "blocks.0.attn.qkv.bias")
    extra = {**state, "blocks.0.attn.extra.weight": torch.zeros(3)}
    cases["unexpected-key"] = (save_bytes(extra, metadata=meta), "blocks.0.attn.extra.weight")
    renamed = {k.replace("patch_embed", "patch_embedding"): v for k, v in state.items()}
    cases["renamed-keys"] = (save_bytes(renamed, metadata=meta), "keys do not match")
    no_last_layer = {k: v for k, v in state.items() if not k.startswith(f"blocks.{model.config.depth - 1}.")}
    cases["missing-layer"] = (save_bytes(no_last_layer, metadata=meta), "encoder layers")
    # An upload whose configuration claims an enormous model must be refused before any allocation.
    huge = {**model.config.to_dict(), "dim": 65_536, "mlp_dim": 262_144, "heads": 4}
    cases["claims-huge-model"] = (save_bytes(state, metadata={weights.CONFIG_KEY: json.dumps(huge)}), "dim must be")
    deep = {**model.config.to_dict(), "depth": 10_000_000}
    cases["claims-huge-depth"] = (save_bytes(state, metadata={weights.CONFIG_KEY: json.dumps(deep)}), "depth must be")
    return cases


@pytest.mark.parametrize(
    "name",
    [
        "empty", "garbage", "truncated-data", "truncated-header", "no-vitviz-metadata", "other-metadata",
        "config-not-json", "config-not-an-object", "config-impossible", "wrong-shapes", "wrong-head-shape",
        "missing-key", "unexpected-key", "renamed-keys", "missing-layer", "claims-huge-model", "claims-huge-depth",
    ],
)  # fmt: skip
def test_bad_checkpoints_raise_checkpoint_error(small_model, tmp_path, name):
    blob, phrases = bad_checkpoints(small_model)[name]
    phrases = (phrases,) if isinstance(phrases, str) else phrases
    path = tmp_path / "bad.safetensors"
    path.write_bytes(blob)
    for load in (lambda: weights.load_bytes_model(blob), lambda: weights.load_file_model(path)):
        with pytest.raises(CheckpointError) as info:
            load()
        assert isinstance(info.value, ValueError)
        message = str(info.value)
        assert any(phrase in message for phrase in phrases), message
        assert message.endswith(".") and "\n" not in message, message


def test_save_file_without_metadata_is_refused(small_model, tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file(state_of(small_model), str(path))
    with pytest.raises(CheckpointError, match="no vitviz configuration"):
        weights.load_file_model(path)


def test_default_model_is_cached_and_read_only(default_model):
    assert weights.load_default() is default_model
    assert weights.load_default() is weights.load_default()
    assert all(not p.requires_grad for p in default_model.parameters())
    assert not default_model.training
    assert default_model.config.labels == data.CLASSES
    assert default_model.config.image_size == (64, 64)


def test_copy_model_is_independent(default_model):
    before = state_of(default_model)
    pixels = torch.randn(3, 64, 64)
    recorder = capture.Recorder(default_model)
    reference = recorder.trace(pixels)
    clone = weights.copy_model(default_model)
    assert all(not module._forward_hooks for module in clone.modules())  # a copy carries no hooks
    assert clone is not default_model
    assert all(p.requires_grad for p in clone.parameters())
    assert all(not p.requires_grad for p in default_model.parameters())
    assert_same_state(clone, default_model)
    for a, b in zip(clone.parameters(), default_model.parameters(), strict=True):
        assert a.data_ptr() != b.data_ptr()
    with torch.no_grad():
        for parameter in clone.parameters():
            parameter.add_(1.0)
    clone.config.extra["touched"] = True
    for key, value in default_model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert "touched" not in default_model.config.extra
    # Tracing the copy (its recorder attaches and ejects) leaves the default model's recording intact.
    changed = capture.trace(clone, pixels)
    assert not torch.equal(changed.logits, reference.logits)
    again = recorder.trace(pixels)
    recorder.eject()
    assert torch.equal(again.logits, reference.logits)
    assert torch.equal(again.attentions(), reference.attentions())


# --- training ----------------------------------------------------------------------------------------


def test_fit_yields_progress_and_the_loss_falls():
    torch.manual_seed(0)
    model = ViT(TINY)
    records = list(train.fit(model, steps=60, batch_size=32, lr=3e-3, seed=0, eval_every=30, eval_size=64))
    assert [r.step for r in records] == list(range(1, 61))
    assert all(r.steps == 60 for r in records)
    assert all(math.isfinite(r.loss) and r.loss > 0 for r in records)
    assert all(0.0 <= r.accuracy <= 1.0 for r in records)
    assert all(r.elapsed > 0 for r in records) and records[-1].elapsed >= records[0].elapsed
    assert [r.step for r in records if r.eval_accuracy is not None] == [30, 60]
    assert all(math.isfinite(r.eval_loss) for r in records if r.eval_loss is not None)
    peak = max(r.lr for r in records)
    assert peak == pytest.approx(3e-3) and records[-1].lr < peak
    first = sum(r.loss for r in records[:10]) / 10
    last = sum(r.loss for r in records[-10:]) / 10
    assert last < first, (first, last)
    assert not model.training  # fit leaves the model in eval mode when it finishes


def test_fit_resumes_where_it_stopped():
    torch.manual_seed(0)
    straight = ViT(TINY)
    resumed = ViT(TINY)
    resumed.load_state_dict(straight.state_dict())
    list(
        train.fit(
            straight,
            steps=20,
            batch_size=16,
            lr=3e-3,
            eval_every=0,
            optimizer=train.make_optimizer(straight, 3e-3, 0.05),
        )
    )

    optimizer = train.make_optimizer(resumed, 3e-3, 0.05)
    first = list(
        itertools.islice(train.fit(resumed, steps=20, batch_size=16, lr=3e-3, eval_every=0, optimizer=optimizer), 10)
    )
    second = list(
        train.fit(resumed, steps=20, batch_size=16, lr=3e-3, eval_every=0, start_step=10, optimizer=optimizer)
    )
    assert [r.step for r in first] == list(range(1, 11))
    assert [r.step for r in second] == list(range(11, 21))
    # Same data, same schedule, same optimizer state: the resumed run is the uninterrupted one.
    for a, b in zip(resumed.parameters(), straight.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_fit_refuses_models_the_data_cannot_train():
    with pytest.raises(ValueError, match="square"):
        next(train.fit(ViT(ViTConfig(image_size=(32, 64), patch_size=8, labels=data.CLASSES)), steps=1))
    with pytest.raises(ValueError, match="classes"):
        next(train.fit(ViT(ViTConfig(image_size=(32, 32), patch_size=8, labels=("a", "b"))), steps=1))


def test_evaluate_keeps_the_training_mode():
    torch.manual_seed(0)
    model = ViT(TINY).train()
    images, labels = train.held_out(TINY, 32, seed=5)
    loss, accuracy = train.evaluate(model, images, labels, batch_size=10)
    assert model.training
    assert math.isfinite(loss) and 0 <= accuracy <= 1
    assert images.shape == (32, 3, 32, 32)


def test_parameter_shapes_match_the_real_model():
    from vitviz.model import ViT, ViTConfig, parameter_shapes

    for config in (ViTConfig(labels=("a", "b")), ViTConfig(image_size=(32, 48), patch_size=16, dim=12, depth=3, heads=3,
                                                            mlp_dim=7, labels=())):
        real = {k: tuple(v.shape) for k, v in ViT(config).state_dict().items()}
        assert parameter_shapes(config) == real


def test_a_failure_while_drawing_batches_reaches_the_training_loop(monkeypatch):
    from vitviz import data as data_module
    from vitviz import train
    from vitviz.model import ViT, ViTConfig

    def broken(*args, **kwargs):
        raise MemoryError("no room for this batch")

    monkeypatch.setattr(data_module, "generate", broken)
    model = ViT(ViTConfig(image_size=(32, 32), patch_size=8, dim=16, depth=1, heads=2, mlp_dim=32, labels=data_module.CLASSES))
    with pytest.raises(MemoryError):
        next(train.fit(model, steps=3, batch_size=4, eval_every=0))


def test_batches_drawn_ahead_are_the_steps_own():
    from vitviz import train

    config = train.default_config()
    drawn = list(train._batches(config, batch_size=3, seed=4, first=2, last=5))
    assert len(drawn) == 3
    for step, (x, y) in zip(range(2, 5), drawn, strict=True):
        expected_x, expected_y = train._batch(config, 3, 4, step)
        assert torch.equal(x, expected_x) and torch.equal(y, expected_y)


def test_fit_really_learns_a_head_from_scratch(default_model):
    """A tiny from-scratch ViT stays near chance for hundreds of steps, so learning is shown on a fresh
    classifier head over the shipped features: fit must take the loss from chance to far below it."""
    model = weights.copy_model(default_model)
    torch.nn.init.zeros_(model.head.weight)
    torch.nn.init.zeros_(model.head.bias)  # every class equally likely: loss = ln 8
    records = list(train.fit(model, steps=40, batch_size=32, lr=3e-3, seed=5, eval_every=40, eval_size=128, warmup=5))
    assert records[0].loss == pytest.approx(math.log(8), abs=0.05)
    assert sum(r.loss for r in records[-5:]) / 5 < 0.6
    assert records[-1].eval_accuracy > 0.9
    assert default_model.head.weight.abs().sum() > 0  # the shared model was not touched
