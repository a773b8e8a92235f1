"""Load test: how page times grow when many browser sessions share one server process.

A class of students shares one Streamlit process. This script starts the app on 127.0.0.1 (a
fresh server for every level, warmed up by one session walking the same pages), then opens N
browser sessions in one headless Chromium (Playwright contexts, asyncio). They arrive one after
another, each uploading its own generated image; then all of them walk the step pages at once
through the top navigation menu, each clicking its next page as soon as the last one has finished
(no reading time: a worst case).

Page time is from the click on the menu item until Streamlit reports the script finished and the h1
shows the new title. "Finished" is the script state Streamlit keeps on its app element
(`data-test-script-state="notRunning"`), the state the status widget follows: the widget itself only
appears after 500 ms of running and fades out over 200 ms, so it would miss short pages and add
0.2 s to long ones.

The server's part of it is timed too, from Chromium's network stack (DevTools events): from the
rerun request leaving the browser to the server's script_finished message arriving. On a real class
every student's browser draws on their own computer; only this part is shared.

Printed per level: the median and 95th percentile page time and server time, each as a ratio to
the 1-session level; the server process's CPU seconds per timed page (all its threads: with
training, the training too); the cores kept busy during the walk by the server, by this script's
Chromium, and by everything else on the machine; the server's RSS after the warm-up (VmRSS) and at
its peak (VmHWM), from /proc/<pid>/status of the Streamlit process. A last run adds 2 sessions
training in the Training studio while 8 sessions walk, with the ratios to 8 sessions without training.

The browser runs on the same machine as the server, so on a small machine its drawing takes CPU
from the server (the cores columns show how much): read the ratios as an upper bound.

    python benchmarks/bench_load.py [--levels 1,4,8,16] [--pages 3,6,10.2,10.4,13] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from google.protobuf.message import DecodeError  # noqa: E402
from playwright.async_api import async_playwright  # noqa: E402
from streamlit.proto.BackMsg_pb2 import BackMsg  # noqa: E402
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg  # noqa: E402

from vitviz import data  # noqa: E402

logging.disable(logging.WARNING)  # Streamlit warns that it has no runtime when the step registry is imported
from vitviz.ui import steps  # noqa: E402

logging.disable(logging.NOTSET)

CHROMIUM = "/usr/bin/chromium"
START_PAGE = "step_1"  # where each session uploads its image; not one of the timed pages
PAGE_TIMEOUT_MS = 180_000  # one page, however busy the server
LEVEL_TIMEOUT_S = 20 * 60  # one level, everything included
TRAINERS = 2
TICKS = os.sysconf("SC_CLK_TCK")

DONE = """([title]) => {
  const app = document.querySelector('[data-testid="stApp"]');
  const h1 = document.querySelector('h1');
  return !!app && app.getAttribute('data-test-script-state') === 'notRunning'
      && !!h1 && h1.innerText.trim() === title;
}"""
SHOWS = """([name]) => {
  const app = document.querySelector('[data-testid="stApp"]');
  const captions = [...document.querySelectorAll('[data-testid="stImageCaption"]')];
  return !!app && app.getAttribute('data-test-script-state') === 'notRunning'
      && captions.some((c) => c.innerText.trim() === name);
}"""
IDLE = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  return !!app && app.getAttribute('data-test-script-state') === 'notRunning' && !!document.querySelector('h1');
}"""


