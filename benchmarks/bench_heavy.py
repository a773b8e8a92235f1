"""Many visitors asking for the long computations at once: with the server's bounds, and without them.

N visitors, each with an image of their own, click at the same moment: half ask for the faithfulness scores
(`attribution.score`), half for "Download this story" (`downloads.made_once` making `story_file.story_html`),
every one through the app's own functions. Meanwhile a probe stands for everyone else's pages: every 0.3 s it
traces one image (what opening a step page costs, on one torch thread) and times it. When all are served, the same N ask again
(a repeat click), once the averages over many images the stories started in the background are done.

Two conditions, each in a fresh Python process so its peak memory is its own:

  bounded    the app as deployed: `limits.heavy_tasks` places (1), one torch thread each, downloads waiting up
             to `heavy_wait_seconds` for a place; a visitor told "busy, try again in a moment" tries again 1 s later
  unbounded  as before these bounds: every visitor computes at once on torch's default threads, no story
             file kept for a repeat click (faithfulness scores were kept before too, in the trace cache)

Printed for each: the process's CPU seconds for the first round (less the probe thread's own) and for the
repeat, its peak RSS (VmHWM, and
above its RSS before the clicks), the most computations running at once, the busy sentences given, when the
last visitor was served, and the probe's median and 95th-percentile page time; then each as a ratio bounded ÷
unbounded, measured in the same run.

    python benchmarks/bench_heavy.py [--visitors 8] [--model small|tiny|base]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vitviz import allocator, background, capture, data, limits, quota, train  # noqa: E402
from vitviz.images import prepare  # noqa: E402
from vitviz.model import ViT, ViTConfig  # noqa: E402

logging.disable(logging.WARNING)  # Streamlit warns that it has no runtime when the ui modules run outside one
from vitviz.ui import attribution, downloads, state, story_file  # noqa: E402
from vitviz.ui.controls import View  # noqa: E402

SIZES = {  # (dim, depth, heads): ViT-Ti/16, ViT-S/16 and ViT-B/16 at 224 × 224 with 1,000 classes
    "tiny": (192, 12, 3), "small": (384, 12, 6), "base": (768, 12, 12),
}
PROBE_SECONDS = 0.3


def model_of(size: str) -> ViT:
    dim, depth, heads = SIZES[size]
    torch.manual_seed(0)
    config = ViTConfig(image_size=(224, 224), patch_size=16, dim=dim, depth=depth, heads=heads, mlp_dim=4 * dim,
                       labels=tuple(f"class {i}" for i in range(1000)))
    return ViT(config).eval()


def traced_images(model: ViT, count: int) -> list[state.Traced]:
    scenes, _ = data.generate(count + 1, seed=4242, size=224)
    recorder = capture.Recorder(model)
    traced = []
    for i in range(count + 1):
        image = Image.fromarray(scenes[i])
        prepared = prepare(image, model.config)
        traced.append(state.Traced(image_name=f"visitor {i}", image_key=f"bench-{i}", image=image, prepared=prepared,
                                   trace=recorder.trace(prepared.pixels), model_key="bench", model=model,
                                   recorder=recorder))
    return traced


class Watch:
    """The most computations running at once, counted around the work itself."""

    def __init__(self) -> None:
        self.lock, self.now, self.most = threading.Lock(), 0, 0

    @contextlib.contextmanager
    def running(self):
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            yield
        finally:
            with self.lock:
                self.now -= 1


def rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def condition(name: str, visitors: int, size: str) -> dict:
    """One condition, in this process: the clicks, the repeat, and what they took."""
    allocator.keep_freed_memory()  # as app.py does
    # The story starts the averages over many images (Fig. 7) in the background, kept on disk per model: each
    # condition starts with none, and both wait for them before the repeat.
    os.environ["VITVIZ_CACHE_DIR"] = tempfile.mkdtemp(prefix="vitviz-bench-heavy-")
    bounded = name == "bounded"
    if not bounded:  # as before: no places, torch's default threads, no file kept (scores were kept before too)
        os.environ["VITVIZ_HEAVY_TASKS"] = str(10 * visitors)
        train.limited_threads = lambda count: contextlib.nullcontext()
        os.environ["VITVIZ_DOWNLOAD_CACHE_MB"] = "0"
    model = model_of(size)
    traced = traced_images(model, visitors)
    probe_image, visitors_images = traced[0], traced[1:]
    watch = Watch()
    real_score, real_story = attribution.faithfulness.score, story_file.story_html

    def watched(function):
        def run(*args, **kwargs):
            with watch.running():
                return function(*args, **kwargs)
        return run

    attribution.faithfulness.score = watched(real_score)
    story_html = watched(real_story)
    busy = [0]

    def visitor(index: int, served: list[float], started: float) -> None:
        mine = visitors_images[index]
        while True:
            try:
                if index % 2 == 0:
                    attribution.score(mine, 0)
                else:
                    key = downloads.story_key(mine, View(), {}, "bench", "en")
                    downloads.made_once(key, lambda: story_html(mine, View(), model_name="bench", kept={}))
                break
            except quota.ServerBusy:  # the visitor reads "try again in a moment", and does
                busy[0] += 1
                time.sleep(1.0)
        served.append(time.perf_counter() - started)

    def round_of_clicks() -> tuple[float, float]:
        served: list[float] = []
        started, cpu = time.perf_counter(), cpu_seconds()
        threads = [threading.Thread(target=visitor, args=(i, served, started)) for i in range(visitors)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return cpu_seconds() - cpu, max(served)

    probe_times: list[float] = []
    probe_cpu = [0.0]
    stop = threading.Event()

    def probe() -> None:
        train.limit_threads(1)  # all its work on this thread, so that its CPU time can be taken out
        cpu = time.thread_time()
        while not stop.is_set():
            begun = time.perf_counter()
            probe_image.recorder.trace(probe_image.trace.pixels)
            probe_times.append(time.perf_counter() - begun)
            stop.wait(PROBE_SECONDS)
        probe_cpu[0] = time.thread_time() - cpu

    base_rss = rss_mb("VmRSS")
    prober = threading.Thread(target=probe)
    prober.start()
    first_cpu, last_served = round_of_clicks()
    stop.set()
    prober.join()
    while background.unfinished():
        time.sleep(0.5)
    repeat_cpu, _ = round_of_clicks()
    return {"cpu_s": first_cpu - probe_cpu[0], "repeat_cpu_s": repeat_cpu, "rss_peak_mb": rss_mb("VmHWM"),
            "rss_added_mb": rss_mb("VmHWM") - base_rss, "most_at_once": watch.most, "busy_said": busy[0],
            "last_served_s": last_served, "probe_med_s": statistics.median(probe_times),
            "probe_p95_s": float(np.percentile(probe_times, 95)), "probes": len(probe_times)}


COLUMNS = ("cpu_s", "repeat_cpu_s", "rss_peak_mb", "rss_added_mb", "most_at_once", "busy_said", "last_served_s",
           "probes", "probe_med_s", "probe_p95_s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visitors", type=int, default=8)
    parser.add_argument("--model", choices=sorted(SIZES), default="small")
    parser.add_argument("--condition", choices=("bounded", "unbounded"), help=argparse.SUPPRESS)  # one child's
    args = parser.parse_args()
    if args.condition:
        print(json.dumps(condition(args.condition, args.visitors, args.model)))
        return
    print(f"vitviz heavy work: {args.visitors} visitors at once ({args.visitors - args.visitors // 2} faithfulness, "
          f"{args.visitors // 2} story downloads), ViT-{args.model} size, {os.cpu_count()} cores, "
          f"heavy_tasks {limits.heavy_tasks()}; load average {os.getloadavg()[0]:.1f} at the start", flush=True)
    results = {}
    for name in ("bounded", "unbounded"):
        child = subprocess.run([sys.executable, __file__, "--condition", name, "--visitors", str(args.visitors),
                                "--model", args.model], capture_output=True, text=True, check=True, cwd=ROOT)
        results[name] = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    print(f"{'':>10} " + " ".join(f"{column:>13}" for column in COLUMNS))
    for name, result in results.items():
        print(f"{name:>10} " + " ".join(f"{result[column]:>13.2f}" for column in COLUMNS))
    ratios = [results["bounded"][c] / results["unbounded"][c] if results["unbounded"][c] else float("nan")
              for c in COLUMNS]
    print(f"{'ratio':>10} " + " ".join(f"{ratio:>13.2f}" for ratio in ratios))


if __name__ == "__main__":
    main()
