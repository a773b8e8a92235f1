"""What the pages may say about a model: one place that knows it, from its configuration and provenance.

    facts = ModelFacts.of(config)       # or traced.facts on a page

Everything here is read from the `ViTConfig` and what its `extra` records about where the model came from
(`convert` and `hub` write it when a model is loaded, `train` and `studio` when vitviz trains one), never guessed
from its shape: a headless ViT may be self-supervised, a supervised backbone or random weights, so its training is
`"unknown"`, and then a page says nothing about how it was trained.

- the special tokens: how many (s), their kinds and names; patch i is token i + s
- what the class head reads (`head`): "cls", "cls_distillation_mean" (DeiT: the CLS and distillation heads'
  logits averaged), "cls_patch_mean" (DINOv2: [y; the patch tokens' mean]) or "none"; and k, or None
- how it was trained (`training`, one of TRAINING), when known
- its normalisation: mean, std, and the colour a zero input is (mid-grey for 0.5/0.5, ImageNet's mean colour for
  ImageNet's statistics)
- its position embeddings: started as sine-cosine waves by vitviz, or learned by the checkpoint's own training; and
  the grid they were learned on when the model runs on another one (resampled)
- how a picture becomes its input (`images.preprocessing`)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vitviz import images
from vitviz.model import ViTConfig

# The recipes vitviz can name. A checkpoint's comes from its Hub preset (`hub.PRESETS`) or its own metadata (a
# timm tag); vitviz's own models were trained on the built-in shapes.
TRAINING = (
    "shapes",  # vitviz's recipe: the built-in generated shapes, supervised (`python -m vitviz.train`, the studio)
    "imagenet-1k",  # supervised on ImageNet-1k
    "imagenet-21k",  # supervised on ImageNet-21k
    "imagenet-21k-1k",  # supervised on ImageNet-21k, then fine-tuned on ImageNet-1k (the ViT paper's recipe)
    "deit",  # DeiT: ImageNet-1k alone, with strong augmentation and regularisation
    "deit-distilled",  # DeiT with a distillation token: CLS learns the labels, the token a CNN teacher's predictions
    "dino",  # DINO: self-distillation without labels on ImageNet-1k
    "dinov2",  # DINOv2: DINO's and iBOT's losses and KoLeo, no labels; S/B/L distilled from the giant model
    "unknown",
)
SUPERVISED = frozenset({"shapes", "imagenet-1k", "imagenet-21k", "imagenet-21k-1k", "deit", "deit-distilled"})
SELF_SUPERVISED = frozenset({"dino", "dinov2"})
IMAGENET = frozenset({"imagenet-1k", "imagenet-21k", "imagenet-21k-1k", "deit", "deit-distilled"})

IMAGENET_MEAN = (0.485, 0.456, 0.406)


def _is_vitviz_made(extra: dict) -> bool:
    """Built by vitviz's own code (the built-in model, the studio, any vitviz ViT), not converted from a checkpoint:
    converted checkpoints record their source."""
    return "source" not in extra


def training_of(config: ViTConfig) -> str:
    """The recipe `config` records, or "unknown"."""
    extra = config.extra
    recorded = extra.get("training")
    if isinstance(recorded, str) and recorded in TRAINING:
        return recorded
    trained_by_vitviz = extra.get("trained_with") == "vitviz training studio" or \
        str(extra.get("command", "")).startswith("python -m vitviz.train")
    return "shapes" if trained_by_vitviz and _is_vitviz_made(extra) else "unknown"


def _grid(value: object) -> tuple[int, int] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(side, int) and not isinstance(side, bool) and side >= 1 for side in value):
        return (int(value[0]), int(value[1]))
    return None


@dataclass(frozen=True)
class ModelFacts:
    special_tokens: tuple[str, ...]  # their kinds: "cls", then "distillation" or "register"s
    special_labels: tuple[str, ...]  # as pages name them: "CLS", "distillation", "register 1", …
    head: str  # what the class head reads: one of model.CLASSIFIERS, or "none"
    classes: int | None  # k; None without a class head (never 1)
    training: str  # one of TRAINING
    mean: tuple[float, ...]
    std: tuple[float, ...]
    zero_colour: tuple[int, ...]  # the 0–255 colour whose normalised value is 0: what an occluded patch shows
    zero_kind: str  # "mid-grey", "imagenet-mean" or "colour"
    positions: str  # "sincos-start" (vitviz starts E_pos as sine-cosine waves) or "learned" (a checkpoint's own)
    position_grid: tuple[int, int] | None  # the grid E_pos was learned on, when the model runs on another
    preprocessing: images.Preprocessing

    @classmethod
    def of(cls, config: ViTConfig) -> ModelFacts:
        plan = images.preprocessing(config)
        scale = plan.rescale * 255  # 1 for the usual 1/255
        zero = tuple(min(255, max(0, round(m / scale * 255))) for m in config.mean)
        if all(math.isclose(m, IMAGENET_MEAN[i], abs_tol=1e-3) for i, m in enumerate(config.mean[:3])) and \
                len(config.mean) == 3:
            zero_kind = "imagenet-mean"
        elif len(set(zero)) == 1 and zero[0] in (127, 128):
            zero_kind = "mid-grey"
        else:
            zero_kind = "colour"
        learned_on = _grid(config.extra.get("position_grid"))
        return cls(
            special_tokens=config.special_tokens, special_labels=config.special_labels,
            head=config.classifier if config.num_labels else "none", classes=config.num_labels or None,
            training=training_of(config), mean=config.mean, std=config.std, zero_colour=zero, zero_kind=zero_kind,
            positions="sincos-start" if _is_vitviz_made(config.extra) else "learned",
            position_grid=learned_on if learned_on is not None and learned_on != config.grid else None,
            preprocessing=plan,
        )

    @property
    def num_special(self) -> int:
        """s: patch i is token i + s."""
        return len(self.special_tokens)

    @property
    def has_head(self) -> bool:
        return self.head != "none"

    @property
    def supervised(self) -> bool:
        """Known to have learned from labels (the recipe says so)."""
        return self.training in SUPERVISED

    @property
    def self_supervised(self) -> bool:
        """Known to have learned without labels (DINO, DINOv2): never inferred from a missing head."""
        return self.training in SELF_SUPERVISED

    @property
    def reads_more_than_cls(self) -> bool:
        """The class head reads other final tokens besides CLS (DeiT's distillation token, DINOv2's patch mean)."""
        return self.head in ("cls_distillation_mean", "cls_patch_mean")

    @property
    def registers(self) -> int:
        return self.special_tokens.count("register")

    @property
    def distillation(self) -> bool:
        return "distillation" in self.special_tokens
