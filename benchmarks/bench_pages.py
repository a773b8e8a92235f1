"""How long pages take in a real browser, as ratios to step 10.2 on the same model, and the bytes they send.

Starts the app, drives Debian's Chromium through the top navigation of one session (as a reader
clicks), and times each page from the click until the script has finished and every figure on
the page has drawn. Step 10.2 is timed in the same run, alternating with the others, so the
ratios hold on a noisy machine. Two models: the built-in one, and a random-weight ViT-B/16 built
with transformers' ViTForImageClassification and saved with save_pretrained (loaded from the
models directory on the Model page, as a deployer's checkpoint is).

Prints, per model, for each page:
- <page>_ratio: the page fully drawn ÷ step 10.2 fully drawn;
- story_first_step_ratio: the Story page until the first step's figure is on screen ÷ step 10.2;
- fig7_ratio: the explorer's "Paper Fig. 7" tab, from its click ÷ step 10.2;
- story_encoder_section_ratio: opening the Story's largest section (10.1-10.12, 12 steps) ÷ step 10.2;
- <page>_kb: kilobytes the server sent for the page (websocket frames and media files; not the
  app's JavaScript, which the browser fetches once).

The mean attention distance of step 11 and Fig. 7 is computed once per model in the background;
the first visit to step 11 starts it and is reported separately, in seconds from the request the
click sends the server: until the page's title is on screen (first_analysis_title_s), until the
analysis shows its progress bar (first_analysis_progress_s) and until it is done
(first_analysis_done_s); first_analysis_click_s is how long the browser took to send that request
after the click began (right after a ViT-B page's first draw Chromium can take a second or two). The
timed visits come after the analysis has finished, as the issue's targets say.

    python benchmarks/bench_pages.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"

# (name, top-navigation section, menu label); the menu labels are the steps' own.
PAGES = {
    "step_10_2": ("Inside one encoder layer", "10.2 · Attention scores"),
    "story": ("Explore", "Story: every step on one page"),
    "step_11": ("Output", "11 · Repeat the block"),
    "explorer": ("Explore", "Attention explorer"),
    "step_8": ("Patches and tokens", "8 · Add position embeddings"),  # with its shuffled patches
    "step_10_3": ("Inside one encoder layer", "10.3 · Softmax"),  # with its temperature
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(env: dict[str, str]) -> tuple[str, subprocess.Popen]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                return url, process
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit("the Streamlit server did not start")


class Bytes:
    """Counts what the server sends this tab: websocket frames and HTTP responses (media, static files)."""

    def __init__(self, page) -> None:
        self.total = 0
        self.sent: list[float] = []  # when the tab sent the server a message (a click's rerun request)
        page.on("websocket", self._socket)
        page.on("requestfinished", self._request)

    def _socket(self, ws) -> None:
        ws.on("framereceived", self._frame)
        ws.on("framesent", lambda _: self.sent.append(time.perf_counter()))

    def _frame(self, payload) -> None:
        self.total += len(payload)

    def _request(self, request) -> None:
        if "/static/" in request.url:
            return  # the app's own JavaScript (plotly.js among it) is fetched once per browser, not per page
        try:
            self.total += request.sizes()["responseBodySize"]
        except Exception:  # a request whose sizes are gone with its page
            pass


# True once the script has finished and every figure on the page has drawn (plotly charts have their
# SVG, images have loaded) and no element is left stale from the previous page.
DRAWN = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (document.querySelector('[data-stale="true"]')) return false;
  for (const chart of document.querySelectorAll('[data-testid="stPlotlyChart"]'))
    if (!chart.querySelector('.main-svg')) return false;
  for (const img of document.querySelectorAll('[data-testid="stMain"] img'))
    if (!img.complete) return false;
  return true;
}"""

# The story's first step is on screen: its heading, and a figure after it.
FIRST_STEP = """() => {
  const charts = document.querySelectorAll('[data-testid="stMain"] [data-testid="stPlotlyChart"] .main-svg, [data-testid="stMain"] [data-testid="stImage"] img');
  const heading = [...document.querySelectorAll('h1, h2, h3')].find(h => h.innerText.startsWith('0 ·'));
  return !!heading && [...charts].some(c => c.complete !== false);
}"""


def visit(page, bytes_seen: Bytes, name: str, first_step: bool = False) -> tuple[float, float | None, int]:
    """Click a page in the top navigation; (seconds until drawn, seconds until the first step, bytes)."""
    section, label = PAGES[name]
    page.get_by_text(section, exact=True).first.click()
    before = bytes_seen.total
    start = time.perf_counter()
    page.get_by_role("menuitem", name=label).first.click()
    first = None
    if first_step:
        page.wait_for_function(FIRST_STEP, timeout=300_000, polling=50)
        first = time.perf_counter() - start
    return wait_drawn(page, start), first, bytes_seen.total - before


def wait_drawn(page, start: float) -> float:
    page.wait_for_timeout(150)  # let the click reach the server before asking whether the script runs
    page.wait_for_function(DRAWN, timeout=300_000, polling=50)
    return time.perf_counter() - start


def open_tab(page, label: str) -> float:
    """On the explorer: click a tab; seconds until it is drawn."""
    start = time.perf_counter()
    page.get_by_role("tab", name=label).click()
    return wait_drawn(page, start)


def open_section(page, first_step: str) -> float:
    """On the story: open the section that starts with `first_step`; seconds until it is drawn."""
    start = time.perf_counter()
    page.locator('[data-testid="stExpander"] summary', has_text=f"steps {first_step}").click()
    return wait_drawn(page, start)


