"""The pieces behind bench_core's ratios, each against its own alternative measured in the same run.

  trace_page_faults      minor page faults per batch-1 trace, with vitviz's allocator settings and
                         with glibc's own defaults (each in a fresh subprocess)
  train_step_page_faults the same for one training step of the default model (batch 128)
  fused_adamw_ratio      one fused AdamW update ÷ the per-tensor update, default model's parameters
  render_threads_ratio   data.generate(128) rendered on its thread pool ÷ rendered on one thread
  normalise_ms           images.normalise of one generated batch
  batch_thread_ratio     a training step fed by fit's batch thread ÷ the same step drawing its batch in the loop

    python benchmarks/bench_parts.py [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_core import alternate, per_call, ratio_of  # noqa: E402

from vitviz import allocator, data, train  # noqa: E402
from vitviz.images import normalise  # noqa: E402
from vitviz.model import ViT  # noqa: E402

FAULTS_SCRIPT = """
import resource, sys
sys.path.insert(0, {root!r})
import torch
torch.set_num_threads({threads})
from vitviz import allocator, capture, data, train, weights
from vitviz.images import normalise
from vitviz.model import ViT
if {tuned}:
    assert allocator.keep_freed_memory()

def faults_per_call(call, count):
    for _ in range(3):
        call()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(count):
        call()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / count

model = weights.load_default()
recorder = capture.Recorder(model)
pixels = normalise(data.generate(1, 9)[0], model.config)[0]
trace = faults_per_call(lambda: recorder.trace(pixels), 100)
torch.manual_seed(0)
steps = train.fit(ViT(train.default_config()), steps=10**6, batch_size=128, eval_every=0)
step = faults_per_call(lambda: next(steps), 10)
steps.close()
print(trace, step)
"""


def bench_faults(threads: int) -> None:
    """Minor page faults per trace and per training step, with vitviz's allocator settings and with glibc's own."""

    def faults(tuned: bool) -> list[float]:
        script = FAULTS_SCRIPT.format(root=str(ROOT), tuned=tuned, threads=threads)
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
        return [float(v) for v in result.stdout.split()]

    (tuned_trace, tuned_step), (glibc_trace, glibc_step) = faults(True), faults(False)
    print(f"trace_page_faults {tuned_trace:.1f} per trace  (glibc's defaults: {glibc_trace:.1f})")
    print(f"train_step_page_faults {tuned_step:.0f} per step  (glibc's defaults: {glibc_step:.0f})")


def bench_adamw(rounds: int) -> None:
    model = ViT(train.default_config())
    for parameter in model.parameters():
        parameter.grad = torch.randn_like(parameter)
    fused = train.make_optimizer(model, 1e-3, 0.05)
    groups = [{"params": group["params"], "weight_decay": group["weight_decay"]} for group in fused.param_groups]
    plain = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.99), foreach=False)  # the same groups, tensor by tensor
    assert fused.defaults["fused"] and not plain.defaults["fused"]
    fused_times, plain_times = alternate(fused.step, plain.step, rounds, 10)
    print(f"fused_adamw_ratio {ratio_of(fused_times, plain_times):.2f}"
          f"  ({statistics.median(fused_times) * 1e3:.2f} ms vs {statistics.median(plain_times) * 1e3:.2f} ms)")


def bench_render(rounds: int) -> None:
    pooled = lambda: data.generate(128, 3)  # noqa: E731

    def single() -> None:
        data._THREADS, threads = 1, data._THREADS
        try:
            data.generate(128, 3)
        finally:
            data._THREADS = threads

    pooled_times, single_times = alternate(pooled, single, rounds, 3)
    images, _ = data.generate(128, 3)
    config = train.default_config()
    normalise_time = statistics.median(per_call(lambda: normalise(images, config), 10) for _ in range(rounds))
    print(f"render_threads_ratio {ratio_of(pooled_times, single_times):.2f}  ({statistics.median(pooled_times) * 1e3:.1f} ms"
          f" vs {statistics.median(single_times) * 1e3:.1f} ms per 128 images, {data._THREADS} threads)")
    print(f"normalise_ms {normalise_time * 1e3:.2f}  (128 images)")


def bench_batch_thread(rounds: int) -> None:
    import torch.nn.functional as F

    config = train.default_config()
    torch.manual_seed(0)
    model = ViT(config).train()
    optimizer = train.make_optimizer(model, 1e-3, 0.05)
    ahead = train._batches(config, 128, 0, 0, 10**9, torch.get_num_threads())
    counter = iter(range(10**9))

    def step(images: torch.Tensor, labels: torch.Tensor) -> None:
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    threaded = lambda: step(*next(ahead))  # noqa: E731
    in_loop = lambda: step(*train._batch(config, 128, 0, next(counter)))  # noqa: E731
    threaded_times, loop_times = alternate(threaded, in_loop, rounds, 3)
    ahead.close()
    print(f"batch_thread_ratio {ratio_of(threaded_times, loop_times):.2f}  ({statistics.median(threaded_times) * 1e3:.0f} ms"
          f" vs {statistics.median(loop_times) * 1e3:.0f} ms per step, {torch.get_num_threads()} torch threads)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args(argv)
    allocator.keep_freed_memory()
    torch.set_num_threads(args.threads)
    bench_faults(args.threads)
    bench_adamw(args.rounds)
    bench_render(args.rounds)
    bench_batch_thread(args.rounds)


if __name__ == "__main__":
    main()
