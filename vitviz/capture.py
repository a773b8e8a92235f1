"""Record every intermediate tensor of one forward pass with forward hooks.

Hooks are attached to a model once (lazily, under a lock) and stay attached; each hook
looks up the store of the `trace()` call running in its own context (a ContextVar). A
plain forward, or a trace in another thread, sees a different context and records
nothing into this one, so concurrent Streamlit sessions can share one model safely.
"""

from __future__ import annotations

import contextvars
import functools
import threading

import torch
from torch import nn

from vitviz.model import ViT

_STORE: contextvars.ContextVar[dict | None] = contextvars.ContextVar("vitviz_trace_store", default=None)
_ATTACH_LOCK = threading.Lock()
_HANDLES_ATTR = "_vitviz_hook_handles"


class _lazy:
    """A field made on first read and then kept on the instance (a non-data descriptor).

    Two threads reading a new field at once both make the same view; either one is kept.
    """

    def __init__(self, make) -> None:
        self.make = make

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        value = instance.__dict__[self.name] = self.make(instance)
        return value


def _recorded(name: str, offset: int = 0) -> _lazy:
    """The tensor a hook recorded under `name` for this layer (or the one `offset` after it), batch dimension dropped."""
    return _lazy(lambda layer: layer._store[f"{layer._index + offset}.{name}"][0])


class _ReadOnly:
    """Traces are cached and shared between sessions: nobody may change one."""

    def __setattr__(self, name: str, value) -> None:
        raise AttributeError(f"a {type(self).__name__} is read-only: traces are cached and shared between sessions")

    def _set(self, **fields) -> None:
        for name, value in fields.items():
            object.__setattr__(self, name, value)


class LayerTrace(_ReadOnly):
    """One encoder block (steps 10.1–10.12). N = n + 1 tokens.

    Every field is a view of a tensor the hooks recorded for the whole batch, made when first read:
    a page reads a handful of a trace's ~60 layer tensors, and making all of them up front cost
    more than the recording itself. Read-only, like the rest of a Trace.
    """

    def __init__(self, store: dict[str, torch.Tensor], index: int, heads: int) -> None:
        self._set(_store=store, _index=index, _heads=heads)

    input = _recorded("input")  # (N, d)
    norm1 = _recorded("norm1")  # (N, d)
    qkv = _recorded("qkv")  # (N, 3d), laid out [q | k | v], each head-major
    scores = _recorded("scores")  # (h, N, N), q kᵀ / √d_h
    attn = _recorded("attn")  # (h, N, N), row softmax of scores
    concat = _recorded("concat")  # (N, d), the heads' outputs side by side: W_o's input
    attn_out = _recorded("attn_out")  # (N, d), after W_o
    resid = _recorded("resid")  # (N, d), input + attn_out
    norm2 = _recorded("norm2")  # (N, d)
    mlp_hidden = _recorded("mlp_hidden")  # (N, mlp_dim), after GELU
    mlp_out = _recorded("mlp_out")  # (N, d)
    output = _recorded("input", offset=1)  # (N, d), resid + mlp_out: the next block's input

    # q, k and v are the model's own split of qkv into heads: views of the same memory.
    q = _lazy(lambda layer: layer._heads_of(0))  # (h, N, d_h)
    k = _lazy(lambda layer: layer._heads_of(1))  # (h, N, d_h)
    v = _lazy(lambda layer: layer._heads_of(2))  # (h, N, d_h)
    # Each head's attn v, as it sits inside the concatenation.
    context = _lazy(lambda layer: layer._heads_in(layer.concat))  # (h, N, d_h)

    def _heads_of(self, part: int) -> torch.Tensor:
        """Part 0, 1 or 2 of [q | k | v], split into heads."""
        tokens = self.qkv.shape[0]
        return self.qkv.reshape(tokens, 3, self._heads, -1)[:, part].transpose(0, 1)

    def _heads_in(self, rows: torch.Tensor) -> torch.Tensor:
        """(N, d) head-major columns -> (h, N, d_h)."""
        return rows.reshape(rows.shape[0], self._heads, -1).transpose(0, 1)

    def __repr__(self) -> str:
        return f"LayerTrace({self._index}, {self._heads} heads)"