def first_analysis(page, bytes_seen: Bytes) -> dict[str, float]:
    """Visit step 11 while the model's attention distances are first computed: seconds from the request the click
    sent until the page's title, until the analysis shows progress (or its result), and until it is done; and the
    seconds from the click until that request."""
    section, label = PAGES["step_11"]
    page.get_by_text(section, exact=True).first.click()
    start = time.perf_counter()
    page.get_by_role("menuitem", name=label).first.click()
    seen: dict[str, float] = {}
    while True:
        now = time.perf_counter() - start
        state = page.evaluate("""() => ({
            title: [...document.querySelectorAll('h1')].some(h => h.innerText.startsWith('11 ·')),
            progress: !!document.querySelector('[data-testid="stProgress"]'),
            done: document.body.innerText.includes('generated images, until every head'),
        })""")
        if state["title"]:
            seen.setdefault("first_analysis_title_s", now)
        if state["progress"] or state["done"]:
            seen.setdefault("first_analysis_progress_s", now)
        if state["done"] and page.evaluate(DRAWN):
            seen["first_analysis_done_s"] = now
            click = min(t for t in bytes_seen.sent if t >= start) - start
            return {"first_analysis_click_s": click, **{key: value - click for key, value in seen.items()}}
        if now > 900:
            raise SystemExit("step 11's first analysis did not finish in 15 minutes")
        page.wait_for_timeout(50)


def use_local_model(page, folder: str) -> None:
    page.get_by_text("Explore", exact=True).first.click()
    page.get_by_role("menuitem", name="Model").first.click()
    page.get_by_text("Local path", exact=True).first.click()
    page.get_by_label("Folder or file in this server's models directory").fill(folder)
    page.keyboard.press("Enter")
    page.wait_for_timeout(500)
    page.get_by_role("button", name="Load", exact=True).click()
    page.wait_for_selector("text=Every page now runs", timeout=120_000)


def measure(browser, url: str, model_folder: str | None, rounds: int) -> dict[str, float]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    bytes_seen = Bytes(page)
    page.goto(url)
    page.wait_for_function(DRAWN, timeout=120_000)
    if model_folder:
        use_local_model(page, model_folder)
    visit(page, bytes_seen, "step_10_2")  # the first trace of the sample image, not part of any page's time
    results: dict[str, float] = first_analysis(page, bytes_seen)
    times: dict[str, list[float]] = {name: [] for name in [*PAGES, "story_first_step", "fig7", "story_encoder_section"]}
    kilobytes: dict[str, int] = {}

    def against_base(name: str, measure_page) -> None:
        """Time step 10.2, then the page; record the page's ratio and both pages' bytes."""
        base, _, kilobytes["step_10_2"] = visit(page, bytes_seen, "step_10_2")
        times["step_10_2"].append(base)
        before = bytes_seen.total
        for key, seconds in measure_page().items():
            times[key].append(seconds / base)
        kilobytes[name] = bytes_seen.total - before

    def story() -> dict[str, float]:
        full, first, _ = visit(page, bytes_seen, "story", first_step=True)
        return {"story": full, "story_first_step": first}

    for _ in range(rounds):
        against_base("story", story)
        against_base("step_11", lambda: {"step_11": visit(page, bytes_seen, "step_11")[0]})
        against_base("explorer", lambda: {"explorer": visit(page, bytes_seen, "explorer")[0]})
        against_base("step_8", lambda: {"step_8": visit(page, bytes_seen, "step_8")[0]})
        against_base("step_10_3", lambda: {"step_10_3": visit(page, bytes_seen, "step_10_3")[0]})
        against_base("fig7", lambda: (visit(page, bytes_seen, "explorer"), {"fig7": open_tab(page, "Paper Fig. 7")})[1])
        against_base("story_encoder_section", lambda: (
            visit(page, bytes_seen, "story"),
            {"story_encoder_section": open_section(page, "10.1")},
            open_section(page, "10.1"))[1])  # and close it again, so the next round's story starts as the first
    results["step_10_2_s"] = statistics.median(times.pop("step_10_2"))
    for name, ratios in times.items():
        results[f"{name}_ratio"] = statistics.median(ratios)
    for name, sent in kilobytes.items():
        results[f"{name}_kb"] = sent // 1024
    context.close()
    return results


def vit_b16(folder: Path) -> None:
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.ViTConfig(image_size=224, patch_size=16, hidden_size=768, num_hidden_layers=12,
                                    num_attention_heads=12, intermediate_size=3072, num_labels=1000)
    transformers.ViTForImageClassification(config).eval().save_pretrained(folder)


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models", default="built-in,vit-b16")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        models = Path(tmp) / "models"
        models.mkdir()
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        for model in args.models.split(","):
            folder = None
            if model == "vit-b16":
                folder = "vit-b16"
                vit_b16(models / folder)
            # A fresh cache directory: the first analysis is really the first.
            cache = Path(tmp) / f"cache-{model}"
            url, server = start_server({"VITVIZ_MODELS_DIR": str(models), "VITVIZ_CACHE_DIR": str(cache)})
            try:
                results = measure(browser, url, folder, args.rounds)
            finally:
                server.terminate()
                server.wait(timeout=30)
            for key, value in results.items():
                print(f"{model}  {key} {value:.2f}" if isinstance(value, float) else f"{model}  {key} {value}", flush=True)
        browser.close()


if __name__ == "__main__":
    main()
