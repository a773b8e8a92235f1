"""A training run in a real browser: it trains on while its tab shows other pages, and stops when the tab closes.

Only a browser runs the check-in fragment's timer (AppTest cannot), so this is where the heartbeat is
seen end to end. The server runs with an 8-second heartbeat, so the tab checks in every 2.7 seconds;
shorter, and a busy machine's slow page could outlast it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from test_browser import browser, open_from_menu, settle, start_server, stop_server  # noqa: F401 (browser: a fixture)

pytestmark = pytest.mark.browser
HEARTBEAT = 8  # seconds


def cpu_cores(pid: int, seconds: float = 2.0) -> float:
    """How many cores the process `pid` kept busy, on average, over the next `seconds`."""

    def used() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    before, started = used(), time.monotonic()
    time.sleep(seconds)
    return (used() - before) / (time.monotonic() - started)


def test_a_run_trains_on_other_pages_and_stops_when_its_tab_closes(browser):  # noqa: F811
    url, process = start_server({"VITVIZ_TRAINING_HEARTBEAT_SECONDS": str(HEARTBEAT)})
    try:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.goto(f"{url}/training")
        settle(page)
        page.get_by_label("Steps").fill("5000")
        page.get_by_role("button", name="Start training").click()
        page.get_by_text("Training · step").first.wait_for(timeout=60_000)

        open_from_menu(page, "Patches and tokens", "3 · Cut into patches")
        page.wait_for_timeout(2.5 * HEARTBEAT * 1000)  # no rerun of the page: only the tab's check-in keeps the run
        open_from_menu(page, "Training", "Training studio")
        page.get_by_text("Training · step").first.wait_for(timeout=30_000)
        assert "not heard from" not in page.locator("body").inner_text()

        context.close()  # the tab closes
        deadline = time.monotonic() + 30
        while (busy := cpu_cores(process.pid)) > 0.15:
            assert time.monotonic() < deadline, f"the server still keeps {busy:.2f} cores busy"
    finally:
        stop_server(process)
