"""The one training loop, for the command line and the training page alike.

`fit` is a generator: it trains the model in place and yields a `Progress` record after
every step, so a caller can draw curves, stop early (just stop iterating) or resume
(call `fit` again with `start_step`). Batches are drawn ahead on a background thread, so that
drawing shapes overlaps with the model's arithmetic.

    python -m vitviz.train            # trains the default model into assets/
"""

from __future__ import annotations

import argparse
import math
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from vitviz import data
from vitviz.i18n import Message
from vitviz.images import normalise
from vitviz.model import ViT, ViTConfig

HELD_OUT_SEED = 2_000_000_007  # never used for training batches, which use [seed, step]


@dataclass(frozen=True)
class Progress:
    step: int  # steps done so far (1-based after the first step)
    steps: int  # the total this run is heading for
    loss: float  # training loss of this step's batch
    accuracy: float  # training accuracy of this step's batch
    lr: float
    elapsed: float  # seconds since this call to fit started
    cpu_seconds: float  # CPU time of this call to fit so far: the calling thread's and the batch thread's
    eval_loss: float | None = None  # held-out figures, on the steps where they were measured
    eval_accuracy: float | None = None


def lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    """Linear warmup, then cosine decay to 2% of the peak."""
    if step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


_THREADS_LOCK = threading.Lock()


def _in_new_thread(function: Callable, *args):
    result = []
    helper = threading.Thread(target=lambda: result.append(function(*args)), name="vitviz-threads")
    helper.start()
    helper.join()
    return result[0]


def limit_threads(count: int) -> None:
    """Run the calling thread's torch operations on at most `count` intra-op threads; leave other threads alone.

    torch.set_num_threads sets the calling thread's OpenMP and MKL thread counts, which are per
    thread, but also the default that every thread started later picks up (each Streamlit rerun
    is a new thread). So the default is read and put back from short-lived helper threads.
    """
    with _THREADS_LOCK:
        default = _in_new_thread(torch.get_num_threads)  # a fresh thread reports the default
        torch.get_num_threads()  # settle this thread's own count first, or torch resets it lazily
        torch.set_num_threads(count)
        _in_new_thread(torch.set_num_threads, default)


@contextmanager
def limited_threads(count: int) -> Iterator[None]:
    """`limit_threads(count)` for the `with` block; the calling thread's own count is put back after it."""
    before = torch.get_num_threads()
    limit_threads(count)
    try:
        yield
    finally:
        limit_threads(before)


def _batch(config: ViTConfig, batch_size: int, seed: int, step: int, parallel: bool = True
           ) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = data.generate(batch_size, [seed, step], size=config.image_size[0], parallel=parallel)
    return normalise(images, config), torch.from_numpy(labels)


