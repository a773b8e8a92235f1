"""The app in a real browser: Debian's Chromium, driven by Playwright, against a live server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

playwright_api = pytest.importorskip("playwright.sync_api")

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
SHOTS = ROOT / "screenshots"
pytestmark = pytest.mark.browser

if not Path(CHROMIUM).exists():  # CI installs it; a developer without it is told, not silently passed
    pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium", pytrace=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(env: dict[str, str]):
    """A Streamlit server running app.py on a free port, once it answers its health check: (url, process)."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.address", "127.0.0.1"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("the Streamlit server did not start")
    return url, process


def stop_server(process) -> None:
    process.terminate()
    log = process.communicate(timeout=20)[0].decode(errors="replace")
    assert "Traceback" not in log.replace("vitviz: rendering", ""), log[-3000:]


@pytest.fixture(scope="module")
def server():
    url, process = start_server({})
    yield url
    stop_server(process)


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    yield context.new_page()
    context.close()


# The script has finished and nothing on the page is left from its previous run (the status widget can take a
# moment to appear after a click, so its absence alone says little on a busy machine).
FINISHED = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  return app && app.getAttribute('data-test-script-state') === 'notRunning'
    && !document.querySelector('[data-stale="true"]') && !document.querySelector('[data-testid="stStatusWidget"]');
}"""


def settle(page) -> None:
    """Wait until the script has finished running and the page has drawn."""
    page.wait_for_selector("h1", timeout=60_000)
    page.wait_for_timeout(400)
    page.wait_for_function(FINISHED, timeout=120_000, polling=250)
    page.wait_for_timeout(600)


def shot(page, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def open_from_menu(page, section: str, label: str) -> None:
    """Open a page from the top navigation, in the same session (a page.goto would start a new one)."""
    page.get_by_text(section, exact=True).first.click()
    page.get_by_role("menuitem", name=label).first.click()
    settle(page)


def assert_no_traceback(page) -> None:
    body = page.locator("body").inner_text()
    assert "Traceback" not in body and "Error:" not in body, body[:2000]
    assert page.locator('[data-testid="stException"]').count() == 0


def upload(page, path: Path) -> None:
    page.get_by_text("Upload", exact=True).first.click()
    page.wait_for_selector('input[type="file"]', state="attached", timeout=20_000)
    page.locator('input[type="file"]').first.set_input_files(str(path))
    page.wait_for_timeout(1500)
    settle(page)


def test_a_deep_link_on_a_fresh_server_gets_the_whole_app(server, page):
    # Must stay the first test of the module: the server has served no session yet.
    page.goto(f"{server}/step_12")
    settle(page)
    assert page.locator("h1").first.inner_text() == "12 · The CLS output"
    assert page.get_by_text("Inside one encoder layer").count() >= 1, "the top navigation is missing"
    assert page.get_by_role("button", name="13 · Class probabilities").count() == 1
    assert_no_traceback(page)


def test_the_landing_page_and_a_step_page_render(server, page):
    page.goto(server)
    settle(page)
    assert "vitviz" in page.locator("h1").first.inner_text()
    assert_no_traceback(page)
    shot(page, "welcome")
    page.get_by_role("button", name="Start with 0").click()
    settle(page)
    assert page.locator("h1").first.inner_text().startswith("0 · ")
    shot(page, "step_0")


def test_an_uploaded_photo_reaches_every_step(server, page, tmp_path):
    from conftest import expected_prediction, photo_bytes

    payload = photo_bytes()
    path = tmp_path / "holiday.jpg"
    path.write_bytes(payload)
    page.goto(f"{server}/step_13")
    settle(page)
    upload(page, path)
    assert page.get_by_text("holiday.jpg").count() >= 1
    assert f"Prediction: {expected_prediction(payload)}" in page.locator("body").inner_text()
    assert_no_traceback(page)
    shot(page, "step_13_upload")
    # The chosen image stays while the user moves on with the next button.
    page.get_by_role("button", name="14 · Training").click()
    settle(page)
    assert page.get_by_text("holiday.jpg").count() >= 1
    assert_no_traceback(page)


def test_a_broken_upload_gives_one_sentence(server, page, tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    page.goto(f"{server}/step_3")
    settle(page)
    upload(page, path)
    alerts = page.locator('[data-testid="stAlert"]')
    assert alerts.count() == 1
    text = alerts.first.inner_text().strip()
    assert text.endswith(".") and "\n" not in text
    assert_no_traceback(page)
    assert page.locator("h1").first.inner_text().startswith("3 · ")


def test_clicking_a_patch_picks_the_query(server, page):
    page.goto(f"{server}/step_10_4")
    settle(page)
    assert "Query: CLS" in page.locator("body").inner_text()
    frame = page.frame_locator('iframe[title*="streamlit_image_coordinates"]').first
    picture = frame.locator("img").first
    picture.wait_for(timeout=20_000)
    box = picture.bounding_box()
    picture.click(position={"x": box["width"] * 0.1, "y": box["height"] * 0.1})
    page.wait_for_timeout(1000)
    settle(page)
    body = page.locator("body").inner_text()
    assert "Query: patch 0 (row 1, col 1)" in body, body[:1500]
    assert_no_traceback(page)
    shot(page, "step_10_4_query")


def wait_for_outcome(page, name: str) -> str:
    """Wait until the upload of `name` has shown its pages ("image") or one sentence ("sentence")."""
    for _ in range(120):
        settle(page)
        if page.locator('[data-testid="stAlert"]').count():
            return "sentence"
        captions = page.locator('[data-testid="stSidebar"] [data-testid="stImageCaption"]')
        if captions.count() and captions.first.inner_text().strip() == name:
            return "image"
        page.wait_for_timeout(500)
    raise AssertionError(f"{name}: neither its pages nor a sentence appeared")


def test_every_corpus_file_through_the_real_uploader(server, page, tmp_path):
    import corpus

    page.goto(f"{server}/step_3")
    settle(page)
    files = [(name, payload) for name, payload, _ in corpus.valid()] + list(corpus.invalid())
    for name, payload in files:
        path = tmp_path / name
        path.write_bytes(payload)
        if name == files[0][0]:
            upload(page, path)
        else:
            page.locator('input[type="file"]').first.set_input_files(str(path))
            page.wait_for_timeout(800)
            settle(page)
        outcome = wait_for_outcome(page, name)
        assert_no_traceback(page)
        assert page.locator("h1").first.inner_text().startswith("3 · "), name
        if outcome == "sentence":
            alerts = page.locator('[data-testid="stAlert"]')
            assert alerts.count() == 1, name
            text = alerts.first.inner_text().strip()
            assert text.endswith(".") and "\n" not in text, (name, text)
    shot(page, "step_3_after_corpus")


def test_eight_sessions_each_see_only_their_own_image(server, browser, tmp_path):
    import io

    from conftest import expected_prediction
    from PIL import Image

    from vitviz import data

    images, labels = data.generate(8, seed=4242)
    sessions = []
    for i in range(8):
        buffer = io.BytesIO()
        Image.fromarray(images[i]).resize((160, 160), Image.Resampling.NEAREST).save(buffer, format="PNG")
        path = tmp_path / f"session-{i}.png"
        path.write_bytes(buffer.getvalue())
        context = browser.new_context(viewport={"width": 1200, "height": 900})
        page = context.new_page()
        page.goto(f"{server}/step_13")
        sessions.append((context, page, path))
    for _, page, _ in sessions:
        settle(page)
        page.get_by_text("Upload", exact=True).first.click()
    for _, page, path in sessions:  # every upload is in flight before any result is read
        page.wait_for_selector('input[type="file"]', state="attached", timeout=20_000)
        page.locator('input[type="file"]').first.set_input_files(str(path))
    for context, page, path in sessions:
        settle(page)
        body = page.locator("body").inner_text()
        assert path.name in body
        assert f"Prediction: {expected_prediction(path.read_bytes())}" in body, (path.name, body[:600])
        assert_no_traceback(page)
        context.close()


def test_the_attention_explorer_follows_a_clicked_patch(server, page):
    page.goto(f"{server}/explorer")
    settle(page)
    assert page.locator("h1").first.inner_text() == "Attention explorer"
    assert "Query: CLS" in page.locator("body").inner_text()
    frame = page.frame_locator('iframe[title*="streamlit_image_coordinates"]').first
    picture = frame.locator("img").first
    picture.wait_for(timeout=20_000)
    box = picture.bounding_box()
    picture.click(position={"x": box["width"] * 0.95, "y": box["height"] * 0.95})  # the last patch
    page.wait_for_timeout(1000)
    settle(page)
    body = page.locator("body").inner_text()
    assert "Query: patch" in body and "(row 8, col 8)" in body, body[:1500]
    page.get_by_role("tab", name="Occlusion").click()
    page.wait_for_timeout(500)
    assert "patches hidden" in page.locator("body").inner_text()
    assert_no_traceback(page)
    shot(page, "explorer_query")


def test_a_preset_downloads_with_progress_and_every_page_follows_it(hub_checkpoints, page, tmp_path):
    # The Hub is the tests' stand-in on 127.0.0.1 (tests/helpers/fake_hub.py); its ViT-B/16 preset is
    # shaped like the real one where the pages care: 224 pixels, 16-pixel patches, 12 heads, 1,000 classes.
    from helpers.fake_hub import FakeHub

    repos = hub_checkpoints[0]
    google = "google/vit-base-patch16-224"
    repos[google].seconds_per_chunk = 0.02  # slow enough to watch the progress bar
    hub = FakeHub(repos).start()
    url, process = start_server({"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "hf"),
                                 "HF_HUB_DISABLE_TELEMETRY": "1", "HF_TOKEN": ""})
    try:
        page.goto(url)
        settle(page)
        page.get_by_role("button", name="Use").first.click()
        page.wait_for_selector("text=/Downloading google\\/vit-base-patch16-224: [0-9.]+ of [0-9.]+ MB/",
                               timeout=30_000)
        shot(page, "preset_progress")
        settle(page)
        page.wait_for_selector("text=1,000 output classes", timeout=60_000)
        assert_no_traceback(page)
        open_from_menu(page, "Patches and tokens", "3 · Cut into patches")
        assert "A 14×14 grid of 16×16 patches" in page.locator("body").inner_text()
        open_from_menu(page, "Inside one encoder layer", "10.4 · One token's context")
        page.wait_for_selector("text=each of the 197 tokens", timeout=10_000)
        shot(page, "preset_step_10_4")
        open_from_menu(page, "Output", "13 · Class probabilities")
        body = page.locator("body").inner_text()
        assert "Top 5:" in body and "the other 990 classes" in page.content()
        assert_no_traceback(page)
        shot(page, "preset_step_13")
    finally:
        repos[google].seconds_per_chunk = 0.0
        stop_server(process)
        hub.stop()
    assert google in {request.path.split("/api/models/")[-1] for request in hub.requests if "/api/models/" in request.path}


def test_a_model_with_registers_shows_them_and_its_token_norms(hub_checkpoints, page, tmp_path):
    # DINOv2 with 4 registers from the tests' stand-in Hub: step 7 names every special token, and the attention
    # explorer's Token norms tab draws the norms of all 261 tokens.
    from helpers.fake_hub import FakeHub

    hub = FakeHub(hub_checkpoints[0]).start()
    url, process = start_server({"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "hf"),
                                 "HF_HUB_DISABLE_TELEMETRY": "1", "HF_TOKEN": ""})
    try:
        page.goto(url)
        settle(page)
        page.locator(".st-key-preset_welcome_facebook-dinov2-with-registers-small button").first.click()
        page.wait_for_selector("text=trained without labels", timeout=60_000)
        open_from_menu(page, "Patches and tokens", "7 · Add the CLS token")
        body = page.locator("body").inner_text()
        assert "This model puts 5 special tokens in front of the patches" in body and "registers (DINOv2" in body
        assert_no_traceback(page)
        shot(page, "registers_step_7")
        open_from_menu(page, "Explore", "Attention explorer")
        page.get_by_role("button", name="reg. 3").click()
        settle(page)
        assert "Query: register 3" in page.locator("body").inner_text()
        page.get_by_role("tab", name="Token norms").click()
        page.wait_for_selector("text=The rule for “high-norm”.", timeout=30_000)  # the tab's last words: all drawn
        body = page.locator("body").inner_text()
        assert "This model has 4 registers" in body and "The rule for “high-norm”." in body
        assert_no_traceback(page)
        shot(page, "registers_token_norms")
    finally:
        stop_server(process)
        hub.stop()
