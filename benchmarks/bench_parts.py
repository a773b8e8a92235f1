"""The pieces behind bench_core's ratios, each against its own alternative measured in the same run.

  trace_page_faults      minor page faults per batch-1 trace, with vitviz's allocator settings and
                         with glibc's defaults put back (in a subprocess)
  fused_adamw_ratio      one fused AdamW update ÷ the per-tensor update, default model's parameters
  render_threads_ratio   data.generate(128) rendered on its thread pool ÷ rendered on one thread
  normalise_ms           images.normalise of one generated batch

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

from vitviz import data, train  # noqa: E402
from vitviz.images import normalise  # noqa: E402
from vitviz.model import ViT  # noqa: E402

FAULTS_SCRIPT = """
import ctypes, resource, sys
sys.path.insert(0, {root!r})
import vitviz
if {untuned}:  # glibc's defaults (128 KB thresholds); vitviz set them on import
    libc = ctypes.CDLL("libc.so.6"); libc.mallopt(-3, 128 * 1024); libc.mallopt(-1, 128 * 1024)
from vitviz import capture, data, weights
from vitviz.images import normalise
model = weights.load_default()
pixels = normalise(data.generate(1, 9)[0], model.config)[0]
for _ in range(5):
    capture.trace(model, pixels)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(100):
    capture.trace(model, pixels)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 100)
"""


def bench_faults() -> None:
    def faults(untuned: bool) -> float:
        script = FAULTS_SCRIPT.format(root=str(ROOT), untuned=untuned)
        return float(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout)

    print(f"trace_page_faults {faults(False):.1f} per trace  (glibc defaults: {faults(True):.1f})")


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    bench_faults()
    bench_adamw(args.rounds)
    bench_render(args.rounds)


if __name__ == "__main__":
    main()
