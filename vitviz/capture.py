"""Record every intermediate tensor of a forward pass: a `Recorder` of hooks, and the `Trace` it makes.

    recorder = Recorder(model)         # attaches forward hooks to the model's modules
    trace = recorder.trace(pixels)     # one image's tensors, batch dimension dropped
    recorder.eject()                   # detaches them

Hooks only record while a `Recorder` call runs, into a store held in a ContextVar of that call:
a plain forward, or a call in another thread, sees no store. So one long-lived Recorder serves
every Streamlit session that shares its model (attaching and detaching hooks while another
thread runs the model would not be safe). `trace(model, pixels)` is the one-off form for a
model nobody else is running.
"""

from __future__ import annotations

import contextvars
import dataclasses
import io
import json
import typing
from dataclasses import dataclass
from pathlib import Path

import safetensors
import torch
from torch import nn

from vitviz.model import ViT

# (module, key for its input, key for its output). One hook records both ends of a module, so a
# tensor that flows straight from one module into the next is recorded once: norm1's output is
# qkv's input, the scores are the softmax's input, the concatenated heads are W_o's input, resid
# is norm2's input, the GELU output is fc2's input, and a block's output is the next block's
# input (the final norm's, for the last). At batch 1 the cost of a trace is mostly torch's
# per-module hook dispatch, so fewer hooked modules is what counts.
LAYER_TAPS = (
    ("norm1", "input", "norm1"),
    ("attn.qkv", None, "qkv"),
    ("attn.softmax", "scores", "attn"),
    ("attn.proj", "concat", "attn_out"),
    ("norm2", "resid", "norm2"),
    ("mlp.fc2", "mlp_hidden", "mlp_out"),
)
# Only where a block has LayerScale (DINOv2): what each residual branch adds, λ ⊙ its output. Elsewhere
# the update is the branch's output itself, and a ViT's trace costs no extra hook.
LAYER_SCALE_TAPS = (
    ("ls1", None, "attn_update"),
    ("ls2", None, "mlp_update"),
)
MODEL_TAPS = (
    ("patch_embed", "flat_patches", "patch_embeddings"),
    ("with_cls", None, "with_cls"),
    ("norm", "{depth}.input", "final_tokens"),  # the last block's output, as if a next block took it
)


@dataclass(frozen=True, eq=False, repr=False)
class LayerTrace:
    """One encoder block (steps 10.1–10.12) for one image. N = s + n tokens, the s special tokens first.

    Fields are views of what the hooks recorded, so a trace copies nothing. q, k, v and each
    head's context are the model's own split of qkv and of W_o's input into heads.
    """

    heads: int
    input: torch.Tensor  # (N, d)       X, the block's input
    norm1: torch.Tensor  # (N, d)       LN₁(X)
    qkv: torch.Tensor  # (N, 3d)        LN₁(X) W_qkv + b, laid out [q | k | v], each head-major
    scores: torch.Tensor  # (h, N, N)   q kᵀ / √d_h
    attn: torch.Tensor  # (h, N, N)     softmax of each row of scores: P
    concat: torch.Tensor  # (N, d)      the heads' contexts side by side: W_o's input
    attn_out: torch.Tensor  # (N, d)    O = concat W_o + b_o
    resid: torch.Tensor  # (N, d)       X' = X + O
    norm2: torch.Tensor  # (N, d)       LN₂(X')
    mlp_hidden: torch.Tensor  # (N, mlp) GELU(LN₂(X') W₁ + b₁)
    mlp_out: torch.Tensor  # (N, d)     M, the MLP's output
    output: torch.Tensor  # (N, d)      X' + M: the next block's input
    attn_update: torch.Tensor  # (N, d) what attention adds to X: O, or λ₁ ⊙ O with LayerScale (X' = X + it)
    mlp_update: torch.Tensor  # (N, d)  what the MLP adds to X': M, or λ₂ ⊙ M with LayerScale

    @property
    def q(self) -> torch.Tensor:  # (h, N, d_h)
        return self._split_qkv(0)

    @property
    def k(self) -> torch.Tensor:  # (h, N, d_h)
        return self._split_qkv(1)

    @property
    def v(self) -> torch.Tensor:  # (h, N, d_h)
        return self._split_qkv(2)

    @property
    def context(self) -> torch.Tensor:  # (h, N, d_h), each head's P v
        tokens = self.concat.shape[0]
        return self.concat.reshape(tokens, self.heads, -1).transpose(0, 1)

    def _split_qkv(self, part: int) -> torch.Tensor:
        tokens = self.qkv.shape[0]
        return self.qkv.reshape(tokens, 3, self.heads, -1)[:, part].transpose(0, 1)

    def __repr__(self) -> str:
        return f"LayerTrace({self.input.shape[0]} tokens, {self.heads} heads)"


