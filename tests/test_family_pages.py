"""Every page, for every kind of model vitviz runs, says only what is true of that model.

Each page (the explorer's tabs and the Model page included) is rendered for the built-in model, a studio-sized one,
a ViT at 224 pixels with 0.5 normalisation, a distilled DeiT at 224, a headless ViTModel, DINOv2 with registers
headless and with a classifier (run on a smaller grid than it was trained on), and the facts each page states are
checked against the model's own `ModelFacts`: token counts, special-token labels, k, what the head reads, training
claims, normalisation, preprocessing and positions. Two Hub presets, whose training is known, are checked for the
sentences that only a known recipe allows.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import pytest
import streamlit as st
import torch
from conftest import ALL_PAGES, fresh_app, open_page, problems

from vitviz import data, studio, weights
from vitviz.facts import ModelFacts
from vitviz.model import ViT
from vitviz.ui.steps.tokens import CLS_INIT_STD

transformers = pytest.importorskip("transformers")

IMAGENET = dict(image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
# Narrow and shallow; the 224-pixel ones keep the real token counts (196 patches: 197 tokens, 198 for DeiT).
AT_224 = dict(image_size=224, patch_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
              intermediate_size=64)
DINOV2 = dict(image_size=56, patch_size=14, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2)
FOLDERS = ("vit-224", "deit-distilled", "headless-vit", "dinov2-registers", "dinov2-registers-classifier")
KINDS = ("built-in", "studio", *FOLDERS)
TABS = ("All heads", "Layers × heads", "Attribution", "Occlusion", "Paper Fig. 7", "Faithfulness", "Token norms")
# The shape names that never occur in vitviz's own prose ("square", "star", "plus" do: "square patches").
SHAPE_NAMES = re.compile(r"\b(circle|ring|triangle|heart|crescent)s?\b", re.IGNORECASE)
assert set(SHAPE_NAMES.pattern.split("(")[1].split(")")[0].split("|")) <= set(data.CLASSES)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """One small random-weight checkpoint per kind, saved as save_pretrained saves them, with their processors."""
    from helpers.checkpoints import hf_deit_distilled, hf_dinov2, hf_vit

    root = tmp_path_factory.mktemp("families")
    hf_vit({**AT_224, "num_labels": 1000}, seed=1).save_pretrained(root / "vit-224")
    transformers.ViTImageProcessorPil().save_pretrained(root / "vit-224")  # the whole picture to 224², 0.5/0.5
    hf_deit_distilled({**AT_224, "num_labels": 4}, seed=2).save_pretrained(root / "deit-distilled")
    transformers.DeiTImageProcessorPil(**IMAGENET).save_pretrained(root / "deit-distilled")  # 256², centre 224²
    hf_vit(dict(AT_224, image_size=32, patch_size=8), seed=3, headless=True).save_pretrained(root / "headless-vit")
    hf_dinov2(DINOV2, seed=4, registers=True).save_pretrained(root / "dinov2-registers")
    hf_dinov2({**DINOV2, "num_labels": 3}, seed=5, registers=True).save_pretrained(root / "dinov2-registers-classifier")
    # trained on a 4×4 grid, run on the 3×3 its processor crops to: its positions are resampled
    transformers.BitImageProcessorPil(size={"shortest_edge": 48}, crop_size={"height": 42, "width": 42}, **IMAGENET
                                      ).save_pretrained(root / "dinov2-registers-classifier")
    return root


@pytest.fixture(autouse=True)
def models_dir(checkpoints, monkeypatch):
    from vitviz import limits

    monkeypatch.setattr(limits, "SECRETS_FILES", ())
    monkeypatch.setenv("VITVIZ_MODELS_DIR", str(checkpoints))
    st.cache_resource.clear()
    st.cache_data.clear()


def load(kind: str):
    """A fresh app running `kind`, and that model."""
    at = fresh_app()
    if kind == "built-in":
        return at, weights.load_default()
    open_page(at, "pages/model.py")
    if kind == "studio":
        torch.manual_seed(0)
        model = ViT(studio.Settings().config())
        at.radio(key="model_source").set_value("Upload").run()
        at.file_uploader(key="model_upload").upload("studio.safetensors", weights.to_bytes(model),
                                                    "application/octet-stream").run()
        at.button(key="load_upload").click().run()
    else:
        at.radio(key="model_source").set_value("Local path").run()
        at.text_input(key="model_path").set_value(kind).run()
        at.button(key="load_path").click().run()
    assert not at.error, [e.value for e in at.error]
    return at, at.session_state["vitviz_model"].model


@dataclass
class Shown:
    text: str  # every sentence, caption and label a reader reads
    latex: str  # the formulas
    charts: str  # the charts' specs (their titles)


def shown(at) -> Shown:
    parts = [e.value for kind in ("markdown", "caption", "info", "success", "warning", "text", "title")
             for e in at.get(kind)]
    parts += [caption for image in at.get("image") for caption in image.captions]
    parts += [str(cell) for table in at.get("table") for cell in table.value.values.ravel()]
    return Shown("\n".join(str(p) for p in parts), "\n".join(e.value for e in at.get("latex")),
                 "\n".join(str(chart.proto) for chart in at.get("plotly_chart")))


def walk(at, facts: ModelFacts):
    """(page name, what it shows) for every page, the explorer's tabs one by one."""
    for page in [*ALL_PAGES, "pages/model.py"]:
        if page == "pages/step_10_11.py":  # the GELU panel's token: the last special token
            at.session_state["keep_query"] = facts.num_special - 1
        open_page(at, page)
        at.session_state["keep_query"] = 0
        assert not problems(at), (page, problems(at))
        yield page, shown(at)
    for tab in TABS:
        at.session_state["keep_explorer_tab"] = tab
        open_page(at, "pages/explorer.py")
        assert not problems(at), (tab, problems(at))
        yield f"explorer: {tab}", shown(at)


