"""Expensive averages run once per model in the background, are kept on disk, and never block a page."""

from __future__ import annotations

import threading

import numpy as np
import streamlit as st
from conftest import fresh_app, open_page, problems, wait_for_background_work

from vitviz import analysis, background
from vitviz.ui import paper


def test_a_job_runs_once_and_a_restarted_server_finds_its_result_on_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(background, "_JOBS", {})
    calls, release = [], threading.Event()

    def work(report):
        calls.append(1)
        report(1, 2)
        release.wait(10)
        report(2, 2)
        return np.arange(6.0).reshape(2, 3)

    path = tmp_path / "result.npy"
    job = background.start("k", work, path)
    assert not job.finished  # the caller gets the job back at once, while the work goes on
    assert background.start("k", work, path) is job
    release.set()
    wait_for_background_work()
    np.testing.assert_array_equal(job.result, np.arange(6.0).reshape(2, 3))
    assert calls == [1] and path.exists()
    monkeypatch.setattr(background, "_JOBS", {})  # a new server process: only the disk remembers
    again = background.start("k", work, path)
    assert again.finished and calls == [1]
    np.testing.assert_array_equal(again.result, job.result)


def test_a_failing_job_is_marked_failed_and_not_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(background, "_JOBS", {})

    def work(report):
        raise RuntimeError("boom")

    job = background.start("bad", work, tmp_path / "bad.npy")
    wait_for_background_work()
    assert job.failed and job.result is None and not (tmp_path / "bad.npy").exists()


def test_step_11_draws_at_once_and_shows_the_average_over_many_images_when_it_is_ready(monkeypatch):
    monkeypatch.setattr(background, "_JOBS", {})
    st.cache_resource.clear()
    at = open_page(fresh_app(), "pages/step_11.py")
    assert not problems(at), problems(at)
    wait_for_background_work()
    at.run()
    assert not problems(at), problems(at)
    charts = " ".join(str(chart.proto.spec) for chart in at.get("plotly_chart"))
    [job] = [job for key, job in background._JOBS.items() if key.startswith("attention-distance")]
    used = len(job.result)
    assert paper.MIN_IMAGES <= used <= paper.MAX_IMAGES and f"{used} generated images" in charts
    halfwidth = analysis.mean_and_halfwidth(job.result)[1].max()
    # It stopped as soon as the rule allowed, or at the cap: every image it used was needed.
    assert used == paper.MAX_IMAGES or halfwidth <= paper.TOLERANCE * 64
    if used > paper.MIN_IMAGES:
        assert analysis.mean_and_halfwidth(job.result[: used - paper.CHUNK])[1].max() > paper.TOLERANCE * 64
    assert f"Averaged over {used} generated images" in " ".join(c.value for c in at.caption)
    assert len(list(background.cache_dir().glob("attention-distance/*.npy"))) >= 1
