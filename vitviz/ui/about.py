"""What pages say about the model in use, in the reader's language, from its `vitviz.facts.ModelFacts` only: what its
class head reads, how it was trained (nothing when that is not known), what a zero input is, how a picture became
its input. A page that states one of these takes the words from here."""

from __future__ import annotations

from vitviz import images
from vitviz.facts import ModelFacts
from vitviz.i18n import N_
from vitviz.ui.i18n import _, ngettext

# What the class head reads, in a few words (a figure's title: "Prediction read from each layer's …").
HEAD_READS = {"cls": N_("CLS token"), "cls_distillation_mean": N_("CLS and distillation tokens"),
              "cls_patch_mean": N_("CLS token and the patch tokens' mean")}

# One sentence per recipe (`vitviz.facts.TRAINING`): how this model learned, said only when its preset or its own
# metadata says so.
TRAINING = {
    "shapes": N_("vitviz trained it on its built-in generated shapes, each picture with its label."),
    "imagenet-1k": N_("It was trained with labels on ImageNet-1k (1.3 million photos in 1,000 classes)."),
    "imagenet-21k": N_("It was trained with labels on ImageNet-21k (about 14 million photos in 21,843 classes)."),
    "imagenet-21k-1k": N_("It was pre-trained with labels on ImageNet-21k (about 14 million photos in 21,843 "
                          "classes), then fine-tuned on ImageNet-1k's 1,000 classes, as in the ViT paper."),
    "deit": N_("It was trained with labels on ImageNet-1k alone (1.3 million photos), with DeiT's recipe: strong data "
               "augmentation and regularisation instead of a larger dataset."),
    "deit-distilled": N_("It was trained on ImageNet-1k alone with DeiT's recipe: CLS's head learned the true labels "
                         "and the distillation token's head the classes a convolutional teacher network (RegNetY-16GF) "
                         "predicted."),
    "dino": N_("It learned without labels, by DINO's self-distillation on ImageNet's photos: a student network sees "
               "small and large crops of a photo and learns to give the same output as a teacher network that sees "
               "only the large crops, the teacher being a running average of the student."),
    "dinov2": N_("It learned without labels with DINOv2's recipe, on 142 million curated photos: DINO's "
                 "self-distillation on whole crops, iBOT's task of matching the teacher's output for masked patches, "
                 "and the KoLeo term that spreads a batch's features apart. The small DINOv2 models, as this one, "
                 "learned with the giant DINOv2 model as their teacher."),
}


# The recipe in a few words, for the Model page's table.
TRAINING_SHORT = {
    "shapes": N_("vitviz's built-in shapes, with labels"),
    "imagenet-1k": N_("ImageNet-1k, with labels"),
    "imagenet-21k": N_("ImageNet-21k, with labels"),
    "imagenet-21k-1k": N_("ImageNet-21k, then ImageNet-1k, with labels"),
    "deit": N_("ImageNet-1k with DeiT's recipe"),
    "deit-distilled": N_("ImageNet-1k with DeiT's recipe and a teacher network"),
    "dino": N_("DINO, without labels"),
    "dinov2": N_("DINOv2, without labels"),
    "unknown": N_("not recorded"),
}


def head_reads(facts: ModelFacts) -> str:
    """The final tokens the class head reads, in a few words; "" for a model without one."""
    return _(HEAD_READS[facts.head]) if facts.has_head else ""


def training(facts: ModelFacts) -> str:
    """One sentence on how the model learned, or "" when that is not known (a page then says nothing about it)."""
    return _(TRAINING[facts.training]) if facts.training in TRAINING else ""


def special_tokens(facts: ModelFacts) -> str:
    """The special tokens in a phrase: "CLS", "CLS and the distillation token", "CLS and 4 registers"."""
    if facts.distillation:
        return _("CLS and the distillation token")
    if facts.registers:
        return ngettext("CLS and {count} register", "CLS and {count} registers", facts.registers).format(
            count=facts.registers)
    return "CLS"


def zero_colour(facts: ModelFacts) -> str:
    """The colour a normalised value of 0 is, in a phrase: what an occluded patch shows."""
    rgb = ", ".join(str(value) for value in facts.zero_colour)
    if facts.zero_kind == "mid-grey":
        return _("mid-grey ({rgb})").format(rgb=rgb)
    if facts.zero_kind == "imagenet-mean":
        return _("ImageNet's mean colour ({rgb})").format(rgb=rgb)
    return _("the colour ({rgb})").format(rgb=rgb)


def preprocessing(facts: ModelFacts, image_size: tuple[int, int]) -> str:
    """What was done to a picture before normalisation, in a sentence or two: the checkpoint's own processor's resize
    and crop, or vitviz's centre crop."""
    plan = facts.preprocessing
    h, w = image_size
    if plan.kind == "vitviz":
        done = _("vitviz cuts the largest centred piece of the model's shape out of it and resizes that to {w}×{h} "
                 "pixels (bicubic).").format(w=w, h=h)
        if plan.declined:
            return _("This model runs at {w}×{h} pixels, not at the size its own processor makes, so vitviz does not "
                     "follow that processor.").format(w=w, h=h) + " " + done
        return done
    source = _("vitviz follows this model's timm configuration:") if plan.origin == "timm" else \
        _("vitviz follows this model's own processor (its preprocessor_config.json):")
    names = {"filter": _(images.RESAMPLE_NAMES[plan.resample])}
    if plan.crop is not None:
        names.update(cw=plan.crop[1], ch=plan.crop[0])
    if isinstance(plan.resize, tuple):
        names.update(w=plan.resize[1], h=plan.resize[0])
        done = _("the whole picture is resized to {w}×{h} pixels ({filter}), squeezing a picture of another shape, "
                 "and the central {cw}×{ch} pixels are cut out.") if plan.crop else \
            _("the whole picture is resized to {w}×{h} pixels ({filter}), squeezing a picture of another shape.")
    elif plan.resize is not None:
        names.update(side=plan.resize)
        done = _("its shorter side is resized to {side} pixels and the longer in proportion ({filter}), and the "
                 "central {cw}×{ch} pixels are cut out.") if plan.crop else \
            _("its shorter side is resized to {side} pixels and the longer in proportion ({filter}).")
    else:
        done = _("the central {cw}×{ch} pixels are cut out.")
    return source + " " + done.format(**names)


# PIL's filters as step 1 names them (the numbers of `images.RESAMPLE_NAMES`)
FILTER_NAMES = (N_("nearest"), N_("Lanczos"), N_("bilinear"), N_("bicubic"), N_("box"), N_("Hamming"))


# What CLS is for in this model, as the explorer introduces its default query.
CLS_ROLES = {
    "cls": N_("the CLS token, which the class head reads"),
    "cls_distillation_mean": N_("the CLS token, which one of the two class heads reads (the other reads the "
                                "distillation token)"),
    "cls_patch_mean": N_("the CLS token, which the class head reads beside the mean of the patch tokens"),
    "none": N_("the CLS token, whose final vector describes the whole image (this model has no class head)"),
}


def cls_role(facts: ModelFacts) -> str:
    return _(CLS_ROLES[facts.head])
