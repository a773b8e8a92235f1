"""Saving and loading weights: the project's own safetensors format.

A vitviz file is a safetensors file whose state dict keys are the `ViT` module's own and
whose metadata holds the `ViTConfig` as JSON under "vitviz_config".
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import io
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import load_file, save_file

from vitviz.model import ViT, ViTConfig, parameter_shapes

ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_PATH = ASSETS / "vitviz-shapes.safetensors"
CONFIG_KEY = "vitviz_config"


class CheckpointError(ValueError):
    """A checkpoint vitviz cannot use; the message is one sentence for the user."""


def _serialisable(model: ViT) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The state dict and metadata of a vitviz file."""
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    return state, {CONFIG_KEY: json.dumps(model.config.to_dict())}


def save(model: ViT, path: str | Path) -> None:
    state, metadata = _serialisable(model)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=metadata)


def to_bytes(model: ViT) -> bytes:
    from safetensors.torch import save as save_bytes

    state, metadata = _serialisable(model)
    return save_bytes(state, metadata=metadata)


def _metadata(header_source: bytes | Path) -> dict:
    """The metadata dict of a safetensors file, read from its JSON header."""
    if isinstance(header_source, Path):  # read the header only, not the whole file
        with open(header_source, "rb") as handle:
            raw = handle.read(8)
            length = int.from_bytes(raw, "little") if len(raw) == 8 else -1
            if length <= 0 or length > 100_000_000:
                raise CheckpointError("The file is not a safetensors checkpoint.")
            header = handle.read(length)
    else:
        raw = header_source
        length = int.from_bytes(raw[:8], "little") if len(raw) >= 8 else -1
        if length <= 0 or length > min(100_000_000, len(raw) - 8):
            raise CheckpointError("The file is not a safetensors checkpoint.")
        header = raw[8 : 8 + length]
    try:
        return json.loads(header).get("__metadata__") or {}
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
        raise CheckpointError("The safetensors header is damaged.") from exc


def _build(state: dict[str, torch.Tensor], metadata: dict) -> ViT:
    if CONFIG_KEY not in metadata:
        raise CheckpointError("The safetensors file has no vitviz configuration in its metadata.")
    try:
        config = ViTConfig.from_dict(json.loads(metadata[CONFIG_KEY]))
    except (json.JSONDecodeError, TypeError, ValueError, AttributeError, ZeroDivisionError) as exc:
        raise CheckpointError(f"The vitviz configuration in the file is invalid: {str(exc).rstrip('.')}.") from exc
    # The configuration comes from the file: check it against the tensors before allocating a
    # model of whatever size it claims (an upload saying dim=100000 must not exhaust memory).
    layers = {k.split(".")[1] for k in state if k.startswith("blocks.")}
    if config.depth != len(layers):
        raise CheckpointError(f"The checkpoint has {len(layers)} encoder layers, but its configuration says {config.depth}.")
    expected = parameter_shapes(config)  # shapes only, no memory
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"The checkpoint's keys do not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}."
        )
    wrong = [k for k in expected if expected[k] != tuple(state[k].shape)]
    if wrong:
        k = wrong[0]
        raise CheckpointError(
            f"The checkpoint's tensor {k} has shape {tuple(state[k].shape)}, but the model needs {expected[k]}."
        )
    model = ViT(config)
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()


def load_file_model(path: str | Path) -> ViT:
    """A model saved by `save`."""
    return _build(*_read_safetensors(Path(path)))


def load_bytes_model(data: bytes) -> ViT:
    """A model from the bytes of a file written by `save` (an upload, say)."""
    return _build(*_read_safetensors(data))


@functools.lru_cache(maxsize=1)
def _default() -> ViT:
    model = load_file_model(DEFAULT_PATH)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def load_default() -> ViT:
    """The shipped model, loaded once per process and shared read-only.

    Its parameters have requires_grad off, so nobody trains it by accident; a caller that
    wants to change weights must take `copy_model(load_default())`.
    """
    return _default()


def copy_model(model: ViT) -> ViT:
    """An independent, trainable copy with no hooks (the shared default model is never mutated)."""
    config = dataclasses.replace(model.config, extra=copy.deepcopy(model.config.extra))
    with torch.device("meta"):  # no memory and no random init for weights about to be replaced
        clone = ViT(config)
    clone.load_state_dict({k: v.detach().clone() for k, v in model.state_dict().items()}, assign=True)
    return clone.train(model.training)


# --- any checkpoint: the project's own, Hugging Face, timm ------------------------------------------

SAFETENSORS_FILES = ("model.safetensors",)
PICKLE_FILES = ("pytorch_model.bin", "model.pth", "pytorch_model.pth")


def _read_pickle(payload: bytes | Path) -> tuple[dict[str, torch.Tensor], dict | None]:
    """(the tensors, a vitviz config or None) of a torch checkpoint.

    Read with weights_only=True so a hostile pickle cannot run code. The tensors may sit under a
    wrapper key ("state_dict", "model", "model_state_dict"); the project's own .pth layout is
    {"config": ViTConfig.to_dict(), "state_dict": ...}.
    """
    source = io.BytesIO(payload) if isinstance(payload, bytes) else str(payload)
    try:
        loaded = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for bad or hostile pickles; all mean "refused"
        raise CheckpointError(
            "The checkpoint could not be read safely: it is damaged, or a pickle that needs code to load."
        ) from exc
    if not isinstance(loaded, dict):
        raise CheckpointError("The checkpoint does not hold a dictionary of tensors.")
    state = loaded
    for key in ("state_dict", "model", "model_state_dict"):
        inner = loaded.get(key)
        if isinstance(inner, dict) and all(isinstance(v, torch.Tensor) for v in inner.values()):
            state = inner
            break
    config = loaded.get("config") if state is not loaded and isinstance(loaded.get("config"), dict) else None
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}, config


