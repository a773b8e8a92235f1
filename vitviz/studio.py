"""The training studio's engine: one training run in a background thread.

A `TrainingRun` owns a fresh model and its optimizer, and runs `vitviz.train.fit` (the one
training loop) on a daemon thread with a bounded number of torch threads. The thread sends
what it sees, progress records, attention snapshots of a fixed probe image and a final
confusion matrix, through a bounded queue; the page takes them with `poll()` whenever it
redraws. A run lives within what the server allows (`vitviz.quota`): it needs a place to start,
stops at its CPU-seconds, and stops when its owner has not polled or touched it for a while.
Nothing here imports Streamlit.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
from dataclasses import dataclass

import numpy as np
import torch

from vitviz import capture, data, limits, quota, train, weights
from vitviz.i18n import Message, message_of, plural_message
from vitviz.images import normalise
from vitviz.model import ViT, ViTConfig

log = logging.getLogger("vitviz")

# Half the cores (one on a 2-core server): a run must leave room for every other session.
TRAIN_THREADS = max(1, (os.cpu_count() or 2) // 2)
PROBE_SEED = 706  # a large heart: easy to see where attention goes
SNAPSHOTS = 12  # attention snapshots per run, besides the one before the first step
QUEUE_ITEMS = 64
# What training costs in CPU-seconds, for the estimate that refuses settings beyond a run's limit. Fitted to
# the CPU time fit() reports with one torch thread, for nine settings from the smallest to the largest the
# studio offers: between 0.8 and 1.5 times it, on a 2-core server.
CPU_SECONDS_PER_MULTIPLY_ADD = 0.12e-9  # of one image's forward pass; training adds the backward pass and update
CPU_SECONDS_PER_ATTENTION_SCORE = 14e-9  # per layer, head, query and key: softmax and its gradient wait on memory
CPU_SECONDS_PER_PIXEL = 110e-9  # drawing the shapes
CPU_SECONDS_PER_STEP_AND_LAYER = 0.003  # the rest: small operations one after another, the optimizer


@dataclass(frozen=True)
class Settings:
    """What the user picks on the training page."""

    # Small enough to learn visibly in a few minutes on one core (about half the held-out shapes
    # right after 600 steps, against one in eight by chance), with patches small enough for the
    # attention snapshots to show a shape.
    image_size: int = 32
    patch_size: int = 4
    dim: int = 64
    depth: int = 2
    heads: int = 4
    steps: int = 600
    batch_size: int = 64
    lr: float = 5e-3
    seed: int = 0

    def problem(self) -> Message | None:
        """Why these settings cannot make a model, in one sentence; None if they can."""
        if self.dim % self.heads:
            return Message("The width {dim} must split evenly into {heads} heads.", dim=self.dim, heads=self.heads)
        if self.image_size % self.patch_size:
            return Message("The image size {size} must be a multiple of the patch size {patch}.", size=self.image_size,
                           patch=self.patch_size)
        if self.steps < 1 or self.batch_size < 1 or not self.lr > 0:
            return Message("Steps, batch size and learning rate must all be positive.")
        return None

    def estimated_cpu_seconds(self) -> float:
        """Roughly what a run of these settings costs in CPU-seconds (valid settings only)."""
        patches = (self.image_size // self.patch_size) ** 2
        tokens, d = patches + 1, self.dim
        # One image's forward pass: attention and MLP weights (8d² per token with the MLP 2d wide), queries
        # against keys and attention against values (2N²d), and the patch embedding.
        multiply_adds = (self.depth * (tokens * 8 * d * d + 2 * tokens * tokens * d)
                         + patches * self.patch_size**2 * 3 * d)
        scores = self.depth * self.heads * tokens * tokens
        per_image = (multiply_adds * CPU_SECONDS_PER_MULTIPLY_ADD + scores * CPU_SECONDS_PER_ATTENTION_SCORE
                     + self.image_size**2 * CPU_SECONDS_PER_PIXEL)
        return self.steps * (self.batch_size * per_image + CPU_SECONDS_PER_STEP_AND_LAYER * (self.depth + 1))

    def over_budget(self, cpu_limit: float) -> Message | None:
        """Why these settings need more than `cpu_limit` CPU-seconds (0: no limit), in one sentence, or None."""
        needed = self.estimated_cpu_seconds()
        if not cpu_limit or needed <= cpu_limit:
            return None
        return Message("These settings would need about {needed} of computing, more than the {limit} this server "
                       "gives one run: take fewer steps, a smaller batch, smaller images, larger patches or a smaller "
                       "model.", needed=cpu_seconds_words(needed), limit=cpu_seconds_words(cpu_limit))

    def config(self) -> ViTConfig:
        return ViTConfig(
            image_size=(self.image_size, self.image_size), patch_size=self.patch_size, dim=self.dim,
            depth=self.depth, heads=self.heads, mlp_dim=2 * self.dim, labels=data.CLASSES,
            extra={"trained_with": "vitviz training studio", "steps": self.steps, "batch_size": self.batch_size,
                   "lr": self.lr, "seed": self.seed},
        )  # fmt: skip


@dataclass(frozen=True)
class Snapshot:
    """The probe image as the model saw it at one step."""

    step: int
    cls_attention: np.ndarray  # (L, h, N): each layer's and head's CLS row, N = n + 1 tokens
    probs: np.ndarray  # (k,)

    def entropy(self) -> np.ndarray:
        """(L,) mean over heads of the CLS row's entropy, as a fraction of uniform attention's (1 = uniform)."""
        p = np.clip(self.cls_attention, 1e-12, 1.0)
        return (-(p * np.log(p)).sum(-1) / math.log(p.shape[-1])).mean(-1)


def cpu_seconds_words(seconds: float) -> Message:
    """'40 CPU-seconds', '12 CPU-minutes', '57 CPU-hours' (at least two of a larger unit)."""
    if seconds >= 2 * 3600:
        return Message("{count} CPU-hours", count=round(seconds / 3600))
    if seconds >= 2 * 60:
        return Message("{count} CPU-minutes", count=round(seconds / 60))
    return plural_message("{count} CPU-second", "{count} CPU-seconds", round(seconds))


@dataclass(frozen=True)
class Finished:
    step: int
    reason: str  # "done", "stopped", "limit" (the run used its CPU-seconds) or "failed"
    confusion: np.ndarray | None = None  # (k, k) rows: true class, columns: predicted
    error: Message | None = None
    note: Message | None = None  # why the server stopped the run, when it did


def snapshot_steps(steps: int, count: int = SNAPSHOTS) -> set[int]:
    """The steps after which the probe is traced: evenly spread, always the last one."""
    return {max(1, round(steps * i / count)) for i in range(1, count + 1)}


def probe(config: ViTConfig) -> tuple[np.ndarray, int]:
    """The fixed probe picture (H, W, 3) uint8 at the model's size, and its label."""
    images, labels = data.generate(1, PROBE_SEED, size=config.image_size[0])
    return images[0], int(labels[0])


