"""Small random-weight checkpoints laid out like real Hub repos, built with transformers."""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from helpers.fake_hub import Repo

TINY = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
VIT_B_SHAPED = dict(image_size=224, patch_size=16, hidden_size=48, num_hidden_layers=2, num_attention_heads=12,
                    intermediate_size=96, num_labels=1000)
IMAGENET_NORMALISATION = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
# DINOv2 on the Hub: trained at 518 pixels in 14-pixel patches, run at the 224 its preprocessor crops to
DINOV2_SHAPED = dict(image_size=518, patch_size=14, hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
                     mlp_ratio=2)
DINOV2_PREPROCESSOR = {**IMAGENET_NORMALISATION, "crop_size": {"height": 224, "width": 224}, "do_center_crop": True,
                       "size": {"shortest_edge": 256}}


def randomised(model, seed: int):
    """`model` in eval mode with every weight moved randomly: transformers initialises some parts to zero or one."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)
    return model.eval()


def _labelled(values: dict) -> dict:
    labels = values.get("num_labels", 0)
    return {**values, "id2label": {i: f"thing {i}" for i in range(labels)},
            "label2id": {f"thing {i}": i for i in range(labels)}} if labels else values


def hf_dinov2(values: dict, seed: int = 0, *, registers: bool = False, loud_patches: tuple[int, ...] = ()):
    """A transformers DINOv2 (with registers if asked; a classifier when `values` has num_labels), weights random.

    `loud_patches` (indices in the grid of the trained size) get a long vector added to their position
    embeddings, so their tokens' norms stand out in every layer: made-to-order high-norm tokens.
    """
    import transformers

    torch.manual_seed(seed)
    family = (transformers.Dinov2WithRegistersConfig, transformers.Dinov2WithRegistersModel,
              transformers.Dinov2WithRegistersForImageClassification) if registers else \
        (transformers.Dinov2Config, transformers.Dinov2Model, transformers.Dinov2ForImageClassification)
    config = family[0](**_labelled(values), attn_implementation="eager")
    model = randomised((family[2] if values.get("num_labels") else family[1])(config), seed)
    if loud_patches:
        direction = torch.randn(config.hidden_size, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            model.base_model.embeddings.position_embeddings[0, [1 + i for i in loud_patches]] += 40 * direction / direction.norm()
    return model


def hf_deit_distilled(values: dict, seed: int = 0):
    """A transformers DeiTForImageClassificationWithTeacher: CLS and distillation tokens, two heads."""
    import transformers

    torch.manual_seed(seed)
    config = transformers.DeiTConfig(**_labelled(values), attn_implementation="eager")
    return randomised(transformers.DeiTForImageClassificationWithTeacher(config), seed)


def hf_vit(values: dict, seed: int = 0, *, headless: bool = False):
    """A transformers ViTForImageClassification (or bare ViTModel) with every weight random."""
    import transformers

    torch.manual_seed(seed)
    labels = values.get("num_labels", 2)
    config = transformers.ViTConfig(**values, attn_implementation="eager",
                                    id2label={i: f"thing {i}" for i in range(labels)},
                                    label2id={f"thing {i}": i for i in range(labels)})
    model = (transformers.ViTModel(config) if headless else transformers.ViTForImageClassification(config)).eval()
    with torch.no_grad():  # transformers initialises some parts to zero; make every weight count
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return model


def timm_state(hf) -> dict:
    """The weights of a transformers ViTForImageClassification under timm's key names."""
    s = {k: v.clone() for k, v in hf.state_dict().items()}
    out = {"cls_token": s["vit.embeddings.cls_token"], "pos_embed": s["vit.embeddings.position_embeddings"],
           "patch_embed.proj.weight": s["vit.embeddings.patch_embeddings.projection.weight"],
           "patch_embed.proj.bias": s["vit.embeddings.patch_embeddings.projection.bias"],
           "norm.weight": s["vit.layernorm.weight"], "norm.bias": s["vit.layernorm.bias"],
           "head.weight": s["classifier.weight"], "head.bias": s["classifier.bias"]}
    for i in range(hf.config.num_hidden_layers):
        p = f"vit.layers.{i}."
        b = f"blocks.{i}."
        for part in ("weight", "bias"):
            out[b + "attn.qkv." + part] = torch.cat([s[p + f"attention.{n}_proj.{part}"] for n in "qkv"])
            out[b + "attn.proj." + part] = s[p + "attention.o_proj." + part]
            out[b + "mlp.fc1." + part] = s[p + "mlp.fc1." + part]
            out[b + "mlp.fc2." + part] = s[p + "mlp.fc2." + part]
            out[b + "norm1." + part] = s[p + "layernorm_before." + part]
            out[b + "norm2." + part] = s[p + "layernorm_after." + part]
    return {k: v.contiguous() for k, v in out.items()}


def _saved(model) -> dict[str, bytes]:
    """config.json and model.safetensors as save_pretrained writes them."""
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        return {name: (Path(folder) / name).read_bytes() for name in ("config.json", "model.safetensors")}


