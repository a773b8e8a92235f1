"""Numbers in the reader's language (#26): a Turkish page writes 4.096, %87,3 and 4,90, an English page 4,096, 87.3%
and 4.90, in sentences, in lists and in figures; and no Turkish sentence glues a suffix to a number.
"""

from __future__ import annotations

import json
import pickle
import random
import re
import string
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from babel.numbers import format_decimal, format_percent
from conftest import APP, open_page
from streamlit.testing.v1 import AppTest
from test_i18n import PO, forms, read, shown

from vitviz import i18n
from vitviz.i18n import Message
from vitviz.ui import steps

TURKISH = i18n.number_style("tr")
ENGLISH = i18n.number_style("en")


# --- the style --------------------------------------------------------------------------------------------------


def test_turkish_numbers_are_written_as_babel_writes_them():
    """The same digits as the English spec gives, with the symbols and the percent sign of Turkish's CLDR data."""
    rng = random.Random(0)
    values = [rng.uniform(-1, 1) * 10 ** rng.randint(-3, 7) for _ in range(400)] + [0.0, 1.0, 4096, 1000, 999999]
    shares = [rng.uniform(-1, 1) for _ in range(400)] + [0.0, 1.0, 0.873, 0.05]
    cases = [(value, spec, lambda v, p=pattern: format_decimal(v, p, locale="tr")) for value in values
             for spec, pattern in ((",.2f", "#,##0.00"), (",.0f", "#,##0"), (",.3f", "#,##0.000"))]
    cases += [(share, spec, lambda v, p=pattern: format_percent(v, p, locale="tr")) for share in shares
              for spec, pattern in ((".1%", "%#,##0.0"), (".0%", "%#,##0"))]
    for value, spec, babel in cases:
        if format(Decimal(repr(value)), spec) != format(value, spec):
            continue  # a tie in the decimal digits: Babel rounds the decimal, Python the binary value
        assert TURKISH.format(value, spec) == babel(value), (value, spec)
    assert TURKISH.format(4096, ",") == "4.096" and TURKISH.format(0.873, ".1%") == "%87,3"
    assert TURKISH.format(4.898979, ".2f") == "4,90" and TURKISH.format(-0.05, ".1%") == "-%5,0"


def test_every_kind_of_spec_keeps_its_meaning():
    assert TURKISH.format(0.873, "6.1%") == " %87,3" and ENGLISH.format(0.873, "6.1%") == " 87.3%"  # padded alike
    assert TURKISH.format(3, "02d") == "03" and TURKISH.format(12, "") == "12"
    assert TURKISH.format(0.5, "") == "0,5" and TURKISH.format(0.003, "g") == "0,003"
    assert TURKISH.format(1.5e-7, ".1e") == "1,5e-07" and TURKISH.format(0.000123, ".3g") == "0,000123"
    assert TURKISH.format(0.1234, "+.1%") == "+%12,3"
    assert TURKISH.format(np.float32(0.25), ".2f") == "0,25" and TURKISH.format(np.int64(12345), ",") == "12.345"
    assert TURKISH.format(True, "") == "True" and TURKISH.format("1,5", "") == "1,5"  # words stay as they are
    for value in (0.873, -3.25, 4096, 123456.789, 1e-9, np.float32(2.5)):
        for spec in ("", ",", ".2f", ",.1f", ".1%", ".0%", "6.1%", ".3g", "g", ".1e"):
            assert ENGLISH.format(value, spec) == format(value, spec)  # English is Python's own


