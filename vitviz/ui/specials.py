"""How pages name, split and draw the tokens: the s special tokens first (CLS, then a distillation token or
registers, in models that have them), then the n patches row by row."""

from __future__ import annotations

import numpy as np

from vitviz import analysis, figures
from vitviz.i18n import N_
from vitviz.ui.drawing import hover_words
from vitviz.ui.i18n import _, listed, number
from vitviz.ui.state import Traced

# What each kind of special token is for, as step 7 says it (in English: shown as _(PURPOSES[kind])).
PURPOSES = {
    "cls": N_("**CLS** (classification token): one learned vector put in front of every image's patches. It has no "
           "pixels of its own; through attention it gathers what the model needs about the whole image, and "
           "its final vector y goes to the class head (or, in a model without one, is the image's description)."),
    "distillation": N_("**distillation** (DeiT): a second learned token with a head of its own. DeiT trains that head "
                    "to reproduce a teacher network's predictions while CLS's head learns the true labels; at test "
                    "time the two heads' logits are averaged."),
    "register": N_("**registers** (DINOv2 with registers): extra learned tokens with no position and no use at the "
                "output, where they are dropped. They give the model room for image-wide bookkeeping, which "
                "models without them do in a few background patches (Darcet et al., 2024)."),
}


def token_heatmap(traced: Traced, matrix: np.ndarray, *, keys: bool = False, **kwargs):
    """`figures.heatmap` of a matrix whose rows are the tokens (and whose columns are too, with `keys`):
    the special tokens' rows labelled and set apart from the patches'."""
    labels = traced.trace.special_labels
    return figures.heatmap(matrix, special_rows=labels, special_cols=labels if keys else (),
                           patch_names=(_("patch {index}"), _("patches {first}–{last}")), **kwargs, words=hover_words())


def special_list(traced: Traced) -> str:
    """The special tokens in a few words: "CLS", "CLS; distillation", "CLS; 4 registers"."""
    labels = traced.trace.special_labels
    registers = sum(label.startswith("register") for label in labels)
    others = [label for label in labels if not label.startswith("register")]
    if registers:
        others.append(_("register") if registers == 1 else _("{count} registers").format(count=registers))
    return "; ".join(others)


def token_axis(traced: Traced) -> str:
    """The title of an axis of token indices, saying which are the special tokens."""
    labels = traced.trace.special_labels
    registers = sum(label.startswith("register") for label in labels)
    if registers > 1:
        return _("token (0 = CLS, 1–{last} = registers)").format(last=registers)
    return _("token ({numbers})").format(numbers=", ".join(f"{i} = {label}" for i, label in enumerate(labels)))


def special_weights(traced: Traced, row: np.ndarray, digits: int = 3) -> str:
    """What one attention row gives the special tokens: "CLS gets 0.120", "CLS gets 0.050, the 4 registers 0.400"."""
    labels = traced.trace.special_labels
    spec = f".{digits}f"
    parts = [_("CLS gets {weight}").format(weight=number(row[0], spec))]
    if "distillation" in labels:
        parts.append(_("distillation {weight}").format(weight=number(row[labels.index("distillation")], spec)))
    registers = [i for i, label in enumerate(labels) if label.startswith("register")]
    if registers:
        weight = number(row[registers].sum(), spec)
        parts.append(_("the register {weight}").format(weight=weight) if len(registers) == 1 else
                     _("the {count} registers {weight}").format(count=len(registers), weight=weight))
    return listed(parts)


def patch_overlay(traced: Traced, values: np.ndarray, *, query: int | None = None, **kwargs) -> np.ndarray:
    """`figures.attention_overlay` of per-token values (N,) over the model's input: the patch tokens' values,
    and `query` outlined when it is a patch."""
    s = traced.trace.num_special
    outline = query - s if query is not None and query >= s else None
    return figures.attention_overlay(traced.display, analysis.patch_map(values, traced.trace.grid), outline=outline,
                                     **kwargs)