@dataclass(frozen=True, eq=False, repr=False)
class Trace:
    """Every tensor of one image's forward pass (steps 1–13), batch dimension dropped.

    Tokens are N = s + n: the s special tokens (`special_labels`: CLS, then a distillation token or
    registers, if the model has them), then the n patches, row by row.

    The model's parameters shown with a trace (CLS token, position embeddings) are copies, so a
    model trained later cannot change a trace taken before. Treat the tensors as read-only:
    traces are cached and shared between sessions.
    """

    pixels: torch.Tensor  # (c, H, W)          normalised model input
    patch_size: int
    mean: tuple[float, ...]  # per channel: how pixels were normalised
    std: tuple[float, ...]
    flat_patches: torch.Tensor  # (n, p')      every patch flattened, p' = p² c
    patch_embeddings: torch.Tensor  # (n, d)   flat_patches E + b
    special_labels: tuple[str, ...]  # s names: ("CLS",), ("CLS", "distillation"), ("CLS", "register 1", …)
    cls_token: torch.Tensor  # (d,)            the learned CLS vector
    with_cls: torch.Tensor  # (N, d)           [CLS; other special tokens; patch embeddings]
    pos_embedding: torch.Tensor  # (N, d)      E_pos (zero rows for registers, which get no position)
    tokens: torch.Tensor  # (N, d)             with_cls + E_pos: what the first block receives
    layers: tuple[LayerTrace, ...]  # L of them
    final_tokens: torch.Tensor  # (N, d)       every token after the final LayerNorm
    logits: torch.Tensor | None  # (k,), or None for a model without a class head (DINO, a plain ViTModel)

    @property
    def grid(self) -> tuple[int, int]:  # (gh, gw)
        return (self.pixels.shape[1] // self.patch_size, self.pixels.shape[2] // self.patch_size)

    @property
    def num_special(self) -> int:  # s
        return len(self.special_labels)

    @property
    def last_hidden_state(self) -> torch.Tensor:  # (N, d): transformers' name for final_tokens
        return self.final_tokens

    @property
    def cls_output(self) -> torch.Tensor:  # (d,), y: CLS after the final LayerNorm
        return self.final_tokens[0]

    @property
    def probs(self) -> torch.Tensor | None:  # (k,)
        return None if self.logits is None else self.logits.softmax(-1)

    @property
    def patches(self) -> torch.Tensor:  # (n, p, p, c), display pixels in [0, 1]
        p, c = self.patch_size, len(self.mean)
        mean, std = torch.tensor(self.mean), torch.tensor(self.std)
        return (self.flat_patches.view(-1, p, p, c) * std + mean).clamp(0, 1)

    def attentions(self) -> torch.Tensor:  # (L, h, N, N): every layer's attention probabilities
        return torch.stack([layer.attn for layer in self.layers])

    def save(self, path: str | Path) -> None:
        """Write this trace to a safetensors file: every tensor under its field's name ("pixels", "logits",
        "layers.0.attn", …), the other fields as JSON in the file's metadata. `Trace.load` reads it back."""
        with open(path, "wb") as file:
            self.write(file)

    def to_bytes(self) -> bytes:
        """What `save` writes, as bytes."""
        buffer = io.BytesIO()
        self.write(buffer)
        return buffer.getvalue()

    def write(self, stream: typing.BinaryIO, dtype: torch.dtype | None = None) -> None:
        """Write what `save` writes into a binary stream a tensor at a time, never the whole file in memory; with
        `dtype` (torch.float16 halves the file), every floating-point tensor in that type. `Trace.load` reads it."""
        header, tensors, _ = _layout(self, dtype)
        stream.write(header)
        for tensor in tensors:
            stream.write(memoryview(tensor.to(_stored(tensor, dtype)).contiguous().numpy()).cast("B"))

    def file_header(self, dtype: torch.dtype | None = None) -> bytes:
        """The first bytes `write` writes: 8 bytes of length, then the JSON naming every tensor's type, shape and
        place in the file."""
        return _layout(self, dtype)[0]

    def file_size(self, dtype: torch.dtype | None = None) -> int:
        """The bytes `write` would write with `dtype`."""
        header, _, data = _layout(self, dtype)
        return len(header) + data

    @classmethod
    def load(cls, path: str | Path) -> Trace:
        """A trace written by `save`."""
        with safetensors.safe_open(str(path), framework="pt") as file:
            facts = (file.metadata() or {}).get(TRACE_METADATA)
            if facts is None:
                raise ValueError(f"{path} holds tensors but no vitviz trace (no {TRACE_METADATA!r} metadata)")
            tensors = {name: file.get_tensor(name) for name in file.keys()}
        return _unflatten(cls, "", tensors, json.loads(facts))

    def __repr__(self) -> str:
        return f"Trace({tuple(self.pixels.shape)}, {len(self.layers)} layers)"


# --- a trace in a file ------------------------------------------------------------------------------------
# Generic over the dataclasses' fields, so a field added to Trace or LayerTrace is saved and loaded too.

TRACE_METADATA = "vitviz.trace"  # the safetensors metadata key holding a trace's fields that are not tensors
_ITEMS = "dataclasses"  # in that JSON: how many dataclasses a tuple field (Trace.layers) held


def _flatten(value, prefix: str = "", tensors: dict | None = None, facts: dict | None = None) -> tuple[dict, dict]:
    """(tensors by name, the other fields by name) of a dataclass; a tuple of dataclasses as "name.i.field".
    One recorded tensor can be two fields (a block's output is the next block's input): it is there under both
    names, and the file holds its bytes under each."""
    tensors = {} if tensors is None else tensors
    facts = {} if facts is None else facts
    for field in dataclasses.fields(value):
        item, name = getattr(value, field.name), prefix + field.name
        if isinstance(item, torch.Tensor):
            tensors[name] = item.detach()
        elif isinstance(item, tuple) and item and all(dataclasses.is_dataclass(part) for part in item):
            facts[name] = {_ITEMS: len(item)}
            for index, part in enumerate(item):
                _flatten(part, f"{name}.{index}.", tensors, facts)
        else:
            facts[name] = item  # numbers, strings, tuples of numbers, or None (a model without a class head)
    return tensors, facts


def _metadata(facts: dict) -> dict[str, str]:
    return {TRACE_METADATA: json.dumps(facts), "format": "pt"}


_SAFETENSORS_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                       torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
                       torch.bool: "BOOL"}


