"""The guide's English words beside vitviz's Turkish ones (#26): each key term's English at its first use on a page,
and the glossary under the notation."""

from __future__ import annotations

from conftest import APP, open_page
from streamlit.testing.v1 import AppTest
from test_i18n import PO, forms, read

from vitviz import glossary
from vitviz.glossary import glossed


def test_the_first_use_of_each_term_gets_its_english_word():
    text = "Görüntü yamalara bölünür; her yama bir belirteç olur ve belirteçler dikkatin içinden geçer."
    assert glossed(text, "tr") == ("Görüntü yamalara (patch) bölünür; her yama bir belirteç (token) olur ve belirteçler "
                                   "dikkatin (attention) içinden geçer.")


def test_a_term_of_several_words_is_one_term():
    text = "Konum gömmeleri eklenir; sonra her gömme ve yama gömmeleri."
    assert glossed(text, "tr") == ("Konum gömmeleri (position embedding) eklenir; sonra her gömme (embedding) ve yama "
                                   "gömmeleri (patch embedding).")


def test_code_math_links_doubles_and_glosses_already_there_are_left_alone():
    assert glossed("`yama` ve $yama$ ve [x](https://yama.example) sonra yama", "tr") == (
        "`yama` ve $yama$ ve [x](https://yama.example) sonra yama (patch)")
    assert glossed("belirteç (token) başına", "tr") == "belirteç (token) başına"
    assert glossed("belirteç belirteç karşılaştırılır; her belirteç", "tr") == (
        "belirteç belirteç karşılaştırılır; her belirteç (token)")
    assert glossed("dikkat ettiği belirteçler", "tr") == "dikkat ettiği belirteçler (token)"  # the verb, not the term


def test_english_and_languages_without_terms_are_unchanged():
    text = "Each patch becomes a token."
    assert glossed(text, "en") == text and glossed(text, "xx") == text and glossed("", "tr") == ""


def test_every_term_finds_its_own_word_and_the_catalogue_uses_it():
    turkish = " ".join(text for message in read(PO) if message.id for text in forms(message.string))
    for term in glossary.TERMS["tr"]:
        assert f"({term.english})" in glossed(term.word, "tr"), term
        assert glossary._pattern(term).search(turkish), f"the catalogue never writes {term.word}"


def test_a_turkish_step_page_names_its_terms_in_english_once_and_shows_the_glossary():
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params["lang"] = "tr"
    at.run()
    open_page(at, "pages/step_10_1.py")
    assert not at.exception, [e.value for e in at.exception]
    texts = [str(element.value) for element in at.markdown]
    header = next(text for text in texts if "sorgu (query)" in text)
    assert "anahtar (key)" in header and "değer (value) vektörü" in header and header.count("(token)") == 1
    notation = next(text for text in texts if "| simge | anlamı |" in text)
    assert "**Türkçe ve İngilizce:**" in notation and "yama = patch" in notation and "başlık = head" in notation
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params["lang"] = "en"
    at.run()
    open_page(at, "pages/step_10_1.py")
    assert not any("(query)" in str(element.value) or "Türkçe" in str(element.value) for element in at.markdown)
