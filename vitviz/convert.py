"""Map Hugging Face and timm ViT checkpoints onto vitviz's `ViT`, and resample position embeddings.

Each converter takes a plain state dict (and whatever config the checkpoint came with) and
returns (ViTConfig, state dict in vitviz's own key names). Nothing here runs a model.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import reprlib
from pathlib import Path

import torch

from vitviz.i18n import Message, message_of
from vitviz.model import MAX_DEPTH, MAX_DIM, MAX_HEADS, MAX_SIDE, ViTConfig, is_whole

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)
IMAGENET_CLASSES = Path(__file__).resolve().parent.parent / "assets" / "imagenet_classes.txt"

# timm's ViT sizes: width, heads (depth and patch come from the weights themselves).
TIMM_SIZES = {"tiny": (192, 3), "small": (384, 6), "base": (768, 12), "large": (1024, 16), "huge": (1280, 16)}
_TIMM_NAME = re.compile(r"^vit_(tiny|small|base|large|huge)_patch(\d+)_(?:clip_)?(\d+)")


log = logging.getLogger("vitviz")


class ConversionError(ValueError):
    """The checkpoint is not a ViT vitviz can map; the message names what is missing or unexpected."""


def invalid_configuration(exc: Exception) -> Message:
    """One sentence for a configuration `ViTConfig` refused: its reason when that is a Message (it names the field),
    else a plain statement, the internal text going to the server's log (a reader cannot act on it)."""
    reason = message_of(exc)
    if isinstance(reason, Message):
        return Message("The checkpoint's configuration is invalid: {reason}.", reason=reason)
    log.info("vitviz: a checkpoint's configuration was refused: %r", exc)
    return Message("The checkpoint's configuration holds a value of the wrong kind.")


def key_list(keys: list[str]) -> str:
    """At most six tensor names, for a sentence; "none" in the reader's language when there are none."""
    return ", ".join(keys[:6]) + (" …" if len(keys) > 6 else "") if keys else Message("none")


def resample_positions(pos: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int], *, specials: int = 1,
                       antialias: bool = False) -> torch.Tensor:
    """(s + n_old, d) -> (s + n_new, d): the special tokens' rows kept, the patches' resampled bicubically with
    align_corners=False, as transformers' interpolate_pos_encoding (ViT, DeiT, DINOv2; with antialiasing for
    DINOv2 with registers)."""
    if tuple(old_grid) == tuple(new_grid):
        return pos.clone()
    special, patches = pos[:specials], pos[specials:]
    d = pos.shape[1]
    grid = patches.reshape(1, old_grid[0], old_grid[1], d).permute(0, 3, 1, 2)
    grid = torch.nn.functional.interpolate(grid, size=tuple(new_grid), mode="bicubic", align_corners=False,
                                           antialias=antialias)
    return torch.cat([special, grid.permute(0, 2, 3, 1).reshape(-1, d)], dim=0)


def _patch_weight(conv: torch.Tensor) -> torch.Tensor:
    """A Conv2d patch projection (d, c, p, p) as vitviz's Linear over (p, p, c)-ordered pixels: (d, p·p·c)."""
    return conv.permute(0, 2, 3, 1).reshape(conv.shape[0], -1)


NUMBERED = "numbered"  # extra["labels"]: the checkpoint names no classes, so vitviz numbered them ("class 3")


def _numbered_labels(count: int) -> tuple[str, ...]:
    return tuple(f"class {i}" for i in range(count))


@functools.lru_cache(maxsize=1)
def imagenet_labels() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k class names in class-index order (assets/imagenet_classes.txt, from timm)."""
    return tuple(IMAGENET_CLASSES.read_text(encoding="utf-8").splitlines())


def _hf_labels(config: dict, count: int) -> tuple[str, ...] | None:
    """The class names of a config.json's id2label, or None when it does not name every class."""
    id2label = config.get("id2label") or {}
    try:
        labels = tuple(str(id2label.get(str(i), id2label.get(i))) for i in range(count))
    except AttributeError:
        return None
    return labels if len(id2label) == count and "None" not in labels else None


def _activation(name: str) -> str:
    if name == "gelu":
        return "gelu"
    if name in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        return "gelu_tanh"
    raise ConversionError(Message("The checkpoint uses the activation {name}, which vitviz does not implement.",
                                  name=repr(name)))


