"""Server-side rerun time of a step page after a head change, as a ratio to a bare page.

Both are measured here, in the same run, with Streamlit's AppTest (the script runs in this
process, as it would on the server; the browser's drawing time is not included).

    python benchmarks/bench_app.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streamlit.testing.v1 import AppTest  # noqa: E402

BARE = "import streamlit as st\nst.title('bare')\nst.write('nothing else')\n"


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main(rounds: int = 12) -> None:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/step_10_2.py")
    first = timed(at.run)
    bare = AppTest.from_string(BARE, default_timeout=30)
    bare.run()
    heads = at.sidebar.selectbox(key="head").options
    step_times, bare_times = [], []
    for i in range(rounds):
        head = heads[(i + 1) % len(heads)]
        step_times.append(timed(lambda h=head: at.sidebar.selectbox(key="head").set_value(h).run()))
        bare_times.append(timed(bare.run))
    step, base = statistics.median(step_times), statistics.median(bare_times)
    print(f"step_10_2_first_visit_s {first:.3f}")
    print(f"step_10_2_head_change_s {step:.3f}")
    print(f"bare_page_rerun_s {base:.3f}")
    print(f"head_change_rerun_ratio {step / base:.2f}")


if __name__ == "__main__":
    main()
