"""Saving and loading weights: the project's own safetensors format, and any ViT checkpoint vitviz understands.

A vitviz file is a safetensors file whose state dict keys are the `ViT` module's own and
whose metadata holds the `ViTConfig` as JSON under "vitviz_config".

Checkpoints may come from visitors of a shared server, so every file is checked against the
deployment's limits (`vitviz.limits`) before it is read, and every refusal is a `CheckpointError`
whose message is one sentence.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import io
import json
import logging
import math
import os
import re
import reprlib
import stat
import struct
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import load_file, save_file

from vitviz import convert, limits
from vitviz.i18n import Message, message_of
from vitviz.model import ViT, ViTConfig, is_whole, parameter_shapes

ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_PATH = ASSETS / "vitviz-shapes.safetensors"
CONFIG_KEY = "vitviz_config"
log = logging.getLogger("vitviz")


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


def _config_from(values: object) -> ViTConfig:
    """The ViTConfig a checkpoint carries (JSON text or a dict), or one sentence saying what is wrong with it."""
    try:
        values = json.loads(values) if isinstance(values, str) else values
    except (ValueError, RecursionError) as exc:  # bad JSON, or nested too deep
        log.info("vitviz: a checkpoint's configuration is not JSON: %r", exc)
        raise CheckpointError(Message("The checkpoint's configuration is not valid JSON.")) from exc
    try:
        return ViTConfig.from_dict(values)
    except (ValueError, TypeError, RecursionError) as exc:
        raise CheckpointError(convert.invalid_configuration(exc)) from exc


def _build(state: dict[str, torch.Tensor], config: ViTConfig) -> ViT:
    # The configuration comes from the file: check it against the tensors before allocating a
    # model of whatever size it claims (an upload saying dim=100000 must not exhaust memory).
    layers = {k.split(".")[1] for k in state if k.startswith("blocks.")}
    if config.depth != len(layers):
        raise CheckpointError(Message("The checkpoint has {layers} encoder layers, but its configuration says {depth}.",
                                      layers=len(layers), depth=config.depth))
    expected = parameter_shapes(config)  # shapes only, no memory
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(Message("The checkpoint's keys do not match the model: missing {missing}; unexpected "
                                      "{unexpected}.", missing=convert.key_list(missing),
                                      unexpected=convert.key_list(unexpected)))
    wrong = [k for k in expected if expected[k] != tuple(state[k].shape)]
    if wrong:
        k = wrong[0]
        raise CheckpointError(Message("The checkpoint's tensor {name} has the shape {shape}, but the model needs {needed}.",
                                      name=k, shape=tuple(state[k].shape), needed=expected[k]))
    model = ViT(config)
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()


def _own_model(source: bytes | Path) -> ViT:
    state, metadata = _read_safetensors(source)
    if CONFIG_KEY not in metadata:
        raise CheckpointError(Message("The safetensors file has no vitviz configuration in its metadata."))
    return _build(state, _config_from(metadata[CONFIG_KEY]))


def load_file_model(path: str | Path) -> ViT:
    """A model saved by `save`."""
    return _own_model(Path(path))


def load_bytes_model(data: bytes) -> ViT:
    """A model from the bytes of a file written by `save` (an upload, say), within the token limit."""
    model = _own_model(bytes(data))
    _check_tokens(model.config.image_size, model.config.patch_size, model.config.num_special)
    return model


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

NOT_A_CHECKPOINT = Message("The file is not a checkpoint vitviz reads: a safetensors file, or a .pth or .bin file written by torch.save.")
NOT_SAFETENSORS = Message("The file is not a safetensors checkpoint.")
LEGACY_PICKLE = Message("The file is a pickle in torch's legacy format, which vitviz does not read: save it again with torch.save "
                 "from torch 1.6 or later.")
DAMAGED_HEADER = Message("The safetensors header is damaged.")
TENSOR_NAME = re.compile(r"[A-Za-z0-9_.-]{1,200}\Z")  # module paths like blocks.0.attn.qkv.weight
MAX_RANK = 4  # a ViT's tensors have 1 to 4 dimensions: the patch projection, a Conv2d (d, c, p, p), has the most


def _mb(count: int) -> float:
    """Bytes in MB, as a sentence shows them ("{size:,} MB"): whole from 10 MB up, one decimal below."""
    return round(count / 1e6) if count >= 10e6 else round(count / 1e6, 1)


def _regular_file_size(path: Path) -> int:
    """The size of `path`, which must be a regular file: os.stat comes first, so a FIFO or a device is never
    opened (opening a FIFO waits for a writer forever)."""
    try:
        info = os.stat(path)
    except (OSError, ValueError) as exc:
        raise CheckpointError(Message("{name} cannot be read.", name=path.name)) from exc
    if not stat.S_ISREG(info.st_mode):
        raise CheckpointError(Message("{name} is not a regular file.", name=path.name))
    return info.st_size


def _checked_size(source: bytes | Path) -> int:
    """The size of a checkpoint file or upload, refused above the checkpoint limit before anything is read."""
    size = len(source) if isinstance(source, bytes) else _regular_file_size(source)
    limit = limits.max_checkpoint_bytes()
    if size > limit:
        raise CheckpointError(Message("The checkpoint is {size:,} MB, more than this app's limit of {limit:,} MB.",
                                      size=_mb(size), limit=_mb(limit)))
    return size


def _opened(source: bytes | Path):
    return io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")


def _safetensors_header_length(head: bytes, size: int) -> int | None:
    """The header length if `head`, a file's first 9 bytes, starts a safetensors file of `size` bytes, else None.

    The structure decides, not a magic byte: 8 bytes of little-endian length that fits the file, then a JSON
    object. (About 1 valid safetensors file in 32 has a length whose first byte is a pickle's 0x80.)
    """
    if len(head) < 9 or head[8:9] != b"{":
        return None
    length = int.from_bytes(head[:8], "little")
    return length if length <= size - 8 else None


def _kind(source: bytes | Path) -> str:
    """"safetensors" or "zip" (torch.save's format); anything else is refused with a sentence."""
    size = _checked_size(source)
    try:
        with _opened(source) as handle:
            head = handle.read(9)
    except OSError as exc:
        raise CheckpointError(Message("The checkpoint cannot be read.")) from exc
    if _safetensors_header_length(head, size) is not None:
        return "safetensors"
    if head[:4] == b"PK\x03\x04":
        return "zip"
    raise CheckpointError(LEGACY_PICKLE if head[:1] == b"\x80" else NOT_A_CHECKPOINT)


def _check_shapes(shapes: dict) -> None:
    """Refuse what no ViT checkpoint holds, from names and shapes alone (before any tensor data is read): too
    many tensors, names that are not module paths, shapes of another rank, more float32 bytes than the limit."""
    if len(shapes) > limits.max_tensors():
        raise CheckpointError(Message("The checkpoint holds {count:,} tensors, more than this app's limit of {limit:,}.",
                                      count=len(shapes), limit=limits.max_tensors()))
    elements = 0
    for name, shape in shapes.items():
        if not isinstance(name, str) or not TENSOR_NAME.match(name):
            raise CheckpointError(Message("The checkpoint has a tensor name no ViT has: {name}.", name=reprlib.repr(name)))
        if not isinstance(shape, (list, tuple)) or not 1 <= len(shape) <= MAX_RANK or \
                not all(is_whole(n) and n >= 1 for n in shape):
            raise CheckpointError(Message("The checkpoint's tensor {name} has the shape {shape}, which no ViT tensor has.",
                                          name=name, shape=reprlib.repr(shape)))
        elements += math.prod(shape)
    limit = limits.max_checkpoint_bytes()
    if elements * 4 > limit:
        raise CheckpointError(Message("The checkpoint's tensors take {size:,} MB as float32, more than this app's limit of "
                                      "{limit:,} MB.", size=_mb(elements * 4), limit=_mb(limit)))


def _safetensors_metadata(handle, length: int) -> dict:
    """The metadata of the safetensors file open in `handle`, after its header passed `_check_shapes`."""
    limit = limits.max_header_bytes()
    if length > limit:  # parsing a JSON header costs tens of times its size
        raise CheckpointError(Message("The safetensors header is {size:,.0f} kB, more than this app's limit of "
                                      "{limit:,.0f} kB.", size=length / 1000, limit=limit / 1000))
    handle.seek(8)
    try:
        header = json.loads(handle.read(length))
    except (ValueError, RecursionError) as exc:  # bad JSON, bad UTF-8, or nested too deep
        raise CheckpointError(DAMAGED_HEADER) from exc
    if not isinstance(header, dict):
        raise CheckpointError(DAMAGED_HEADER)
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(DAMAGED_HEADER)
    _check_shapes({name: entry.get("shape") if isinstance(entry, dict) else None for name, entry in header.items()})
    return metadata


def _read_safetensors(source: bytes | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, metadata) of a safetensors file, its header checked before any tensor is read."""
    size = _checked_size(source)
    try:
        with _opened(source) as handle:
            length = _safetensors_header_length(handle.read(9), size)
            if length is None:
                raise CheckpointError(NOT_SAFETENSORS)
            metadata = _safetensors_metadata(handle, length)
        state = load_bytes(source) if isinstance(source, bytes) else load_file(str(source))
    except CheckpointError:
        raise
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(Message("The safetensors file is damaged or truncated.")) from exc
    return state, metadata


ZIP_END = struct.Struct("<4s4H2LH")  # signature, disk numbers, entries (here, in all), directory size, offset, comment
ZIP64_END = struct.Struct("<4sQ2H2L4Q")  # signature, record size, versions, disks, entries, directory size, offset
ZIP64_LOCATOR_SIZE = 20


def _zip_directory_size(handle, size: int) -> int:
    """The size of a zip archive's central directory as its end records declare it (the larger, if there are two).

    zipfile reads the whole directory and makes an object per member, so this is bounded first. The end
    record is found as zipfile finds it: the last signature in the final 64 kB.
    """
    tail_size = min(size, ZIP_END.size + 0xFFFF + ZIP64_LOCATOR_SIZE + ZIP64_END.size)
    handle.seek(size - tail_size)
    tail = handle.read(tail_size)
    end = tail.rfind(b"PK\x05\x06")
    if end < 0 or end + ZIP_END.size > len(tail):
        raise CheckpointError(NOT_A_CHECKPOINT)
    directory = ZIP_END.unpack_from(tail, end)[5]
    zip64 = end - ZIP64_LOCATOR_SIZE - ZIP64_END.size
    if zip64 >= 0 and tail[zip64 : zip64 + 4] == b"PK\x06\x06":
        directory = max(directory, ZIP64_END.unpack_from(tail, zip64)[8])
    return directory


def _check_zip(source: bytes | Path) -> None:
    """Refuse a torch zip archive whose directory or unpacked members exceed the limits, before torch.load
    unpacks them: it allocates every member at its declared size (a 4.7 MB upload took 1 GB)."""
    size = _checked_size(source)
    limit, ratio = limits.max_checkpoint_bytes(), limits.max_zip_ratio()
    try:
        with _opened(source) as handle:
            directory = _zip_directory_size(handle, size)
            if directory > limits.max_header_bytes():
                raise CheckpointError(Message("The archive's directory is {size:,.0f} kB, more than this app's limit of "
                                              "{limit:,.0f} kB.", size=directory / 1000,
                                              limit=limits.max_header_bytes() / 1000))
            unpacked = sum(member.file_size for member in zipfile.ZipFile(handle).infolist())
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise CheckpointError(Message("The .pth archive is damaged.")) from exc
    if unpacked > limit:
        raise CheckpointError(Message("The checkpoint unpacks to {size:,} MB, more than this app's limit of {limit:,} MB.",
                                      size=_mb(unpacked), limit=_mb(limit)))
    if unpacked > ratio * size:
        raise CheckpointError(Message("The checkpoint is compressed {ratio:,.0f} to 1, far tighter than tensors pack, so "
                                      "vitviz does not unpack it.", ratio=unpacked / size))


def _read_pickle(source: bytes | Path) -> tuple[dict[str, torch.Tensor], dict | None]:
    """(the tensors, a vitviz config or None) of a torch checkpoint, a zip archive checked by `_check_zip`.

    Read with weights_only=True so a hostile pickle cannot run code. The tensors may sit under a
    wrapper key ("state_dict", "model", "model_state_dict"); the project's own .pth layout is
    {"config": ViTConfig.to_dict(), "state_dict": ...}.
    """
    _check_zip(source)
    try:
        loaded = torch.load(io.BytesIO(source) if isinstance(source, bytes) else str(source),
                            map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for bad or hostile pickles; all mean "refused"
        raise CheckpointError(Message(
            "The checkpoint could not be read safely: it is damaged, or a pickle that needs code to load."
        )) from exc
    if not isinstance(loaded, dict):
        raise CheckpointError(Message("The checkpoint does not hold a dictionary of tensors."))
    state = loaded
    for key in ("state_dict", "model", "model_state_dict"):
        inner = loaded.get(key)
        if isinstance(inner, dict) and all(isinstance(v, torch.Tensor) for v in inner.values()):
            state = inner
            break
    config = loaded.get("config") if state is not loaded and isinstance(loaded.get("config"), dict) else None
    state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    # A tensor's shape may claim more than its storage holds (a stride of 0): check before any copy is made.
    _check_shapes({k: tuple(v.shape) for k, v in state.items()})
    return state, config


def _read_checkpoint(source: bytes | Path) -> tuple[dict[str, torch.Tensor], dict, dict | None]:
    """(tensors, safetensors metadata, the config a vitviz .pth carries) of a safetensors file or a torch zip."""
    if _kind(source) == "safetensors":
        state, metadata = _read_safetensors(source)
        return state, metadata, None
    state, config = _read_pickle(source)
    return state, {}, config


def _from_state(state: dict, *, metadata: dict | None = None, hf_config: dict | None = None,
                architecture: str | None = None, hub_config: dict | None = None,
                preprocessor: dict | None = None) -> ViT:
    """Recognise the key naming of `state` and build the model."""
    metadata = metadata or {}
    if CONFIG_KEY in metadata:
        return _build(state, _config_from(metadata[CONFIG_KEY]))
    try:
        if convert.is_hf(state):
            if hf_config is None:
                raise CheckpointError(Message("A Hugging Face checkpoint needs its config.json: load the folder that holds both."))
            config, mapped = convert.from_hf(state, hf_config, preprocessor)
        elif convert.is_timm(state):
            architecture = architecture or (hub_config or {}).get("architecture")
            if not architecture:
                raise CheckpointError(Message("A timm checkpoint needs its architecture name, e.g. vit_small_patch16_224."))
            config, mapped = convert.from_timm(state, architecture, hub_config)
        else:
            sample = sorted(state)[:4]
            raise CheckpointError(Message("The checkpoint's keys (e.g. {sample}) match no ViT layout vitviz knows.",
                                          sample=sample))
    except convert.ConversionError as exc:
        raise CheckpointError(message_of(exc)) from exc
    except (RuntimeError, IndexError) as exc:  # a reshape or concatenation of tensors whose shapes do not fit
        raise CheckpointError(Message("The checkpoint's tensors do not fit together as a ViT.")) from exc
    return _build(mapped, config)


def _json_file(path: Path) -> dict:
    """A JSON object from a small regular file (config.json, preprocessor_config.json)."""
    size, limit = _regular_file_size(path), limits.max_header_bytes()
    if size > limit:
        raise CheckpointError(Message("{name} is {size:,.0f} kB, more than this app's limit of {limit:,.0f} kB.",
                                      name=path.name, size=size / 1000, limit=limit / 1000))
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(Message("{name} cannot be read.", name=path.name)) from exc
    try:
        values = json.loads(text)
    except (ValueError, RecursionError) as exc:  # bad JSON, bad UTF-8, or nested too deep
        raise CheckpointError(Message("{name} is not valid JSON.", name=path.name)) from exc
    if not isinstance(values, dict):
        raise CheckpointError(Message("{name} does not hold a JSON object.", name=path.name))
    return values


def _load_folder(folder: Path, architecture: str | None) -> ViT:
    config_path = folder / "config.json"
    if not config_path.exists():
        raise CheckpointError(Message("The folder has no config.json."))
    config = _json_file(config_path)
    preprocessor_path = folder / "preprocessor_config.json"
    # transformers keeps the normalisation, the resize and the crop there, not in config.json
    preprocessor = _json_file(preprocessor_path) if preprocessor_path.exists() else None
    weights_path = next((folder / n for n in SAFETENSORS_FILES + PICKLE_FILES if (folder / n).exists()), None)
    if weights_path is None:
        raise CheckpointError(Message("The folder has no model.safetensors or pytorch_model.bin."))
    state, metadata, _ = _read_checkpoint(weights_path)
    is_timm_hub = "architecture" in config and "model_type" not in config
    return _from_state(state, metadata=metadata, hf_config=None if is_timm_hub else config,
                       architecture=architecture, hub_config=config if is_timm_hub else None, preprocessor=preprocessor)


def _load_file(source: bytes | Path, architecture: str | None) -> ViT:
    """A single checkpoint file: safetensors (any layout) or a torch zip (any layout, or vitviz's own .pth)."""
    state, metadata, config = _read_checkpoint(source)
    if config is not None:
        return _build(state, _config_from(config))
    return _from_state(state, metadata=metadata, architecture=architecture)


def load(source: str | Path | bytes, *, architecture: str | None = None,
         image_size: tuple[int, int] | None = None) -> ViT:
    """Load any ViT checkpoint vitviz understands as a vitviz `ViT`.

    `source` is a folder (Hugging Face config.json + model.safetensors or pytorch_model.bin, or a
    timm hub folder), a .safetensors or .pth file (timm's or vitviz's own), or the bytes of one.
    `architecture` names a timm model when nothing else does. `image_size` (H, W) runs the model at
    another input size, with bicubically resampled position embeddings; without it a DINOv2 runs at the
    size its preprocessor crops to. Files, their tensors and the model's input are bounded by `vitviz.limits`.
    """
    if isinstance(source, (bytes, bytearray)):
        model = _load_file(bytes(source), architecture)
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise CheckpointError(Message("There is no file or folder at {path}.", path=str(path)))
        if path.is_dir():
            model = _load_folder(path, architecture)
        elif path.suffix in (".safetensors", ".pth", ".pt", ".bin"):
            model = _load_file(path, architecture)
        else:
            raise CheckpointError(Message("vitviz reads folders, .safetensors files and .pth/.bin files."))
    image_size = image_size or _crop_size(model.config)
    model = resize(model, image_size) if image_size else model
    _check_tokens(model.config.image_size, model.config.patch_size, model.config.num_special)
    return model


def _crop_size(config: ViTConfig) -> tuple[int, int] | None:
    """The size a DINOv2's preprocessor crops to (`convert.from_hf` notes it in `extra`), if it is a pair of sizes."""
    crop = config.extra.get("crop_size")
    if isinstance(crop, (list, tuple)) and len(crop) == 2 and all(is_whole(side) and side >= 1 for side in crop):
        return (int(crop[0]), int(crop[1]))
    return None


# --- a visitor's path: only inside the deployer's models directory ---------------------------------------------------

LOCAL_OFF = Message("Loading from this server's disk is off: the deployer has not named a models directory.")
NOT_IN_MODELS_DIR = Message("That is not the name of a model in this server's models directory.")


def load_from_models_dir(name: str, *, architecture: str | None = None,
                         image_size: tuple[int, int] | None = None) -> ViT:
    """`load` the folder or file that a visitor names inside the deployer's models directory (`limits.models_dir`).

    Every name that does not lead to something inside it gets the same sentence, whatever is on the disk,
    so a visitor learns nothing about the rest of the server.
    """
    root = limits.models_dir()
    if root is None:
        raise CheckpointError(LOCAL_OFF)
    return load(_inside(root, name), architecture=architecture, image_size=image_size)


def _inside(root: Path, name: str) -> Path:
    """What `name` (relative, or absolute within `root`) points at inside `root`, symlinks resolved.

    No "..", no "~" expansion, no symlink out of `root`, and nothing outside is looked at before refusing.
    """
    candidate = root / name
    if ".." in candidate.parts or not candidate.is_relative_to(root):
        raise CheckpointError(NOT_IN_MODELS_DIR)
    try:
        resolved = Path(os.path.realpath(candidate, strict=True))
    except (OSError, ValueError):  # missing, unreadable, a name too long, a NUL byte
        raise CheckpointError(NOT_IN_MODELS_DIR) from None
    if resolved == root or not resolved.is_relative_to(root):
        raise CheckpointError(NOT_IN_MODELS_DIR)
    return resolved


# --- the input size ----------------------------------------------------------------------------------------------------


def _check_tokens(image_size: tuple[int, int], patch_size: int, specials: int = 1) -> None:
    """Refuse an input that would make more tokens than the limit: a trace keeps L·h·N² attention weights."""
    height, width = image_size
    tokens, limit = (height // patch_size) * (width // patch_size) + specials, limits.max_tokens()
    if tokens > limit:
        raise CheckpointError(Message("At {height} × {width} pixels this model reads {tokens:,} tokens, more than this "
                                      "app's limit of {limit:,} per image: choose a smaller input size.", height=height,
                                      width=width, tokens=tokens, limit=limit))


def resize(model: ViT, image_size: tuple[int, int]) -> ViT:
    """A copy of `model` that takes inputs of `image_size` (H, W), position embeddings resampled."""
    from vitviz import convert

    image_size = (int(image_size[0]), int(image_size[1]))
    if image_size == model.config.image_size:
        return model
    p = model.config.patch_size
    if image_size[0] % p or image_size[1] % p or min(image_size) < p:
        raise CheckpointError(Message("The input size must be a multiple of the patch size {p}.", p=p))
    _check_tokens(image_size, p, model.config.num_special)
    extra = {"position_grid": model.config.grid, **model.config.extra}  # where E_pos was learned, kept once set
    config = dataclasses.replace(model.config, image_size=image_size, extra=extra)
    resized = ViT(config)
    state = {k: v for k, v in model.state_dict().items() if k != "pos_embed"}
    state["pos_embed"] = convert.resample_positions(model.pos_embed.detach(), model.config.grid, config.grid,
                                                    specials=config.num_special, antialias=config.position_antialias)
    resized.load_state_dict(state)
    return resized.eval()


def parameter_count(model: ViT) -> int:
    return sum(p.numel() for p in model.parameters())