def _pickled(safetensors: bytes) -> bytes:
    """The same tensors as a pytorch_model.bin (transformers 5 no longer writes one)."""
    with tempfile.NamedTemporaryFile(suffix=".safetensors") as handle:
        handle.write(safetensors)
        handle.flush()
        state = load_file(handle.name)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _json(values: dict) -> bytes:
    return json.dumps(values).encode()


def hub_repos() -> tuple[dict[str, Repo], dict[str, object]]:
    """Repos under the presets' ids and a few troublesome ones, and the transformers model behind each."""
    # shaped like ViT-B/16 where the pages care (224 pixels, 16-pixel patches, 197 tokens, 12 heads, 1,000
    # classes), but narrow and shallow so it stays small
    classifier = hf_vit(VIT_B_SHAPED, seed=10)
    deit = hf_vit({**TINY, "num_labels": 4}, seed=11)
    dino = hf_vit(TINY, seed=12, headless=True)
    # a two-block vit_tiny_patch16 at 32 pixels with timm's usual 1,000 ImageNet classes
    timm_like = hf_vit(dict(image_size=32, patch_size=16, hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
                            intermediate_size=96, num_labels=1000, layer_norm_eps=1e-6), seed=13)
    slow = hf_vit({**TINY, "num_labels": 3, "hidden_size": 64, "intermediate_size": 256}, seed=14)
    distilled = hf_deit_distilled({**VIT_B_SHAPED, "num_attention_heads": 6}, seed=15)
    # high-norm tokens to find at 224 pixels: a loud block in the 37×37 positions survives their resampling
    dinov2 = hf_dinov2(DINOV2_SHAPED, seed=16, loud_patches=tuple(37 * row + col for row in (20, 21, 22) for col in (9, 10, 11)))
    registers = hf_dinov2(DINOV2_SHAPED, seed=17, registers=True)
    saved = _saved(classifier)
    junk = torch.randint(0, 256, (64 * 1024,), dtype=torch.uint8).numpy().tobytes()  # what must never be fetched
    timm_config = {"architecture": "vit_tiny_patch16_224", "num_classes": 1000, "global_pool": "token",
                   "pretrained_cfg": {"tag": "augreg_in21k_ft_in1k", "input_size": [3, 32, 32], "mean": [0.5] * 3,
                                      "std": [0.5] * 3, "num_classes": 1000, "classifier": "head"}}
    timm_weights = safetensors_bytes(timm_state(timm_like))
    repos = {
        "google/vit-base-patch16-224": Repo({
            **saved, "preprocessor_config.json": _json({"image_mean": [0.5] * 3, "image_std": [0.5] * 3}),
            "README.md": b"# ViT\n", "pytorch_model.bin": _pickled(saved["model.safetensors"]), "tf_model.h5": junk,
            "flax_model.msgpack": junk, "onnx/model.onnx": junk, "subfolder/model.safetensors": junk,
            "subfolder/config.json": saved["config.json"]}),
        "facebook/deit-tiny-patch16-224": Repo({  # an older repo: pickled weights only
            "config.json": _saved(deit)["config.json"], "preprocessor_config.json": _json(IMAGENET_NORMALISATION),
            "pytorch_model.bin": _pickled(_saved(deit)["model.safetensors"]), "tf_model.h5": junk}),
        "facebook/dino-vits16": Repo({**_saved(dino), "preprocessor_config.json": _json(IMAGENET_NORMALISATION)}),
        "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k": Repo({
            "config.json": _json(timm_config), "model.safetensors": timm_weights,
            "pytorch_model.bin": junk, "open_clip_model.safetensors": junk}),
        "someone/too-large": Repo(dict(saved), claimed_sizes={"model.safetensors": 3_000_000_000}),
        "someone/gated": Repo(dict(saved), gated=True),
        "someone/gated-files": Repo(dict(saved), gated=True, gate_listed=False),
        "someone/corrupt": Repo({**saved, "model.safetensors": saved["model.safetensors"][:-5000]}),
        "someone/sharded": Repo({"config.json": saved["config.json"], "model.safetensors.index.json": b"{}",
                                 "model-00001-of-00002.safetensors": junk, "model-00002-of-00002.safetensors": junk}),
        "someone/slow": Repo(_saved(slow), seconds_per_chunk=0.01),
        "facebook/deit-small-distilled-patch16-224": Repo({
            **_saved(distilled), "preprocessor_config.json": _json({**IMAGENET_NORMALISATION,
                                                                    "crop_size": {"height": 224, "width": 224}})}),
        "facebook/dinov2-small": Repo({**_saved(dinov2), "preprocessor_config.json": _json(DINOV2_PREPROCESSOR)}),
        "facebook/dinov2-with-registers-small": Repo({**_saved(registers),
                                                      "preprocessor_config.json": _json(DINOV2_PREPROCESSOR)}),
    }
    models = {"google/vit-base-patch16-224": classifier, "facebook/deit-tiny-patch16-224": deit,
              "facebook/dino-vits16": dino, "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k": timm_like,
              "someone/slow": slow, "facebook/deit-small-distilled-patch16-224": distilled,
              "facebook/dinov2-small": dinov2, "facebook/dinov2-with-registers-small": registers}
    return repos, models