def _stored(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.dtype:
    """The type `tensor` is written in: `dtype` if one is asked for and the tensor is floating point."""
    return dtype if dtype is not None and tensor.is_floating_point() else tensor.dtype


def _layout(trace: Trace, dtype: torch.dtype | None) -> tuple[bytes, list[torch.Tensor], int]:
    """A safetensors file's header (8 bytes of length, then JSON padded to 8 bytes) for `trace`'s tensors in
    `dtype`, the tensors in the order of their bytes, and how many bytes they take: safetensors' layout."""
    tensors, facts = _flatten(trace)
    entries, offset = {}, 0
    for name, tensor in tensors.items():
        kind = _stored(tensor, dtype)
        size = torch.empty(0, dtype=kind).element_size() * tensor.numel()
        entries[name] = {"dtype": _SAFETENSORS_DTYPES[kind], "shape": list(tensor.shape),
                         "data_offsets": [offset, offset + size]}
        offset += size
    entries["__metadata__"] = _metadata(facts)
    text = json.dumps(entries, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text, list(tensors.values()), offset


def _unflatten(cls, prefix: str, tensors: dict, facts: dict):
    hints = typing.get_type_hints(cls)
    values = {}
    for field in dataclasses.fields(cls):
        name = prefix + field.name
        if name in tensors:
            values[field.name] = tensors[name]
        elif isinstance(facts.get(name), dict) and _ITEMS in facts[name]:
            part = typing.get_args(hints[field.name])[0]  # tuple[LayerTrace, ...] -> LayerTrace
            values[field.name] = tuple(_unflatten(part, f"{name}.{index}.", tensors, facts)
                                       for index in range(facts[name][_ITEMS]))
        elif name in facts:
            item = facts[name]
            values[field.name] = tuple(item) if isinstance(item, list) else item
    return cls(**values)


class Recorder:
    """Forward hooks that record a model's intermediate tensors; `Recorder(model)` attaches them, `eject()` detaches."""

    def __init__(self, model: ViT) -> None:
        self.model = model
        self._store: contextvars.ContextVar[dict | None] = contextvars.ContextVar("vitviz_store", default=None)
        self._handles = []
        for name, input_key, output_key in MODEL_TAPS:
            input_key = input_key and input_key.format(depth=len(model.blocks))
            self._hook(model.get_submodule(name), input_key, output_key)
        for index, block in enumerate(model.blocks):
            layer_scaled = model.config.layer_scale
            for name, *keys in LAYER_TAPS + (LAYER_SCALE_TAPS if layer_scaled else ()):
                input_key, output_key = (f"{index}.{key}" if key else None for key in keys)
                self._hook(block.get_submodule(name), input_key, output_key)

    def _hook(self, module: nn.Module, input_key: str | None, output_key: str) -> None:
        store_var = self._store

        # Kept small: a trace runs one per hooked module. Tensors are stored as they are: trace()
        # runs without autograd, and attention_gradients needs the graph.
        def record(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            store = store_var.get()
            if store is not None:
                if input_key is not None:
                    store[input_key] = args[0]
                store[output_key] = output

        self._handles.append(module.register_forward_hook(record))

    def eject(self) -> None:
        """Detach the hooks; the model runs as if never recorded."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc_info) -> None:
        self.eject()

    def record(self, run) -> tuple[object, dict[str, torch.Tensor]]:
        """Call `run()` with a fresh store current in a private context; return (its result, the store)."""
        store: dict[str, torch.Tensor] = {}
        context = contextvars.copy_context()
        context.run(self._store.set, store)
        return context.run(run), store

    def trace(self, pixels: torch.Tensor) -> Trace:
        """Run the model on one image (c, H, W) and return every intermediate tensor."""
        if pixels.ndim != 3:
            raise ValueError(f"trace expects one image of shape (c, H, W), got {tuple(pixels.shape)}")
        model = self.model
        with torch.no_grad():
            output, store = self.record(lambda: model(pixels[None])[0])
        one = {key: batch[0] for key, batch in store.items()}  # batch dimension dropped: views, no copies
        pos = model.pos_embed.detach()
        config = model.config
        return Trace(
            pixels=pixels.detach().clone(),
            patch_size=config.patch_size,
            mean=config.mean,
            std=config.std,
            special_labels=config.special_labels,
            flat_patches=one["flat_patches"],
            patch_embeddings=one["patch_embeddings"],
            cls_token=model.cls_token.detach().clone(),
            with_cls=one["with_cls"],
            pos_embedding=(pos if pos.ndim == 2 else pos[0]).clone(),
            tokens=one["0.input"],
            layers=tuple(_layer_trace(one, index, config.heads) for index in range(len(model.blocks))),
            final_tokens=one["final_tokens"],
            logits=None if model.head is None else output,
        )

    def attention_maps(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, c, H, W) -> every image's attention probabilities (B, L, h, N, N), in one batched forward."""
        with torch.no_grad():
            _, store = self.record(lambda: self.model(pixels))
        return torch.stack([store[f"{i}.attn"] for i in range(len(self.model.blocks))], dim=1)

    def __repr__(self) -> str:
        return f"Recorder({len(self._handles)} hooks)"


def _layer_trace(one: dict[str, torch.Tensor], index: int, heads: int) -> LayerTrace:
    """Block `index`'s fields from one image's recorded tensors, keyed "{block}.{name}"."""
    return LayerTrace(
        heads=heads,
        **{name: one[f"{index}.{name}"] for name in _LAYER_FIELDS},
        output=one[f"{index + 1}.input"],  # the next block's input (the final norm's, after the last block)
        attn_update=one.get(f"{index}.attn_update", one[f"{index}.attn_out"]),  # without LayerScale, O itself
        mlp_update=one.get(f"{index}.mlp_update", one[f"{index}.mlp_out"]),
    )


_LAYER_FIELDS = ("input", "norm1", "qkv", "scores", "attn", "concat", "attn_out", "resid", "norm2", "mlp_hidden",
                 "mlp_out")


def trace(model: ViT, pixels: torch.Tensor) -> Trace:
    """One image's Trace with hooks attached for this call only (for a model no other thread is running)."""
    with Recorder(model) as recorder:
        return recorder.trace(pixels)
