"""A ViT-B/16 checkpoint in vitviz: tracing cost against transformers, and a step page's rerun.

Prints, measured in this run:
- trace_vs_transformers_ratio: vitviz's trace of a photo (assets/samples/cat.jpg, a new trace, as
  the first visit to a page makes it) by a ViT-B/16 at 224 px ÷ transformers' eager forward with
  output_attentions=True on the same pixels, same random weights, batch 1;
- prepare_and_trace_vs_transformers_ratio: the same with the photo's decoding-to-pixels included;
- vitb_head_change_vs_bare_ratio: the server-side rerun of step 10.2 after a head change with that
  model loaded (197 tokens, 12 heads) ÷ the rerun of a bare page;
- vitb_head_change_rerun_ratio: the same rerun ÷ the same rerun with the built-in model;
- dinov2_trace_vs_transformers_ratio: the same trace ratio for a DINOv2 ViT-S/14 (Dinov2Model: LayerScale, 257
  tokens at 224 px) and, with 4 registers, dinov2_registers_trace_vs_transformers_ratio (261 tokens); both sides
  at the trained size, so transformers does not even resample its position embeddings.

    python benchmarks/bench_checkpoints.py [--only dinov2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import transformers  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from vitviz import allocator, capture, weights  # noqa: E402
from vitviz.images import load_image, prepare, preprocess  # noqa: E402


def vit_b16(folder: Path) -> transformers.ViTForImageClassification:
    torch.manual_seed(0)
    config = transformers.ViTConfig(image_size=224, patch_size=16, hidden_size=768, num_hidden_layers=12,
                                    num_attention_heads=12, intermediate_size=3072, num_labels=1000,
                                    attn_implementation="eager")
    model = transformers.ViTForImageClassification(config).eval()
    model.save_pretrained(folder)
    return model


def median_pair(first, second, rounds: int = 7, repeats: int = 5) -> tuple[float, float]:
    """Alternate the two so machine noise hits both alike; the median of per-round means."""
    a, b = [], []
    for _ in range(rounds):
        for times, action in ((a, first), (b, second)):
            start = time.perf_counter()
            for _ in range(repeats):
                action()
            times.append((time.perf_counter() - start) / repeats)
    return statistics.median(a), statistics.median(b)


def head_change_time(at: AppTest, rounds: int = 6) -> float:
    at.switch_page("pages/step_10_2.py")
    at.run()
    heads = at.sidebar.selectbox(key="head").options
    times = []
    for i in range(rounds):
        start = time.perf_counter()
        at.sidebar.selectbox(key="head").set_value(heads[(i + 1) % len(heads)]).run()
        times.append(time.perf_counter() - start)
    assert not at.exception, [e.value for e in at.exception]
    return statistics.median(times)


def bare_rerun_time(folder: Path, rounds: int = 6) -> float:
    """A page with a title and a line of text, rerun: what Streamlit itself costs per rerun."""
    script = folder / "bare.py"
    script.write_text("import streamlit as st\nst.title('bare')\nst.write('nothing else')\n")
    at = AppTest.from_file(str(script))
    at.run()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def dinov2_s14(folder: Path, registers: bool) -> transformers.PreTrainedModel:
    torch.manual_seed(0)
    values = dict(image_size=224, patch_size=14, hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                  mlp_ratio=4, attn_implementation="eager")
    if registers:
        model = transformers.Dinov2WithRegistersModel(transformers.Dinov2WithRegistersConfig(**values))
    else:
        model = transformers.Dinov2Model(transformers.Dinov2Config(**values))
    model.eval().save_pretrained(folder)
    return model


def bench_dinov2(tmp: Path) -> None:
    photo = load_image((ROOT / "assets" / "samples" / "cat.jpg").read_bytes())
    for registers, name in ((False, "dinov2"), (True, "dinov2_registers")):
        hf = dinov2_s14(tmp / name, registers)
        recorder = capture.Recorder(weights.load(tmp / name))
        ours_t, hf_t = trace_and_reference(recorder, hf, preprocess(photo, recorder.model.config))
        print(f"vitviz_trace_{name}_s14_s {ours_t:.4f}")
        print(f"transformers_eager_attn_{name}_s14_s {hf_t:.4f}")
        print(f"{name}_trace_vs_transformers_ratio {ours_t / hf_t:.3f}")


def trace_and_reference(recorder: capture.Recorder, hf, pixels: torch.Tensor) -> tuple[float, float]:
    """Seconds per vitviz trace and per transformers eager forward with output_attentions, after a warm-up."""
    recorder.trace(pixels), hf(pixels[None], output_attentions=True)
    return median_pair(lambda: recorder.trace(pixels), lambda: hf(pixels[None], output_attentions=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["dinov2"], help="only the DINOv2 trace ratios")
    args = parser.parse_args()
    allocator.keep_freed_memory()
    torch.set_grad_enabled(False)
    with tempfile.TemporaryDirectory() as tmp:
        bench_dinov2(Path(tmp))
        if args.only == "dinov2":
            return
        os.environ["VITVIZ_MODELS_DIR"] = tmp  # the Model page loads only from the deployer's models directory
        folder = Path(tmp) / "vit-b16"
        hf = vit_b16(folder)
        ours = weights.load(folder)
        recorder = capture.Recorder(ours)  # attached once, as the app does
        photo = load_image((ROOT / "assets" / "samples" / "cat.jpg").read_bytes())
        pixels = preprocess(photo, ours.config)
        ours_t, hf_t = trace_and_reference(recorder, hf, pixels)
        both_t, hf_again_t = median_pair(lambda: recorder.trace(prepare(photo, ours.config).pixels),
                                         lambda: hf(pixels[None], output_attentions=True))
        print(f"vitviz_trace_vitb16_s {ours_t:.4f}")
        print(f"transformers_eager_attn_vitb16_s {hf_t:.4f}")
        print(f"trace_vs_transformers_ratio {ours_t / hf_t:.3f}")
        print(f"prepare_and_trace_vs_transformers_ratio {both_t / hf_again_t:.3f}")

        built_in = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
        built_in.run()
        small = head_change_time(built_in)
        big = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
        big.run()
        big.switch_page("pages/model.py")
        big.run()
        big.radio(key="model_source").set_value("Local path").run()
        big.text_input(key="model_path").set_value(folder.name).run()
        big.button(key="load_path").click().run()
        wide = head_change_time(big)
        bare = bare_rerun_time(Path(tmp))
        print(f"bare_page_rerun_s {bare:.3f}")
        print(f"vitb_head_change_vs_bare_ratio {wide / bare:.2f}")
        print(f"builtin_head_change_s {small:.3f}")
        print(f"vitb16_head_change_s {wide:.3f}")
        print(f"vitb_head_change_rerun_ratio {wide / small:.2f}")


if __name__ == "__main__":
    main()
