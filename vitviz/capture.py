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
from dataclasses import dataclass

import torch
from torch import nn

from vitviz.model import ViT

_STORE: contextvars.ContextVar[dict | None] = contextvars.ContextVar("vitviz_trace_store", default=None)
_ATTACH_LOCK = threading.Lock()
_HANDLES_ATTR = "_vitviz_hook_handles"


@dataclass(frozen=True)
class LayerTrace:
    """One encoder block (steps 10.1–10.12). N = n + 1 tokens."""

    input: torch.Tensor  # (N, d)
    norm1: torch.Tensor  # (N, d)
    qkv: torch.Tensor  # (N, 3d), laid out [q | k | v], each head-major
    q: torch.Tensor  # (h, N, d_h)
    k: torch.Tensor  # (h, N, d_h)
    v: torch.Tensor  # (h, N, d_h)
    scores: torch.Tensor  # (h, N, N), q kᵀ / √d_h
    attn: torch.Tensor  # (h, N, N), row softmax of scores
    context: torch.Tensor  # (h, N, d_h), attn v
    concat: torch.Tensor  # (N, d), heads side by side
    attn_out: torch.Tensor  # (N, d), after W_o
    resid: torch.Tensor  # (N, d), input + attn_out
    norm2: torch.Tensor  # (N, d)
    mlp_hidden: torch.Tensor  # (N, mlp_dim), after GELU
    mlp_out: torch.Tensor  # (N, d)
    output: torch.Tensor  # (N, d), resid + mlp_out