def _read_safetensors(payload: bytes | Path) -> tuple[dict, dict]:
    metadata = _metadata(payload)
    try:
        state = load_bytes(payload) if isinstance(payload, bytes) else load_file(str(payload))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError("The safetensors file is damaged or truncated.") from exc
    return state, metadata


def _from_state(state: dict, *, metadata: dict | None = None, hf_config: dict | None = None,
                architecture: str | None = None, hub_config: dict | None = None) -> ViT:
    """Recognise the key naming of `state` and build the model."""
    from vitviz import convert

    metadata = metadata or {}
    try:
        if CONFIG_KEY in metadata:
            return _build(state, metadata)
        if convert.is_hf(state):
            if hf_config is None:
                raise CheckpointError("A Hugging Face checkpoint needs its config.json: load the folder that holds both.")
            config, mapped = convert.from_hf(state, hf_config)
        elif convert.is_timm(state):
            architecture = architecture or (hub_config or {}).get("architecture")
            if not architecture:
                raise CheckpointError("A timm checkpoint needs its architecture name, e.g. vit_small_patch16_224.")
            config, mapped = convert.from_timm(state, architecture, hub_config)
        else:
            sample = sorted(state)[:4]
            raise CheckpointError(f"The checkpoint's keys (e.g. {sample}) match no ViT layout vitviz knows.")
    except convert.ConversionError as exc:
        raise CheckpointError(str(exc)) from exc
    return _build(mapped, {CONFIG_KEY: json.dumps(config.to_dict())})


def _json_file(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path.name} is not valid JSON.") from exc


def _load_folder(folder: Path, architecture: str | None) -> ViT:
    config_path = folder / "config.json"
    if not config_path.exists():
        raise CheckpointError("The folder has no config.json.")
    config = _json_file(config_path)
    preprocessor_path = folder / "preprocessor_config.json"
    if preprocessor_path.exists():  # transformers keeps the normalisation there, not in config.json
        preprocessor = _json_file(preprocessor_path)
        config = {**{k: preprocessor[k] for k in ("image_mean", "image_std") if k in preprocessor}, **config}
    weights_path = next((folder / n for n in SAFETENSORS_FILES + PICKLE_FILES if (folder / n).exists()), None)
    if weights_path is None:
        raise CheckpointError("The folder has no model.safetensors or pytorch_model.bin.")
    if weights_path.suffix == ".safetensors":
        state, metadata = _read_safetensors(weights_path)
    else:
        state, _ = _read_pickle(weights_path)
        metadata = {}
    is_timm_hub = "architecture" in config and "model_type" not in config
    return _from_state(state, metadata=metadata, hf_config=None if is_timm_hub else config,
                       architecture=architecture, hub_config=config if is_timm_hub else None)


def _load_pickle(payload: bytes | Path, architecture: str | None) -> ViT:
    state, config = _read_pickle(payload)
    if config is not None:
        return _build(state, {CONFIG_KEY: json.dumps(config)})
    return _from_state(state, architecture=architecture)


def load(source: str | Path | bytes, *, architecture: str | None = None,
         image_size: tuple[int, int] | None = None) -> ViT:
    """Load any ViT checkpoint vitviz understands as a vitviz `ViT`.

    `source` is a folder (Hugging Face config.json + model.safetensors or pytorch_model.bin, or a
    timm hub folder), a .safetensors or .pth file (timm's or vitviz's own), or the bytes of one.
    `architecture` names a timm model when nothing else does. `image_size` (H, W) runs the model at
    another input size, with bicubically resampled position embeddings.
    """
    if isinstance(source, (bytes, bytearray)):
        payload = bytes(source)
        if payload[:2] == b"PK" or payload[:1] == b"\x80":  # a torch zip archive or a legacy pickle
            model = _load_pickle(payload, architecture)
        else:
            state, metadata = _read_safetensors(payload)
            model = _from_state(state, metadata=metadata, architecture=architecture)
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise CheckpointError(f"There is no file or folder at {path}.")
        if path.is_dir():
            model = _load_folder(path, architecture)
        elif path.suffix == ".safetensors":
            state, metadata = _read_safetensors(path)
            model = _from_state(state, metadata=metadata, architecture=architecture)
        elif path.suffix in (".pth", ".pt", ".bin"):
            model = _load_pickle(path, architecture)
        else:
            raise CheckpointError("vitviz reads folders, .safetensors files and .pth/.bin files.")
    return resize(model, image_size) if image_size else model


def resize(model: ViT, image_size: tuple[int, int]) -> ViT:
    """A copy of `model` that takes inputs of `image_size` (H, W), position embeddings resampled."""
    from vitviz import convert

    image_size = (int(image_size[0]), int(image_size[1]))
    if image_size == model.config.image_size:
        return model
    p = model.config.patch_size
    if image_size[0] % p or image_size[1] % p or min(image_size) < p:
        raise CheckpointError(f"The input size must be a multiple of the patch size {p}.")
    config = dataclasses.replace(model.config, image_size=image_size, extra=dict(model.config.extra))
    resized = ViT(config)
    state = {k: v for k, v in model.state_dict().items() if k != "pos_embed"}
    state["pos_embed"] = convert.resample_positions(model.pos_embed.detach(), model.config.grid, config.grid)
    resized.load_state_dict(state)
    return resized.eval()


def parameter_count(model: ViT) -> int:
    return sum(p.numel() for p in model.parameters())
