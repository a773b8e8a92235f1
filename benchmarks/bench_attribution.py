"""What the attribution maps and the faithfulness curves cost, as ratios to one trace of the same model and image.

At the built-in size (the shipped model, a generated shape) and at ViT-B/16 size (random weights, 1000 classes,
a sample photo), prints for each:

  gradients_ratio        the one forward and backward pass every gradient-based map reads (class_gradients)
  <method>_ratio         each map's numpy part, from that pass's arrays (raw attention and attention rollout
                         need only the trace's attention; the app computes all six from the one pass)
  all_maps_ratio         faithfulness.attribution_maps: the pass and all six maps
  curves_ratio           the deletion and insertion curves of six maps and 3 random orders, batched
  estimate_over_actual   what the page states before it starts (faithfulness.longest_seconds: one timed
                         forward × the most forwards it may need × SLACK) ÷ what the whole score took; above 1
                         means the page's promise was kept (the worst round is printed)

Every ratio is measured within one round, then the median over rounds printed, with each round's value.

    python benchmarks/bench_attribution.py [--quick] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vitviz import allocator, capture, data, faithfulness, gradients, weights  # noqa: E402
from vitviz.images import load_image, normalise, preprocess  # noqa: E402
from vitviz.model import ViT, ViTConfig  # noqa: E402

VIT_B16 = ViTConfig(image_size=(224, 224), patch_size=16, dim=768, depth=12, heads=12, mlp_dim=3072,
                    labels=tuple(f"class {i}" for i in range(1000)), mean=(0.5,) * 3, std=(0.5,) * 3)
PHOTO = Path(__file__).resolve().parent.parent / "assets" / "samples" / "cat.jpg"


def seconds(fn: Callable[[], object], repeats: int = 1) -> float:
    """The median wall time of `repeats` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def one_round(model: ViT, recorder: capture.Recorder, pixels: torch.Tensor, target: int) -> dict[str, float]:
    """Each part's time ÷ one trace's, all measured in this round (a busy machine slows both sides alike)."""
    trace = seconds(lambda: recorder.trace(pixels), 3)
    found = gradients.class_gradients(recorder, pixels, target)
    times = {"gradients_ratio": seconds(lambda: gradients.class_gradients(recorder, pixels, target))}
    for method in faithfulness.METHODS:
        times[f"{method}_ratio"] = seconds(
            lambda method=method: faithfulness.maps_from(found, pixels, model.config.patch_size, (method,)), 3)
    times["all_maps_ratio"] = seconds(lambda: faithfulness.attribution_maps(recorder, pixels, target))
    # What the page does: time one forward, state the most it will take, then score.
    stated = faithfulness.longest_seconds(faithfulness.forward_seconds(model, pixels), model.config)
    scored = faithfulness.score(recorder, pixels, target)
    times["curves_ratio"] = scored.seconds - times["all_maps_ratio"]
    ratios = {key: value / trace for key, value in times.items()}
    ratios["estimate_over_actual"] = stated / scored.seconds
    ratios["trace_ms"] = trace * 1000
    return ratios


def bench(name: str, model: ViT, pixels: torch.Tensor, rounds: int) -> None:
    recorder = capture.Recorder(model)
    target = int(recorder.trace(pixels).logits.argmax())  # and a warm-up
    results = [one_round(model, recorder, pixels, target) for _ in range(rounds)]
    print(f"{name}, {rounds} rounds, {torch.get_num_threads()} torch threads: one trace "
          + ", ".join(f"{r['trace_ms']:.1f}" for r in results) + " ms")
    for key in results[0]:
        if key == "trace_ms":
            continue
        values = [r[key] for r in results]
        # The median ratio, except the estimate's: its worst round is the promise that held or did not.
        shown = min(values) if key == "estimate_over_actual" else statistics.median(values)
        print(f"  {key:32s} {shown:9.2f}   ({', '.join(f'{v:.2f}' for v in values)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds, built-in size only")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 by default: two threads on a shared, busy machine swing tenfold)")
    args = parser.parse_args()
    allocator.keep_freed_memory()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = weights.load_default()
    images, _ = data.generate(1, seed=2024)
    bench("built-in (64×64, 8×8 patches, d 96, 4 layers)", model, normalise(images, model.config)[0],
          rounds=2 if args.quick else 5)
    if not args.quick:
        big = ViT(VIT_B16).eval()
        bench("ViT-B/16 (224×224, random weights)", big, preprocess(load_image(PHOTO.read_bytes()), VIT_B16),
              rounds=2)


if __name__ == "__main__":
    main()
