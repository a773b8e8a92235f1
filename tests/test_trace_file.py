"""What a reader takes away: a Trace in a safetensors file, the README's notebook example, the numbers' zip
and the story's HTML file (tests/test_browser_links.py opens a downloaded story offline in Chromium)."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import zipfile
from pathlib import Path

import pytest
import safetensors
import safetensors.torch
import torch
from conftest import wait_for_background_work

from vitviz import capture, i18n, limits
from vitviz.images import load_image, prepare
from vitviz.model import ViT, ViTConfig
from vitviz.ui import downloads, state, steps, story_file
from vitviz.ui.controls import View
from vitviz.ui.i18n import speaking

ROOT = Path(__file__).resolve().parent.parent
PHOTO = ROOT / "assets" / "samples" / "cat.jpg"


def every_tensor(trace: capture.Trace) -> dict[str, torch.Tensor]:
    """Each tensor field by the name a file gives it, found independently of capture's own code."""
    found = {}
    for field in dataclasses.fields(trace):
        value = getattr(trace, field.name)
        if isinstance(value, torch.Tensor):
            found[field.name] = value
        elif field.name == "layers":
            for index, layer in enumerate(value):
                for part in dataclasses.fields(layer):
                    if isinstance(getattr(layer, part.name), torch.Tensor):
                        found[f"layers.{index}.{part.name}"] = getattr(layer, part.name)
    return found


@pytest.fixture(scope="module")
def headless_model() -> ViT:
    """A random model without a class head (as DINO), 2 heads, on a non-square input."""
    torch.manual_seed(3)
    return ViT(ViTConfig(image_size=(32, 48), patch_size=8, dim=32, depth=2, heads=2, mlp_dim=64)).eval()


@pytest.mark.parametrize("which", ["small_model", "headless_model"])
def test_a_trace_saved_and_loaded_is_the_same_and_opens_with_plain_safetensors(which, request, tmp_path):
    model = request.getfixturevalue(which)
    trace = capture.trace(model, torch.randn(3, *model.config.image_size))
    path = tmp_path / "trace.safetensors"
    trace.save(path)
    loaded = capture.Trace.load(path)

    expected = every_tensor(trace)
    assert expected.keys() == every_tensor(loaded).keys()
    for name, tensor in every_tensor(loaded).items():
        assert torch.equal(tensor, expected[name]), name
    assert (loaded.patch_size, loaded.mean, loaded.std) == (trace.patch_size, trace.mean, trace.std)
    assert [layer.heads for layer in loaded.layers] == [layer.heads for layer in trace.layers]
    assert torch.equal(loaded.layers[1].q, trace.layers[1].q) and torch.equal(loaded.attentions(), trace.attentions())
    assert (loaded.logits is None) == (model.head is None)

    plain = safetensors.torch.load_file(path)  # no vitviz needed
    assert plain.keys() == expected.keys()
    for name, tensor in plain.items():
        assert torch.equal(tensor, expected[name]), name
    with safetensors.safe_open(str(path), framework="pt") as file:
        assert capture.TRACE_METADATA in file.metadata()
    in_memory = safetensors.torch.load(trace.to_bytes())  # the same file (its header's key order may differ)
    assert in_memory.keys() == plain.keys() and all(torch.equal(in_memory[name], plain[name]) for name in plain)


def test_a_safetensors_file_that_is_not_a_trace_says_so(tmp_path):
    path = tmp_path / "weights.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="no vitviz trace"):
        capture.Trace.load(path)


def test_the_readme_notebook_example_runs_as_it_stands(monkeypatch):
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- notebook example[^>]*-->\s*```python\n(.*?)```", readme, re.S).group(1)
    *body, last = [line for line in block.strip().splitlines() if line.strip()]
    assert len(body) + 1 <= 6, "a short example"
    monkeypatch.chdir(ROOT)  # the example's paths are the repository's
    scope: dict = {}
    exec("\n".join(body), scope)
    figure = eval(last, scope)  # a notebook shows the last expression: the figure
    tokens = scope["model"].config.num_patches + 1
    assert figure.data[0].z.shape == (tokens, tokens)
    assert torch.allclose(torch.as_tensor(figure.data[0].z), scope["trace"].layers[2].attn[1])


