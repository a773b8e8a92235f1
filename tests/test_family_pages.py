"""The pages with a distilled DeiT and DINOv2 models (with registers, with a classifier): every page renders, and
what says "CLS" elsewhere names every special token here."""

from __future__ import annotations

import pytest
import streamlit as st
from conftest import ALL_PAGES, fresh_app, open_page, problems

transformers = pytest.importorskip("transformers")

DINOV2 = dict(image_size=56, patch_size=14, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2)
DEIT = dict(image_size=48, patch_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, num_labels=4)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """One small random-weight checkpoint per family, saved as save_pretrained saves it."""
    from helpers.checkpoints import hf_deit_distilled, hf_dinov2

    root = tmp_path_factory.mktemp("families")
    hf_deit_distilled(DEIT, seed=1).save_pretrained(root / "deit-distilled")
    hf_dinov2(DINOV2, seed=2).save_pretrained(root / "dinov2")
    hf_dinov2(DINOV2, seed=3, registers=True).save_pretrained(root / "dinov2-registers")
    hf_dinov2({**DINOV2, "num_labels": 3}, seed=4).save_pretrained(root / "dinov2-classifier")
    return root


@pytest.fixture(autouse=True)
def models_dir(checkpoints, monkeypatch):
    from vitviz import limits

    monkeypatch.setattr(limits, "SECRETS_FILES", ())
    monkeypatch.setenv("VITVIZ_MODELS_DIR", str(checkpoints))
    st.cache_resource.clear()
    st.cache_data.clear()


def load(name: str):
    at = fresh_app()
    open_page(at, "pages/model.py")
    at.radio(key="model_source").set_value("Local path").run()
    at.text_input(key="model_path").set_value(name).run()
    at.button(key="load_path").click().run()
    assert not at.error, [e.value for e in at.error]
    return at


def markdown(at) -> str:
    return " ".join(m.value for m in at.markdown)


def test_every_page_renders_with_registers_and_names_them(checkpoints):
    at = load("dinov2-registers")
    for page in [*ALL_PAGES, "pages/explorer.py", "pages/model.py"]:
        open_page(at, page)
        assert not problems(at), (page, problems(at))
    open_page(at, "pages/step_7.py")
    assert "**5 special tokens**" in markdown(at) and "**registers** (DINOv2 with registers)" in markdown(at)
    assert any("r_{4}" in formula.value for formula in at.latex)
    assert "`(n+5, d)` = `(21, 32)`" in markdown(at)  # 16 patches and 5 special tokens
    open_page(at, "pages/step_10_4.py")
    at.button(key="query_click_10.4_special_2").click().run()  # the query picker offers every special token
    captions = [caption for image in at.get("image") for caption in image.captions]
    assert any(caption.startswith("Attention of register 2 over the patches") for caption in captions), captions
    assert any("the 4 registers" in caption for caption in captions)


@pytest.mark.parametrize("name", ["deit-distilled", "dinov2", "dinov2-classifier"])
def test_the_story_the_explorer_and_the_model_page_render(name):
    at = load(name)
    for page in ("pages/story.py", "pages/explorer.py", "pages/model.py"):
        open_page(at, page)
        assert not problems(at), (page, problems(at))
    table = " ".join(str(cell) for cell in at.table[0].value.values.ravel())
    if name == "deit-distilled":
        assert "CLS, distillation" in table and "two heads, logits averaged" in table
        open_page(at, "pages/step_13.py")
        assert "Before averaging, the CLS head alone says" in markdown(at)
        assert any(r"y_\text{dist}" in formula.value for formula in at.latex)
    elif name == "dinov2-classifier":
        assert "[y; the patch tokens' mean]" in table
        open_page(at, "pages/step_12.py")
        assert "the mean of the patch tokens' vectors" in markdown(at)
    else:
        assert "no class head" in table
