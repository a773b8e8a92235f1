"""Real checkpoints: random-weight Hugging Face and timm ViTs load into vitviz and compute the same thing."""

from __future__ import annotations

import io
import json

import pytest
import torch
from safetensors.torch import save_file

from vitviz import capture, weights
from vitviz.weights import CheckpointError

transformers = pytest.importorskip("transformers")

CONFIGS = [
    dict(image_size=32, patch_size=8, hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
         num_labels=5),
    dict(image_size=48, patch_size=16, hidden_size=64, num_hidden_layers=3, num_attention_heads=2, intermediate_size=80,
         num_labels=3, qkv_bias=False, layer_norm_eps=1e-6, hidden_act="gelu_pytorch_tanh"),
    dict(image_size=64, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=8, intermediate_size=64,
         num_labels=10),
]


def hf_model(values: dict, seed: int = 0):
    torch.manual_seed(seed)
    config = transformers.ViTConfig(**values, attn_implementation="eager",
                                    id2label={i: f"thing {i}" for i in range(values["num_labels"])},
                                    label2id={f"thing {i}": i for i in range(values["num_labels"])})
    model = transformers.ViTForImageClassification(config).eval()
    with torch.no_grad():  # transformers initialises some parts to zero; make every weight count
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return model


def reference(model, pixels: torch.Tensor, interpolate: bool = False):
    with torch.no_grad():
        out = model(pixels[None], output_attentions=True, interpolate_pos_encoding=interpolate)
    return out.logits[0], torch.stack([a[0] for a in out.attentions])


def assert_same(ours, logits, attentions):
    trace = ours if isinstance(ours, capture.Trace) else None
    torch.testing.assert_close(trace.logits, logits, atol=1e-4, rtol=0)
    torch.testing.assert_close(trace.attentions(), attentions, atol=1e-5, rtol=0)


@pytest.mark.parametrize("values", CONFIGS)
def test_hugging_face_folders_match_transformers(values, tmp_path):
    hf = hf_model(values)
    hf.save_pretrained(tmp_path)
    ours = weights.load(tmp_path)
    assert ours.config.labels == tuple(f"thing {i}" for i in range(values["num_labels"]))
    size = values["image_size"]
    assert ours.config.image_size == (size, size)
    pixels = torch.randn(3, size, size)
    assert_same(capture.trace(ours, pixels), *reference(hf, pixels))


@pytest.mark.parametrize("values", CONFIGS[:2])
def test_a_larger_non_square_input_matches_interpolate_pos_encoding(values, tmp_path):
    hf = hf_model(values, seed=1)
    hf.save_pretrained(tmp_path)
    size, p = values["image_size"], values["patch_size"]
    new = (size + p, 2 * size)  # taller and much wider than trained
    ours = weights.load(tmp_path, image_size=new)
    assert ours.config.image_size == new and ours.config.grid == (new[0] // p, new[1] // p)
    pixels = torch.randn(3, *new)
    trace = capture.trace(ours, pixels)
    assert trace.grid == ours.config.grid
    assert_same(trace, *reference(hf, pixels, interpolate=True))


def test_the_older_hugging_face_key_names_load_the_same_model(tmp_path):
    values = CONFIGS[0]
    hf = hf_model(values, seed=2)
    hf.save_pretrained(tmp_path / "new")
    renames = {"attention.q_proj": "attention.attention.query", "attention.k_proj": "attention.attention.key",
               "attention.v_proj": "attention.attention.value", "attention.o_proj": "attention.output.dense",
               "mlp.fc1": "intermediate.dense", "mlp.fc2": "output.dense"}
    old = {}
    for key, value in hf.state_dict().items():
        key = key.replace("vit.layers.", "vit.encoder.layer.")
        for new_name, old_name in renames.items():
            key = key.replace(new_name, old_name)
        old[key] = value
    folder = tmp_path / "old"
    folder.mkdir()
    torch.save(old, folder / "pytorch_model.bin")
    (folder / "config.json").write_text((tmp_path / "new" / "config.json").read_text())
    pixels = torch.randn(3, 32, 32)
    assert_same(capture.trace(weights.load(folder), pixels), *reference(hf, pixels))


def test_a_timm_checkpoint_gives_the_same_results(tmp_path, timm_state):
    values = dict(image_size=32, patch_size=16, hidden_size=192, num_hidden_layers=2, num_attention_heads=3,
                  intermediate_size=768, num_labels=4, layer_norm_eps=1e-6)  # a two-block vit_tiny_patch16
    hf = hf_model(values, seed=3)
    state = timm_state(hf)
    save_file(state, str(tmp_path / "tiny.safetensors"))
    pixels = torch.randn(3, 32, 32)
    expected = reference(hf, pixels)
    # Named by the caller ...
    assert_same(capture.trace(weights.load(tmp_path / "tiny.safetensors", architecture="vit_tiny_patch16_224"), pixels),
                *expected)
    # ... by a hub config.json beside it, or as a .pth, or as uploaded bytes.
    folder = tmp_path / "hub"
    folder.mkdir()
    save_file(state, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"architecture": "vit_tiny_patch16_224", "num_classes": 4,
                                                     "pretrained_cfg": {"input_size": [3, 32, 32], "mean": [0.5] * 3,
                                                                        "std": [0.5] * 3}}))
    from_hub = weights.load(folder)
    assert from_hub.config.labels == ("class 0", "class 1", "class 2", "class 3")
    assert from_hub.config.extra["labels"] == "numbered"  # vitviz's words, which a page translates (test_i18n)
    assert_same(capture.trace(from_hub, pixels), *expected)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    (tmp_path / "tiny.pth").write_bytes(buffer.getvalue())
    assert_same(capture.trace(weights.load(tmp_path / "tiny.pth", architecture="vit_tiny_patch16_224"), pixels), *expected)
    assert_same(capture.trace(weights.load(buffer.getvalue(), architecture="vit_tiny_patch16_224"), pixels), *expected)
    with pytest.raises(CheckpointError, match="architecture"):
        weights.load(tmp_path / "tiny.safetensors")


