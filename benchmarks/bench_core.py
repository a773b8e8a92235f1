"""Core benchmark: what recording costs, and how vitviz's training step compares with vit-pytorch's.

Prints ratios against baselines measured in the same run (the two sides of each ratio are
measured in alternating rounds, and the median of the per-round ratios is reported, so a busy
machine slows both sides alike):

  trace_overhead_ratio   Recorder(model).trace(x) ÷ the same model's forward with no hooks attached
                         (batch 1, the default configuration)
  train_step_ratio       one step of vitviz.train.fit, data generation included,
                         ÷ one step of vit-pytorch's ViT of the same shape with the same kind of batch
                         drawn in the step (batch 128, AdamW, gradient clipping)

Both sides run in the same process with vitviz's allocator settings (vitviz/allocator.py), which
this script applies first, as the app and the training CLI do.

    python benchmarks/bench_core.py [--quick]
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vitviz import allocator, capture, data, train  # noqa: E402
from vitviz.images import normalise  # noqa: E402
from vitviz.model import ViT  # noqa: E402

BATCH = 128


def load_vit_pytorch() -> type[torch.nn.Module]:
    """vit_pytorch.vit.ViT, loaded by file path: the package's __init__ imports torchvision."""
    package = importlib.util.find_spec("vit_pytorch")  # locates the package without running __init__
    if package is None or not package.submodule_search_locations:
        raise SystemExit("vit-pytorch is not installed: pip install --no-deps -r benchmarks/requirements.txt")
    path = Path(next(iter(package.submodule_search_locations))) / "vit.py"
    spec = importlib.util.spec_from_file_location("vit_pytorch_vit", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ViT


def per_call(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def alternate(
    a: Callable[[], object], b: Callable[[], object], rounds: int, calls: int
) -> tuple[list[float], list[float]]:
    """Seconds per call of `a` and of `b`, one pair per round, the order swapped every round."""
    times_a, times_b = [], []
    for index in range(rounds):
        if index % 2:
            times_b.append(per_call(b, calls))
            times_a.append(per_call(a, calls))
        else:
            times_a.append(per_call(a, calls))
            times_b.append(per_call(b, calls))
    return times_a, times_b


def ratio_of(times_a: list[float], times_b: list[float]) -> float:
    return statistics.median(x / y for x, y in zip(times_a, times_b, strict=True))


def bench_trace(rounds: int, calls: int) -> None:
    torch.manual_seed(0)
    config = train.default_config()
    model = ViT(config).eval()
    images, _ = data.generate(1, seed=5)
    pixels = normalise(images, config)[0]

    recorder: capture.Recorder | None = None

    def traced() -> None:
        recorder.trace(pixels)

    def plain() -> None:
        with torch.no_grad():
            model(pixels[None])

    def measure(hooked: bool, fn: Callable[[], object]) -> float:
        nonlocal recorder
        if hooked and recorder is None:
            recorder = capture.Recorder(model)
        elif not hooked and recorder is not None:
            recorder.eject()
            recorder = None
        fn()  # warm
        return per_call(fn, calls)

    with capture.Recorder(model):
        n_hooks = sum(len(module._forward_hooks) for module in model.modules())

    # Recorder.trace against the uninstrumented forward (hooks removed), then the plain forward with
    # the hooks attached but nobody recording (what a session that only classifies pays).
    traced_times, plain_times, hooked_times, unhooked_times = [], [], [], []
    for index in range(rounds):
        pairs = [(traced_times, True, traced), (plain_times, False, plain)]
        for times, hooked, fn in pairs if index % 2 == 0 else pairs[::-1]:
            times.append(measure(hooked, fn))
        pairs = [(hooked_times, True, plain), (unhooked_times, False, plain)]
        for times, hooked, fn in pairs if index % 2 == 0 else pairs[::-1]:
            times.append(measure(hooked, fn))

    print(f"trace_overhead_ratio {ratio_of(traced_times, plain_times):.2f}")
    print(f"  traced_forward_ms {statistics.median(traced_times) * 1e3:.3f}")
    print(f"  plain_forward_ms {statistics.median(plain_times) * 1e3:.3f}  (batch 1, hooks detached)")
    print(
        f"  hooked_plain_forward_ratio {ratio_of(hooked_times, unhooked_times):.2f}  ({n_hooks} hooks attached, nobody recording)"
    )


def training_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, config, fixed=None):
    """One step as train.fit takes it: draw the batch (unless `fixed`), forward, backward, clip, AdamW."""
    counter = iter(range(10**9))

    def step() -> None:
        if fixed is None:
            images, labels = data.generate(BATCH, [0, next(counter)], size=config.image_size[0])
            x, y = normalise(images, config), torch.from_numpy(labels)
        else:
            x, y = fixed
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    return step


def bench_train(rounds: int, calls: int) -> None:
    config = train.default_config()
    torch.manual_seed(0)
    ours = ViT(config).train()
    VitPytorch = load_vit_pytorch()
    theirs = VitPytorch(
        image_size=64, patch_size=8, num_classes=len(data.CLASSES), dim=96, depth=4, heads=4, mlp_dim=192, dim_head=24
    ).train()
    theirs_opt = torch.optim.AdamW(theirs.parameters(), lr=1e-3, weight_decay=0.05, betas=(0.9, 0.99))
    n_ours = sum(p.numel() for p in ours.parameters())
    n_theirs = sum(p.numel() for p in theirs.parameters())

    # Ours is a step of vitviz.train.fit itself, the loop the CLI and the studio run: its batch,
    # learning-rate update, forward, backward, clipping, AdamW and progress record.
    ours_opt = train.make_optimizer(ours, 1e-3, 0.05)
    steps = train.fit(ours, steps=10**9, batch_size=BATCH, lr=1e-3, eval_every=0, optimizer=ours_opt)
    fit_step = functools.partial(next, steps)
    theirs_step = training_step(theirs, theirs_opt, config)
    fit_step(), theirs_step()  # warm
    ours_times, theirs_times = alternate(fit_step, theirs_step, rounds, calls)

    images, labels = data.generate(BATCH, 12345)
    fixed = (normalise(images, config), torch.from_numpy(labels))
    ours_fixed = training_step(ours, ours_opt, config, fixed)
    theirs_fixed = training_step(theirs, theirs_opt, config, fixed)
    ours_model_times, theirs_model_times = alternate(ours_fixed, theirs_fixed, rounds, calls)
    data_times, theirs_again = alternate(lambda: normalise(data.generate(BATCH, 7)[0], config), theirs_fixed, rounds, 1)
    # The strictest reading: our whole step, data included, against theirs with no data at all.
    fit_again, theirs_bare = alternate(fit_step, theirs_fixed, rounds, calls)
    steps.close()

    print(f"train_step_ratio {ratio_of(ours_times, theirs_times):.2f}"
          "  (a step of vitviz.train.fit, data included ÷ vit-pytorch's step with the same kind of batch drawn in it)")
    print(f"  vitviz_fit_step_ms {statistics.median(ours_times) * 1e3:.1f}  ({n_ours} parameters, batch {BATCH})")
    print(f"  vit_pytorch_step_ms {statistics.median(theirs_times) * 1e3:.1f}  ({n_theirs} parameters)")
    print(f"  train_step_ratio_model_only {ratio_of(ours_model_times, theirs_model_times):.2f}  (one fixed batch, no data)")
    print(f"  vitviz_model_step_ms {statistics.median(ours_model_times) * 1e3:.1f}")
    print(f"  vit_pytorch_model_step_ms {statistics.median(theirs_model_times) * 1e3:.1f}")
    print(f"  fit_vs_bare_model_ratio {ratio_of(fit_again, theirs_bare):.2f}  (the fit step, data included ÷ vit-pytorch's"
          " step on one fixed batch, no data drawn)")
    print(f"  data_ratio {ratio_of(data_times, theirs_again):.2f}  (drawing one batch ÷ vit-pytorch's step without data;"
          f" {statistics.median(data_times) * 1e3:.1f} ms for generate + normalise of {BATCH} images)")


LOAD_SCRIPT = """
import time
from vitviz import weights
start = time.perf_counter()
weights.load_file_model(weights.DEFAULT_PATH)
print(time.perf_counter() - start)
"""


def bench_load() -> None:
    """Loading the shipped model in a fresh process (torch already imported, as in the app)."""
    import subprocess
    import sys

    root = str(Path(__file__).resolve().parent.parent)
    runs = [float(subprocess.run([sys.executable, "-c", LOAD_SCRIPT], cwd=root, capture_output=True, text=True,
                                 check=True).stdout.split()[-1]) for _ in range(3)]
    print(f"default_model_load_s {statistics.median(runs):.3f}  (fresh process, median of 3)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    parser.add_argument("--only", choices=["trace", "train"], help="run one of the two comparisons")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: on a busy 2-core machine, 2 threads make batch-1 timings swing 100x)",
    )
    args = parser.parse_args(argv)
    allocator.keep_freed_memory()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads, {os.cpu_count()} cores")
    if args.only is None:
        bench_load()
    if args.only in (None, "trace"):
        bench_trace(rounds=5, calls=20) if args.quick else bench_trace(rounds=301, calls=10)
    if args.only in (None, "train"):
        bench_train(rounds=2, calls=1) if args.quick else bench_train(rounds=15, calls=3)


if __name__ == "__main__":
    main()