SPECIALS = {"cls": "CLS", "cls_distillation_mean": "CLS and the distillation token"}
HEAD_SENTENCES = {  # step 7
    "cls": "At the end the class head reads CLS alone (row 0; steps 12 and 13).",
    "cls_distillation_mean": "this model's two class heads read CLS and the distillation token (rows 0 and 1)",
    "cls_patch_mean": "this model's class head reads CLS beside the mean of the patch tokens",
    "none": "This model has no class head: CLS's final vector y is its description of the whole image",
}
PICTURES = {  # step 1, and the Model page
    "vit-224": "vitviz follows this model's own processor (its preprocessor_config.json): the whole picture is "
               "resized to 224×224 pixels (bilinear), squeezing a picture of another shape.",
    "deit-distilled": "the whole picture is resized to 256×256 pixels (bicubic), squeezing a picture of another "
                      "shape, and the central 224×224 pixels are cut out.",
    "dinov2-registers-classifier": "its shorter side is resized to 48 pixels and the longer in proportion (bicubic), "
                                   "and the central 42×42 pixels are cut out.",
}


def claims(page: str, kind: str, facts: ModelFacts, model: ViT) -> list[str]:
    """What `page` must say for this model: its own numbers, and only what is true of it."""
    config = model.config
    height, width = config.image_size
    tokens, h, dh, d, k = config.num_tokens, config.heads, config.head_dim, config.dim, facts.classes
    attention, mlp = 4 * d * d + 4 * d, 2 * d * config.mlp_dim + config.mlp_dim + d
    specials = SPECIALS.get(facts.head, f"CLS and {facts.registers} registers") if facts.registers or \
        facts.distillation else "CLS"
    vitviz_made = kind in ("built-in", "studio")
    zero = {"mid-grey": "mid-grey (128, 128, 128)", "imagenet-mean": "ImageNet's mean colour (124, 116, 104)"}
    said = {
        "pages/step_1.py": [PICTURES.get(kind, f"vitviz cuts the largest centred piece of the model's shape out of "
                                               f"it and resizes that to {width}×{height} pixels (bicubic)."),
                            f"A value of 0 after it is {zero[facts.zero_kind]}."],
        "pages/step_3.py": [f"{height * width:,} tokens and {(height * width)**2:,} scores",
                            f"{tokens:,} tokens ({specials} included) and {tokens**2:,} scores",
                            f"{h * config.depth * tokens**2:,} per image"],
        "pages/step_7.py": [HEAD_SENTENCES[facts.head], "appendix D.3",
                            f"standard deviation {CLS_INIT_STD})" if vitviz_made else "is loaded as stored"],
        "pages/step_10_1.py": [f"ε = {config.layer_norm_eps:g}"],
        "pages/step_10_2.py": [f"√{dh} = {dh**0.5:.2f}"],
        "pages/step_10_5.py": [f"one context vector per token, {specials} included"],
        "pages/step_10_6.py": [f"{h} · {tokens}² · {dh} = {tokens}² · {d} = {h * tokens**2 * dh:,}", f"Head {h}: patches "],
        "pages/step_10_11.py": [f"{mlp:,} parameters per block and attention {attention:,}", "lowest, -0.170 at z = -0.75"],
        "pages/step_11.py": ["1 means the layer left CLS pointing the same way"],
        "pages/model.py": [", ".join(facts.special_labels) if not facts.registers else f"CLS and {facts.registers} registers",
                           PICTURES.get(kind, "vitviz cuts the largest centred piece")],
        "explorer: Occlusion": [f"which for this model is {zero[facts.zero_kind]}"],
        "explorer: Attribution": ["a heuristic (Abnar and Zuidema, 2020)", "ignores the values, W_o and the MLPs"],
    }
    if facts.has_head:
        said["pages/step_11.py"].append(f"The head is made for what layer {config.depth} hands it")
        said["pages/step_14.py"] = [f"classes scores −log(1/{k:,}) = {math.log(k):.2f}",
                                    "with AdamW" if vitviz_made else "is not stored in it"]
        said["explorer: Faithfulness"] = ["The scores depend on what replaces a patch", "**Input × gradient**: "]
        said["pages/step_13.py"] = ["Prediction: **"]
    else:
        said["pages/step_12.py"] = ["This model has no class head: y, the CLS token's vector, describes the whole image"]
        said["pages/step_13.py"] = ["This model has no class head"]
        said["pages/step_14.py"] = ["This model has no class head"]
        said["pages/step_0.py"] = ["This model has no class head, and vitviz does not know how it was trained"]
        said["pages/step_2.py"] = ["This model has no class head, so no label enters anywhere"]
        said["pages/welcome.py"] = ["a ViT without a class head, so it makes no prediction"]
    if facts.reads_more_than_cls:
        said["explorer: Faithfulness"].append("The four attention maps (raw attention, both rollouts and Chefer relevance)"
                                              " follow only what flows into CLS")
    if facts.head == "cls_distillation_mean":
        said["pages/step_14.py"] += ["DeiT trains a model like this one with two losses, one per head", "averaged logits"]
    if facts.position_grid is not None:
        said["pages/step_8.py"] = ["The checkpoint holds them for a grid of 4×4 patches, and this model runs on 3×3"]
    if vitviz_made:
        said["pages/step_8.py"] = ["sine and cosine waves", "with its sine-cosine start"]
    if kind == "vit-224":
        said["pages/welcome.py"] = ["1,000 output classes"]
    return said.get(page, [])


