"""Step 8's shuffled patches: attention alone does not know where a patch is; the position embeddings do.

Shuffling an image's patches moves their contents between the slots. Without E_pos every block treats its tokens
as a set: the patch outputs are the original outputs in the shuffled order, and the special tokens' outputs (so
the prediction, whatever the head reads: CLS, DeiT's two tokens, the mean of the patches) do not change. With
E_pos, which stays with the slots, each patch arrives with another position and the outputs change.
`shuffle_test` runs one image both ways, in the forwards of three images (four without the original's own), and says
by how much.
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


def _compare(model: ViT, original: torch.Tensor, shuffled: torch.Tensor, order: np.ndarray) -> Outcome:
    """The final tokens Y (N, d), after the final LayerNorm, of the original and of the shuffled image."""
    s = model.config.num_special
    followed = original[s:][torch.from_numpy(order)]  # the original's patch outputs, in the shuffled slots
    probs = None if model.head is None else model.classify(torch.stack([original, shuffled])).softmax(dim=-1).numpy()
    return Outcome(
        patch_difference=float((shuffled[s:] - followed).abs().max()),
        special_changes=(shuffled[:s] - original[:s]).abs().amax(dim=-1).numpy(),
        probs=probs,
    )


def shuffle_test(model: ViT, pixels: torch.Tensor, order: np.ndarray,
                 original: torch.Tensor | None = None) -> ShuffleTest:
    """Run `pixels` (c, H, W) and its patches shuffled by `order` through `model`, without E_pos and with it.

    `original`, the final tokens (N, d) of `pixels` as the model runs it (a Trace's `final_tokens`), saves one of
    the four images' forwards: then the shuffled image with E_pos, and both images without, are three.
    """
    order = np.asarray(order)
    if sorted(order.tolist()) != list(range(model.config.num_patches)):
        raise ValueError("order must list every patch once")
    shuffled = shuffle_pixels(pixels, order, model.config.patch_size)
    with torch.no_grad():
        bare = model.norm(model.features(torch.stack([pixels, shuffled]), positions=False))
        if original is None:
            original, placed = model.norm(model.features(torch.stack([pixels, shuffled])))
        else:
            placed = model.norm(model.features(shuffled[None]))[0]
        return ShuffleTest(order=order, without_positions=_compare(model, bare[0], bare[1], order),
                           with_positions=_compare(model, original, placed, order), scale=float(original.abs().max()))
