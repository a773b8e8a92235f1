"""The session's language, and the calls every UI module makes inline to speak it: `_`, `ngettext`, `say`,
`number` for a number written outside a sentence, and `glossed` for the words that open a page.

The language comes from `?lang=` in the URL, else what this session chose before (the sidebar's
switch), else the browser's language (`st.context.locale`, then the Accept-Language header), else
English; `choose_language` settles it at the start of every page run and writes it back into the URL,
so the URL keeps it across page changes and a copied link opens in the same language.

Every visitor shares one process, so nothing is installed globally: the session's catalogue is held
in a ContextVar of the run's thread, set at the start of every page run. A fragment rerun on a fresh
thread finds it unset and looks it up once from the session state. Catalogues are read once per
process (`vitviz.i18n.translations`): `_` is a dict lookup.

What `_` and `ngettext` return writes its numbers the reader's way when formatted (`vitviz.i18n.Text`):
`_("{count:,} tokens").format(count=4096)` is "4.096 belirteç" in Turkish. A number shown outside such a
sentence (a list, a metric, a figure's own text) goes through `number(value, spec)`; figures drawn through
`drawing.show_figure` get the language's `separators()`.
"""

from __future__ import annotations

import contextlib
import gettext
from contextvars import ContextVar

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from vitviz import glossary, i18n
from vitviz.i18n import LANGUAGES, SOURCE, Message

LANGUAGE_KEY = "vitviz_language"  # session_state: the session's language code
SWITCH_KEY = "language_switch"  # the sidebar's switch; LANGUAGE_KEY is the truth
QUERY_KEY = "lang"  # ?lang=tr

_catalogue: ContextVar[gettext.NullTranslations | None] = ContextVar("vitviz_catalogue", default=None)


def language() -> str:
    """The session's language code; English outside a session (scripts, tests calling code directly)."""
    if get_script_run_ctx(suppress_warning=True) is None:
        return SOURCE
    return st.session_state.get(LANGUAGE_KEY, SOURCE)


def catalogue() -> gettext.NullTranslations:
    current = _catalogue.get()
    if current is None:  # a thread that has not started a page run: a fragment's rerun, or a test
        current = i18n.translations(language())
        _catalogue.set(current)
    return current


@contextlib.contextmanager
def speaking(catalogue: gettext.NullTranslations):
    """`_` speaks `catalogue` inside the block: for work that runs outside the page run, on a thread with no
    session (a deferred download), in the language of the session that asked for it."""
    token = _catalogue.set(catalogue)
    try:
        yield
    finally:
        _catalogue.reset(token)


def _(message: str) -> str:
    """`message` in the session's language."""
    return catalogue().gettext(message)


def translator():
    """`_` bound to this run's language: for functions Streamlit may call later from another thread (a widget's
    format_func; AppTest calls it from the test's thread)."""
    return catalogue().gettext


def ngettext(singular: str, plural: str, count: int) -> str:
    """The form of `singular`/`plural` that `count` takes in the session's language."""
    return catalogue().ngettext(singular, plural, count)


def number(value, spec: str = "") -> str:
    """`value` written by the format `spec` (",", ".2f", ".1%", …) the reader's way: number(0.873, ".1%") is
    "87.3%" in English and "%87,3" in Turkish."""
    return catalogue().numbers.format(value, spec)


def number_writer():
    """`number` bound to this run's language: for figures, which write their own labels from numbers."""
    return catalogue().numbers.format


def listed(parts) -> str:
    """Items that hold numbers, joined the reader's way: "0.485, 0.456" in English, "0,485; 0,456" in Turkish."""
    return catalogue().numbers.list_separator.join(parts)


def separators() -> str:
    """The reader's decimal and thousands symbols, as plotly's `layout.separators` takes them (",." in Turkish)."""
    return catalogue().numbers.separators


def glossed(text: str) -> str:
    """`text` with the English term after the first use of each key term, in a language that has them
    (`vitviz.glossary`): for the words that open a page."""
    return glossary.glossed(text, catalogue().language)


def say(text: object) -> str:
    """What library code said, in the session's language: a `Message`, or an exception whose message is one.
    Any other text is shown as it is."""
    if isinstance(text, BaseException) and len(text.args) == 1:
        text = text.args[0]
    if isinstance(text, Message):
        return text.translated(catalogue())
    return str(text)


def browser_language() -> str:
    """The first language of the visitor's browser that vitviz speaks, or English."""
    candidates = [st.context.locale] if st.context.locale else []
    candidates += i18n.accepted(st.context.headers.get("Accept-Language") or "")
    return i18n.preferred(candidates) or SOURCE


def choose_language() -> str:
    """Settle this run's language and make `_` speak it; called first by every page run (`navigation.configure`)."""
    asked = st.query_params.get(QUERY_KEY)
    if asked in LANGUAGES:
        chosen = asked
    elif st.session_state.get(LANGUAGE_KEY) in LANGUAGES:
        chosen = st.session_state[LANGUAGE_KEY]
    else:
        chosen = browser_language()
    st.session_state[LANGUAGE_KEY] = chosen
    if asked != chosen:  # page changes drop the query string: put it back
        st.query_params[QUERY_KEY] = chosen
    _catalogue.set(i18n.translations(chosen))
    return chosen


def _switched() -> None:
    chosen = st.session_state[SWITCH_KEY]
    st.session_state[LANGUAGE_KEY] = chosen
    st.query_params[QUERY_KEY] = chosen  # the URL wins in choose_language, so it must change too


def language_switch() -> None:
    """The sidebar's switch between the languages, on every page."""
    st.session_state[SWITCH_KEY] = language()
    st.sidebar.radio(":material/translate: " + _("Language"), tuple(LANGUAGES), format_func=LANGUAGES.get,
                     horizontal=True, key=SWITCH_KEY, on_change=_switched)