# --- the server -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`streamlit run app.py` on 127.0.0.1 (its output kept for the tracebacks count), and its memory from /proc."""

    def __init__(self) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.address", "127.0.0.1",
             "--server.port", str(port), "--server.headless", "true"],
            cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        for _ in range(240):
            try:
                if urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=1).read() == b"ok":
                    return
            except OSError:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.5)
        self.stop()
        raise SystemExit("the Streamlit server did not start")

    def memory_mb(self, field_name: str) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024  # kB
        return float("nan")

    def tracebacks(self) -> int:
        self.log.seek(0)
        return self.log.read().decode(errors="replace").count("Traceback")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def cpu_of(pid: int) -> float:
    """A live process's CPU seconds so far (all its threads), 0 if it has gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def descendants(root: int) -> set[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def machine_busy() -> float:
    """CPU seconds every core of the machine has spent busy since boot (/proc/stat)."""
    ticks = [int(n) for n in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / TICKS  # all but idle and iowait (guest time is in user)


class CpuMeter:
    """CPU seconds of the server, of this script's browser (every other process it started), and of the
    whole machine, so that a level can say who was busy while the sessions walked."""

    def __init__(self, server: Server) -> None:
        self.server = server.process.pid

    def read(self) -> dict[str, float]:
        browser = descendants(os.getpid()) - {self.server} - descendants(self.server)
        return {"server": cpu_of(self.server), "machine": machine_busy(),
                **{f"browser:{pid}": cpu_of(pid) for pid in browser}}

    @staticmethod
    def spent(before: dict[str, float], after: dict[str, float]) -> tuple[float, float, float]:
        """(server, browser, everything else) CPU seconds between two readings."""
        server = after["server"] - before["server"]
        browser = sum(value - before.get(key, 0.0) for key, value in after.items() if key.startswith("browser:"))
        return server, browser, after["machine"] - before["machine"] - server - browser


# --- one browser session --------------------------------------------------------------------------


def make_images(count: int, folder: Path) -> list[Path]:
    """`count` different pictures: generated shape scenes at different sizes, some non-square, with a drawn mark."""
    scenes, _ = data.generate(count, seed=515_151)
    paths = []
    for i in range(count):
        width = 160 + 48 * i
        height = width if i % 2 == 0 else 120 + 40 * i
        image = Image.fromarray(scenes[i]).resize((width, height), Image.Resampling.BICUBIC)
        ImageDraw.Draw(image).ellipse((width // 10, height // 10, width // 4, height // 4), fill=(20 * i % 256, 90, 200))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG" if i % 2 == 0 else "JPEG")
        paths.append(folder / f"session-{i:02d}.{'png' if i % 2 == 0 else 'jpg'}")
        paths[-1].write_bytes(buffer.getvalue())
    return paths


@dataclass
class Results:
    times: list[float] = field(default_factory=list)  # page times, click to drawn
    server_times: list[float] = field(default_factory=list)  # rerun request sent to script_finished received
    failures: list[str] = field(default_factory=list)


class Frames:
    """A page's WebSocket messages that start and end a script run, stamped by Chromium's network stack
    (Chrome DevTools Protocol), so the server's part of a page time excludes the browser's drawing."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str]] = []  # (timestamp in seconds, "rerun" or "finished")

    async def attach(self, context, page) -> None:
        cdp = await context.new_cdp_session(page)
        cdp.on("Network.webSocketFrameSent", lambda event: self._add(event, BackMsg, "rerun_script"))
        cdp.on("Network.webSocketFrameReceived", lambda event: self._add(event, ForwardMsg, "script_finished"))
        await cdp.send("Network.enable")

    def _add(self, event: dict, kind, wanted: str) -> None:
        frame = event["response"]
        if frame.get("opcode") != 2:  # Streamlit's messages are binary protobufs
            return
        message = kind()
        try:
            message.ParseFromString(base64.b64decode(frame["payloadData"]))
        except (DecodeError, ValueError):
            return
        if message.WhichOneof("type") == wanted:
            self.events.append((event["timestamp"], "rerun" if kind is BackMsg else "finished"))

    def server_time(self, since: int) -> float | None:
        """From the first rerun request after event `since` to the last script_finished, if both were seen."""
        sent = [stamp for stamp, name in self.events[since:] if name == "rerun"]
        done = [stamp for stamp, name in self.events[since:] if name == "finished"]
        return done[-1] - sent[0] if sent and done and done[-1] > sent[0] else None


@dataclass
class Session:
    context: object
    page: object
    frames: Frames


async def open_session(browser, url: str) -> Session:
    context = await browser.new_context(viewport={"width": 1200, "height": 900})
    context.set_default_timeout(PAGE_TIMEOUT_MS)  # Playwright's 30 s is too short for a busy 2-core machine
    page = await context.new_page()
    frames = Frames()
    await frames.attach(context, page)
    await page.goto(url)
    await page.wait_for_function(IDLE, polling=100)
    return Session(context, page, frames)


async def upload(page, path: Path) -> None:
    await page.get_by_text("Upload", exact=True).first.click()
    await page.wait_for_selector('input[type="file"]', state="attached")
    await page.locator('input[type="file"]').first.set_input_files(str(path))
    await page.wait_for_function(SHOWS, arg=[path.name], polling=100)