def _whole_number(config: dict, key: str, top: int) -> int:
    """A size from a checkpoint's config, checked before it sizes anything (a loop over 10⁹ layers, say)."""
    value = config.get(key)
    if not is_whole(value) or not 1 <= value <= top:
        raise ConversionError(Message("The config.json's {key} must be a whole number from 1 to {top:,}, not {value}.",
                                      key=key, top=top, value=reprlib.repr(value)))
    return int(value)


def _config(**fields) -> ViTConfig:
    """A ViTConfig from a checkpoint's values, or a ConversionError naming the field that is wrong."""
    try:
        return ViTConfig(**fields)
    except (ValueError, TypeError) as exc:
        raise ConversionError(invalid_configuration(exc)) from exc


def _check_keys(state: dict, expected: set[str], what: str, optional: frozenset[str] = frozenset()) -> None:
    """Every expected key is there; name the missing and the unexpected ones if not."""
    known = expected | {k.removesuffix("weight") + "bias" for k in expected if k.endswith(".weight")} | optional
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - known)
    if missing or unexpected:
        raise ConversionError(Message("This does not match a {family} checkpoint: missing keys {missing}; unexpected "
                                      "keys {unexpected}.", family=what, missing=key_list(missing),
                                      unexpected=key_list(unexpected)))


# --- Hugging Face ---------------------------------------------------------------------------------

_NEW_ATTENTION = {"q": "attention.q_proj", "k": "attention.k_proj", "v": "attention.v_proj", "o": "attention.o_proj"}
_OLD_ATTENTION = {"q": "attention.attention.query", "k": "attention.attention.key", "v": "attention.attention.value",
                  "o": "attention.output.dense"}
_VIT_NORMS = {"norm1": "layernorm_before", "norm2": "layernorm_after"}
_DINOV2_BLOCK = {"norm1": "norm1", "norm2": "norm2", "fc1": "mlp.fc1", "fc2": "mlp.fc2",
                 "ls1": "layer_scale1.lambda1", "ls2": "layer_scale2.lambda1"}
_HF_LAYOUTS = {
    # ViT and DeiT, in the names of transformers 5 ("layers.N.attention.q_proj") and of earlier versions
    "new": {"prefix": "{base}layers.{i}.", **_NEW_ATTENTION, "fc1": "mlp.fc1", "fc2": "mlp.fc2", **_VIT_NORMS},
    "old": {"prefix": "{base}encoder.layer.{i}.", **_OLD_ATTENTION, "fc1": "intermediate.dense", "fc2": "output.dense",
            **_VIT_NORMS},
    # DINOv2, with or without registers: its own norm names, and LayerScale
    "dinov2-new": {"prefix": "{base}encoder.layer.{i}.", **_NEW_ATTENTION, **_DINOV2_BLOCK},
    "dinov2-old": {"prefix": "{base}encoder.layer.{i}.", **_OLD_ATTENTION, **_DINOV2_BLOCK},
}
# Where a model's keys start: a class head's checkpoint nests the encoder under its family's name.
_HF_BASES = ("vit.", "deit.", "dinov2.", "dinov2_with_registers.", "")


def _hf_base(state: dict) -> str | None:
    return next((base for base in _HF_BASES if base + "embeddings.cls_token" in state), None)


def is_hf(state: dict) -> bool:
    """A transformers ViT, DeiT or DINOv2 (with registers or not), with a class head or headless (`ViTModel`…)."""
    base = _hf_base(state)
    return base is not None and any(k.startswith((base + "layers.", base + "encoder.layer.")) for k in state)


def _hf_layout(state: dict, base: str) -> dict:
    dinov2 = base + "encoder.layer.0.layer_scale1.lambda1" in state
    new = any(k.startswith(base + ("encoder.layer.0.attention.q_proj" if dinov2 else "layers.")) for k in state)
    return _HF_LAYOUTS[("dinov2-" if dinov2 else "") + ("new" if new else "old")]


def _crop_size(crop: object, patch: int) -> tuple[int, int] | None:
    """The size a preprocessor_config.json crops to ({"height", "width"}, (h, w) or a number), if it fits the
    patches."""
    if isinstance(crop, dict):
        crop = (crop.get("height"), crop.get("width"))
    elif is_whole(crop):
        crop = (crop, crop)
    if not isinstance(crop, tuple) or not all(is_whole(side) and patch <= side <= MAX_SIDE and side % patch == 0
                                              for side in crop):
        return None
    return (int(crop[0]), int(crop[1]))


