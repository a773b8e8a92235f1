"""The project's own small faithfulness table: every attribution map's mean deletion and insertion area on
50 held-out generated shapes with the shipped model, for the class it predicts, and whether each beats
random orders of the patches.

"beats random" compares each image's area with the mean of its 3 random orders' areas, paired over the images:
yes when the mean difference is better than zero by more than two standard errors, on both curves.
"images" counts the images on which the map is better than random on both curves by the app's own rule
(by more than faithfulness.MARGIN), as the Faithfulness tab would say for each.

    python benchmarks/faithfulness_table.py [--images 50]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vitviz import allocator, capture, faithfulness, train, weights  # noqa: E402


def significant(differences: np.ndarray) -> bool:
    """Mean above zero by more than two standard errors (differences: (images,), positive = better)."""
    return differences.mean() > 2 * differences.std(ddof=1) / np.sqrt(len(differences))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=50)
    args = parser.parse_args()
    allocator.keep_freed_memory()
    model = weights.load_default()
    recorder = capture.Recorder(model)
    pixels, labels = train.held_out(model.config, args.images)
    scores = []
    for index, image in enumerate(pixels):
        target = int(recorder.trace(image).logits.argmax())
        scores.append(faithfulness.score(recorder, image, target))
        print(f"\r{index + 1}/{len(pixels)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    deletion = np.stack([s.deletion_auc for s in scores])  # (images, methods)
    insertion = np.stack([s.insertion_auc for s in scores])
    random_deletion = np.array([s.random_deletion_auc for s in scores])
    random_insertion = np.array([s.random_insertion_auc for s in scores])
    both = np.stack([s.beats_random.all(axis=1) for s in scores])  # (images, methods)
    correct = sum(s.target == int(label) for s, label in zip(scores, labels, strict=True))
    print(f"{len(scores)} held-out shapes (train.held_out), the shipped model ({correct} predicted correctly), "
          f"the predicted class; areas under the curves over the share of patches, 16 steps.\n")
    print("| map | deletion AUC ↓ | insertion AUC ↑ | beats random | images better than random on both |")
    print("|---|---|---|---|---|")
    for m, name in enumerate(faithfulness.METHODS):
        wins = (significant(random_deletion - deletion[:, m]), significant(insertion[:, m] - random_insertion))
        verdict = {(True, True): "yes", (True, False): "deletion only", (False, True): "insertion only",
                   (False, False): "no"}[wins]
        print(f"| {faithfulness.title(name)} | {deletion[:, m].mean():.3f} | {insertion[:, m].mean():.3f} | "
              f"{verdict} | {both[:, m].sum()} of {len(scores)} |")
    print(f"| random order (mean of 3) | {random_deletion.mean():.3f} | {random_insertion.mean():.3f} | | |")
    best = np.bincount([s.best for s in scores], minlength=len(faithfulness.METHODS))
    print("\nMost faithful per image: " + ", ".join(
        f"{faithfulness.METHODS[m]} {best[m]}" for m in np.argsort(-best) if best[m]) + ".")


if __name__ == "__main__":
    main()
