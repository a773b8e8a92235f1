"""The guide's words beside vitviz's: each key term in English, where a page first uses it.

vitviz writes Turkish terms (yama, gömme, belirteç, dikkat, başlık); the Turkish guide and most courses keep the
English ones (patch, embedding, token, attention, head). So that a student reading both can connect them,
`glossed(text, language)` puts the English term in parentheses after the first use of each key term in a text
("görüntü yamalara (patch) bölünür"), and `TERMS` is also the small glossary under each page's notation.

Pages gloss the words that open them (a step's text, the welcome, explorer, studio, model and story
introductions), so each page names a key term in English once, where it first appears. A term is found in any
inflected form by its stem (`Term.stem`, a regular expression matched at the start of a word); terms of several
words come first, so "konum gömmesi" is glossed as one term before "gömme" alone. Nothing inside `code`, $math$ or a
link is touched, and a term the text already follows with its English is left as it is.

Nothing here imports vitviz or Streamlit: text in, text out.
"""

from __future__ import annotations

import re
from typing import NamedTuple


class Term(NamedTuple):
    english: str  # as the guide and the papers write it
    word: str  # the term as vitviz writes it, for the glossary
    stem: str  # a regular expression for the start of every inflected form (belirteç, belirteci: belirte[çc])


# Per language, in the order the guide meets them (the glossary's order). English needs none.
TERMS: dict[str, tuple[Term, ...]] = {
    "tr": (
        Term("patch", "yama", r"yama"),
        Term("flatten", "düzleştirme", r"düzleştir"),
        Term("embedding", "gömme", r"gömme"),
        Term("patch embedding", "yama gömmesi", r"yama gömme"),
        Term("token", "belirteç", r"belirte[çc]"),
        Term("classification token", "sınıflandırma belirteci", r"sınıflandırma belirte[çc]"),
        Term("position embedding", "konum gömmesi", r"konum gömme"),
        Term("encoder", "kodlayıcı", r"kodlayıcı"),
        Term("attention", "dikkat", r"dikkat(?! e[td])"),  # not the verb "dikkat etmek", to attend
        Term("query", "sorgu", r"sorgu"),
        Term("key", "anahtar", r"anahtar"),
        Term("value", "değer vektörü", r"değer(?=\w* vektör)"),
        Term("head", "başlık", r"başl[ıi][kğ]"),
        Term("multi-head attention", "çok başlı dikkat", r"çok başlı dikkat"),
        Term("LayerNorm", "katman normalizasyonu", r"katman normalizasyon"),
        Term("residual connection", "artık bağlantı", r"artık bağlantı"),
        Term("classification head", "sınıflandırıcı", r"sınıflandırıcı"),
        Term("batch", "yığın", r"yığın"),
        Term("loss", "kayıp", r"kay(?:ıp|b)"),
        Term("cross-entropy", "çapraz entropi", r"çapraz entropi"),
        Term("backpropagation", "geri yayılım", r"geri yayılım"),
        Term("learning rate", "öğrenme oranı", r"öğrenme oran"),
        Term("attention rollout", "dikkat yayılımı", r"dikkat yayılım"),
        Term("distillation token", "damıtma belirteci", r"damıtma belirte[çc]"),
        Term("register", "kayıt belirteci", r"kayıt belirte[çc]"),
        Term("self-supervised", "öz denetimli", r"öz denetimli"),
        Term("checkpoint", "kontrol noktası", r"kontrol noktas"),
    ),
}

# Where no gloss goes: `code`, $math$, a link's target, a bare address.
_UNTOUCHED = re.compile(r"`[^`]*`|\$[^$]*\$|\]\([^)]*\)|https?://\S+")


def _pattern(term: Term) -> re.Pattern:
    # The stem at the start of a word, then the rest of the word (a suffix after an apostrophe included).
    return re.compile(rf"(?<!\w){term.stem}\w*(?:'\w+)?", re.IGNORECASE)


# Terms of several words are looked for first, so "konum gömmesi" is one term before "gömme" is another.
_PATTERNS = {language: [(term, _pattern(term)) for term in sorted(terms, key=lambda term: -len(term.word.split()))]
             for language, terms in TERMS.items()}


def glossed(text: str, language: str) -> str:
    """`text` with each key term's English in parentheses after its first use: "yamalara (patch) bölünür"."""
    patterns = _PATTERNS.get(language)
    if not patterns or not text:
        return text
    taken = [match.span() for match in _UNTOUCHED.finditer(text)]  # no gloss inside these, nor inside a term
    inserts = []
    for term, pattern in patterns:
        for match in pattern.finditer(text):
            start, end = match.span()
            doubled = text[end:].startswith(" " + match[0]) or text[:start].endswith(match[0] + " ")
            if doubled or any(start < stop and begin < end for begin, stop in taken):
                continue  # doubled ("belirteç belirteç", token by token), or inside another term
            taken.append((start, end))
            if not re.match(r"\s*\(" + re.escape(term.english), text[end:], re.IGNORECASE):
                inserts.append((end, f" ({term.english})"))
            break
    for position, gloss in sorted(inserts, reverse=True):
        text = text[:position] + gloss + text[position:]
    return text