# transformers' image processors, by the name a preprocessor_config.json gives (or, without one, by the model's
# type, as AutoImageProcessor finds them), with their defaults for every setting the file leaves out (transformers
# 5's ViTImageProcessor, DeiTImageProcessor and BitImageProcessor). A size given as one number is a square for ViT
# and DeiT, the shorter side for Bit (`square`).
_PROCESSORS = {
    "vit": {"size": {"height": 224, "width": 224}, "resample": 2, "do_center_crop": False, "square": True,
            "image_mean": HALF, "image_std": HALF},
    "deit": {"size": {"height": 256, "width": 256}, "crop_size": {"height": 224, "width": 224}, "resample": 3,
             "do_center_crop": True, "square": True, "image_mean": HALF, "image_std": HALF},
    "bit": {"size": {"shortest_edge": 224}, "crop_size": {"height": 224, "width": 224}, "resample": 3,
            "do_center_crop": True, "square": False, "image_mean": (0.48145466, 0.4578275, 0.40821073),
            "image_std": (0.26862954, 0.26130258, 0.27577711)},
}
_PROCESSOR_NAMES = {"ViTImageProcessor": "vit", "ViTFeatureExtractor": "vit", "DeiTImageProcessor": "deit",
                    "DeiTFeatureExtractor": "deit", "BitImageProcessor": "bit"}
_MODEL_PROCESSORS = {"vit": "vit", "deit": "deit", "dinov2": "bit", "dinov2_with_registers": "bit"}


def _processor_kind(preprocessor: dict, model_type: str) -> str | None:
    named = preprocessor.get("image_processor_type") or preprocessor.get("feature_extractor_type")
    if isinstance(named, str):
        return _PROCESSOR_NAMES.get(named.removesuffix("Fast").removesuffix("Pil"))
    return _MODEL_PROCESSORS.get(model_type)


def _size_setting(value: object, square: bool) -> tuple[int, int] | int | None:
    """A processor's "size" or "crop_size" as (h, w) or a shorter side; None when vitviz does not follow it (a
    longest edge, a maximum height and width)."""
    if is_whole(value):
        return (int(value), int(value)) if square else int(value)
    if isinstance(value, dict):
        if set(value) == {"height", "width"} and is_whole(value["height"]) and is_whole(value["width"]):
            return (int(value["height"]), int(value["width"]))
        if set(value) == {"shortest_edge"} and is_whole(value["shortest_edge"]):
            return int(value["shortest_edge"])
    return None


def hf_processor(preprocessor: dict, model_type: str) -> dict | None:
    """What a preprocessor_config.json does to a picture, as `extra["preprocessing"]` records it for
    `images.preprocessing` (resize, crop, resample, rescale), with its mean and std; None when the processor is not
    one vitviz follows (its model then sees vitviz's own centre crop)."""
    kind = _processor_kind(preprocessor, model_type)
    if kind is None:
        return None
    settings = {**_PROCESSORS[kind], **preprocessor}
    square = _PROCESSORS[kind]["square"]
    resize = _size_setting(settings.get("size"), square) if settings.get("do_resize", True) else None
    crop = _size_setting(settings.get("crop_size"), True) if settings.get("do_center_crop") else None
    if (settings.get("do_resize", True) and resize is None) or (settings.get("do_center_crop") and crop is None) \
            or (resize is None and crop is None):
        return None
    rescale = settings.get("rescale_factor", 1 / 255) if settings.get("do_rescale", True) else 1.0
    normalize = settings.get("do_normalize", True)
    return {"resize": resize, "crop": crop, "resample": settings.get("resample"), "rescale": rescale,
            "offsets": "floor", "origin": "preprocessor_config.json",
            "mean": settings.get("image_mean") if normalize else (0.0, 0.0, 0.0),
            "std": settings.get("image_std") if normalize else (1.0, 1.0, 1.0)}


# timm's names for PIL's filters (timm.data.transforms.str_to_pil_interp)
_TIMM_INTERPOLATION = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5}


def timm_processor(pretrained: dict, image_size: tuple[int, int]) -> dict | None:
    """timm's eval transform for a pretrained_cfg that names its interpolation and crop_pct
    (transforms_imagenet_eval): the shorter side resized to ⌊size / crop_pct⌋ ("center", for a square input), or
    both sides ("squash"), then a centre crop to the input size; None for another crop mode."""
    interpolation, crop_pct = pretrained.get("interpolation"), pretrained.get("crop_pct")
    mode = pretrained.get("crop_mode") or "center"
    if interpolation not in _TIMM_INTERPOLATION or not isinstance(crop_pct, (int, float)) or not 0 < crop_pct <= 1:
        return None
    scaled = tuple(math.floor(side / crop_pct) for side in image_size)
    if mode == "squash":
        resize = scaled
    elif mode == "center" and scaled[0] == scaled[1]:
        resize = scaled[0]
    else:
        return None
    return {"resize": resize, "crop": tuple(image_size), "resample": _TIMM_INTERPOLATION[interpolation],
            "rescale": 1 / 255, "offsets": "round", "origin": "timm"}