def test_the_projects_own_format_loads_through_load(tmp_path, small_model):
    weights.save(small_model, tmp_path / "own.safetensors")
    loaded = weights.load(tmp_path / "own.safetensors")
    pixels = torch.randn(3, 64, 64)
    torch.testing.assert_close(loaded(pixels[None]), small_model(pixels[None]))
    torch.testing.assert_close(weights.load(weights.to_bytes(small_model))(pixels[None]), small_model(pixels[None]))


def test_unknown_keys_are_named_in_the_error(tmp_path):
    hf = hf_model(CONFIGS[0])
    hf.save_pretrained(tmp_path)
    state = dict(hf.state_dict())
    del state["vit.layers.1.mlp.fc1.weight"]
    state["vit.layers.1.mlp.extra.weight"] = torch.zeros(1)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError) as error:
        weights.load(tmp_path)
    message = str(error.value)
    assert "vit.layers.1.mlp.fc1.weight" in message and "vit.layers.1.mlp.extra.weight" in message
    save_file({"foo.weight": torch.zeros(2)}, str(tmp_path / "odd.safetensors"))
    with pytest.raises(CheckpointError, match="foo.weight"):
        weights.load(tmp_path / "odd.safetensors")


class Exploit:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


def test_a_hostile_pickle_never_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    import pickle

    payload = pickle.dumps({"weight": Exploit()})
    (tmp_path / "evil.pth").write_bytes(payload)
    buffer = io.BytesIO()
    torch.save({"weight": Exploit()}, buffer)
    for source in (tmp_path / "evil.pth", buffer.getvalue()):
        with pytest.raises(CheckpointError):
            weights.load(source)
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("naming", ["new", "old"])
def test_a_headless_vit_model_loads_without_a_class_head_and_matches_transformers(naming, tmp_path):
    # DINO and any plain ViTModel: no classifier, keys without the "vit." prefix, a pooler vitviz ignores.
    values = {k: v for k, v in CONFIGS[0].items() if k != "num_labels"}
    torch.manual_seed(3)
    hf = transformers.ViTModel(transformers.ViTConfig(**values, attn_implementation="eager")).eval()
    with torch.no_grad():
        for parameter in hf.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    hf.save_pretrained(tmp_path)
    if naming == "old":
        state = {k.replace("layers.", "encoder.layer.").replace("attention.q_proj", "attention.attention.query")
                 .replace("attention.k_proj", "attention.attention.key")
                 .replace("attention.v_proj", "attention.attention.value")
                 .replace("attention.o_proj", "attention.output.dense").replace("mlp.fc1", "intermediate.dense")
                 .replace("mlp.fc2", "output.dense"): v for k, v in hf.state_dict().items()}
        (tmp_path / "model.safetensors").unlink()
        torch.save(state, tmp_path / "pytorch_model.bin")
    ours = weights.load(tmp_path)
    assert ours.head is None and ours.config.labels == ()
    pixels = torch.randn(3, 32, 32)
    trace = capture.trace(ours, pixels)
    with torch.no_grad():
        out = hf(pixels[None], output_attentions=True)
    assert trace.logits is None and trace.probs is None
    torch.testing.assert_close(trace.final_tokens, out.last_hidden_state[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(trace.attentions(), torch.stack([a[0] for a in out.attentions]), atol=1e-5, rtol=0)
    saved = tmp_path / "ours.safetensors"
    weights.save(ours, saved)  # a headless model round-trips through vitviz's own format too
    assert weights.load(saved).head is None


def test_a_bare_vit_model_loads_without_a_classifier(tmp_path):
    """DINO's checkpoints are a transformers ViTModel: no "vit." prefix, no classifier, a pooler vitviz ignores."""
    values = {key: value for key, value in CONFIGS[0].items() if key != "num_labels"}
    torch.manual_seed(4)
    bare = transformers.ViTModel(transformers.ViTConfig(**values, attn_implementation="eager")).eval()
    with torch.no_grad():
        for parameter in bare.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    bare.save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.485, 0.456, 0.406],
                                                                   "image_std": [0.229, 0.224, 0.225]}))
    ours = weights.load(tmp_path)
    assert ours.config.labels == () and ours.config.num_labels == 0
    assert ours.config.mean == (0.485, 0.456, 0.406) and ours.config.std == (0.229, 0.224, 0.225)
    pixels = torch.randn(3, 32, 32)
    with torch.no_grad():
        expected = bare(pixels[None], output_attentions=True)
        tokens = ours.norm(ours.features(pixels[None]))
    torch.testing.assert_close(tokens, expected.last_hidden_state, atol=1e-4, rtol=0)
    trace = capture.trace(ours, pixels)
    torch.testing.assert_close(trace.attentions(), torch.stack([a[0] for a in expected.attentions]), atol=1e-5, rtol=0)