def check_page(page: str, kind: str, facts: ModelFacts, model: ViT, seen: Shown) -> None:
    text = seen.text
    for sentence in claims(page, kind, facts, model):
        assert sentence in text, (page, sentence)
    # numbers and shapes: no k for a model without a class head, n+s tokens for s special tokens
    if not facts.has_head:
        assert "k = " not in text and r"\hat p" not in seen.latex and "−log(1/" not in text, page
        assert "`(k,)`" not in text and "softmax turns" not in text, page
    elif "**Shape**" in text:
        assert f"· k = {facts.classes}" in text, page
    if facts.num_special > 1:
        assert "(CLS included)" not in text and "`(n+1" not in text and "(n+1)" not in text, page
    # what the head reads
    assert "every model vitviz runs reads CLS" not in text and "have done their job" not in text, page
    assert "the one that makes the prediction" not in text and "training data's mean colour" not in text, page
    # training: nothing about it unless the model's facts know it; self-supervised only when known
    lists_presets = page in ("pages/welcome.py", "pages/model.py")  # the presets' own lines name their recipes
    if not facts.self_supervised and not lists_presets:
        assert not re.search(r"self-supervised|without labels|self-distillation", text, re.IGNORECASE), page
    if facts.training == "unknown" and not lists_presets:
        for claim in ("It was trained", "pre-trained", "learned in its own training", "were learned in its training",
                      "This DeiT was trained", "ImageNet-1k", "ImageNet-21k"):
            assert claim not in text, (page, claim)
    if facts.training != "shapes":
        assert not SHAPE_NAMES.search(text) and "8 classes" not in text and "eight shapes" not in text, page
        assert "built-in model is" not in text and "When vitviz trains" not in text, page
    if not kind == "built-in" and facts.positions == "learned":
        assert "sine and cosine waves" not in text and "vitviz starts it" not in text, page
    if page == "pages/step_10_11.py":  # the GELU panel names its token as every other figure does
        label = facts.special_labels[-1]
        assert f"GELU, with the hidden units of {label} (layer 1)" in seen.charts, (label, "GELU title")
    if page == "pages/step_1.py":
        assert "token i + s" in text  # the Notation box, with the numbering for s special tokens


