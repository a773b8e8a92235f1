"""Which attribution map should a reader believe? Six maps for one class of one image, each scored by how fast
the class's probability falls when the patches it ranks first are deleted, and rises when they are put back.

    scores = faithfulness.score(recorder, pixels, target)    # one backward pass, then batched forwards
    scores.maps, scores.deletion_auc, scores.insertion_auc, scores.verdict()

Deletion (Petsiuk et al., RISE, 2018) turns the most relevant patches into the image's mean colour first;
insertion starts from a blurred copy (Gaussian, σ = one patch) and puts the most relevant patches back first.
A good map makes the deletion curve fall early (low area) and the insertion curve rise early (high area).
Random orders are the baseline. The maps and curves are numpy (`vitviz.analysis`); this module runs the model.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from vitviz import analysis, gradients
from vitviz.capture import Recorder
from vitviz.i18n import N_, Message, plural_message
from vitviz.model import ViT

RANDOM_ORDERS = 3
STEPS = 16  # points on each curve, 0 to every patch
BATCH = 16  # images per forward
SEED = 0  # random orders and tie-breaks: the same image, model and class always get the same scores
MARGIN = 0.05  # of the probability axis: a smaller difference in area from random counts as a tie
GRADIENT_FORWARDS = 3  # what one forward and backward pass costs, counted in forwards, for the estimate
SLACK = 2.0  # the estimate's margin for a server that gets busier during the run


def _arrays(found: gradients.ClassGradients, pixels: torch.Tensor) -> dict[str, np.ndarray]:
    return {
        "attentions": found.attentions.double().numpy(), "grads": found.attention_grads.double().numpy(),
        "norm1": found.last_norm1.double().numpy(), "norm1_grad": found.last_norm1_grad.double().numpy(),
        "pixels": pixels.double().numpy(), "pixel_grad": found.pixel_grad.double().numpy(),
    }


# Each method from one image's arrays (`_arrays`), its n patch tokens being the last n, and the patch side. The
# names are written as mid-sentence; `title` capitalises one for the start of a sentence or a caption.
RELEVANCE = {
    "raw attention": lambda a, n, p: analysis.raw_cls_attention(a["attentions"], n),
    "attention rollout": lambda a, n, p: analysis.cls_row(analysis.attention_rollout(a["attentions"]), n),
    "gradient rollout": lambda a, n, p: analysis.cls_row(analysis.gradient_rollout(a["attentions"], a["grads"]), n),
    "Chefer relevance": lambda a, n, p: analysis.chefer_relevance(a["attentions"], a["grads"], n),
    "Grad-CAM": lambda a, n, p: analysis.grad_cam(a["norm1"][-n:], a["norm1_grad"][-n:]),
    "input × gradient": lambda a, n, p: analysis.input_times_gradient(a["pixels"], a["pixel_grad"], p),
}
METHODS = tuple(RELEVANCE)
# What each method computes, in one line (English, marked with N_; a page shows it translated).
DESCRIPTIONS = {
    "raw attention": N_("the last layer's attention from CLS to each patch, averaged over the heads."),
    "attention rollout": N_("attention multiplied through every layer, each as 0.5·A + 0.5·I for the residual path, "
                            "read from CLS's row (Abnar and Zuidema, 2020); a heuristic that ignores the values, W_o "
                            "and the MLPs."),
    "gradient rollout": N_("the same rollout, each layer's attention first multiplied by its gradient for the class "
                           "and averaged over the heads, negative parts dropped."),
    "Chefer relevance": N_("relevance passed from layer to layer through the positive part of gradient × attention, "
                           "read from CLS's row (Chefer, Gur and Wolf, 2021)."),
    "Grad-CAM": N_("the last block's patch tokens (after LN₁), each channel weighted by its mean gradient for the "
                   "class, negative sums dropped."),
    "input × gradient": N_("the normalised input times the class's gradient, value by value, and the size of that "
                           "product over each patch."),
}
# The maps that follow only what flows into CLS: for a head that also reads other tokens, they see part of it
# (attribution.cls_row_note names them in its sentence).
CLS_ROW_METHODS = ("raw attention", "attention rollout", "gradient rollout", "Chefer relevance")
# The names as pages show them, mid-sentence and at the start of one (`title`): marked for the catalogue, and
# translated where they are shown (the verdicts name them as Messages).
SHOWN_NAMES = (N_("raw attention"), N_("Raw attention"), N_("attention rollout"), N_("Attention rollout"),
               N_("gradient rollout"), N_("Gradient rollout"), N_("Chefer relevance"), N_("Grad-CAM"),
               N_("input × gradient"), N_("Input × gradient"))


def maps_from(found: gradients.ClassGradients, pixels: torch.Tensor, patch: int,
              methods: tuple[str, ...] = METHODS) -> np.ndarray:
    """(len(methods), gh, gw): each method's relevance of every patch, from one backward pass's gradients."""
    gh, gw = pixels.shape[1] // patch, pixels.shape[2] // patch
    arrays = _arrays(found, pixels)
    return np.stack([np.asarray(RELEVANCE[name](arrays, gh * gw, patch)).reshape(gh, gw) for name in methods])


def attribution_maps(recorder: Recorder, pixels: torch.Tensor, target: int) -> np.ndarray:
    """(len(METHODS), gh, gw): each method's relevance of every patch for class `target`, from one backward pass."""
    found = gradients.class_gradients(recorder, pixels, target)
    return maps_from(found, pixels, recorder.model.config.patch_size)