def test_a_turkish_sentence_writes_its_numbers_the_turkish_way():
    turkish = i18n.translations("tr")
    sentence = turkish.gettext("Prediction: **{label}** with probability **{probability:.1%}**.")
    assert isinstance(sentence, i18n.Text)
    assert sentence.format(label="kedi", probability=0.873) == "Tahmin: **%87,3** olasılıkla **kedi**."
    counted = turkish.ngettext("{count:,} class.", "{count:,} classes.", 1000).format(count=1000)
    assert counted == "1.000 sınıf."
    assert turkish.gettext("{count:,} class.").format_map({"count": 4096}) == "4.096 sınıf."
    assert type(pickle.loads(pickle.dumps(sentence))) is str  # a copy in a cache or session is a plain str
    english = i18n.translations("en").gettext("{count:,} class.")
    assert english.format(count=4096) == "4,096 class."
    message = Message("The checkpoint holds {count:,} tensors, more than this app's limit of {limit:,}.", count=12345,
                      limit=1000)
    assert str(message) == "The checkpoint holds 12,345 tensors, more than this app's limit of 1,000."
    assert "12.345" in message.translated(turkish) and "1.000" in message.translated(turkish)


# --- suffixes after placeholders ------------------------------------------------------------------------------

# A {placeholder} followed by a suffix: "{batch}'lik", "{last}'e", "**{n}**'in", "{n}inci". Which suffix a number
# takes depends on how it is read aloud (16'lık, 10'dan, 9'a), so no Turkish sentence may write one.
GLUED_SUFFIX = re.compile(r"\}[*_`]*['’]?[a-zA-ZçğıöşüÇĞİÖŞÜ]")
# Numbers of every final digit, and the round numbers whose suffix follows their last word (on, yirmi, yüz, bin).
NUMBERS = [*range(10), *range(10, 101, 10), 1000, 16, 1369]


def glued_suffixes(catalogue) -> list[str]:
    return [text for message in catalogue if message.id for text in forms(message.string) if GLUED_SUFFIX.search(text)]


def test_no_turkish_sentence_glues_a_suffix_to_a_placeholder():
    found = glued_suffixes(read(PO))
    assert not found, "write a pattern that needs no suffix (README, 'Languages'): " + str(found)


def test_no_turkish_sentence_puts_a_comma_after_a_decimal():
    """"silme 0,03, ekleme 0,97" reads as a list of four numbers: after a decimal number Turkish separates with ";"."""
    after_decimal = re.compile(r"\{\w+:[^}]*[efg%]\}[*_`]*, ")
    found = [text for message in read(PO) if message.id for text in forms(message.string) if after_decimal.search(text)]
    assert not found, found


def test_the_suffix_check_finds_the_patterns_that_broke():
    broken = ["{batch}'lik yığınlar", "0'dan {last}'e", "{ratio:,.0f}'e 1 oranında", "**{count}**'ü", "{n}inci"]
    fine = ["{batch} görüntülük yığınlar", "0 ile {last} arası", "{ratio:,.0f}:1 oranında", "{layer}. katmanda",
            "{p}×{p} piksellik", "{size:,} MB'tan"]
    assert all(GLUED_SUFFIX.search(text) for text in broken)
    assert not any(GLUED_SUFFIX.search(text) for text in fine)


@pytest.mark.parametrize("number", NUMBERS)
def test_every_turkish_sentence_reads_right_after_any_number(number):
    """Each sentence with every placeholder filled by `number`, written the Turkish way: no letter or apostrophe
    (no suffix) follows it, whatever its last digit."""
    for message in read(PO):
        for text in forms(message.string) if message.id else ():
            filled, ends = "", []
            for literal, name, spec, conversion in string.Formatter().parse(text):
                filled += literal
                if name is not None:
                    filled += repr(number) if conversion == "r" else TURKISH.format(number, spec or "")
                    ends.append(len(filled))
            for end in ends:
                assert not re.match(r"[*_`]*['’a-zA-ZçğıöşüÇĞİÖŞÜ]", filled[end:]), (text, filled)


# --- Turkish pages ----------------------------------------------------------------------------------------------

# A number written the English way: grouped thousands (4,096), a decimal point (4.90), a percent sign after (87%).
ENGLISH_NUMBER = re.compile(r"(?<![\w.,])(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d,])|\d+\.\d+(?![\d.])|\d+(?=%))%?")
STEP_KEYS = {step.key for step in steps.STEPS}  # 10.4 names a step in every language


