"""The languages vitviz speaks: Python's gettext catalogues, and text the library says to a person.

The catalogues are `locales/<language>/LC_MESSAGES/vitviz.po` (what translators edit) compiled to
`.mo` (what gettext reads); the README's "Add a language" section has the pybabel commands. Each
language's catalogue is read once per process (`translations`), then every lookup is a dict lookup.

Nothing here imports Streamlit or knows about sessions. Every visitor shares one process, so no
language is installed globally: the app picks each session's catalogue (`vitviz/ui/i18n.py`). Library
code that says something to a person (an error, a note) returns or raises a `Message`: it reads as
English wherever a plain string is expected, and the app shows it in the visitor's language with
`vitviz.ui.i18n.say`. Module-level constants are marked with `N_` and translated where they are shown.
"""

from __future__ import annotations

import functools
import gettext
from pathlib import Path

DOMAIN = "vitviz"
LOCALES = Path(__file__).resolve().parent / "locales"
SOURCE = "en"  # the language the code is written in: its msgids
LANGUAGES = {"en": "English", "tr": "Türkçe"}  # code -> the language's name in itself, as the switch shows it


def N_(message: str) -> str:
    """Marks `message` for extraction where it is declared; it is translated where it is shown."""
    return message


@functools.cache
def translations(language: str) -> gettext.NullTranslations:
    """The catalogue of `language`, read once per process. English is the source text itself."""
    if language not in LANGUAGES:
        raise ValueError(f"vitviz has no catalogue for {language!r}")
    if language == SOURCE:
        return gettext.NullTranslations()
    return gettext.translation(DOMAIN, LOCALES, languages=[language])


class Message(str):
    """A sentence for a person, made by code that does not know the reader's language.

    It is the English text (`str(message)`, and the message itself as a str); `translated(catalogue)` is
    the same sentence in the catalogue's language. `params` fill the text's {placeholders}; a param that is
    itself a Message is translated with it.

        raise ImageError(Message("The file is larger than {mb} MB.", mb=50))
    """

    text: str
    plural: str | None
    count: int | None
    params: dict

    def __new__(cls, text: str, /, **params) -> Message:
        return cls._make(text, None, None, params)

    @classmethod
    def _make(cls, text: str, plural: str | None, count: int | None, params: dict) -> Message:
        english = (text if plural is None or count == 1 else plural).format(**params)
        message = super().__new__(cls, english)
        message.text, message.plural, message.count, message.params = text, plural, count, params
        return message

    def __reduce__(self):  # pickle and copy rebuild it from its parts, not from the English text
        return Message._make, (self.text, self.plural, self.count, self.params)

    def translated(self, catalogue: gettext.NullTranslations) -> str:
        if self.plural is None:
            text = catalogue.gettext(self.text)
        else:
            text = catalogue.ngettext(self.text, self.plural, self.count)
        params = {name: value.translated(catalogue) if isinstance(value, Message) else value
                  for name, value in self.params.items()}
        return text.format(**params)


def message_of(exc: BaseException) -> str:
    """The text an exception was raised with: its Message if it has one, so that wrapping it keeps it translatable."""
    return exc.args[0] if len(exc.args) == 1 and isinstance(exc.args[0], str) else str(exc)


def plural_message(singular: str, plural: str, count: int, /, **params) -> Message:
    """A Message whose wording depends on `count` (passed to the text as {count})."""
    return Message._make(singular, plural, count, {"count": count, **params})


def preferred(candidates: list[str]) -> str | None:
    """The first of the browser's language tags ("tr-TR", "en") that vitviz speaks, or None."""
    for tag in candidates:
        language = tag.strip().split("-")[0].split("_")[0].lower()
        if language in LANGUAGES:
            return language
    return None


def accepted(header: str) -> list[str]:
    """An Accept-Language header's tags, most wanted first ("de;q=0.5, tr" -> ["tr", "de"])."""
    weighted = []
    for position, part in enumerate(header.split(",")):
        tag, quality = (part.strip().split(";q=") + [""])[:2]
        try:
            weight = float(quality) if quality else 1.0
        except ValueError:
            weight = 0.0
        if tag and tag != "*" and weight > 0:
            weighted.append((-weight, position, tag))
    return [tag for *_order, tag in sorted(weighted)]
