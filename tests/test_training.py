"""The training studio: runs in a background thread, step 14's single step, and the page in AppTest.

That `vitviz.train.fit` learns on a tiny configuration (the loss falls) is tested once, in
tests/test_data_weights_train.py::test_fit_yields_progress_and_the_loss_falls; the studio
runs that same loop.
"""

from __future__ import annotations

import hashlib
import threading
import time

import numpy as np
import pytest
import streamlit as st
import torch
from conftest import fill_studio_form, fresh_app, open_page, problems
from safetensors.torch import load_file
from streamlit.testing.v1 import AppTest

from vitviz import capture, data, gradients, quota, studio, train, weights
from vitviz.images import load_image, normalise, preprocess
from vitviz.model import ViT

TINY = studio.Settings(image_size=32, patch_size=8, dim=32, depth=1, heads=2, steps=20, batch_size=16, lr=3e-3)
PATIENCE = 120.0  # seconds: a tiny run takes a few seconds even on a busy machine; this only bounds a failure


def wait_for(run: studio.TrainingRun, until=lambda run: not run.running) -> None:
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        run.poll()
        if until(run):
            return
        time.sleep(0.05)
    raise AssertionError(f"the run did not get there: {run.status} at step {run.step}")


def state_of(model: ViT) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same(state: dict[str, torch.Tensor], other: dict[str, torch.Tensor]) -> None:
    assert state.keys() == other.keys()
    for key in state:
        assert torch.equal(state[key], other[key]), key


# --- the run, without Streamlit -------------------------------------------------------------------


def test_a_run_trains_to_the_end_and_reports_everything():
    run = studio.TrainingRun(TINY, eval_size=64)
    run.start()
    wait_for(run)
    assert run.status == "done" and run.finished.error is None
    assert [p.step for p in run.history] == list(range(1, 21))
    assert any(p.eval_loss is not None for p in run.history)
    steps = [s.step for s in run.snapshots]
    assert steps[0] == 0 and steps[-1] == 20 and steps == sorted(steps) and len(steps) == 1 + len(studio.snapshot_steps(20))
    config = run.model.config
    assert run.snapshots[0].cls_attention.shape == (config.depth, config.heads, config.num_patches + 1)
    np.testing.assert_allclose(run.snapshots[-1].cls_attention.sum(-1), 1.0, rtol=1e-5)
    assert run.snapshots[0].entropy()[0] > 0.99  # an untrained model spreads its attention evenly
    matrix = run.finished.confusion
    assert matrix.shape == (8, 8) and matrix.sum() == 64
    assert run.rate() > 0
    curves = run.curves()
    assert len(curves["train_loss"][0]) == 20 and len(curves["eval_loss"][0]) >= 1
    run.join(5)
    assert not run._thread.is_alive()


def test_stop_then_resume_gives_the_uninterrupted_run():
    settings = studio.Settings(**{**TINY.__dict__, "steps": 100})
    straight = studio.TrainingRun(settings, eval_size=32)
    straight.start()
    wait_for(straight)
    interrupted = studio.TrainingRun(settings, eval_size=32)
    interrupted.start()
    wait_for(interrupted, until=lambda run: run.step >= 1)
    interrupted.stop()
    wait_for(interrupted)
    assert interrupted.status == "stopped" and 1 <= interrupted.step < 100, interrupted.step
    assert interrupted.finished.confusion is not None  # a stopped run is evaluated too
    interrupted.start()
    wait_for(interrupted)
    assert interrupted.status == "done"
    assert [p.step for p in interrupted.history] == list(range(1, 101))
    for a, b in zip(interrupted.model.parameters(), straight.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_training_uses_one_torch_thread_and_leaves_other_threads_alone(monkeypatch):
    seen = []
    real = studio.take_snapshot

    def spy(model, pixels, step):
        seen.append(torch.get_num_threads())  # runs on the training thread
        return real(model, pixels, step)

    monkeypatch.setattr(studio, "take_snapshot", spy)
    default = torch.get_num_threads()
    run = studio.TrainingRun(TINY, threads=1, eval_size=32)
    run.start()
    wait_for(run)
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == default
    fresh = []
    thread = threading.Thread(target=lambda: fresh.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    assert fresh == [default]  # a thread started later (a Streamlit rerun) keeps the process default


def test_a_run_nobody_hears_from_stops_its_thread():
    # A closed tab stops polling and touching its run; garbage collection would come late or never.
    run = studio.TrainingRun(studio.Settings(**{**TINY.__dict__, "steps": 5000}), eval_size=32, heartbeat_seconds=1)
    run.start()
    thread = run._thread
    wait_for(run, until=lambda run: run.step >= 1)  # polling touches the run
    thread.join(30)  # then nobody does
    assert not thread.is_alive()
    run.poll()
    assert run.status == "stopped" and 1 <= run.step < 5000
    assert run.finished.note.startswith("Stopped: this tab was not heard from for 1 seconds")
    assert quota.PLACES.taken == 0


def test_a_copy_taken_during_training_stays_as_it_was():
    run = studio.TrainingRun(studio.Settings(**{**TINY.__dict__, "steps": 5000}), eval_size=32)
    run.start()
    wait_for(run, until=lambda run: run.step >= 2)
    copy = run.copy_model()
    kept = state_of(copy)
    run.poll()
    copied_by = run.step  # the copy was taken at this step or before
    wait_for(run, until=lambda run: run.step >= copied_by + 3)
    run.stop()
    wait_for(run)
    assert not copy.training
    assert_same(kept, state_of(copy))
    assert not torch.equal(kept["head.weight"], run.model.state_dict()["head.weight"])


def test_settings_that_cannot_make_a_model_say_why_in_one_sentence():
    for settings in (studio.Settings(dim=30, heads=4), studio.Settings(image_size=48, patch_size=16 + 4)):
        problem = settings.problem()
        assert problem and problem.endswith(".") and "\n" not in problem
        with pytest.raises(ValueError):
            studio.TrainingRun(settings)
    assert studio.Settings().problem() is None


def test_confusion_counts_true_rows_and_predicted_columns():
    matrix = studio.confusion(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 2, 0]), 3)
    np.testing.assert_array_equal(matrix, [[1, 1, 0], [0, 1, 0], [1, 0, 1]])


