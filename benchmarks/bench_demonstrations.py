"""What the three checks a reader can make cost, as ratios to one traced forward of the same model and image.

- shuffle_ratio: step 8's shuffled patches (`permutation.shuffle_test`: three images' forwards, with and without
  E_pos, given the trace's final tokens) ÷ one `Recorder.trace` of the image (what a page's first visit runs);
- convolution_ratio: step 5's check of E as a convolution (conv2d with stride p, and the largest difference) ÷ the
  same trace;
- entropy_ratio: step 10.3's attention entropy of every head of one layer at one τ (numpy, from the recorded scores)
  ÷ the same trace.

Two models with random weights: the built-in shape (64 px, 8 px patches) and ViT-B/16 (224 px). Each timing is the
median of alternating rounds, so the ratios hold on a noisy machine.

    python benchmarks/bench_demonstrations.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vitviz import analysis, capture, permutation  # noqa: E402
from vitviz.model import ViT, ViTConfig, embed_by_convolution  # noqa: E402
from vitviz.train import default_config  # noqa: E402

MODELS = {
    "built-in": default_config(),
    "vit-b16": ViTConfig(image_size=224, patch_size=16, dim=768, depth=12, heads=12, mlp_dim=3072,
                         labels=tuple(f"class {i}" for i in range(1000))),
}


def seconds(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def measure(name: str, config: ViTConfig, rounds: int) -> None:
    torch.manual_seed(0)
    model = ViT(config).eval()
    recorder = capture.Recorder(model)
    pixels = torch.randn(config.channels, *config.image_size)
    trace = recorder.trace(pixels)
    order = permutation.patch_order(config.num_patches, 0)
    scores = trace.layers[0].scores.numpy()
    weight, bias = model.patch_embed.weight.detach(), model.patch_embed.bias.detach()

    def convolution() -> float:
        conv = embed_by_convolution(pixels[None], weight, bias, config.patch_size)[0]
        return float((conv - trace.patch_embeddings).abs().max())

    works = {
        "trace": lambda: recorder.trace(pixels),
        "shuffle": lambda: permutation.shuffle_test(model, pixels, order, trace.final_tokens),
        "convolution": convolution,
        "entropy": lambda: analysis.attention_entropy(scores, 0.5),
    }
    times = {key: [] for key in works}
    for _ in range(rounds):
        for key, work in works.items():
            times[key].append(seconds(work))
    base = statistics.median(times["trace"])
    print(f"{name}: trace_s {base:.3f}")
    for key in ("shuffle", "convolution", "entropy"):
        print(f"{name}: {key}_ratio {statistics.median(times[key]) / base:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    for name, config in MODELS.items():
        measure(name, config, args.rounds)


if __name__ == "__main__":
    main()
