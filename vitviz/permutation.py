"""Step 8's shuffled patches: attention alone does not know where a patch is; the position embeddings do.

Shuffling an image's patches moves their contents between the slots. Without E_pos every block treats its tokens
as a set: the patch outputs are the original outputs in the shuffled order, and the special tokens' outputs (so
the prediction, whatever the head reads: CLS, DeiT's two tokens, the mean of the patches) do not change. With
E_pos, which stays with the slots, each patch arrives with another position and the outputs change.
`shuffle_test` runs one image both ways, in two forwards of two images each, and says by how much.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vitviz import analysis
from vitviz.model import ViT


def patch_order(patches: int, seed: int) -> np.ndarray:
    """A random order of `patches` patches, the same for the same seed, that moves at least one of them."""
    rng = np.random.default_rng(seed)
    identity = np.arange(patches)
    if patches < 2:
        return identity
    while True:  # a random order is the identity once in n! draws
        order = rng.permutation(patches)
        if (order != identity).any():
            return order


@dataclass(frozen=True)
class Outcome:
    """The shuffled image against the original, both run the same way (with E_pos, or both without)."""

    patch_difference: float  # max |Y'[s + i] − Y[s + order[i]]|: each patch's output, followed to where it went
    special_changes: np.ndarray  # (s,): max |Y'[j] − Y[j]| of each special token's output
    probs: np.ndarray | None  # (2, k): the original's and the shuffled image's probabilities; None without a head


@dataclass(frozen=True)
class ShuffleTest:
    order: np.ndarray  # (n,): slot i of the shuffled image holds patch order[i]
    without_positions: Outcome
    with_positions: Outcome
    scale: float  # the largest |entry| of the original's final tokens (with E_pos), to judge a difference by


def shuffle_pixels(pixels: torch.Tensor, order: np.ndarray, patch: int) -> torch.Tensor:
    """(c, H, W) -> the same pixels with the patches moved as `order` says (`analysis.shuffle_patches`)."""
    moved = analysis.shuffle_patches(pixels.permute(1, 2, 0).numpy(), order, patch)
    return torch.from_numpy(np.ascontiguousarray(moved)).permute(2, 0, 1)


def _outcome(model: ViT, pair: torch.Tensor, order: np.ndarray, positions: bool) -> tuple[Outcome, torch.Tensor]:
    """Run [original, shuffled] (2, c, H, W) with or without E_pos; the outcome and the original's final tokens."""
    s = model.config.num_special
    y = model.norm(model.features(pair, positions=positions))  # (2, N, d): Y after the final LayerNorm
    original, shuffled = y[0], y[1]
    followed = original[s:][torch.from_numpy(order)]  # the original's patch outputs, in the shuffled slots
    probs = None if model.head is None else model.classify(y).softmax(dim=-1).numpy()
    outcome = Outcome(
        patch_difference=float((shuffled[s:] - followed).abs().max()),
        special_changes=(shuffled[:s] - original[:s]).abs().amax(dim=-1).numpy(),
        probs=probs,
    )
    return outcome, original


def shuffle_test(model: ViT, pixels: torch.Tensor, order: np.ndarray) -> ShuffleTest:
    """Run `pixels` (c, H, W) and its patches shuffled by `order` through `model`, without E_pos and with it."""
    order = np.asarray(order)
    if sorted(order.tolist()) != list(range(model.config.num_patches)):
        raise ValueError("order must list every patch once")
    pair = torch.stack([pixels, shuffle_pixels(pixels, order, model.config.patch_size)])
    with torch.no_grad():
        without, _ = _outcome(model, pair, order, positions=False)
        with_positions, original = _outcome(model, pair, order, positions=True)
    return ShuffleTest(order=order, without_positions=without, with_positions=with_positions,
                       scale=float(original.abs().max()))
