"""Gradients of the model for one image: attention gradients, pixel gradients, and one SGD step.

Each works on the image's normalised pixels (c, H, W) and never changes the model it is given
(which may be the shared default model).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from vitviz import weights
from vitviz.analysis import per_patch_norm  # noqa: F401  (step 14 reads it from here)
from vitviz.capture import Recorder
from vitviz.model import ViT


@dataclass(frozen=True)
class ClassGradients:
    """One image's forward pass and the gradient of one class's logit, from one backward pass."""

    attentions: torch.Tensor  # (L, h, N, N)
    attention_grads: torch.Tensor  # (L, h, N, N) ∂logit/∂attention
    last_norm1: torch.Tensor  # (N, d) LN₁'s output in the last block: what pytorch-grad-cam hooks on a ViT
    last_norm1_grad: torch.Tensor  # (N, d)
    pixel_grad: torch.Tensor  # (c, H, W) ∂logit/∂pixels


def class_gradients(recorder: Recorder, pixels: torch.Tensor, target: int) -> ClassGradients:
    """Every gradient the attribution methods read, for class `target` of one image (c, H, W)."""
    model = recorder.model
    last = len(model.blocks) - 1
    with torch.enable_grad():
        x = pixels[None].detach().requires_grad_(True)  # a graph even when the weights are frozen
        logits, store = recorder.record(lambda: model(x)[0])
        maps = [store[f"{i}.attn"] for i in range(len(model.blocks))]  # each (1, h, N, N)
        norm1 = store[f"{last}.norm1"]
        *grads, norm1_grad, pixel_grad = torch.autograd.grad(logits[target], [*maps, norm1, x])
    return ClassGradients(
        attentions=torch.stack([m.detach()[0] for m in maps]),
        attention_grads=torch.stack([g[0] for g in grads]),
        last_norm1=norm1.detach()[0],
        last_norm1_grad=norm1_grad[0],
        pixel_grad=pixel_grad[0],
    )


def attention_gradients(recorder: Recorder, pixels: torch.Tensor, target: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention maps (L, h, N, N) of one image and the gradient of class `target`'s logit with respect to them."""
    result = class_gradients(recorder, pixels, target)
    return result.attentions, result.attention_grads


@dataclass(frozen=True)
class OneStep:
    loss: float  # cross-entropy before the step
    loss_after: float
    pixel_grad: np.ndarray  # (c, H, W): ∂L/∂x, a diagnostic: training never changes the pixels
    probs_before: np.ndarray  # (k,)
    probs_after: np.ndarray  # (k,)


def one_step(model: ViT, pixels: torch.Tensor, label: int, lr: float) -> OneStep:
    """Backpropagate one image's loss against `label`, then take one plain SGD step on a copy of `model`."""
    clone = weights.copy_model(model).eval()
    x = pixels.detach().clone()[None].requires_grad_(True)  # (1, c, H, W)
    target = torch.tensor([label])
    with torch.enable_grad():
        logits = clone(x)  # (1, k)
        loss = F.cross_entropy(logits, target)
        loss.backward()
    with torch.no_grad():
        for parameter in clone.parameters():
            if parameter.grad is not None:
                parameter.sub_(lr * parameter.grad)  # w ← w − η ∂L/∂w
        after = clone(pixels[None])
    return OneStep(
        loss=loss.item(),
        loss_after=F.cross_entropy(after, target).item(),
        pixel_grad=x.grad[0].numpy(),
        probs_before=logits.detach()[0].softmax(-1).numpy(),
        probs_after=after[0].softmax(-1).numpy(),
    )