def take_snapshot(model: ViT, pixels: torch.Tensor, step: int) -> Snapshot:
    # Trace a copy: hooks then never sit on the model being trained.
    found = capture.trace(weights.copy_model(model).eval(), pixels)
    cls_rows = found.attentions()[:, :, 0, :]
    return Snapshot(step=step, cls_attention=cls_rows.numpy().astype(np.float32), probs=found.probs.numpy())


def confusion(labels: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """(classes, classes) counts: row = true class, column = predicted class."""
    cells = np.asarray(labels, dtype=np.int64) * classes + np.asarray(predicted, dtype=np.int64)
    return np.bincount(cells, minlength=classes * classes).reshape(classes, classes)


@torch.no_grad()
def held_out_confusion(model: ViT, count: int) -> np.ndarray:
    images, labels = train.held_out(model.config, count)
    was_training = model.training
    model.eval()
    predicted = torch.cat([model(images[i : i + 256]).argmax(-1) for i in range(0, count, 256)])
    model.train(was_training)
    return confusion(labels.numpy(), predicted.numpy(), model.config.num_labels)


class _Outbox:
    """The worker's end of the bounded queue. It never waits: records that find the queue full
    stay here and go in with the next record, so a page that is not watching never stalls training.
    What is still pending when the worker ends, the run takes from here (`TrainingRun.poll`)."""

    def __init__(self, channel: queue.Queue, allowance: quota.Allowance) -> None:
        self.channel, self.allowance, self.pending = channel, allowance, []

    def send(self, item) -> None:
        self.pending.append(item)
        try:
            self.channel.put_nowait(self.pending)
            self.pending = []
        except queue.Full:
            pass

    def close(self, item) -> None:
        """Send the last record, waiting for room while the run's owner is there to make some."""
        self.pending.append(item)
        while not self.allowance.abandoned():
            try:
                self.channel.put(self.pending, timeout=0.2)
                self.pending = []
                return
            except queue.Full:
                continue


def _work(model, optimizer, settings: Settings, start: int, probe_pixels, outbox: _Outbox, stop: threading.Event,
          lock: threading.Lock, threads: int, eval_size: int, allowance: quota.Allowance) -> None:
    """The training thread: fit from `start`, one step at a time under `lock`, until done, stopped, out of
    CPU-seconds or unwatched; then it gives back its place among the server's runs."""
    step, reason, matrix, error, note = start, "stopped", None, None, None
    try:
        # Bound this thread's torch threads before its first operation (fit also does it, for its batch thread).
        train.limit_threads(threads)
        if start == 0:
            outbox.send(take_snapshot(model, probe_pixels, 0))
        when = snapshot_steps(settings.steps)
        records = train.fit(
            model, steps=settings.steps, batch_size=settings.batch_size, lr=settings.lr, seed=settings.seed,
            eval_every=max(1, settings.steps // 20), eval_size=eval_size, start_step=start, optimizer=optimizer,
            threads=threads,
        )  # fmt: skip
        spent_before = allowance.cpu_used
        try:
            while not stop.is_set():
                if allowance.exhausted():
                    reason, note = "limit", allowance.limit_sentence()
                    break
                if allowance.abandoned():
                    note = allowance.silence_sentence()
                    break
                with lock:
                    progress = next(records, None)
                    if progress is None:
                        break
                    step = progress.step
                    shot = take_snapshot(model, probe_pixels, step) if step in when else None
                allowance.cpu_used = spent_before + progress.cpu_seconds
                outbox.send(progress)
                if shot is not None:
                    outbox.send(shot)
        finally:
            records.close()  # stops fit's batch thread
        if step >= settings.steps:
            reason, note = "done", None
        with lock:
            matrix = held_out_confusion(model, eval_size)
    except Exception as exc:  # the thread must always report back; the page shows one sentence
        log.exception("vitviz: training failed")
        reason, error = "failed", _failure(exc)
    finally:
        quota.PLACES.give_back()  # before the last record, so its owner may start again on reading it
    outbox.close(Finished(step=step, reason=reason, confusion=matrix, error=error, note=note))


def _failure(exc: Exception) -> Message:
    """What the run's page says when training raised: the library's own sentence, else a plain one (the internal
    text of a torch or numpy error is in the server's log, where the deployer can act on it)."""
    reason = message_of(exc)
    if isinstance(reason, Message):
        return Message("Training stopped: {reason}", reason=reason)
    return Message("Training stopped because of an unexpected error; the details are in the server's log.")


class TrainingRun:
    """One session's training: its own model, optimizer, history and worker thread.

    The worker changes the model only while holding the run's lock, one step at a time, so
    `copy_model()` always copies the weights between two steps. Its owner calls `poll()` or
    `touch()` to say it is still there; the limits not given come from `vitviz.limits`.
    """

    def __init__(self, settings: Settings, *, threads: int = TRAIN_THREADS, eval_size: int = 256,
                 cpu_seconds: float | None = None, heartbeat_seconds: float | None = None) -> None:
        cpu_seconds = limits.training_cpu_seconds() if cpu_seconds is None else cpu_seconds
        problem = settings.problem() or settings.over_budget(cpu_seconds)
        if problem:
            raise ValueError(problem)
        heartbeat = limits.training_heartbeat_seconds() if heartbeat_seconds is None else heartbeat_seconds
        self.allowance = quota.Allowance(cpu_seconds, heartbeat)
        self.settings = settings
        self.threads = threads
        self.eval_size = eval_size
        with torch.random.fork_rng(devices=[]):  # seeded weights, without reseeding everyone's generator
            torch.manual_seed(settings.seed)
            self.model = ViT(settings.config())
        self.optimizer = train.make_optimizer(self.model, settings.lr, 0.05)
        self.probe_image, self.probe_label = probe(self.model.config)
        self.probe_pixels = normalise(self.probe_image[None], self.model.config)[0]
        self.history: list[train.Progress] = []
        self.snapshots: list[Snapshot] = []
        self.finished: Finished | None = None
        self.status = "ready"  # ready, running, stopping, stopped, done, limit, failed
        self._segment = 0  # the step the current fit call started from (Progress.elapsed restarts there)
        self._lock = threading.Lock()
        self._channel: queue.Queue = queue.Queue(maxsize=QUEUE_ITEMS)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._outbox: _Outbox | None = None

    # --- control ------------------------------------------------------------------------------

    @property
    def step(self) -> int:
        return self.history[-1].step if self.history else 0

    @property
    def running(self) -> bool:
        return self.status in ("running", "stopping")

    @property
    def cpu_seconds(self) -> float:
        """CPU-seconds this run has used so far, over every start and resume."""
        return self.allowance.cpu_used

    def start(self) -> None:
        """Start, or resume after a stop: fit continues with the same optimizer, data and schedule.

        Raises quota.ServerBusy when the server already trains as many runs as it allows."""
        if self.running or self.status in ("done", "limit", "failed"):
            return
        quota.PLACES.take(limits.max_training_runs())
        self._stop.clear()
        self.finished = None
        self._segment = self.step
        self.status = "running"
        self.touch()
        self._outbox = _Outbox(self._channel, self.allowance)
        thread = threading.Thread(
            target=_work, name="vitviz-training", daemon=True,
            args=(self.model, self.optimizer, self.settings, self.step, self.probe_pixels, self._outbox, self._stop,
                  self._lock, self.threads, self.eval_size, self.allowance),
        )  # fmt: skip
        try:
            thread.start()
        except RuntimeError:  # no thread to give the place back
            quota.PLACES.give_back()
            self.status = "ready" if not self.history else "stopped"
            raise
        self._thread = thread

    def touch(self) -> None:
        """Say that the run's owner (a browser tab) is still there; a run nobody touches stops itself."""
        self.allowance.touch()

    def stop(self) -> None:
        if self.running:
            self._stop.set()
            self.status = "stopping"

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def poll(self) -> bool:
        """Take everything the worker has sent since the last call; True if anything arrived. Touches the run."""
        self.touch()
        batches = []
        while True:
            try:
                batches.append(self._channel.get_nowait())
            except queue.Empty:
                break
        # A worker that ended while nobody polled left its last records in the outbox.
        if self._thread is not None and not self._thread.is_alive() and self._outbox.pending:
            batches.append(self._outbox.pending)
            self._outbox.pending = []
        for item in (item for items in batches for item in items):
            self._take(item)
        return bool(batches)

    def _take(self, item) -> None:
        if isinstance(item, train.Progress):
            self.history.append(item)
        elif isinstance(item, Snapshot):
            self.snapshots.append(item)
        elif isinstance(item, Finished):
            self.finished = item
            self.status = item.reason

    def copy_model(self) -> ViT:
        """An independent copy of the weights as they are between two steps, in eval mode."""
        with self._lock:
            return weights.copy_model(self.model).eval()

    # --- what the page shows ------------------------------------------------------------------

    def rate(self) -> float:
        """Steps per second since the last start or resume."""
        last = self.history[-1] if self.history else None
        if last is None or last.elapsed <= 0:
            return 0.0
        return (last.step - self._segment) / last.elapsed

    def seconds_left(self) -> float | None:
        rate = self.rate()
        return (self.settings.steps - self.step) / rate if rate > 0 else None

    def curves(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """name -> (steps, values): training loss and accuracy every step, held-out ones where measured."""
        steps = np.array([p.step for p in self.history])
        measured = [p for p in self.history if p.eval_loss is not None]
        held = np.array([p.step for p in measured])
        return {
            "train_loss": (steps, np.array([p.loss for p in self.history])),
            "train_accuracy": (steps, np.array([p.accuracy for p in self.history])),
            "eval_loss": (held, np.array([p.eval_loss for p in measured])),
            "eval_accuracy": (held, np.array([p.eval_accuracy for p in measured])),
        }