def from_hf(state: dict, hf_config: dict, preprocessor: dict | None = None) -> tuple[ViTConfig, dict]:
    """A transformers ViT, DeiT or DINOv2 state dict (any naming, a class head or none) and its config.json.

    The config is at the checkpoint's trained size. A DINOv2's preprocessor crops to another (224 for the
    Hub's models, trained at 518): that size is `extra["crop_size"]`, where `weights.load` runs it. What its
    `preprocessor` (preprocessor_config.json) does to a picture is `extra["preprocessing"]` (`hf_processor`), and
    the grid its position embeddings were learned on `extra["position_grid"]`.
    """
    base = _hf_base(state) or ""
    layout = _hf_layout(state, base)
    dinov2 = "ls1" in layout
    if dinov2 and hf_config.get("use_swiglu_ffn"):
        raise ConversionError(Message("This DINOv2 has a SwiGLU MLP (as the giant model does), which vitviz does not "
                                      "implement; the small, base and large DINOv2 models, with a GELU MLP, load."))
    if not all(key in hf_config for key in ("num_hidden_layers", "hidden_size", "num_attention_heads")):
        raise ConversionError(Message("The config.json lacks num_hidden_layers, hidden_size or num_attention_heads."))
    depth = _whole_number(hf_config, "num_hidden_layers", MAX_DEPTH)
    dim, heads = _whole_number(hf_config, "hidden_size", MAX_DIM), _whole_number(hf_config, "num_attention_heads", MAX_HEADS)
    heads_in_state = [name for name in ("classifier", "cls_classifier", "distillation_classifier")
                      if f"{name}.weight" in state]
    distillation, registers = base + "embeddings.distillation_token", base + "embeddings.register_tokens"
    expected = {base + k for k in ("embeddings.cls_token", "embeddings.position_embeddings",
                                   "embeddings.patch_embeddings.projection.weight", "layernorm.weight")}
    expected |= {f"{name}.weight" for name in heads_in_state} | {key for key in (distillation, registers) if key in state}
    for i in range(depth):
        p = layout["prefix"].format(base=base, i=i)
        expected |= {p + layout[name] + ".weight" for name in ("q", "k", "v", "o", "fc1", "fc2", "norm1", "norm2")}
        expected |= {p + layout[name] for name in ("ls1", "ls2") if name in layout}
    optional = frozenset(base + k for k in ("pooler.dense.weight", "pooler.dense.bias", "embeddings.mask_token"))
    _check_keys(state, expected, "Hugging Face ViT", optional)
    state = {k.removeprefix(base): v for k, v in state.items()}
    conv = state["embeddings.patch_embeddings.projection.weight"]
    patch = conv.shape[-1]
    special = ["cls"]
    pos = state["embeddings.position_embeddings"].reshape(-1, dim)
    out = {"cls_token": state["embeddings.cls_token"].reshape(dim)}
    if distillation in expected:  # DeiT: a second learned token, with a position of its own
        special.append("distillation")
        out["extra_tokens"] = state["embeddings.distillation_token"].reshape(1, dim)
    if registers in expected:  # DINOv2 with registers: after CLS, with no position (zero rows of E_pos)
        count = state["embeddings.register_tokens"].reshape(-1, dim).shape[0]
        special += ["register"] * count
        out["extra_tokens"] = state["embeddings.register_tokens"].reshape(count, dim)
        pos = torch.cat([pos[:1], torch.zeros(count, dim), pos[1:]])
    out |= {
        "pos_embed": pos,
        "patch_embed.weight": _patch_weight(conv),
        "patch_embed.bias": state.get("embeddings.patch_embeddings.projection.bias", torch.zeros(dim)),
        "norm.weight": state["layernorm.weight"], "norm.bias": state["layernorm.bias"],
    }
    classifier = "cls_patch_mean" if dinov2 and heads_in_state else "cls"  # DINOv2's head reads [y; patch mean]
    if "cls_classifier" in heads_in_state:  # DeiT with its teacher's head: the two heads' logits are averaged
        classifier = "cls_distillation_mean"
        out["head.weight"], out["head.bias"] = state["cls_classifier.weight"], state["cls_classifier.bias"]
        out["dist_head.weight"] = state["distillation_classifier.weight"]
        out["dist_head.bias"] = state["distillation_classifier.bias"]
    elif heads_in_state:
        out["head.weight"], out["head.bias"] = state["classifier.weight"], state["classifier.bias"]
    out |= _hf_blocks(state, layout, depth)
    model_type = str(hf_config.get("model_type", ""))
    image_size = hf_config.get("image_size", 224)
    extra = {"source": "huggingface", "model_type": model_type}
    trained = (image_size, image_size) if is_whole(image_size) else image_size
    if isinstance(trained, (list, tuple)) and len(trained) == 2 and all(is_whole(side) for side in trained):
        extra["position_grid"] = (trained[0] // patch, trained[1] // patch)  # where E_pos was learned (step 8)
    processor = hf_processor(preprocessor, model_type) if preprocessor is not None else None
    given = {**(preprocessor or {}), **hf_config}
    mean, std = given.get("image_mean", HALF), given.get("image_std", HALF)
    if processor is not None:  # its normalisation, with the processor's defaults for what the file leaves out
        mean, std = processor.pop("mean"), processor.pop("std")
        extra["preprocessing"] = processor
    crop = None
    if dinov2:  # the size its processor crops to, else a crop_size given without a processor vitviz follows
        crop = _crop_size(processor["crop"] if processor and processor["crop"] else given.get("crop_size"), patch)
    if crop is not None:  # weights.load runs the model at this size unless told another
        extra["crop_size"] = crop
    labels = _hf_labels(hf_config, out["head.weight"].shape[0]) if "head.weight" in out else ()
    if labels is None:
        labels, extra["labels"] = _numbered_labels(out["head.weight"].shape[0]), NUMBERED
    config = _config(
        image_size=image_size, patch_size=patch, channels=conv.shape[1], dim=dim, depth=depth,
        heads=heads, mlp_dim=hf_config.get("intermediate_size", out["blocks.0.mlp.fc1.weight"].shape[0]),
        labels=labels,
        layer_norm_eps=hf_config.get("layer_norm_eps", 1e-6 if dinov2 else 1e-12),
        activation=_activation(hf_config.get("hidden_act", "gelu")),
        mean=mean, std=std,
        special_tokens=tuple(special), layer_scale=dinov2, classifier=classifier,
        position_antialias=registers in expected,  # as transformers' Dinov2WithRegistersEmbeddings resamples
        extra=extra,
    )
    return config, out


def _hf_blocks(state: dict, layout: dict, depth: int) -> dict:
    """Every encoder block's tensors under vitviz's names (q, k and v joined into one qkv)."""
    out = {}
    for i in range(depth):
        p, o = layout["prefix"].format(base="", i=i), f"blocks.{i}."

        def get(name: str, part: str, p: str = p) -> torch.Tensor:
            key = p + layout[name] + "." + part
            return state[key] if key in state else torch.zeros(state[p + layout[name] + ".weight"].shape[0])

        out[o + "attn.qkv.weight"] = torch.cat([get(n, "weight") for n in ("q", "k", "v")])
        out[o + "attn.qkv.bias"] = torch.cat([get(n, "bias") for n in ("q", "k", "v")])
        for ours, theirs in (("attn.proj", "o"), ("mlp.fc1", "fc1"), ("mlp.fc2", "fc2"), ("norm1", "norm1"),
                             ("norm2", "norm2")):
            out[o + ours + ".weight"], out[o + ours + ".bias"] = get(theirs, "weight"), get(theirs, "bias")
        for ours in ("ls1", "ls2"):
            if ours in layout:
                out[o + ours + ".gamma"] = state[p + layout[ours]]
    return out


# --- timm -----------------------------------------------------------------------------------------


def is_timm(state: dict) -> bool:
    return "patch_embed.proj.weight" in state and any(k.startswith("blocks.") for k in state)


def timm_heads(architecture: str) -> int:
    match = _TIMM_NAME.match(architecture if isinstance(architecture, str) else "")
    if not match:
        raise ConversionError(Message("vitviz needs a timm ViT architecture name such as vit_small_patch16_224, not "
                                      "{name}.", name=reprlib.repr(architecture)))
    return TIMM_SIZES[match.group(1)][1]


def _timm_labels(names: list | None, count: int) -> tuple[str, ...] | None:
    """The checkpoint's own names; else ImageNet-1k's for 1,000 classes (timm's usual head); else None."""
    if isinstance(names, (list, tuple)) and len(names) == count:
        return tuple(str(n) for n in names)
    return imagenet_labels() if count == 1000 else None


def _timm_depth(state: dict) -> int:
    """How many blocks the keys blocks.0. … blocks.N. number, checked before it sizes a loop."""
    numbers = {k.split(".")[1] for k in state if k.startswith("blocks.")}
    if not all(n.isdigit() and int(n) < MAX_DEPTH for n in numbers):
        raise ConversionError(Message("This does not match a timm ViT checkpoint: its blocks are numbered {numbers}.",
                                      numbers=str(sorted(numbers)[:6])))
    return 1 + max((int(n) for n in numbers), default=-1)


# A timm tag's data (vit_tiny_patch16_224.augreg_in21k_ft_in1k): the recipes `vitviz.facts.TRAINING` names.
_TIMM_TAGS = ((re.compile(r"in21k_ft_in1k"), "imagenet-21k-1k"), (re.compile(r"in21k$"), "imagenet-21k"),
              (re.compile(r"(?:^|_)in1k$"), "imagenet-1k"))


def timm_training(tag: object) -> str | None:
    """The training data a timm pretrained tag names, as `vitviz.facts.TRAINING` calls it, or None."""
    if not isinstance(tag, str):
        return None
    return next((recipe for pattern, recipe in _TIMM_TAGS if pattern.search(tag)), None)


def from_timm(state: dict, architecture: str, hub_config: dict | None = None) -> tuple[ViTConfig, dict]:
    """A timm VisionTransformer state dict; `architecture` gives the head count (e.g. vit_small_patch16_224)."""
    heads = timm_heads(architecture)
    hub_config = hub_config or {}
    pretrained = hub_config.get("pretrained_cfg")
    pretrained = pretrained if isinstance(pretrained, dict) else {}
    depth = _timm_depth(state)
    expected = {"cls_token", "pos_embed", "patch_embed.proj.weight", "norm.weight", "head.weight"}
    for i in range(depth):
        expected |= {f"blocks.{i}.{n}.weight" for n in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")}
    _check_keys(state, expected, "timm ViT")  # fc_norm, register tokens, layer scale... are unexpected keys
    conv = state["patch_embed.proj.weight"]
    dim, patch = conv.shape[0], conv.shape[-1]
    count = state["pos_embed"].reshape(-1, dim).shape[0] - 1
    side = round(count**0.5)
    input_size = pretrained.get("input_size") or hub_config.get("input_size")  # (c, H, W)
    image_size = tuple(input_size[1:]) if isinstance(input_size, (list, tuple)) else (side * patch, side * patch)
    classes = state["head.weight"].shape[0]
    labels = _timm_labels(hub_config.get("label_names") or pretrained.get("label_names"), classes)
    extra = {"source": "timm", "architecture": architecture}
    if side * side == count:  # the grid E_pos was learned on
        extra["position_grid"] = (side, side)
    training = timm_training(pretrained.get("tag"))
    if training:  # the checkpoint's own word for its data: "augreg_in21k_ft_in1k"
        extra["training"] = training
    processor = timm_processor(pretrained, image_size) if all(is_whole(side) for side in image_size) else None
    if processor is not None:
        extra["preprocessing"] = processor
    if labels is None:
        labels, extra["labels"] = _numbered_labels(classes), NUMBERED
    out = {k: v for k, v in state.items() if k not in ("patch_embed.proj.weight", "patch_embed.proj.bias")}
    out["cls_token"] = state["cls_token"].reshape(dim)
    out["pos_embed"] = state["pos_embed"].reshape(-1, dim)
    out["patch_embed.weight"] = _patch_weight(conv)
    out["patch_embed.bias"] = state.get("patch_embed.proj.bias", torch.zeros(dim))
    for i in range(depth):
        for part in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"):
            key = f"blocks.{i}.{part}.bias"
            out.setdefault(key, torch.zeros(state[f"blocks.{i}.{part}.weight"].shape[0]))
    config = _config(
        image_size=image_size, patch_size=patch, channels=conv.shape[1], dim=dim, depth=depth, heads=heads,
        mlp_dim=state["blocks.0.mlp.fc1.weight"].shape[0],
        labels=labels,
        layer_norm_eps=1e-6, mean=pretrained.get("mean", HALF), std=pretrained.get("std", HALF), extra=extra,
    )
    return config, out
