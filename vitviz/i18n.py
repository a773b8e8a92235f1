"""The languages vitviz speaks: Python's gettext catalogues, and text the library says to a person.

The catalogues are `locales/<language>/LC_MESSAGES/vitviz.po` (what translators edit) compiled to
`.mo` (what gettext reads); the README's "Add a language" section has the pybabel commands. Each
language's catalogue is read once per process (`translations`), then every lookup is a dict lookup.

Nothing here imports Streamlit or knows about sessions. Every visitor shares one process, so no
language is installed globally: the app picks each session's catalogue (`vitviz/ui/i18n.py`). Library
code that says something to a person (an error, a note) returns or raises a `Message`: it reads as
English wherever a plain string is expected, and the app shows it in the visitor's language with
`vitviz.ui.i18n.say`. Module-level constants are marked with `N_` and translated where they are shown.

Numbers are written the reader's way (4.096, %87,3 and 4,90 in Turkish): a catalogue's sentences are `Text`,
whose `.format` hands each number to its language's `NumberStyle`, so `_("… {count:,} …").format(count=n)` needs
nothing more; a number outside a sentence goes through `NumberStyle.format` (`vitviz.ui.i18n.number`).
"""

from __future__ import annotations

import functools
import gettext
import numbers
import re
import string
from pathlib import Path

import babel

DOMAIN = "vitviz"
LOCALES = Path(__file__).resolve().parent / "locales"
SOURCE = "en"  # the language the code is written in: its msgids
LANGUAGES = {"en": "English", "tr": "Türkçe"}  # code -> the language's name in itself, as the switch shows it


def N_(message: str) -> str:
    """Marks `message` for extraction where it is declared; it is translated where it is shown."""
    return message


# --- numbers -----------------------------------------------------------------------------------------------

# A format spec, split where the width goes: padding is applied after the symbols change.
_SPEC = re.compile(r"(?P<align>.?[<>=^])?(?P<sign>[-+ ]?[z#]*)(?P<zero>0?)(?P<width>\d*)(?P<rest>.*)", re.DOTALL)


class NumberStyle:
    """How one language writes numbers: its decimal and group symbols, its minus sign and where its percent sign
    goes, from the Unicode CLDR through Babel (Turkish: 4.096, 4,90, %87,3, -%5,0).

    `format(value, spec)` takes the spec a sentence gives (",", ".2f", ".1%", "6.1%", ".3g", …): Python writes the
    digits as the English text would (the same rounding, every kind of spec), and the symbols are then this
    language's. Both of vitviz's languages group digits in threes, as Python does; a language that groups otherwise
    is refused here rather than written wrong.
    """

    def __init__(self, language: str) -> None:
        locale = babel.Locale.parse(language)
        symbols = locale.number_symbols["latn"]
        if locale.decimal_formats[None].grouping != (3, 3):
            raise ValueError(f"{language} does not group digits in threes; NumberStyle would write its numbers wrong")
        self.decimal, self.group, self.minus = symbols["decimal"], symbols["group"], symbols["minusSign"]
        percent = locale.percent_formats[None]  # affixes of the positive and the negative form
        self.percent_prefix = tuple(affix.replace("-", self.minus) for affix in percent.prefix)
        self.percent_suffix = tuple(affix.replace("-", self.minus) for affix in percent.suffix)
        self.english = (self.decimal, self.group, self.minus, self.percent_prefix, self.percent_suffix) == (
            ".", ",", "-", ("", "-"), ("%", "%"))
        self.separators = self.decimal + self.group  # plotly's layout.separators: decimal, then thousands
        self.list_separator = "; " if self.decimal == "," else ", "  # 0,485; 0,456 rather than 0,485, 0,456
        self._symbols = str.maketrans({".": self.decimal, ",": self.group, "-": self.minus})
        self.formatter = _NumberFormatter(self)
        self.text = type("Text", (Text,), {"__slots__": (), "style": self})

    def format(self, value, spec: str = "") -> str:
        """`value` written by `spec` (Python's format spec) in this language; anything but a number as format does."""
        if self.english or not is_number(value):
            return format(value, spec)
        parts = _SPEC.fullmatch(spec)
        if parts["width"] and not parts["zero"]:  # pad the number as this language writes it
            unpadded = parts["sign"] + parts["rest"]
            return format(self._symbols_of(format(value, unpadded), unpadded), (parts["align"] or ">") + parts["width"])
        return self._symbols_of(format(value, spec), spec)

    def _symbols_of(self, english: str, spec: str) -> str:
        if not spec.endswith("%"):
            return english.translate(self._symbols)
        sign = english[0] if english[0] in "+- " else ""  # "+" and " " (spec's sign) stay in front
        negative = sign == "-"
        digits = english.removeprefix(sign).removesuffix("%").translate(self._symbols)
        return ("" if negative else sign) + self.percent_prefix[negative] + digits + self.percent_suffix[negative]


def is_number(value) -> bool:
    """An int or a float (numpy's too) that a sentence writes as a number; True and False are words."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class _NumberFormatter(string.Formatter):
    """str.format's rules, with every number written in one language's style."""

    def __init__(self, style: NumberStyle) -> None:
        self.style = style

    def format_field(self, value, format_spec: str) -> str:
        return self.style.format(value, format_spec)


class Text(str):
    """A sentence in a reader's language (what a catalogue returns): its `format` writes the numbers it is given
    in that language's style. It is a str everywhere else; a copy or a pickle of it is a plain str."""

    __slots__ = ()
    style: NumberStyle  # set on each language's subclass (`NumberStyle.text`)

    def format(self, /, *args, **kwargs) -> str:
        return self.style.formatter.vformat(self, args, kwargs)

    def format_map(self, mapping) -> str:
        return self.style.formatter.vformat(self, (), mapping)

    def __reduce__(self):
        return str, (str(self),)


@functools.cache
def number_style(language: str) -> NumberStyle:
    return NumberStyle(language)


class _SourceCatalogue(gettext.NullTranslations):
    """English, the source text itself: its sentences are the code's own strings, and str.format writes English."""

    def __init__(self) -> None:
        super().__init__()
        self.language, self.numbers = SOURCE, number_style(SOURCE)


class _Catalogue(gettext.GNUTranslations):
    """A language's compiled catalogue whose sentences write numbers in that language (`NumberStyle`)."""

    language: str
    numbers: NumberStyle

    def gettext(self, message: str) -> str:
        return self.numbers.text(super().gettext(message))

    def ngettext(self, singular: str, plural: str, count: int) -> str:
        return self.numbers.text(super().ngettext(singular, plural, count))


@functools.cache
def translations(language: str) -> gettext.NullTranslations:
    """The catalogue of `language`, read once per process. English is the source text itself. Each has its
    `language` and `numbers`, the language's `NumberStyle`."""
    if language not in LANGUAGES:
        raise ValueError(f"vitviz has no catalogue for {language!r}")
    if language == SOURCE:
        return _SourceCatalogue()
    catalogue = gettext.translation(DOMAIN, LOCALES, languages=[language], class_=_Catalogue)
    catalogue.language, catalogue.numbers = language, number_style(language)
    return catalogue


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