def _batches(
    config: ViTConfig, batch_size: int, seed: int, first: int, last: int, threads: int | None = None,
    cpu: list[float] | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Training batches for steps first..last-1, drawn two ahead on a daemon thread.

    With `threads`, the images are drawn on that thread alone (not data's pool), so its CPU time,
    kept up to date in cpu[0], is all the drawing costs."""
    ready: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()
    cpu = cpu if cpu is not None else [0.0]

    def produce() -> None:
        try:
            began = time.thread_time()
            if threads:
                limit_threads(threads)
            for step in range(first, last):
                batch = _batch(config, batch_size, seed, step, parallel=not threads)
                cpu[0] = time.thread_time() - began
                if not offer(batch):
                    return
        except Exception as exc:  # hand the failure to the training loop instead of leaving it waiting
            offer(exc)

    def offer(item) -> bool:
        """Put `item` in the queue unless training has stopped; True when it was delivered."""
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    worker = threading.Thread(target=produce, daemon=True, name="vitviz-batches")
    worker.start()
    try:
        for _ in range(first, last):
            item = ready.get()
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        stop.set()


@torch.no_grad()
def evaluate(model: ViT, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 256) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of `model` on normalised images."""
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    for i in range(0, len(labels), batch_size):
        logits = model(images[i : i + batch_size])
        total_loss += F.cross_entropy(logits, labels[i : i + batch_size], reduction="sum").item()
        correct += (logits.argmax(-1) == labels[i : i + batch_size]).sum().item()
    model.train(was_training)
    return total_loss / len(labels), correct / len(labels)


def held_out(config: ViTConfig, count: int, seed: int = HELD_OUT_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = data.generate(count, seed, size=config.image_size[0])
    return normalise(images, config), torch.from_numpy(labels)


def fit(
    model: ViT,
    *,
    steps: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    warmup: int | None = None,
    weight_decay: float = 0.05,
    eval_every: int = 100,
    eval_size: int = 512,
    start_step: int = 0,
    optimizer: torch.optim.Optimizer | None = None,
    threads: int | None = None,
) -> Iterator[Progress]:
    """Train `model` in place on the built-in data and yield a `Progress` after each step.

    To resume, pass the same optimizer and `start_step`; the learning-rate schedule and
    the data continue where they stopped. `threads` bounds the torch threads of the thread
    that iterates (and of the batch thread, which then draws the images by itself), so a server
    keeps cores for its other sessions and `Progress.cpu_seconds` is all the run costs.
    """
    config = model.config
    if config.image_size[0] != config.image_size[1]:
        raise ValueError(Message("The built-in data is square; this model's input is not."))
    if config.num_labels != len(data.CLASSES):
        raise ValueError(Message("The built-in data has {count} classes; this model predicts {labels}.",
                                 count=len(data.CLASSES), labels=config.num_labels))
    if threads:
        limit_threads(threads)
    warmup = max(1, steps // 20) if warmup is None else warmup
    optimizer = optimizer or make_optimizer(model, lr, weight_decay)
    torch.manual_seed(seed)
    eval_images, eval_labels = held_out(config, eval_size) if eval_every else (None, None)
    model.train()
    started, cpu_started, batch_cpu = time.perf_counter(), time.thread_time(), [0.0]
    batches = _batches(config, batch_size, seed, start_step, steps, threads, batch_cpu)
    for step, (images, labels) in enumerate(batches, start=start_step):
        rate = lr_at(step, steps, lr, warmup)
        for group in optimizer.param_groups:
            group["lr"] = rate
        logits = model(images)
        loss = F.cross_entropy(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        done = step + 1
        eval_loss = eval_accuracy = None
        if eval_every and (done % eval_every == 0 or done == steps):
            eval_loss, eval_accuracy = evaluate(model, eval_images, eval_labels)
        yield Progress(
            step=done,
            steps=steps,
            loss=loss.item(),
            accuracy=(logits.argmax(-1) == labels).float().mean().item(),
            lr=rate,
            elapsed=time.perf_counter() - started,
            cpu_seconds=time.thread_time() - cpu_started + batch_cpu[0],
            eval_loss=eval_loss,
            eval_accuracy=eval_accuracy,
        )
    model.eval()


def make_optimizer(model: ViT, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW, with no weight decay on biases, norms, CLS and position embeddings.

    fused=True runs the whole update as one kernel instead of ~10 small ops per parameter tensor
    (about 3 ms of a 175 ms step for the default model, benchmarks/bench_core.py).
    """
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "pos_embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "pos_embed" not in n)]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.99),
        fused=True,
    )


DEFAULT_RECIPE = dict(steps=5000, batch_size=128, lr=2e-3, seed=0)


def default_config() -> ViTConfig:
    return ViTConfig(
        image_size=(64, 64), patch_size=8, dim=96, depth=4, heads=4, mlp_dim=192, labels=data.CLASSES
    )


def main(argv: list[str] | None = None, report: Callable[[str], None] = print) -> Path:
    from tqdm import tqdm

    from vitviz import allocator, weights

    allocator.keep_freed_memory()
    parser = argparse.ArgumentParser(description="Train the vitviz default model on the built-in shapes.")
    parser.add_argument("--steps", type=int, default=DEFAULT_RECIPE["steps"])
    parser.add_argument("--batch-size", type=int, default=DEFAULT_RECIPE["batch_size"])
    parser.add_argument("--lr", type=float, default=DEFAULT_RECIPE["lr"])
    parser.add_argument("--seed", type=int, default=DEFAULT_RECIPE["seed"])
    parser.add_argument("--out", type=Path, default=weights.DEFAULT_PATH)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    model = ViT(default_config())
    bar = tqdm(total=args.steps, unit="step")
    last_eval = None
    for progress in fit(model, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed):
        bar.update(1)
        if progress.eval_accuracy is not None:
            last_eval = progress
        bar.set_postfix(
            loss=f"{progress.loss:.3f}",
            held_out=f"{last_eval.eval_accuracy:.3f}" if last_eval else "-",
        )
    bar.close()
    elapsed = bar.format_dict["elapsed"]
    command = "python -m vitviz.train " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"
    )
    provenance = {
        "command": command,
        "train_seconds": round(elapsed, 1),
        "held_out_accuracy": last_eval.eval_accuracy if last_eval else None,
        "torch": torch.__version__,
    }
    model.config.extra.update(provenance)
    weights.save(model, args.out)
    report(f"wrote {args.out}: held-out accuracy {provenance['held_out_accuracy']}, {elapsed:.0f} s")
    return args.out


if __name__ == "__main__":
    main()
