"""Five pages in Turkish in a real browser (#19): a Turkish browser gets Turkish on its first visit, the URL's
?lang=tr survives the top navigation and the next buttons, and the sidebar's switch turns the page back to English."""

from __future__ import annotations

import pytest
from test_browser import assert_no_traceback, browser, open_from_menu, settle, shot, start_server, stop_server  # noqa: F401

pytestmark = pytest.mark.browser


def heading(page) -> str:
    return page.locator("h1").first.inner_text()


def test_a_turkish_browser_walks_five_pages_in_turkish(browser):  # noqa: F811
    url, process = start_server({})
    try:
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="tr-TR")
        page = context.new_page()
        page.goto(url)
        settle(page)
        assert heading(page) == "vitviz: bir Vision Transformer'ın nasıl düşündüğünü görün"
        assert page.url.endswith("?lang=tr")
        shot(page, "tr_welcome")

        page.get_by_role("button", name="0 · Veri ile başlayın").click()
        settle(page)
        assert heading(page) == "0 · Veri" and "lang=tr" in page.url
        assert page.get_by_text("Bir ViT örneklerden öğrenir").count() == 1

        open_from_menu(page, "Bir kodlayıcı katmanının içi", "10.1 · Q, K ve V")
        assert heading(page) == "10.1 · Q, K ve V" and "/step_10_1?lang=tr" in page.url
        assert page.get_by_text("Üçü ne işe yarar?").count() == 1
        page.get_by_role("button", name="10.2 · Dikkat skorları").first.click()
        settle(page)
        assert heading(page) == "10.2 · Dikkat skorları" and "/step_10_2?lang=tr" in page.url
        shot(page, "tr_step_10_2")

        open_from_menu(page, "Keşfet", "Model")
        assert page.get_by_text("Şu an kullanılan").count() == 1 and "/model?lang=tr" in page.url
        open_from_menu(page, "Eğitim", "Eğitim stüdyosu")
        assert heading(page) == "Eğitim stüdyosu" and "/training?lang=tr" in page.url
        assert page.get_by_role("button", name="Eğitimi başlat").count() == 1
        assert_no_traceback(page)
        shot(page, "tr_training")

        page.get_by_text("English", exact=True).first.click()
        settle(page)
        assert heading(page) == "Training studio" and page.url.endswith("/training?lang=en")
        context.close()
    finally:
        stop_server(process)