def traced_photo(model: ViT, model_key: str) -> state.Traced:
    image = load_image(PHOTO.read_bytes())
    prepared = prepare(image, model.config)
    recorder = capture.Recorder(model)
    return state.Traced(image_name="Photo: cat", image_key=f"test-{model_key}", image=image, prepared=prepared,
                        trace=recorder.trace(prepared.pixels), model_key=model_key, model=model, recorder=recorder)


def test_the_numbers_zip_holds_the_trace_and_what_a_notebook_needs(default_model):
    traced = traced_photo(default_model, "default")
    archive = zipfile.ZipFile(io.BytesIO(downloads.numbers_zip(traced, state.DEFAULT_MODEL_NAME)))
    assert sorted(archive.namelist()) == ["trace.json", "trace.safetensors"]
    about = json.loads(archive.read("trace.json"))
    assert about["image"] == "Photo: cat" and about["model"] == state.DEFAULT_MODEL_NAME
    assert about["labels"] == list(default_model.config.labels) and about["config"]["heads"] == 4
    assert about["prediction"] == default_model.config.labels[int(traced.trace.logits.argmax())]
    tensors = safetensors.torch.load(archive.read("trace.safetensors"))
    assert about["tensors"] == {name: list(tensor.shape) for name, tensor in tensors.items()}
    assert torch.equal(tensors["layers.3.attn"], traced.trace.layers[3].attn)


def test_the_story_file_has_every_step_for_the_model_in_use(headless_model):
    traced = traced_photo(headless_model, "story-test")
    view = View(layer=1, head=1, query=3, colorscale="Inferno")
    page = story_file.story_html(traced, view, model_name="a <b>random</b> model", kept={"keep_patch": 2}).decode()
    wait_for_background_work()
    for step in steps.STEPS:
        assert f'<section id="step-{step.slug}"><h2>{step.label}</h2>' in page.replace("&#x27;", "'"), step.key
    assert "could not be drawn" not in page
    assert page.count("<math") >= sum(1 for step in steps.STEPS if step.formula)  # and formulas inside steps
    assert page.count("Plotly.newPlot(") >= 20 and page.count("plotly.js v") == 1, "plotly.js once, in the head"
    assert "a &lt;b&gt;random&lt;/b&gt; model" in page and "<b>random" not in page
    assert "no class head" in page and "layer 2, head 2, query patch 2 (row 1, col 3)" in page
    assert "Patch: <strong>2</strong>" in page  # step 4's slider, as the reader left it
    assert len(page) < limits.story_max_bytes()


def test_a_story_over_its_budget_leaves_figures_out_and_says_so(headless_model):
    traced = traced_photo(headless_model, "story-test")
    budget = 5_000_000  # plotly.js alone is 4.8 MB
    page = story_file.story_html(traced, View(), model_name="m", kept={}, budget=budget)
    assert len(page) <= budget
    assert b"A figure was left out here" in page


def test_the_story_file_speaks_the_language_of_the_session_that_asked_for_it(default_model):
    traced = traced_photo(default_model, "default")
    turkish = i18n.translations("tr")
    with speaking(turkish):  # as downloads.story_button's deferred download does, on a thread with no session
        page = story_file.story_html(traced, View(), model_name="m", kept={}, language="tr").decode()
    wait_for_background_work()
    assert '<html lang="tr">' in page and "Written by vitviz" not in page
    assert f"<h2>{steps.STEPS[0].key} · {turkish.gettext(steps.STEPS[0].title)}</h2>" in page
    assert turkish.gettext("Attention scores") in page and ">Attention scores<" not in page
