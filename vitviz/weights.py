"""Saving and loading weights: the project's own safetensors format.

A vitviz file is a safetensors file whose state dict keys are the `ViT` module's own and
whose metadata holds the `ViTConfig` as JSON under "vitviz_config".
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import load_file, save_file

from vitviz.model import ViT, ViTConfig

ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_PATH = ASSETS / "vitviz-shapes.safetensors"
CONFIG_KEY = "vitviz_config"


class CheckpointError(ValueError):
    """A checkpoint vitviz cannot use; the message is one sentence for the user."""


def save(model: ViT, path: str | Path) -> None:
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    metadata = {CONFIG_KEY: json.dumps(model.config.to_dict())}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=metadata)


def to_bytes(model: ViT) -> bytes:
    from safetensors.torch import save

    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    return save(state, metadata={CONFIG_KEY: json.dumps(model.config.to_dict())})


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
    try:
        with torch.device("meta"):  # shapes only, no memory
            expected = ViT(config).state_dict()
    except (RuntimeError, ValueError, TypeError) as exc:
        raise CheckpointError(f"The vitviz configuration in the file is invalid: {str(exc).rstrip('.')}.") from exc
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"The checkpoint's keys do not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}."
        )
    wrong = [k for k in expected if tuple(expected[k].shape) != tuple(state[k].shape)]
    if wrong:
        k = wrong[0]
        raise CheckpointError(
            f"The checkpoint's tensor {k} has shape {tuple(state[k].shape)}, but the model needs {tuple(expected[k].shape)}."
        )
    model = ViT(config)
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()


def load_file_model(path: str | Path) -> ViT:
    """A model saved by `save`."""
    path = Path(path)
    metadata = _metadata(path)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError("The safetensors file is damaged or truncated.") from exc
    return _build(state, metadata)


def load_bytes_model(data: bytes) -> ViT:
    """A model from the bytes of a file written by `save` (an upload, say)."""
    metadata = _metadata(data)
    try:
        state = load_bytes(data)
    except (SafetensorError, ValueError) as exc:
        raise CheckpointError("The safetensors file is damaged or truncated.") from exc
    return _build(state, metadata)


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
    """An independent, trainable copy (the shared default model is never mutated)."""
    clone = copy.deepcopy(model)
    for parameter in clone.parameters():
        parameter.requires_grad_(True)
    return clone