@pytest.mark.parametrize("kind", KINDS)
def test_every_page_states_only_the_facts_of_the_model_in_use(kind):
    at, model = load(kind)
    facts = ModelFacts.of(model.config)
    expected = {"built-in": "shapes", "studio": "shapes"}.get(kind, "unknown")
    assert facts.training == expected  # random transformers weights in a folder: nothing known of their training
    for page, seen in walk(at, facts):
        check_page(page, kind, facts, model, seen)


def test_the_registers_are_named_and_counted_where_the_pages_name_cls():
    at, model = load("dinov2-registers")
    open_page(at, "pages/step_7.py")
    text = shown(at).text
    assert "**5 special tokens**" in text and "**registers** (DINOv2 with registers)" in text
    assert any("r_{4}" in formula.value for formula in at.latex)
    assert "`(n+5, d)` = `(21, 32)`" in text  # 16 patches and 5 special tokens
    open_page(at, "pages/step_10_4.py")
    at.button(key="query_click_10.4_special_2").click().run()  # the query picker offers every special token
    captions = [caption for image in at.get("image") for caption in image.captions]
    assert any(caption.startswith("Attention of register 2 over the patches") for caption in captions), captions
    assert any("the 4 registers" in caption for caption in captions)


def test_the_two_heads_of_a_deit_and_the_patch_mean_of_a_dinov2_are_shown():
    at, _ = load("deit-distilled")
    open_page(at, "pages/step_13.py")
    assert "Before averaging, the CLS head alone says" in shown(at).text
    assert any(r"y_\text{dist}" in formula.value for formula in at.latex)
    at, _ = load("dinov2-registers-classifier")
    open_page(at, "pages/step_12.py")
    assert "the mean of the patch tokens' vectors" in shown(at).text
    assert any(r"\bar y_\text{patches}" in formula.value for formula in at.latex)


KNOWN = {  # page -> sentences that only a known recipe allows
    "facebook/dino-vits16": {
        "pages/welcome.py": ["a ViT trained without labels"],
        "pages/step_0.py": ["DINO's self-distillation on ImageNet's photos"],
        "pages/step_2.py": ["This model learned without labels, so there is no label to set aside"],
        "pages/step_13.py": ["This model learned without labels, so it has no class head"],
        "pages/model.py": ["DINO, without labels"],
    },
    "facebook/deit-small-distilled-patch16-224": {
        "pages/step_0.py": ["RegNetY-16GF"],
        "pages/step_2.py": ["This model learned from images paired with their labels"],
        "pages/step_14.py": ["This DeiT was trained with two losses, one per head", "Why a ViT needs so much data"],
        "pages/step_1.py": ["the whole picture is resized to 256×256 pixels (bicubic)"],
        "pages/step_8.py": ["This checkpoint's vectors were learned in its training"],
        "pages/model.py": ["ImageNet-1k with DeiT's recipe and a teacher network"],
    },
}


@pytest.mark.parametrize("repo_id", list(KNOWN))
def test_a_preset_whose_recipe_is_known_says_it(fake_hub, repo_id):
    at = open_page(fresh_app(), "pages/welcome.py")  # AppTest loses a click on its very first page
    at.button(key=f"preset_welcome_{repo_id}").click().run()
    assert not at.error and not problems(at), ([e.value for e in at.error], problems(at))
    model = at.session_state["vitviz_model"].model
    assert model.config.extra["repo"] == repo_id and model.config.extra["training"] in ("dino", "deit-distilled")
    for page, sentences in KNOWN[repo_id].items():
        open_page(at, page)
        assert not problems(at), (page, problems(at))
        for sentence in sentences:
            assert sentence in shown(at).text, (page, sentence)