def test_a_timm_checkpoint_with_1000_classes_gets_the_imagenet_names(tmp_path, timm_state):
    values = dict(image_size=32, patch_size=16, hidden_size=48, num_hidden_layers=1, num_attention_heads=3,
                  intermediate_size=96, num_labels=1000, layer_norm_eps=1e-6)
    save_file(timm_state(hf_model(values, seed=5)), str(tmp_path / "tiny.safetensors"))
    labels = weights.load(tmp_path / "tiny.safetensors", architecture="vit_tiny_patch16_224").config.labels
    assert len(labels) == 1000 and len(set(labels)) == 999  # "crane" is both a bird (134) and a machine (517)
    assert labels[0] == "tench, Tinca tinca" and labels[134] == labels[517] == "crane"
    assert labels[999] == "toilet tissue, toilet paper, bathroom tissue"


@pytest.mark.parametrize(("field", "value", "named"), [
    ("hidden_size", "abc", "hidden_size"), ("hidden_size", 48.0, "hidden_size"),
    ("num_hidden_layers", 10**9, "num_hidden_layers"), ("num_attention_heads", 0, "num_attention_heads"),
    ("layer_norm_eps", -1e-6, "layer_norm_eps"), ("layer_norm_eps", "tiny", "layer_norm_eps"),
    ("image_std", [0, 0, 0], "std"), ("image_mean", 5, "mean"), ("image_size", "32", "image_size"),
    ("intermediate_size", None, "mlp_dim"),
])
def test_a_garbled_config_json_is_one_sentence(field, value, named, tmp_path):
    hf_model(CONFIGS[0]).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, field: value}))
    with pytest.raises(CheckpointError) as error:
        weights.load(tmp_path)
    message = str(error.value)
    assert named in message and message.endswith(".") and "\n" not in message, message


def test_garbled_timm_names_and_configs_are_one_sentence(tmp_path, timm_state):
    values = dict(image_size=32, patch_size=16, hidden_size=48, num_hidden_layers=1, num_attention_heads=3,
                  intermediate_size=96, num_labels=4, layer_norm_eps=1e-6)
    state = timm_state(hf_model(values))
    renamed = {k.replace("blocks.0.", "blocks.x."): v for k, v in state.items()}
    save_file(renamed, str(tmp_path / "renamed.safetensors"))
    with pytest.raises(CheckpointError, match="numbered"):
        weights.load(tmp_path / "renamed.safetensors", architecture="vit_tiny_patch16_224")
    folder = tmp_path / "hub"
    folder.mkdir()
    save_file(state, str(folder / "model.safetensors"))
    for hub_config in ({"architecture": 7}, {"architecture": "vit_tiny_patch16_224", "pretrained_cfg": [1]},
                       {"architecture": "vit_tiny_patch16_224", "pretrained_cfg": {"input_size": "big"}},
                       {"architecture": "vit_tiny_patch16_224", "pretrained_cfg": {"std": [0, 1, 1]}}):
        (folder / "config.json").write_text(json.dumps(hub_config))
        try:
            weights.load(folder)
        except CheckpointError as exc:
            assert str(exc).endswith(".") and "\n" not in str(exc), exc
    (folder / "config.json").write_text(json.dumps([1, 2]))
    with pytest.raises(CheckpointError, match="JSON object"):
        weights.load(folder)
