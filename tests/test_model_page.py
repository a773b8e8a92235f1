"""The Model page: a real checkpoint, loaded by path, drives every step page; bad checkpoints say why."""

from __future__ import annotations

import pytest
from conftest import ALL_PAGES, fresh_app, open_page, problems

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def wide_checkpoint(tmp_path_factory):
    """A random ViT shaped like ViT-B/16 where it matters for the pages: 224 px, 197 tokens, 12 heads."""
    import torch

    torch.manual_seed(0)
    config = transformers.ViTConfig(image_size=224, patch_size=16, hidden_size=96, num_hidden_layers=2,
                                    num_attention_heads=12, intermediate_size=192, num_labels=1000,
                                    attn_implementation="eager")
    folder = tmp_path_factory.mktemp("vit-wide")
    transformers.ViTForImageClassification(config).save_pretrained(folder)
    return folder


@pytest.fixture(autouse=True)
def models_dir(tmp_path_factory, monkeypatch):
    """The deployer's models directory: the pytest temporary root, which holds every checkpoint these tests make."""
    from vitviz import limits

    monkeypatch.setattr(limits, "SECRETS_FILES", ())
    monkeypatch.setenv("VITVIZ_MODELS_DIR", str(tmp_path_factory.getbasetemp()))


def load_by_path(at, path: str, size: tuple[int, int] | None = None):
    open_page(at, "pages/model.py")
    at.radio(key="model_source").set_value("Local path").run()
    at.text_input(key="model_path").set_value(path).run()
    if size:
        at.number_input(key="path_h").set_value(size[0])
        at.number_input(key="path_w").set_value(size[1])
    at.button(key="load_path").click().run()
    return at


def test_every_page_runs_on_a_loaded_checkpoint_with_197_tokens_and_12_heads(wide_checkpoint):
    at = load_by_path(fresh_app(), str(wide_checkpoint))
    assert not at.error, [e.value for e in at.error]
    assert at.success and "vit\\-wide" in at.success[0].value  # names are escaped Markdown
    assert any("196 patches" in str(cell) for cell in at.table[0].value.values.ravel())
    for page in ALL_PAGES:
        open_page(at, page)
        assert not problems(at), (page, problems(at))
    open_page(at, "pages/step_10_2.py")
    at.sidebar.selectbox(key="head").set_value(11).run()
    assert not problems(at)


def test_a_non_square_input_size_shows_the_true_grid(wide_checkpoint):
    at = load_by_path(fresh_app(), str(wide_checkpoint), size=(160, 320))
    assert not at.error, [e.value for e in at.error]
    open_page(at, "pages/step_3.py")
    assert not problems(at)
    shape_line = next(m.value for m in at.markdown if m.value.startswith("**Shape**"))
    assert "`(200, 16, 16, 3)`" in shape_line and "n = 200" in shape_line, shape_line


def test_a_bad_path_and_a_bad_upload_say_one_sentence(tmp_path):
    at = load_by_path(fresh_app(), str(tmp_path / "nothing-here"))
    assert len(at.error) == 1 and "not the name of a model in this server's models directory" in at.error[0].value
    at.radio(key="model_source").set_value("Upload").run()
    at.file_uploader(key="model_upload").upload("broken.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage").run()
    at.button(key="load_upload").click().run()
    assert len(at.error) == 1 and not at.exception
    open_page(at, "pages/step_13.py")
    assert not problems(at)


def test_a_model_without_a_class_head_runs_every_page_and_says_so(tmp_path):
    import torch

    torch.manual_seed(1)
    config = transformers.ViTConfig(image_size=64, patch_size=16, hidden_size=48, num_hidden_layers=2,
                                    num_attention_heads=3, intermediate_size=96, attn_implementation="eager")
    transformers.ViTModel(config).save_pretrained(tmp_path / "dino-like")
    at = load_by_path(fresh_app(), str(tmp_path / "dino-like"))
    assert not at.error, [e.value for e in at.error]
    for page in [*ALL_PAGES, "pages/explorer.py"]:
        open_page(at, page)
        assert not problems(at), (page, problems(at))
    at.session_state["keep_explorer_tab"] = "Faithfulness"
    at.run()
    assert any("no class head, so there is nothing to score" in i.value for i in at.info)
    for page in ("pages/step_13.py", "pages/step_14.py"):
        open_page(at, page)
        assert any("no class head" in i.value for i in at.info), page
    open_page(at, "pages/welcome.py")
    shown = " ".join(m.value for m in at.markdown)
    assert "without a class head" in shown and "without labels" not in shown and "built-in" not in shown
