"""vitviz.hub against a Hugging Face Hub on 127.0.0.1 (the `fake_hub` fixture): what is fetched, and every refusal."""

from __future__ import annotations

import gc
import threading
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants

from vitviz import hub, limits
from vitviz.weights import CheckpointError

pytest.importorskip("transformers")

GOOGLE, DEIT, DINO, TIMM, DISTILLED, DINOV2, REGISTERS = (preset.repo_id for preset in hub.PRESETS)


def one_sentence(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert message.endswith(".") and "\n" not in message and message.count(". ") == 0, message
    return message


def logits(model, pixels: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(pixels[None])[0]


def test_the_presets_name_what_they_teach():
    assert [p.repo_id for p in hub.PRESETS] == ["google/vit-base-patch16-224", "facebook/deit-tiny-patch16-224",
                                                "facebook/dino-vits16", "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k",
                                                "facebook/deit-small-distilled-patch16-224", "facebook/dinov2-small",
                                                "facebook/dinov2-with-registers-small"]
    assert [p.has_classifier for p in hub.PRESETS] == [True, True, False, True, True, False, False]
    assert all(p.title and p.teaches and 0 < p.size_mb < 1000 for p in hub.PRESETS)
    with pytest.raises(AttributeError):
        hub.PRESETS[0].size_mb = 1  # frozen


@pytest.mark.parametrize("repo_id", [GOOGLE, DEIT, TIMM])
def test_each_classifier_preset_computes_what_transformers_computes(fake_hub, hub_checkpoints, repo_id):
    reference = hub_checkpoints[1][repo_id]
    model = hub.load(repo_id)
    size = reference.config.image_size
    assert model.config.image_size == (size, size)
    pixels = torch.randn(3, size, size)
    with torch.no_grad():
        expected = reference(pixels[None]).logits[0]
    torch.testing.assert_close(logits(model, pixels), expected, atol=1e-4, rtol=0)
    if repo_id == TIMM:  # timm names no classes: vitviz's ImageNet-1k list does
        assert len(model.config.labels) == 1000 and model.config.labels[1] == "goldfish, Carassius auratus"
    else:
        assert model.config.labels[0] == "thing 0"
    if repo_id == DEIT:  # the normalisation comes from preprocessor_config.json
        assert model.config.mean == (0.485, 0.456, 0.406)


@pytest.mark.parametrize("repo_id", [DISTILLED, DINOV2, REGISTERS])
def test_the_presets_with_more_special_tokens_compute_what_transformers_computes(fake_hub, hub_checkpoints, repo_id):
    # At the 224 pixels their preprocessors crop to: the DINOv2s' position embeddings come from a 37×37 grid.
    reference = hub_checkpoints[1][repo_id]
    model = hub.load(repo_id)
    assert model.config.image_size == (224, 224) and model.config.mean == (0.485, 0.456, 0.406)
    pixels = torch.randn(3, 224, 224)
    with torch.no_grad():
        out = reference(pixels[None])
        ours = model.norm(model.features(pixels[None]))[0] if repo_id != DISTILLED else model(pixels[None])[0]
    torch.testing.assert_close(ours, out.logits[0] if repo_id == DISTILLED else out.last_hidden_state[0], atol=1e-4,
                               rtol=0)
    assert model.config.num_special == {DISTILLED: 2, DINOV2: 1, REGISTERS: 5}[repo_id]


def test_only_the_files_vitviz_reads_are_downloaded(fake_hub):
    folder = hub.fetch(GOOGLE)
    assert fake_hub.files_fetched() == ["config.json", "preprocessor_config.json", "model.safetensors"]
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors", "preprocessor_config.json"]
    # Pickled weights only when the repo has no safetensors file; the timm repo's other files stay on the Hub.
    hub.fetch(DEIT)
    hub.fetch(TIMM)
    assert fake_hub.files_fetched()[3:] == ["config.json", "preprocessor_config.json", "pytorch_model.bin",
                                            "config.json", "model.safetensors"]
    requested = {request.file for request in fake_hub.requests if request.file}
    assert not requested & {"tf_model.h5", "flax_model.msgpack", "onnx/model.onnx", "subfolder/model.safetensors",
                            "subfolder/config.json", "README.md", "open_clip_model.safetensors"}


def test_the_dino_preset_loads_without_a_classifier(fake_hub, hub_checkpoints):
    model = hub.load(DINO)
    assert model.config.labels == ()
    pixels = torch.randn(3, 32, 32)
    with torch.no_grad():
        expected = hub_checkpoints[1][DINO](pixels[None]).last_hidden_state
        torch.testing.assert_close(model.norm(model.features(pixels[None])), expected, atol=1e-4, rtol=0)


def test_a_fetched_model_loads_again_with_the_hub_gone_or_offline(fake_hub, monkeypatch):
    first = hub.fetch(GOOGLE)
    fake_hub.stop()
    asked = len(fake_hub.requests)
    assert hub.fetch(GOOGLE) == first
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # huggingface_hub read the variable on import
    assert hub.load(GOOGLE).config.labels[0] == "thing 0"
    assert len(fake_hub.requests) == asked
    with pytest.raises(CheckpointError) as error:
        hub.fetch(DEIT)  # never fetched
    assert "cannot be reached" in one_sentence(error) and DEIT in str(error.value)


def test_the_hub_down_and_nothing_cached_is_one_sentence(fake_hub):
    fake_hub.stop()
    with pytest.raises(CheckpointError) as error:
        hub.fetch(GOOGLE)
    assert "cannot be reached" in one_sentence(error)


def test_a_model_above_the_limit_is_refused_before_its_weights_are_asked_for(fake_hub, monkeypatch):
    with pytest.raises(CheckpointError) as error:
        hub.fetch("someone/too-large")  # claims 3 GB; the default limit is 1 GB
    assert one_sentence(error) == "someone/too-large is 3,000 MB, more than this app's limit of 1,000 MB."
    assert [(r.method, r.path) for r in fake_hub.requests] == [("GET", "/api/models/someone/too-large")]
    # The limit is the deployment's: an explicit one, the environment's, secrets.toml's.
    with pytest.raises(CheckpointError, match="limit of 0.1 MB"):
        hub.fetch(GOOGLE, max_bytes=100_000)
    monkeypatch.setenv("VITVIZ_MAX_DOWNLOAD_MB", "0")
    with pytest.raises(CheckpointError, match="limit of 0.0 MB"):
        hub.fetch(GOOGLE)
    assert not any(r.file for r in fake_hub.requests)


@pytest.mark.parametrize(("repo_id", "words"), [
    ("someone/no-such-model", "has no public model someone/no-such-model"),
    ("someone/gated", "someone/gated is a gated model"),
    ("someone/gated-files", "someone/gated-files is a gated model"),  # told by a 401 on its files
    ("not a model id", "A Hub model id looks like google/vit-base-patch16-224"),
    ("../../etc", "A Hub model id looks like"),
    ("someone/sharded", "split into shards"),
], ids=["unknown", "gated", "gated-only-on-its-files", "invalid-id", "a-path", "sharded"])
def test_each_refusal_is_one_sentence(fake_hub, repo_id, words):
    with pytest.raises(CheckpointError) as error:
        hub.load(repo_id)
    assert words in one_sentence(error)
    assert not any(r.file and r.file.endswith((".safetensors", ".bin")) for r in fake_hub.requests)


def test_a_damaged_weights_file_is_one_sentence(fake_hub):
    with pytest.raises(CheckpointError) as error:
        hub.load("someone/corrupt")
    assert one_sentence(error) == "someone/corrupt: The safetensors file is damaged or truncated."


def test_no_token_is_sent_unless_asked_for(fake_hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_saved_on_the_server")
    Path(constants.HF_TOKEN_PATH).write_text("hf_saved_in_a_file")  # `hf auth login`'s place
    hub.load(GOOGLE)
    assert fake_hub.requests and not any("authorization" in r.headers for r in fake_hub.requests)
    with pytest.raises(CheckpointError, match="gated"):
        hub.load("someone/gated")
    # A token the caller passes goes to the Hub, never to the CDN; the deployer's opt-in sends the saved one.
    fake_hub.requests.clear()
    hub.load("someone/gated", token="hf_given")
    sent = {r.path: r.headers.get("authorization") for r in fake_hub.requests}
    assert sent["/api/models/someone/gated"] == "Bearer hf_given"
    assert all(value is None for path, value in sent.items() if path.startswith("/cdn/"))
    monkeypatch.setenv("VITVIZ_SEND_HUB_TOKEN", "1")
    fake_hub.requests.clear()
    hub.load(DEIT, token=limits.hub_token())
    to_hub = {r.headers.get("authorization") for r in fake_hub.requests if not r.path.startswith("/cdn/")}
    assert to_hub == {"Bearer hf_saved_on_the_server"}


def test_progress_grows_to_the_total_on_the_callers_thread(fake_hub, hub_checkpoints, monkeypatch):
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 16 * 1024)  # report every 16 kB, not every 10 MB
    monkeypatch.setattr(hub, "POLL_SECONDS", 0.02)
    calls, threads = [], set()

    def progress(done: int, total: int) -> None:
        calls.append((done, total))
        threads.add(threading.get_ident())

    hub.fetch("someone/slow", progress=progress)
    files = hub_checkpoints[0]["someone/slow"].files
    total = len(files["config.json"]) + len(files["model.safetensors"])
    assert calls[0] == (0, total) and calls[-1] == (total, total)
    done = [d for d, _ in calls]
    assert done == sorted(done) and {t for _, t in calls} == {total}
    assert any(len(files["config.json"]) < d < total for d in done), "no report while the weights downloaded"
    assert threads == {threading.get_ident()}
    # A cached model reports its total at once.
    calls.clear()
    hub.fetch("someone/slow", progress=progress)
    assert calls[-1] == (total, total)


def test_asking_for_the_saved_token_when_none_is_saved_is_one_sentence(fake_hub):
    with pytest.raises(CheckpointError) as error:
        hub.fetch(GOOGLE, token=True)
    assert "none is saved" in one_sentence(error)


class Rerun(BaseException):
    """What Streamlit raises inside a callback when the user reruns the script."""


def test_an_exception_from_the_progress_callback_passes_through(fake_hub):
    def progress(done: int, total: int) -> None:
        raise Rerun

    with pytest.raises(Rerun):
        hub.fetch(GOOGLE, progress=progress)


# --- the presets in the app -----------------------------------------------------------------------------


def test_a_preset_on_the_welcome_page_becomes_every_pages_model(fake_hub):
    import streamlit as st
    from conftest import fresh_app, open_page, problems

    st.cache_resource.clear()
    at = open_page(fresh_app(), "pages/welcome.py")  # AppTest loses a click on its very first page
    at.button(key=f"preset_welcome_{GOOGLE}").click().run()
    assert not at.error and not problems(at), ([e.value for e in at.error], problems(at))
    assert at.session_state["vitviz_model"].name == GOOGLE
    assert fake_hub.files_fetched() == ["config.json", "preprocessor_config.json", "model.safetensors"]
    shown = " ".join(m.value for m in at.markdown)
    assert "1,000 output classes" in shown and "16×16 pixels" in shown and "built-in model is" not in shown
    open_page(at, "pages/step_3.py")
    assert any("14×14 grid" in str(c.value) for c in at.get("imgs")) or "(196, 16, 16, 3)" in " ".join(
        m.value for m in at.markdown)
    open_page(at, "pages/step_13.py")
    assert any("the other 990 classes" in str(chart.proto) for chart in at.get("plotly_chart"))
    # A second session picking the same preset shares the process's copy and asks the Hub only for the listing.
    other = open_page(fresh_app(), "pages/welcome.py")
    other.button(key=f"preset_welcome_{GOOGLE}").click().run()
    assert other.session_state["vitviz_model"].model is at.session_state["vitviz_model"].model


def test_a_preset_that_cannot_be_fetched_says_one_sentence_and_keeps_the_model(fake_hub):
    import streamlit as st
    from conftest import fresh_app, open_page, problems

    st.cache_resource.clear()
    fake_hub.stop()
    at = open_page(fresh_app(), "pages/welcome.py")
    at.button(key=f"preset_welcome_{DEIT}").click().run()
    assert [e.value for e in at.error] == [
        f"The Hugging Face Hub cannot be reached (no network, or HF_HUB_OFFLINE is set), and {DEIT} was not "
        "downloaded before."]
    assert "vitviz_model" not in at.session_state and not problems(at)


def test_a_model_the_loader_would_refuse_is_refused_before_its_weights_are_fetched(fake_hub, monkeypatch):
    monkeypatch.setenv("VITVIZ_MAX_CHECKPOINT_MB", "0")  # nothing passes
    with pytest.raises(CheckpointError) as error:
        hub.fetch(GOOGLE)
    assert "checkpoint limit of 0.0 MB" in one_sentence(error)
    assert fake_hub.files_fetched() == []


def test_the_hub_cache_is_pruned_to_its_limit_least_recently_fetched_first_never_a_loaded_models(fake_hub,
                                                                                                  monkeypatch):
    from huggingface_hub import scan_cache_dir

    def cached() -> dict[str, int]:
        return {repo.repo_id: repo.size_on_disk for repo in scan_cache_dir(constants.HF_HUB_CACHE).repos}

    model = hub.load(GOOGLE)  # the least recently fetched, but alive
    for repo_id in (DEIT, TIMM, DISTILLED):
        hub.fetch(repo_id)
    sizes = cached()
    assert set(sizes) == {GOOGLE, DEIT, TIMM, DISTILLED}
    monkeypatch.setattr(limits, "hub_cache_bytes", lambda: sum(sizes.values()) - sizes[DEIT] // 2)
    hub.fetch(TIMM)  # from the cache, and now the most recently used; every fetch prunes
    assert set(cached()) == {GOOGLE, TIMM, DISTILLED}, "DeiT was the least recently fetched of those not in use"

    kept = sum(cached().values())
    monkeypatch.setattr(limits, "hub_cache_bytes", lambda: kept + sizes[DEIT] - 1)
    hub.fetch(DEIT)  # one byte too many: the least recently fetched goes, and the one just fetched stays
    assert set(cached()) == {GOOGLE, TIMM, DEIT}
    assert hub.load(GOOGLE).config.labels == model.config.labels, "the loaded model's files were kept"

    del model
    gc.collect()
    assert hub.prune_cache(1) and cached() == {}, "with no model alive, every repo can go"
    hub.fetch(DEIT)
    assert hub.prune_cache(0) == [] and set(cached()) == {DEIT}, "0: no limit"