# --- step 14's single step ---------------------------------------------------------------------------


def input_gradient(model, pixels: torch.Tensor, label: int) -> tuple[float, torch.Tensor, torch.Tensor]:
    """The reference: cross-entropy against `label`, its gradient w.r.t. the input, and the probs."""
    x = pixels.detach().clone()[None].requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor([label]))
        (grad,) = torch.autograd.grad(loss, x)
    return loss.item(), grad[0], logits.detach()[0].softmax(-1)


def test_one_step_matches_the_gradient_and_leaves_the_model_alone(default_model):
    before = state_of(default_model)
    images, _ = data.generate(2, seed=424_243)
    pixels = normalise(images, default_model.config)[0]
    label = int(capture.trace(default_model, pixels).probs.argmin())  # a wrong label: a loss worth a step
    result = gradients.one_step(default_model, pixels, label, lr=0.01)
    loss, grad, probs = input_gradient(default_model, pixels, label)
    assert result.loss == pytest.approx(loss, rel=1e-6)
    np.testing.assert_allclose(result.pixel_grad, grad.numpy(), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(result.probs_before, probs.numpy(), rtol=1e-5, atol=1e-7)
    assert result.probs_after.sum() == pytest.approx(1.0, abs=1e-5)
    assert result.loss_after < result.loss  # a small step against the gradient lowers this image's loss
    assert result.probs_after[label] > result.probs_before[label]
    assert_same(before, state_of(default_model))
    assert all(not p.requires_grad for p in default_model.parameters())
    per_patch = gradients.per_patch_norm(result.pixel_grad, default_model.config.patch_size)
    assert per_patch.shape == default_model.config.grid
    assert (per_patch**2).sum() == pytest.approx((result.pixel_grad**2).sum(), rel=1e-5)  # every pixel in one patch


# --- the page, in AppTest ----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def clean_caches():
    st.cache_resource.clear()
    st.cache_data.clear()
    yield


def train_tiny(at: AppTest) -> studio.TrainingRun:
    """Set the tiny configuration on the training page, start it, and rerun the page until it finishes."""
    fill_studio_form(at, TINY)
    at.select_slider(key="studio_lr").set_value(TINY.lr)
    at.button(key="studio_start").click().run()
    assert not problems(at) and not at.error, (problems(at), [e.value for e in at.error])
    run = at.session_state["studio_run"]
    assert run.settings == TINY
    deadline = time.monotonic() + PATIENCE
    while run.running and time.monotonic() < deadline:
        time.sleep(0.25)
        at.run()
    at.run()
    assert run.status == "done", run.status
    assert not problems(at), problems(at)
    return run


def charts(at: AppTest) -> str:
    return " ".join(str(getattr(c, "proto", "")) for c in at.get("plotly_chart"))


def shown_prediction(at: AppTest) -> str:
    open_page(at, "pages/step_13.py")
    return next(m.value for m in at.markdown if m.value.startswith("Prediction"))


def test_the_training_page_runs_a_short_run_to_the_end():
    at = fresh_app()
    open_page(at, "pages/training.py")
    assert at.title[0].value == "Training studio"
    run = train_tiny(at)
    shown = charts(at)
    for title in ("Loss (cross-entropy)", "Accuracy", "Spread of the CLS attention", "held-out images"):
        assert title in shown, title
    assert "Confusion matrix" in [h.value for h in at.subheader] and "predicted" in shown  # at the end
    images = " ".join(str(getattr(i, "proto", "")) for i in at.get("image"))
    assert "step 0 " in images and f"step {TINY.steps} " in images  # the first and the last snapshot
    assert len(at.get("image")) >= 2
    progress = " ".join(str(getattr(p, "proto", "")) for p in at.get("progress"))
    assert f"step {TINY.steps} of {TINY.steps}" in progress and "steps/s" in progress
    assert any("held-out images" in c.value for c in at.caption)  # the confusion matrix's caption
    assert run.finished.confusion.sum() == run.eval_size


def test_training_leaves_the_default_model_bit_identical():
    on_disk = load_file(str(weights.DEFAULT_PATH))
    file_digest = hashlib.sha256(weights.DEFAULT_PATH.read_bytes()).hexdigest()
    default = weights.load_default()
    before = state_of(default)
    at = fresh_app()
    train_tiny(at)
    at.button(key="studio_use").click().run()
    open_page(at, "pages/step_14.py")  # a backward pass and an SGD step on the session's model
    assert weights.load_default() is default
    assert_same(before, state_of(default))
    assert all(not p.requires_grad for p in default.parameters())
    assert hashlib.sha256(weights.DEFAULT_PATH.read_bytes()).hexdigest() == file_digest
    assert_same(on_disk, load_file(str(weights.DEFAULT_PATH)))


def test_training_in_one_session_leaves_another_sessions_predictions_alone():
    from vitviz.ui import state

    watcher = fresh_app()
    before = shown_prediction(watcher)
    trainer = fresh_app()
    run = train_tiny(trainer)
    trainer.button(key="studio_use").click().run()
    assert "my trained model" in trainer.session_state[state.MODEL_KEY].name
    mine = trainer.session_state[state.MODEL_KEY].model
    assert mine is not run.model  # a copy is published, never the model a run may still change

    # The trainer's step pages show its own model: the prediction is the direct computation with it.
    payload = trainer.session_state[state.IMAGE_KEY]["bytes"]
    pixels = preprocess(load_image(payload), mine.config)
    with torch.no_grad():
        expected_mine = mine.config.labels[int(mine(pixels[None])[0].argmax())]
    assert shown_prediction(trainer).startswith(f"Prediction: **{expected_mine}**")

    # The other session still sees the built-in model's prediction, computed directly.
    default = weights.load_default()
    with torch.no_grad():
        expected = default.config.labels[int(default(preprocess(load_image(payload), default.config)[None])[0].argmax())]
    after = shown_prediction(watcher)
    assert after == before and after.startswith(f"Prediction: **{expected}**")

    # Back to the built-in model in the trainer's session.
    open_page(trainer, "pages/training.py")
    trainer.button(key="studio_default").click().run()
    assert state.MODEL_KEY not in trainer.session_state
    assert shown_prediction(trainer) == before


def test_settings_that_cannot_work_say_why_and_start_nothing():
    at = open_page(fresh_app(), "pages/training.py")
    at.selectbox(key="studio_dim").set_value(16)
    at.selectbox(key="studio_heads").set_value(3)
    at.button(key="studio_start").click().run()
    errors = [e.value for e in at.error]
    assert errors == ["The width 16 must split evenly into 3 heads."], errors
    assert "studio_run" not in at.session_state and not problems(at)


def test_a_downloaded_model_loads_back_and_a_broken_file_says_one_sentence():
    from vitviz.ui import state

    at = fresh_app()
    run = train_tiny(at)
    assert at.get("download_button"), "a finished run offers its model as a file"
    payload = at.session_state["studio_download"][2]
    assert weights.load_bytes_model(payload).config == run.model.config
    at.file_uploader(key="studio_upload").upload("mine.safetensors", payload, "application/octet-stream").run()
    assert not at.error, [e.value for e in at.error]
    chosen = at.session_state[state.MODEL_KEY]
    assert chosen.name == "mine.safetensors (uploaded)"
    assert_same(state_of(chosen.model), state_of(run.model))
    at.file_uploader(key="studio_upload").upload("broken.safetensors", payload[:100], "application/octet-stream").run()
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].endswith(".") and "\n" not in errors[0], errors
    assert at.session_state[state.MODEL_KEY].name == "mine.safetensors (uploaded)"  # the good one stays
    assert not problems(at)


