"""What speaking Turkish costs a page, measured in the same run (#19).

Drives the app with Streamlit's AppTest, one English and one Turkish session, and times each page's
script run in alternating rounds (the machine's noise hits both languages alike). Prints per page:
- <page>_tr_en_ratio: the Turkish run ÷ the English run (medians);
- <page>_lookups: how many translations (`_`, `ngettext`, `say`, `translator`) one run of the page makes;
and once:
- lookup_us: microseconds per Turkish lookup, timed alone;
- lookup_share_of_page: lookups × lookup_us ÷ the page's English run, the largest over the pages: what the
  catalogue lookups add to a page at most;
- format_en_us, format_tr_us and format_tr_en_ratio: microseconds to look up and fill one sentence with three
  numbers (a thousands count, a percentage, a decimal) in each language, and their ratio: what writing numbers the
  reader's way costs (#26; English formats with str.format, Turkish through its NumberStyle).

    python benchmarks/bench_i18n.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PAGES = ["pages/welcome.py", "pages/step_1.py", "pages/step_10_2.py", "pages/step_10_6.py", "pages/step_14.py",
         "pages/model.py", "pages/training.py"]


def session(language: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.query_params["lang"] = language
    at.run()
    return at


def timed_run(at, page: str) -> float:
    at.switch_page(page)
    started = time.perf_counter()
    at.run()
    elapsed = time.perf_counter() - started
    assert not at.exception, [e.value for e in at.exception]
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds

    from vitviz import i18n
    from vitviz.ui import i18n as ui_i18n

    sessions = {language: session(language) for language in ("en", "tr")}
    for at in sessions.values():  # first visits: the model runs once per session, figures warm up
        for page in PAGES:
            timed_run(at, page)
    times = {(page, language): [] for page in PAGES for language in sessions}
    for _round in range(rounds):
        for page in PAGES:
            for language, at in sessions.items():
                times[page, language].append(timed_run(at, page))

    lookups: dict[str, int] = {}
    counted = ui_i18n.catalogue

    def counting():
        lookups[current] = lookups.get(current, 0) + 1
        return counted()

    ui_i18n.catalogue = counting
    for current in PAGES:
        timed_run(sessions["tr"], current)
    ui_i18n.catalogue = counted

    ui_i18n._catalogue.set(i18n.translations("tr"))  # as a page run does, in this thread
    calls = 200_000
    started = time.perf_counter()
    for _call in range(calls):
        ui_i18n._("Attention scores")
    lookup_us = (time.perf_counter() - started) / calls * 1e6

    sentence = "Prediction: **{label}** with probability **{probability:.1%}**."
    formats = {}
    for language in ("en", "tr"):
        ui_i18n._catalogue.set(i18n.translations(language))
        started = time.perf_counter()
        for _call in range(calls // 10):
            ui_i18n._(sentence).format(label="cat", probability=0.873)
            ui_i18n._("{count:,} class.").format(count=4096)
            ui_i18n._("{seconds:.1f} s").format(seconds=4.898)
        formats[language] = (time.perf_counter() - started) / (calls // 10) * 1e6

    share = 0.0
    for page in PAGES:
        name = Path(page).stem
        english, turkish = statistics.median(times[page, "en"]), statistics.median(times[page, "tr"])
        print(f"{name}_tr_en_ratio {turkish / english:.3f}")
        print(f"{name}_lookups {lookups.get(page, 0)}")
        share = max(share, lookups.get(page, 0) * lookup_us * 1e-6 / english)
    print(f"lookup_us {lookup_us:.3f}")
    print(f"lookup_share_of_page {share:.5f}")
    print(f"format_en_us {formats['en']:.3f}")
    print(f"format_tr_us {formats['tr']:.3f}")
    print(f"format_tr_en_ratio {formats['tr'] / formats['en']:.2f}")


if __name__ == "__main__":
    main()
