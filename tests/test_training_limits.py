"""The server's limits on training (vitviz.quota): runs at once, CPU-seconds per run, and a run that stops
when its tab closes. Every visitor shares one server process; no visitor may keep its cores for everyone."""

from __future__ import annotations

import time

import numpy as np
import pytest
import streamlit as st
from conftest import fill_studio_form, fresh_app, open_page, problems
from streamlit.testing.v1 import AppTest

from vitviz import data, quota, studio, train
from vitviz.model import ViT

PATIENCE = 120.0  # seconds: only bounds a failure
LONG = studio.Settings(steps=5000)  # the default model for 5000 steps: minutes, if nothing stops it
LARGEST = studio.Settings(image_size=64, patch_size=4, dim=256, depth=8, heads=8, steps=5000, batch_size=128)


@pytest.fixture(autouse=True)
def no_run_left(monkeypatch):
    """Each test starts with every place free and the limits' defaults, and leaves no run training."""
    for name in ("MAX_TRAINING_RUNS", "TRAINING_CPU_SECONDS", "TRAINING_HEARTBEAT_SECONDS"):
        monkeypatch.delenv(f"VITVIZ_{name}", raising=False)
    st.cache_resource.clear()
    assert quota.PLACES.taken == 0, "a run of an earlier test is still training"
    runs: list[studio.TrainingRun] = []
    yield runs
    for run in runs:
        run.stop()
        run.join(PATIENCE)
    assert quota.PLACES.taken == 0


def stopped(run: studio.TrainingRun) -> bool:
    run.poll()
    return not run.running


def until(condition, what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


def start_on_page(at: AppTest, settings: studio.Settings) -> AppTest:
    fill_studio_form(at, settings)
    at.button(key="studio_start").click().run()
    assert not problems(at), problems(at)
    return at


# --- a closed tab --------------------------------------------------------------------------------------


def test_a_closed_tab_leaves_no_training_thread(monkeypatch, no_run_left):
    monkeypatch.setenv("VITVIZ_TRAINING_HEARTBEAT_SECONDS", "1")
    at = start_on_page(fresh_app(), LONG)
    run = at.session_state["studio_run"]
    no_run_left.append(run)
    thread = run._thread
    assert run.running and thread.is_alive()
    # The tab closes: its session reruns no more, though the session (and so the run) stays in memory.
    thread.join(30)
    assert not thread.is_alive(), f"still training at step {run.step}"
    assert quota.PLACES.taken == 0
    run.poll()
    assert run.status == "stopped" and run.step < LONG.steps


def test_a_rerun_of_any_page_tells_the_run_its_tab_is_open(no_run_left):
    at = start_on_page(fresh_app(), LONG)
    run = at.session_state["studio_run"]
    no_run_left.append(run)
    for page in ("pages/step_3.py", "pages/explorer.py", "pages/step_3.py"):
        seen = run.allowance.last_seen
        time.sleep(0.01)
        open_page(at, page)
        assert not problems(at), problems(at)
        assert run.allowance.last_seen > seen, page
    assert run.running


def test_the_studio_says_what_happens_when_the_tab_closes():
    at = open_page(fresh_app(), "pages/training.py")
    words = " ".join(m.value for m in at.markdown) + " ".join(c.value for c in at.caption)
    assert "closing the tab stops it" in words and "one run at a time" in words


# --- runs at once ------------------------------------------------------------------------------------------


def test_places_count_the_runs_training_at_once():
    places = quota.Places()
    places.take(2)
    places.take(2)
    with pytest.raises(quota.ServerBusy, match="^The server is busy: 2 runs in progress"):
        places.take(2)
    places.give_back()
    places.take(2)
    with pytest.raises(quota.ServerBusy, match="^Training is turned off on this server.$"):
        quota.Places().take(0)


def test_a_visitor_over_the_limit_finds_the_server_busy_and_tries_again(monkeypatch, no_run_left):
    monkeypatch.setenv("VITVIZ_MAX_TRAINING_RUNS", "1")
    first = start_on_page(fresh_app(), LONG)
    running = first.session_state["studio_run"]
    no_run_left.append(running)
    assert running.running

    second = start_on_page(fresh_app(), studio.Settings(steps=20))
    warnings = [w.value for w in second.warning]
    assert any(w.startswith("The server is busy: 1 run in progress") for w in warnings), warnings
    assert "studio_run" not in second.session_state
    assert second.button(key="studio_try_again").label == "Try again"

    second.button(key="studio_try_again").click().run()
    assert "studio_run" not in second.session_state  # still busy

    running.stop()
    until(lambda: stopped(running), "the first run stops")
    second.button(key="studio_try_again").click().run()
    assert not problems(second), problems(second)
    mine = second.session_state["studio_run"]
    no_run_left.append(mine)
    assert mine.settings.steps == 20 and mine.status in ("running", "done")
    assert not any("busy" in w.value for w in second.warning)


# --- CPU-seconds ---------------------------------------------------------------------------------------------


def test_a_run_stops_at_the_servers_cpu_seconds(monkeypatch, no_run_left):
    # Settings are refused when their estimate is over the limit; an estimate that is too low still meets it.
    monkeypatch.setattr(studio.Settings, "estimated_cpu_seconds", lambda self: 0.0)
    monkeypatch.setenv("VITVIZ_TRAINING_CPU_SECONDS", "2")
    at = start_on_page(fresh_app(), LONG)
    run = at.session_state["studio_run"]
    no_run_left.append(run)
    until(lambda: stopped(run), "the run stops")
    assert run.status == "limit" and 2 <= run.cpu_seconds < 30 and run.step < LONG.steps
    at.run()
    assert "Stopped: this run reached the server's limit of 2 CPU-seconds." in [w.value for w in at.warning]
    assert at.button(key="studio_resume").disabled
    run.start()  # and it cannot be resumed past the limit
    assert run.status == "limit" and quota.PLACES.taken == 0


def test_fit_reports_the_cpu_seconds_of_its_threads():
    model = ViT(studio.Settings(dim=32, depth=1, heads=2).config())
    records = list(train.fit(model, steps=4, batch_size=16, eval_every=0))  # threads=1 would bound this thread for good
    spent = [p.cpu_seconds for p in records]
    assert spent == sorted(spent) and spent[0] > 0


def test_drawing_a_batch_on_one_thread_draws_the_same_batch():
    together, labels = data.generate(64, [3, 7], size=32)
    alone, same_labels = data.generate(64, [3, 7], size=32, parallel=False)
    np.testing.assert_array_equal(together, alone)
    np.testing.assert_array_equal(labels, same_labels)


def test_settings_beyond_the_cpu_seconds_are_refused_with_the_reason():
    assert studio.Settings().over_budget(600) is None
    assert LARGEST.estimated_cpu_seconds() > 10 * 3600  # tens of CPU-hours, as measured
    assert LARGEST.over_budget(0) is None  # 0: no limit
    at = start_on_page(fresh_app(), LARGEST)
    errors = [e.value for e in at.error]
    assert len(errors) == 1, errors
    assert "CPU-hours of computing, more than the 10 CPU-minutes this server gives one run" in errors[0]
    assert errors[0].endswith(".") and "\n" not in errors[0]
    assert "studio_run" not in at.session_state and quota.PLACES.taken == 0
    with pytest.raises(ValueError, match="CPU-hours"):
        studio.TrainingRun(LARGEST)