async def walk(session: Session, keys: list[str], results: Results | None) -> None:
    """Open each step from the top navigation, in this session; record each page time in `results`."""
    page = session.page
    for key in keys:
        step = steps.BY_KEY[key]
        try:
            await page.get_by_text(step.section, exact=True).first.click()
            item = page.get_by_role("menuitem", name=step.label).first
            await item.wait_for()
            seen = len(session.frames.events)
            start = time.perf_counter()
            await item.click()
            await page.wait_for_function(DONE, arg=[step.label], polling=50)
            elapsed = time.perf_counter() - start
            for _ in range(40):  # the DevTools events may trail the page by a moment
                if session.frames.server_time(seen) is not None:
                    break
                await asyncio.sleep(0.05)
            if await page.locator('[data-testid="stException"]').count():
                raise RuntimeError("the page shows an exception")
        except Exception as exc:  # a timeout or a broken page: counted, and the walk goes on
            if results is not None:
                results.failures.append(f"{key}: {str(exc).splitlines()[0][:120]}")
            continue
        if results is not None:
            results.times.append(elapsed)
            server = session.frames.server_time(seen)
            if server is not None:
                results.server_times.append(server)


async def prepare(browser, url: str, path: Path, results: Results) -> Session | None:
    """A session on the start page with its own image uploaded, or None if that failed."""
    session = None
    try:
        session = await open_session(browser, f"{url}/{START_PAGE}")
        await upload(session.page, path)
        return session
    except Exception as exc:
        results.failures.append(f"upload {path.name}: {str(exc).splitlines()[0][:120]}")
        if session is not None:
            await session.context.close()
        return None


async def start_training(browser, url: str) -> Session:
    """A session in the Training studio running a small model for many steps."""
    session = await open_session(browser, f"{url}/training")
    page = session.page
    choices = {"studio_image_size": "32", "studio_patch": "8", "studio_dim": "32", "studio_heads": "2"}
    for key, option in choices.items():
        await page.locator(f".st-key-{key} [role=combobox]").click()  # waits for the widget's code to load
        await page.get_by_role("option", name=option, exact=True).click()
    for key, value in {"studio_depth": 1, "studio_steps": 5000}.items():
        box = page.locator(f".st-key-{key} input")
        await box.fill(str(value))
        await box.press("Tab")
    await page.locator(".st-key-studio_start button").click()
    await page.wait_for_selector("text=/Training · step [0-9]+ of 5000/")
    return session


# --- a level --------------------------------------------------------------------------------------


def median(times: list[float]) -> float:
    return statistics.median(times) if times else float("nan")


def p95(times: list[float]) -> float:
    if len(times) < 2:
        return times[0] if times else float("nan")
    return statistics.quantiles(times, n=20, method="inclusive")[18]


@dataclass
class Level:
    name: str
    sessions: int
    results: Results
    cpu_per_page: float  # the server's CPU seconds per timed page
    cores: tuple[float, float, float]  # cores kept busy during the walk: server, browser, everything else
    rss_base_mb: float
    rss_peak_mb: float
    tracebacks: int


async def run_level(browser, sessions: int, keys: list[str], images: list[Path], trainers: int = 0) -> Level:
    server = Server()
    try:
        warm = await open_session(browser, f"{server.url}/{START_PAGE}")  # warm-up: imports, first runs
        await walk(warm, keys, None)
        await warm.context.close()
        rss_base = server.memory_mb("VmRSS")
        training = [await start_training(browser, server.url) for _ in range(trainers)]
        results = Results()
        # The sessions arrive one after another, each uploading its image; then they all walk at once.
        ready = [await prepare(browser, server.url, images[i], results) for i in range(sessions)]
        ready = [session for session in ready if session is not None]
        meter = CpuMeter(server)
        cpu_before, wall_before = meter.read(), time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(walk(session, keys, results) for session in ready)), LEVEL_TIMEOUT_S)
        spent, wall = meter.spent(cpu_before, meter.read()), time.perf_counter() - wall_before
        for session in [*training, *ready]:
            await session.context.close()
        name = f"{sessions}" + (f" + {trainers} training" if trainers else "")
        return Level(name, sessions, results, spent[0] / max(1, len(results.times)),
                     tuple(seconds / wall for seconds in spent), rss_base, server.memory_mb("VmHWM"),
                     server.tracebacks())
    finally:
        server.stop()


