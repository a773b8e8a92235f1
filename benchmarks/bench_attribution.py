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
                         means the page's promise was kept

    python benchmarks/bench_attribution.py [--quick]
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


def seconds(fn: Callable[[], object], repeats: int) -> float:
    """The median wall time of `repeats` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(name: str, model: ViT, pixels: torch.Tensor, repeats: int) -> None:
    recorder = capture.Recorder(model)
    recorder.trace(pixels)  # warm-up
    trace_seconds = seconds(lambda: recorder.trace(pixels), max(3, repeats * 3))
    target = int(recorder.trace(pixels).logits.argmax())
    print(f"{name}: one trace {trace_seconds * 1000:.1f} ms")
    found = gradients.class_gradients(recorder, pixels, target)
    rows = {"gradients_ratio": seconds(lambda: gradients.class_gradients(recorder, pixels, target), repeats)}
    for method in faithfulness.METHODS:
        rows[f"{method}_ratio"] = seconds(
            lambda method=method: faithfulness.maps_from(found, pixels, model.config.patch_size, (method,)), repeats)
    rows["all_maps_ratio"] = seconds(lambda: faithfulness.attribution_maps(recorder, pixels, target), repeats)
    # What the page does: time one forward, state the estimate, then score.
    one = faithfulness.forward_seconds(model, pixels)
    stated = faithfulness.longest_seconds(one, model.config)
    scores = [faithfulness.score(recorder, pixels, target) for _ in range(repeats)]
    whole = statistics.median(s.seconds for s in scores)
    rows["curves_ratio"] = whole - rows["all_maps_ratio"]
    for key, value in rows.items():
        print(f"  {key:32s} {value / trace_seconds:9.1f}   ({value:.3f} s)")
    print(f"  {'estimate_over_actual':32s} {stated / whole:9.2f}   (stated {stated:.2f} s, took {whole:.2f} s, "
          f"{scores[0].forwards} forward passes, one forward {one * 1000:.1f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, built-in size only")
    args = parser.parse_args()
    allocator.keep_freed_memory()
    torch.manual_seed(0)
    model = weights.load_default()
    images, _ = data.generate(1, seed=2024)
    bench("built-in (64×64, 8×8 patches, d 96, 4 layers)", model, normalise(images, model.config)[0],
          repeats=2 if args.quick else 5)
    if not args.quick:
        big = ViT(VIT_B16).eval()
        bench("ViT-B/16 (224×224, random weights)", big, preprocess(load_image(PHOTO.read_bytes()), VIT_B16),
              repeats=1)


if __name__ == "__main__":
    main()