@dataclass(frozen=True)
class Trace:
    pixels: torch.Tensor  # (c, H, W), normalised model input
    patches: torch.Tensor  # (n, p, p, c), display-space pixels in [0, 1]
    flat_patches: torch.Tensor  # (n, p')
    patch_embeddings: torch.Tensor  # (n, d)
    cls_token: torch.Tensor  # (d,)
    with_cls: torch.Tensor  # (n+1, d)
    pos_embedding: torch.Tensor  # (n+1, d)
    tokens: torch.Tensor  # (n+1, d)
    layers: list[LayerTrace]
    final_tokens: torch.Tensor  # (n+1, d), all tokens after the final LayerNorm
    cls_output: torch.Tensor  # (d,), CLS after the final LayerNorm
    logits: torch.Tensor  # (k,)
    probs: torch.Tensor  # (k,)

    @property
    def grid(self) -> tuple[int, int]:
        p = self.patches.shape[1]
        return (self.pixels.shape[1] // p, self.pixels.shape[2] // p)

    def attentions(self) -> torch.Tensor:
        """(L, h, N, N): every layer's attention probabilities."""
        return torch.stack([layer.attn for layer in self.layers])


# (module, key for its input, key for its output). One hook records both ends of a module, so a
# tensor that flows straight from one module into the next is recorded once: norm1's output is
# the attention module's input, resid is norm2's input, the GELU output is fc2's input. At batch 1
# the cost of a trace is mostly torch's per-module hook dispatch, so fewer hooked modules is what
# counts. q, k, v and concat are views and a reshape of qkv and context (see `trace`).
_LAYER_TAPS = (
    ("", "input", "output"),  # the block itself
    ("attn", "norm1", "attn_out"),  # the attention module returns W_o's output
    ("attn.qkv", None, "qkv"),
    ("attn.scores", None, "scores"),
    ("attn.attn", None, "attn"),
    ("attn.context", None, "context"),
    ("norm2", "resid", "norm2"),
    ("mlp.fc2", "mlp_hidden", "mlp_out"),
)
_MODEL_TAPS = (
    ("patch_embed", "flat_patches", "patch_embeddings"),
    ("with_cls", None, "with_cls"),
    ("tokens", None, "tokens"),
    ("norm", None, "final_tokens"),
)
_RECORDED_LAYER_FIELDS = tuple(key for _, *keys in _LAYER_TAPS for key in keys if key)


@functools.lru_cache(maxsize=8)
def _layer_keys(depth: int) -> tuple[tuple[tuple[str, str], ...], ...]:
    """Per layer, (field, store key) for every recorded field."""
    return tuple(tuple((name, f"{i}.{name}") for name in _RECORDED_LAYER_FIELDS) for i in range(depth))


@functools.lru_cache(maxsize=8)
def _display_affine(mean: tuple[float, ...], std: tuple[float, ...], pixels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """std and mean repeated along a flattened (p, p, c) patch, so denormalising runs on contiguous rows."""
    return torch.tensor(std).repeat(pixels), torch.tensor(mean).repeat(pixels)


_KEEP_GRAPH = "__keep_graph__"  # a store holding this key records tensors with their autograd graph


def _recorder(input_key: str | None, output_key: str | None):
    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        store = _STORE.get()
        if store is not None:
            keep = _KEEP_GRAPH in store
            if input_key is not None:
                tensor = args[0]
                store[input_key] = tensor if keep or not tensor.requires_grad else tensor.detach()
            if output_key is not None:
                store[output_key] = output if keep or not output.requires_grad else output.detach()

    return hook


def _recording(model: ViT, run, keep_graph: bool = False) -> tuple[object, dict]:
    """Call `run()` with a fresh store current in a private context; return (its result, the store)."""
    attach(model)
    store: dict = {_KEEP_GRAPH: True} if keep_graph else {}
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
    config = model.config
    p, c, heads, head_dim = config.patch_size, config.channels, config.heads, config.head_dim
    layers = []
    for keys in _layer_keys(len(model.blocks)):
        recorded = {name: store[key][0] for name, key in keys}
        qkv, context = recorded["qkv"], recorded["context"]
        tokens = qkv.shape[0]
        # The model's own split of qkv into heads (views of the same memory) and its concat.
        q, k, v = qkv.reshape(tokens, 3, heads, head_dim).permute(1, 2, 0, 3).unbind(0)
        concat = context.transpose(0, 1).reshape(tokens, heads * head_dim)
        layers.append(LayerTrace(q=q, k=k, v=v, concat=concat, **recorded))
    flat = store["flat_patches"][0]
    # Display-space patches: the same arithmetic as images.denormalise, on the flattened patches.
    std, mean = _display_affine(config.mean, config.std, p * p)
    patches = (flat * std + mean).clamp_(0, 1).view(-1, p, p, c)
    pos = model.pos_embed.detach()
    return Trace(
        pixels=pixels.detach().clone(),
        patches=patches,
        flat_patches=flat,
        patch_embeddings=store["patch_embeddings"][0],
        cls_token=model.cls_token.detach().clone(),
        with_cls=store["with_cls"][0],
        pos_embedding=pos.clone() if pos.ndim == 2 else pos[0].clone(),
        tokens=store["tokens"][0],
        layers=layers,
        final_tokens=store["final_tokens"][0],
        cls_output=store["final_tokens"][0, 0],
        logits=logits,
        probs=logits.softmax(-1),
    )


def input_gradient(model: ViT, pixels: torch.Tensor, label: int) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Cross-entropy of one image against `label`, its gradient w.r.t. the input (c, H, W), and the probs.

    Only the input needs a gradient, so the shared model's weights are left untouched.
    """
    x = pixels.detach().clone()[None].requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor([label]))
        (grad,) = torch.autograd.grad(loss, x)
    return loss.item(), grad[0], logits.detach()[0].softmax(-1)


def batch_attentions(model: ViT, pixels: torch.Tensor) -> torch.Tensor:
    """(B, c, H, W) -> every image's attention maps (B, L, h, N, N), in one batched forward pass."""
    with torch.no_grad():
        _, store = _recording(model, lambda: model(pixels))
    return torch.stack([store[f"{i}.attn"] for i in range(len(model.blocks))], dim=1)


def attention_gradients(model: ViT, pixels: torch.Tensor, target: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention maps (L, h, N, N) of one image and the gradient of class `target`'s logit with respect to them."""
    with torch.enable_grad():
        x = pixels[None].detach().requires_grad_(True)  # a graph even when the weights are frozen
        logits, store = _recording(model, lambda: model(x)[0], keep_graph=True)
        maps = [store[f"{i}.attn"] for i in range(len(model.blocks))]
        grads = torch.autograd.grad(logits[target], maps)
    return torch.stack([m.detach()[0] for m in maps]), torch.stack([g[0] for g in grads])
