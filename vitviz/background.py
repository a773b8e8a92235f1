"""Work that outlives a page run: one computation per key on a thread of its own, its result kept
in memory for every session and on disk for the next server start.

A page asks with `start(key, work, path)` and gets the `Job` back at once; it draws `job.done`
of `job.total` as progress until `job.result` is there. `work(report)` computes the result (a numpy
array) and calls `report(done, total)` as it goes. Nothing here imports Streamlit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitviz.model import ViT

log = logging.getLogger("vitviz")

MAX_JOBS = 16  # finished jobs kept in memory; the oldest are dropped (they stay on disk)


def cache_dir() -> Path:
    """Where finished results are kept: $VITVIZ_CACHE_DIR, else ~/.cache/vitviz."""
    return Path(os.environ.get("VITVIZ_CACHE_DIR") or "~/.cache/vitviz").expanduser()


def model_fingerprint(model: ViT) -> str:
    """A short digest of a model's configuration and some of its weights: results computed for one set of
    weights are never reused for another, and the same checkpoint finds its results after a restart."""
    digest = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True, default=str).encode())
    for tensor in (model.patch_embed.weight, model.pos_embed, model.blocks[-1].mlp.fc2.weight, model.norm.weight):
        digest.update(tensor.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


@dataclass
class Job:
    key: str
    total: int = 1
    done: int = 0
    result: np.ndarray | None = None
    failed: bool = False

    @property
    def finished(self) -> bool:
        return self.result is not None or self.failed


_JOBS: dict[str, Job] = {}
_LOCK = threading.Lock()
# One job computes at a time, whatever the number of models visitors load: the others wait their turn,
# so background work never takes more than one core from the pages.
_ONE_AT_A_TIME = threading.Lock()


def start(key: str, work: Callable[[Callable[[int, int], None]], np.ndarray], path: Path | None = None) -> Job:
    """The job for `key`: finished from memory or from `path` if it was computed before, else started now."""
    with _LOCK:
        job = _JOBS.get(key)
        if job is not None:
            return job
        job = _JOBS[key] = Job(key)
        while len(_JOBS) > MAX_JOBS:
            oldest = next(k for k, j in _JOBS.items() if j.finished)  # never drop one that is running
            _JOBS.pop(oldest)
    if path is not None and path.exists():
        try:
            job.result = np.load(path)
            job.done = job.total
            return job
        except (OSError, ValueError):  # a damaged file: compute again
            log.warning("vitviz: could not read %s; computing it again", path)
    threading.Thread(target=_run, args=(job, work, path), name=f"vitviz-{key[:40]}", daemon=True).start()
    return job


def unfinished() -> list[Job]:
    """The jobs still computing."""
    with _LOCK:
        return [job for job in _JOBS.values() if not job.finished]


def _run(job: Job, work, path: Path | None) -> None:
    def report(done: int, total: int) -> None:
        job.done, job.total = done, total

    try:
        from vitviz.train import limit_threads

        limit_threads(1)  # a background average must leave the other core to the pages people are reading
        with _ONE_AT_A_TIME:
            result = work(report)
    except Exception:  # the page says the figure is missing; the log has the traceback
        log.exception("vitviz: background work %s failed", job.key)
        job.failed = True
        return
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".partial.npy")
            np.save(partial, result)
            partial.replace(path)  # whole or absent, even if the server stops mid-write
        except OSError:
            log.warning("vitviz: could not keep %s on disk", path)
    job.done = job.total
    job.result = result