class Trace(_ReadOnly):
    """Every tensor of one image's forward pass (steps 1–13), batch dimension dropped.

    Like LayerTrace, the recorded tensors become views on first read; the model's parameters are
    copied at once, so a model trained later cannot change a trace taken before.
    """

    def __init__(self, store: dict, pixels: torch.Tensor, model: ViT, logits: torch.Tensor) -> None:
        pos = model.pos_embed.detach()
        self._set(
            _store=store,
            _config=model.config,
            pixels=pixels.detach().clone(),  # (c, H, W), normalised model input
            cls_token=model.cls_token.detach().clone(),  # (d,)
            pos_embedding=(pos if pos.ndim == 2 else pos[0]).clone(),  # (n+1, d)
            layers=[LayerTrace(store, index, model.config.heads) for index in range(len(model.blocks))],
            logits=logits,  # (k,)
        )

    flat_patches = _lazy(lambda t: t._store["flat_patches"][0])  # (n, p')
    patch_embeddings = _lazy(lambda t: t._store["patch_embeddings"][0])  # (n, d)
    with_cls = _lazy(lambda t: t._store["with_cls"][0])  # (n+1, d)
    tokens = _lazy(lambda t: t._store["0.input"][0])  # (n+1, d), what the first block receives
    final_tokens = _lazy(lambda t: t._store["final_tokens"][0])  # (n+1, d), all tokens after the final LayerNorm
    cls_output = _lazy(lambda t: t.final_tokens[0])  # (d,), CLS after the final LayerNorm
    probs = _lazy(lambda t: t.logits.softmax(-1))  # (k,)
    patches = _lazy(lambda t: t._display_patches())  # (n, p, p, c), display-space pixels in [0, 1]

    def _display_patches(self) -> torch.Tensor:
        """The same arithmetic as images.denormalise, on the flattened patches."""
        config = self._config
        p, c = config.patch_size, config.channels
        std, mean = _display_affine(config.mean, config.std, p * p)
        return (self.flat_patches * std + mean).clamp_(0, 1).view(-1, p, p, c)

    @property
    def grid(self) -> tuple[int, int]:
        p = self._config.patch_size
        return (self.pixels.shape[1] // p, self.pixels.shape[2] // p)

    def attentions(self) -> torch.Tensor:
        """(L, h, N, N): every layer's attention probabilities."""
        return torch.stack([layer.attn for layer in self.layers])

    def __repr__(self) -> str:
        return f"Trace({tuple(self.pixels.shape)}, {len(self.layers)} layers)"


# (module, key for its input, key for its output). One hook records both ends of a module, so a
# tensor that flows straight from one module into the next is recorded once: norm1's output is
# qkv's input, the scores are the softmax's input, the concatenated heads are W_o's input, resid
# is norm2's input, the GELU output is fc2's input, and a block's output is the next block's
# input (the final norm's, for the last).
# At batch 1 the cost of a trace is mostly torch's per-module hook dispatch, so fewer hooked
# modules is what counts. q, k, v and context are views of qkv and of the concatenation.
_LAYER_TAPS = (
    ("norm1", "input", "norm1"),
    ("attn.qkv", None, "qkv"),
    ("attn.softmax", "scores", "attn"),
    ("attn.proj", "concat", "attn_out"),
    ("norm2", "resid", "norm2"),
    ("mlp.fc2", "mlp_hidden", "mlp_out"),
)
_MODEL_TAPS = (
    ("patch_embed", "flat_patches", "patch_embeddings"),
    ("with_cls", None, "with_cls"),
    ("norm", "{depth}.input", "final_tokens"),  # the last block's output, as if a next block took it
)


@functools.lru_cache(maxsize=8)
def _display_affine(mean: tuple[float, ...], std: tuple[float, ...], pixels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """std and mean repeated along a flattened (p, p, c) patch, so denormalising runs on contiguous rows."""
    return torch.tensor(std).repeat(pixels), torch.tensor(mean).repeat(pixels)


def _recorder(input_key: str | None, output_key: str | None):
    # Kept as small as it can be: a trace runs 8 of these per block. Tensors are stored as they
    # are: trace() runs without autograd, and attention_gradients() needs the graph.
    if input_key is None:

        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            store = _STORE.get()
            if store is not None:
                store[output_key] = output

    else:

        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            store = _STORE.get()
            if store is not None:
                store[input_key] = args[0]
                store[output_key] = output

    return hook


def _recording(model: ViT, run) -> tuple[object, dict]:
    """Call `run()` with a fresh store current in a private context; return (its result, the store)."""
    attach(model)
    store: dict = {}
    context = contextvars.copy_context()
    context.run(_STORE.set, store)
    return context.run(run), store


def attach(model: ViT) -> None:
    """Attach the recording hooks to `model`, once. Safe to call from many threads."""
    if getattr(model, _HANDLES_ATTR, None) is not None:
        return
    with _ATTACH_LOCK:
        if getattr(model, _HANDLES_ATTR, None) is not None:
            return
        handles = []
        for name, input_key, output_key in _MODEL_TAPS:
            input_key = input_key and input_key.format(depth=len(model.blocks))
            handles.append(model.get_submodule(name).register_forward_hook(_recorder(input_key, output_key)))
        for index, block in enumerate(model.blocks):
            for name, *keys in _LAYER_TAPS:
                input_key, output_key = (f"{index}.{key}" if key else None for key in keys)
                handles.append(block.get_submodule(name).register_forward_hook(_recorder(input_key, output_key)))
        setattr(model, _HANDLES_ATTR, handles)


def detach_hooks(model: ViT) -> None:
    """Remove the recording hooks (the benchmark's uninstrumented baseline)."""
    with _ATTACH_LOCK:
        for handle in getattr(model, _HANDLES_ATTR, None) or []:
            handle.remove()
        setattr(model, _HANDLES_ATTR, None)


def trace(model: ViT, pixels: torch.Tensor) -> Trace:
    """Run `model` on one image (c, H, W) and return every intermediate tensor, batch dim dropped."""
    if pixels.ndim != 3:
        raise ValueError(f"trace expects one image of shape (c, H, W), got {tuple(pixels.shape)}")
    with torch.no_grad():
        logits, store = _recording(model, lambda: model(pixels[None])[0])
    return Trace(store, pixels, model, logits)


def batch_attentions(model: ViT, pixels: torch.Tensor) -> torch.Tensor:
    """(B, c, H, W) -> every image's attention maps (B, L, h, N, N), in one batched forward pass."""
    with torch.no_grad():
        _, store = _recording(model, lambda: model(pixels))
    return torch.stack([store[f"{i}.attn"] for i in range(len(model.blocks))], dim=1)


def attention_gradients(model: ViT, pixels: torch.Tensor, target: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention maps (L, h, N, N) of one image and the gradient of class `target`'s logit with respect to them."""
    with torch.enable_grad():
        x = pixels[None].detach().requires_grad_(True)  # a graph even when the weights are frozen
        logits, store = _recording(model, lambda: model(x)[0])
        maps = [store[f"{i}.attn"] for i in range(len(model.blocks))]
        grads = torch.autograd.grad(logits[target], maps)
    return torch.stack([m.detach()[0] for m in maps]), torch.stack([g[0] for g in grads])
