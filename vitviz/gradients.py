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
from vitviz.capture import Recorder
from vitviz.model import ViT


def attention_gradients(recorder: Recorder, pixels: torch.Tensor, target: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention maps (L, h, N, N) of one image and the gradient of class `target`'s logit with respect to them."""
    model = recorder.model
    with torch.enable_grad():
        x = pixels[None].detach().requires_grad_(True)  # a graph even when the weights are frozen
        logits, store = recorder.record(lambda: model(x)[0])
        maps = [store[f"{i}.attn"] for i in range(len(model.blocks))]  # each (1, h, N, N)
        grads = torch.autograd.grad(logits[target], maps)
    return torch.stack([m.detach()[0] for m in maps]), torch.stack([g[0] for g in grads])


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


def per_patch_norm(grad: np.ndarray, patch: int) -> np.ndarray:
    """(c, H, W) -> (gh, gw): the L2 norm of the gradient over each patch's pixels and channels."""
    c, h, w = grad.shape
    blocks = grad.transpose(1, 2, 0).reshape(h // patch, patch, w // patch, patch, c)
    return np.sqrt((blocks**2).sum(axis=(1, 3, 4)))