def class_probability(model: ViT, images: np.ndarray, target: int) -> np.ndarray:
    """(B, c, H, W) -> (B,): class `target`'s probability for each image, in one batched forward."""
    with torch.no_grad():
        logits = model(torch.as_tensor(images, dtype=next(model.parameters()).dtype))
    return logits.double().softmax(-1)[:, target].numpy()


def curves(model: ViT, pixels: torch.Tensor, orders: np.ndarray, target: int,
           progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Deletion and insertion curves (len(orders), STEPS) of class `target` for each order of the patches, and the
    number of forward passes they took: a set of patches that several orders share at some step runs once."""
    patch = model.config.patch_size
    masks = np.stack([analysis.step_masks(order, analysis.curve_fractions(STEPS)) for order in orders])  # (O, F, n)
    kept, inverse = np.unique(masks.reshape(-1, masks.shape[-1]), axis=0, return_inverse=True)
    original = pixels.double().numpy()
    runs = (
        (original, analysis.mean_pixel_image(original)),  # deletion: the masked patches become the mean colour
        (analysis.gaussian_blur(original, sigma=patch), original),  # insertion: the masked patches come back
    )
    total, results = len(runs) * len(kept), []
    for run, (start, source) in enumerate(runs):
        probs = np.empty(len(kept))
        for first in range(0, len(kept), BATCH):
            rows = slice(first, first + BATCH)
            probs[rows] = class_probability(model, analysis.compose(start, source, kept[rows], patch), target)
            if progress is not None:
                progress(run * len(kept) + min(first + BATCH, len(kept)), total)
        results.append(probs[inverse.ravel()].reshape(masks.shape[:2]))
    return results[0], results[1], total


def most_forwards(config) -> int:
    """The forward passes `score` may need (fewer when orders share images), the gradients counted as forwards."""
    orders = len(METHODS) + RANDOM_ORDERS
    return GRADIENT_FORWARDS + 2 * (orders * (STEPS - 2) + 2)


def longest_seconds(one_forward: float, config) -> float:
    """The most a score should take, from one timed forward of one image: every forward it may need, twice over,
    because a shared server may get busier while it runs (benchmarks/bench_attribution.py measures the ratio)."""
    return SLACK * one_forward * most_forwards(config)


def forward_seconds(model: ViT, pixels: torch.Tensor) -> float:
    """Seconds of one plain forward of one image: the slower of two, so that on a busy machine the estimate made
    from it leans long rather than short."""
    timings = []
    with torch.no_grad():
        for _ in range(2):
            start = time.perf_counter()
            model(pixels[None].to(next(model.parameters()).dtype))
            timings.append(time.perf_counter() - start)
    return max(timings)


@dataclass(frozen=True)
class Faithfulness:
    """Six maps for one class of one image, their deletion and insertion curves, and random orders' curves."""

    target: int
    methods: tuple[str, ...]
    maps: np.ndarray  # (M, gh, gw)
    fractions: np.ndarray  # (F,) share of the patches deleted or inserted
    deletion: np.ndarray  # (M, F) the class's probability
    insertion: np.ndarray  # (M, F)
    random_deletion: np.ndarray  # (R, F)
    random_insertion: np.ndarray  # (R, F)
    forwards: int  # forward passes the curves took
    seconds: float  # wall time of the whole score

    @property
    def deletion_auc(self) -> np.ndarray:  # (M,), lower is better
        return analysis.curve_auc(self.fractions, self.deletion)

    @property
    def insertion_auc(self) -> np.ndarray:  # (M,), higher is better
        return analysis.curve_auc(self.fractions, self.insertion)

    @property
    def random_deletion_auc(self) -> float:
        return float(analysis.curve_auc(self.fractions, self.random_deletion).mean())

    @property
    def random_insertion_auc(self) -> float:
        return float(analysis.curve_auc(self.fractions, self.random_insertion).mean())

    @property
    def beats_random(self) -> np.ndarray:
        """(M, 2) booleans: deletion area below the random orders' mean, insertion area above it, each by more
        than MARGIN (a model sure of its class on a blurred image leaves every insertion curve at 1: a tie)."""
        deletion = self.deletion_auc < self.random_deletion_auc - MARGIN
        insertion = self.insertion_auc > self.random_insertion_auc + MARGIN
        return np.stack([deletion, insertion], axis=1)

    @property
    def best(self) -> int:
        """The method whose insertion area exceeds its deletion area the most: both curves at once."""
        return int(np.argmax(self.insertion_auc - self.deletion_auc))

    def standing(self, index: int) -> Message:
        """How method `index` compares with random orders, in a few words."""
        deletion, insertion = self.beats_random[index]
        if deletion and insertion:
            return Message("better than random")
        if deletion:
            return Message("better than random on deletion only")
        if insertion:
            return Message("better than random on insertion only")
        return Message("no better than random")

    def verdict(self) -> Message:
        """One sentence for this image, computed from the areas."""
        best, names = self.best, self.methods
        numbers = Message("deletion {deletion:.2f}, insertion {insertion:.2f}, against {random_deletion:.2f} and "
                          "{random_insertion:.2f} for a random order", deletion=self.deletion_auc[best],
                          insertion=self.insertion_auc[best], random_deletion=self.random_deletion_auc,
                          random_insertion=self.random_insertion_auc)
        name = Message(title(names[best]))  # a name from SHOWN_NAMES
        deletion, insertion = self.beats_random[best]
        if deletion and insertion:
            sentence = Message("{name} is the most faithful here ({numbers})", name=name, numbers=numbers)
        elif deletion:
            sentence = Message("{name} ranks the patches best here ({numbers}), but only its deletion curve is "
                               "clearly better than random", name=name, numbers=numbers)
        elif insertion:
            sentence = Message("{name} ranks the patches best here ({numbers}), but only its insertion curve is "
                               "clearly better than random", name=name, numbers=numbers)
        else:
            return Message("No map beats a random order of the patches here: the best, {name}, scores {numbers}.",
                           name=Message(names[best]), numbers=numbers)
        useless = [names[i] for i in range(len(names)) if not self.beats_random[i].any()]
        if useless:
            sentence = plural_message("{sentence}; {names} is no better than random",
                                      "{sentence}; {names} are no better than random", len(useless),
                                      sentence=sentence, names=_listed(useless))
        return Message("{sentence}.", sentence=sentence)


def _listed(names: list[str]) -> Message:
    """"a", "a and b", "a, b and c", as Messages (names from SHOWN_NAMES)."""
    listed = Message(names[0])
    if len(names) == 1:
        return listed
    for name in names[1:-1]:
        listed = Message("{names}, {name}", names=listed, name=Message(name))
    return Message("{names} and {last}", names=listed, last=Message(names[-1]))


def title(name: str) -> str:
    """A method's name at the start of a sentence."""
    return name[:1].upper() + name[1:]


def score(recorder: Recorder, pixels: torch.Tensor, target: int,
          progress: Callable[[int, int], None] | None = None) -> Faithfulness:
    """Every method's map for class `target` of one image (c, H, W), and its deletion and insertion curves."""
    started = time.perf_counter()
    maps = attribution_maps(recorder, pixels, target)
    n = maps[0].size
    rng = np.random.default_rng(SEED)
    random_orders = [rng.permutation(n) for _ in range(RANDOM_ORDERS)]
    tie_breaks = np.random.default_rng([SEED, 1])  # apart from the random orders, so a flat map is not one of them
    orders = np.stack([analysis.relevance_order(m, tie_breaks) for m in maps] + random_orders)
    deletion, insertion, forwards = curves(recorder.model, pixels, orders, target, progress)
    methods = len(METHODS)
    return Faithfulness(
        target=target, methods=METHODS, maps=maps, fractions=analysis.curve_fractions(STEPS),
        deletion=deletion[:methods], insertion=insertion[:methods],
        random_deletion=deletion[methods:], random_insertion=insertion[methods:],
        forwards=forwards, seconds=time.perf_counter() - started,
    )