COLUMNS = (("sessions", 16), ("pages", 5), ("page_med_s", 10), ("page_p95_s", 10), ("ratio_med", 9),
           ("ratio_p95", 9), ("server_med_s", 12), ("server_p95_s", 12), ("ratio_med", 9), ("ratio_p95", 9),
           ("server_cpu_s/page", 17), ("cores:server", 12), ("browser", 7), ("others", 6), ("rss_base_mb", 11),
           ("rss_peak_mb", 11), ("failed", 6))


def print_table(levels: list[Level], base: Level, with_training: Level | None, against: Level | None) -> None:
    print(" ".join(f"{name:>{width}}" for name, width in COLUMNS))

    def row(level: Level, reference: Level) -> None:
        pages, servers = level.results.times, level.results.server_times
        values = (
            level.name, str(len(pages)), f"{median(pages):.2f}", f"{p95(pages):.2f}",
            f"{median(pages) / median(reference.results.times):.2f}", f"{p95(pages) / p95(reference.results.times):.2f}",
            f"{median(servers):.2f}", f"{p95(servers):.2f}",
            f"{median(servers) / median(reference.results.server_times):.2f}",
            f"{p95(servers) / p95(reference.results.server_times):.2f}",
            f"{level.cpu_per_page:.3f}", *(f"{cores:.2f}" for cores in level.cores),
            f"{level.rss_base_mb:.0f}", f"{level.rss_peak_mb:.0f}", str(len(level.results.failures) + level.tracebacks),
        )  # fmt: skip
        print(" ".join(f"{value:>{width}}" for value, (_, width) in zip(values, COLUMNS, strict=True)))

    for level in levels:
        row(level, base)
    if with_training is not None and against is not None:
        print(f"ratios against {against.sessions} sessions without training:")
        row(with_training, against)


async def main_async(levels: list[int], keys: list[str], train_with: int | None) -> None:
    print(f"vitviz load test: {len(keys)} pages per session ({', '.join(keys)}), levels {levels}, "
          f"{os.cpu_count()} cores, a fresh server per level; ratios are to the 1-session level; "
          f"load average {os.getloadavg()[0]:.1f} at the start", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        images = make_images(max(levels + [train_with or 0]), Path(folder))
        async with async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                      "--disable-sync", "--no-first-run", "--disable-quic"],
            )
            try:
                measured = []
                for sessions in levels:
                    measured.append(await run_level(browser, sessions, keys, images))
                    level = measured[-1]
                    times = level.results.times
                    print(f"  {sessions} sessions: median page {median(times):.2f} s, p95 {p95(times):.2f} s", flush=True)
                training = None
                if train_with is not None:
                    training = await run_level(browser, train_with, keys, images, trainers=TRAINERS)
            finally:
                await browser.close()
    base = next(level for level in measured if level.sessions == 1)
    against = next((level for level in measured if level.sessions == train_with), None)
    print(f"load average {os.getloadavg()[0]:.1f} at the end (other programs on the machine slow every level)")
    print_table(measured, base, training, against)
    for level in [*measured, *([training] if training else [])]:
        for failure in level.results.failures[:5]:
            print(f"failed ({level.name}): {failure}")
        if level.tracebacks:
            print(f"failed ({level.name}): {level.tracebacks} tracebacks in the server log")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="1,4,8,16", help="concurrent sessions per level, comma-separated")
    parser.add_argument("--pages", default="3,6,10.2,10.4,13", help="step keys each session walks, in order")
    parser.add_argument("--train-with", type=int, default=8, help="walking sessions beside the training sessions "
                        "(0: no training run)")
    parser.add_argument("--quick", action="store_true", help="levels 1,2, two pages, training beside 2 sessions")
    args = parser.parse_args()
    if args.quick:
        args.levels, args.pages, args.train_with = "1,2", "3,10.4", 2
    levels = sorted({int(n) for n in args.levels.split(",")} | {1})  # 1 is the baseline
    keys = [key.strip() for key in args.pages.split(",")]
    unknown = [key for key in keys if key not in steps.BY_KEY]
    if unknown or not 1 <= max(levels) <= 32:
        raise SystemExit(f"unknown step keys {unknown}" if unknown else "levels must be between 1 and 32 sessions")
    train_with = args.train_with or None
    if train_with is not None and train_with not in levels:
        levels.append(train_with)  # its ratio needs the same level without training
        levels.sort()
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing: apt-get install -y chromium")
    asyncio.run(main_async(levels, keys, train_with))


if __name__ == "__main__":
    main()