def test_step_14_shows_the_probabilities_before_and_after_one_step():
    at = open_page(fresh_app(), "pages/step_14.py")
    at.selectbox(key="true_label").set_value("star").run()
    at.select_slider(key="step_lr").set_value(0.1).run()
    assert not problems(at), problems(at)
    shown = " ".join(m.value for m in at.markdown)
    assert "Cross-entropy against **star**" in shown and "One gradient step" in shown
    assert "Probabilities before the step" in charts(at) and "Probabilities after one step" in charts(at)
    # The numbers are the pure function's, on the session's image and the built-in model.
    from vitviz.ui import state

    model = weights.load_default()
    pixels = preprocess(load_image(at.session_state[state.IMAGE_KEY]["bytes"]), model.config)
    result = gradients.one_step(model, pixels, data.CLASSES.index("star"), 0.1)
    assert f"**{result.probs_after[data.CLASSES.index('star')]:.1%}**" in shown
    assert f"{result.loss:.4f}" in shown


def test_fit_with_bounded_threads_keeps_the_cli_default_untouched():
    # threads=None (the CLI) leaves the calling thread's torch threads as they are.
    torch.manual_seed(0)
    default = torch.get_num_threads()
    model = ViT(TINY.config())
    list(train.fit(model, steps=2, batch_size=8, eval_every=0))
    assert torch.get_num_threads() == default