def in_turkish(english: str) -> str:
    """An English-written number as Turkish writes it: 4,096 -> 4.096, 4.90 -> 4,90, 87.3% -> %87,3."""
    digits = english.translate(str.maketrans({",": ".", ".": ","}))
    return "%" + digits[:-1] if digits.endswith("%") else digits


def page_texts(language: str, pages: list[str]) -> dict[str, tuple[list[str], list[dict]]]:
    """Each page's texts and its figures' layouts, in one session of `language` (the built-in model)."""
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params["lang"] = language
    at.run()
    found = {}
    for page in pages:
        open_page(at, page)
        assert not at.exception, [e.value for e in at.exception]
        figures = [json.loads(chart.proto.spec)["layout"] for chart in at.get("plotly_chart")]
        found[page] = (shown(at), figures)
    return found


PAGES = ["pages/welcome.py", "pages/step_3.py", "pages/step_13.py"]


@pytest.fixture(scope="module")
def both_languages():
    return page_texts("en", PAGES), page_texts("tr", PAGES)


def english_numbers(texts: list[str]) -> set[str]:
    """The numbers a page writes in English style in its prose (not in its formulas, code or shape lines)."""
    prose = [re.sub(r"`[^`]*`|\$\$.*?\$\$", " ", text, flags=re.S) for text in texts]
    return {number for text in prose for number in ENGLISH_NUMBER.findall(text) if number not in STEP_KEYS}


@pytest.mark.parametrize("page", PAGES)
def test_a_turkish_page_writes_every_number_the_turkish_way(both_languages, page):
    (english_texts, english_figures), (turkish_texts, turkish_figures) = both_languages[0][page], both_languages[1][page]
    numbers = english_numbers(english_texts)
    assert numbers, f"{page} shows no number in English style to compare"
    turkish = "\n".join(turkish_texts)
    # (Turkish's own 1.000 or 0,532 look English out of context, so the English page says what to look for.)
    left_english = sorted(n for n in numbers if re.search(rf"(?<![\d.,]){re.escape(n)}(?![\d%])", turkish))
    assert not left_english, f"English-style numbers on the Turkish {page}: {left_english}"
    missing = sorted(number for number in numbers if in_turkish(number) not in turkish)
    assert not missing, f"the Turkish {page} does not write these as {[in_turkish(n) for n in missing]}: {missing}"
    assert not re.search(r"\d%", turkish), "a percent sign after a number"
    assert all(layout.get("separators") == ",." for layout in turkish_figures), "plotly writes 0.5 and 4,096"
    assert all(layout.get("separators") == ".," for layout in english_figures)


def test_the_thousands_the_issue_saw_are_written_the_turkish_way(both_languages):
    """Step 3 says how many tokens one per pixel would make: 4,096 for the built-in 64×64 input."""
    english, turkish = both_languages[0]["pages/step_3.py"][0], both_languages[1]["pages/step_3.py"][0]
    assert any("4,096" in text for text in english) and not any("4,096" in text for text in turkish)
    assert any("4.096 belirteç" in text for text in turkish)
    step_13 = both_languages[1]["pages/step_13.py"][0]
    assert any(re.search(r"Tahmin: \*\*%\d+,\d\*\*", text) for text in step_13)  # "Tahmin: **%100,0** olasılıkla"


def test_every_figure_reaches_the_page_through_show_figure():
    """drawing.show_figure gives a figure the reader's separators; a figure drawn around it would write 0.5."""
    root = Path(__file__).resolve().parent.parent
    around = [str(path.relative_to(root)) for path in [*root.glob("pages/*.py"), *root.glob("vitviz/ui/**/*.py")]
              if "plotly_chart(" in path.read_text(encoding="utf-8") and path.name != "drawing.py"]
    assert not around, around
