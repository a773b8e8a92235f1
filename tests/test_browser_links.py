"""Links and the story file in a real browser: a deep link on a fresh server restores its view and the URL
follows the controls; the story downloaded for the built-in model reads with the network blocked."""

from __future__ import annotations

import json
import zipfile

import pytest
import safetensors.torch
from test_browser import (  # noqa: F401 (browser: a fixture)
    SHOTS,
    assert_no_traceback,
    browser,
    settle,
    shot,
    start_server,
    stop_server,
)

from vitviz.ui import steps

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server():
    """A server of this module's own: the deep link below must be its first visit."""
    url, process = start_server({})
    yield url
    stop_server(process)


def choose(page, box: str, option: str) -> None:
    page.get_by_role("combobox", name=box).click()
    page.get_by_role("option", name=option).click()
    settle(page)


def test_a_deep_link_on_a_fresh_server_opens_its_view_and_the_url_follows_the_controls(server, browser):  # noqa: F811
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server)
    page = context.new_page()
    page.goto(f"{server}/step_10_4?image=astronaut&layer=3&head=2&query=27&utm_source=mail")
    settle(page)
    assert page.locator("h1").first.inner_text() == "10.4 · One token's context"
    assert page.get_by_role("combobox", name="Sample").input_value() == "Photo: astronaut"
    assert page.get_by_role("combobox", name="Layer").input_value() == "Layer 3 of 4"
    assert page.get_by_role("combobox", name="Head").input_value() == "Head 2 of 4"
    caption = page.get_by_text("Attention of patch 27 (row 4, col 4) over the patches (layer 3, head 2)")
    assert caption.is_visible()
    assert page.get_by_text("patch 27 (row 4, col 4)", exact=True).is_visible()  # "Query: patch 27 …"
    assert_no_traceback(page)
    shot(page, "deep_link_step_10_4")
    page.wait_for_function("location.search === '?image=astronaut&layer=3&head=2&query=27&lang=en'", timeout=10_000)

    entries = page.evaluate("history.length")
    for layer in ("2", "4", "1"):
        choose(page, "Layer", f"Layer {layer} of 4")
        wanted = ("?image=astronaut&head=2&query=27&lang=en" if layer == "1"
                  else f"?image=astronaut&layer={layer}&head=2&query=27&lang=en")
        page.wait_for_function(f"location.search === {wanted!r}", timeout=10_000)
    assert page.evaluate("history.length") == entries, "moving a control adds no history entry"

    page.frame_locator("iframe[srcdoc*='Copy link']").locator("#copy").click()
    page.wait_for_timeout(300)
    assert page.evaluate("navigator.clipboard.readText()") == f"{server}/step_10_4?image=astronaut&head=2&query=27&lang=en"

    page.get_by_role("button", name="10.5 · Every token's context").click()
    # The new page's URL arrives with its run; on a busy machine after the first settle.
    page.wait_for_url(f"{server}/step_10_5?image=astronaut&head=2&query=27&lang=en", timeout=30_000)
    settle(page)
    assert page.get_by_text("The outlined row is the query chosen on step 10.4: patch 27 (row 4, col 4).").is_visible()

    with page.expect_download(timeout=60_000) as download:
        page.get_by_role("button", name="Download the numbers").click()
    archive = zipfile.ZipFile(download.value.path())
    assert json.loads(archive.read("trace.json"))["image"] == "Photo: astronaut"
    assert "layers.3.attn" in safetensors.torch.load(archive.read("trace.safetensors"))
    context.close()


def test_the_story_downloads_and_reads_offline(server, browser, tmp_path):  # noqa: F811
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.goto(f"{server}/story?image=cat&layer=2&head=3")
    page.get_by_role("button", name="Download this story").wait_for(timeout=60_000)  # the page may still be drawing
    with page.expect_download(timeout=180_000) as download:
        page.get_by_role("button", name="Download this story").click()
    path = tmp_path / "story.html"
    download.value.save_as(path)
    context.close()

    offline = browser.new_context(viewport={"width": 1300, "height": 1000}, offline=True)
    requests = []
    offline.on("request", lambda request: requests.append(request.url))
    offline.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort())
    page = offline.new_page()
    page.goto(path.as_uri())
    assert "Photo: cat" in page.title() and "built-in shapes model" in page.title()
    body = page.locator("body").inner_text()
    assert "vitviz 0." in body and "layer 2, head 3" in body
    first_with_figures = [step.key for step in steps.STEPS].index("3")
    for index, step in enumerate(steps.STEPS):
        assert page.get_by_role("heading", name=step.label, exact=True).is_visible(), step.key
        if index >= first_with_figures:
            assert page.locator(f"#step-{step.slug} .figure").first.is_visible(), step.key
    assert page.locator(".chart .main-svg").count() >= 20, "plotly.js, inside the file, drew the charts"
    assert page.locator("math").count() >= 15, "the formulas, as MathML"
    page.evaluate("document.getElementById('step-step_10_4').scrollIntoView()")
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "story_offline_step_10_4.png"))  # the viewport: the whole story is very tall
    leaving = [url for url in requests if not url.startswith("file:")]
    assert leaving == [], leaving
    offline.close()
