"""English and Turkish (#19): the catalogue is complete and matches the code, a session's language comes from
the URL, the switch or the browser, library messages are translated where they are shown, and every page whose
code is wrapped renders in Turkish with no catalogued text left in English.

Every page is wrapped (#19 phase 2). A new page goes into WRAPPED_PAGES once its code is wrapped; until then it
can wait in UNWRAPPED_PAGES (rendered in Turkish, not checked for English), with catalogued words its code still
shows in English in SHOWN_BY_UNWRAPPED_CODE and its sentences in UNWRAPPED_SENTENCES.
"""

from __future__ import annotations

import functools
import io
import json
import pickle
import re
import string
import sys
import tokenize
from pathlib import Path

import pytest
import streamlit as st
import torch
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from conftest import APP, open_page, problems
from google.protobuf.message import Message as Proto
from streamlit.testing.v1 import AppTest

from vitviz import data, i18n
from vitviz.i18n import Message, plural_message
from vitviz.images import ImageError, load_image
from vitviz.ui import state

ROOT = Path(__file__).resolve().parent.parent
TRANSLATED = [language for language in i18n.LANGUAGES if language != i18n.SOURCE]
POT = i18n.LOCALES / "vitviz.pot"
PO = i18n.LOCALES / "tr" / "LC_MESSAGES" / "vitviz.po"  # the Turkish pages' catalogue


def po_of(language: str) -> Path:
    return i18n.LOCALES / language / "LC_MESSAGES" / "vitviz.po"
SOURCES = [ROOT / "app.py", *sorted((ROOT / "vitviz").rglob("*.py")), *sorted((ROOT / "pages").glob("*.py"))]


def read(path: Path):
    with path.open("rb") as file:
        return read_po(file)


def forms(text) -> tuple[str, ...]:
    return text if isinstance(text, tuple) else (text,)


def tuple_of(text):
    return tuple(text) if isinstance(text, list) else text  # read_mo gives plural forms as lists


def fields(text: str) -> set[tuple[str, str, str | None]]:
    """The {placeholders} of a format string, with their format specs and conversions."""
    return {(name, spec, conversion) for _literal, name, spec, conversion in string.Formatter().parse(text)
            if name is not None}


# --- the catalogue --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_msgid_has_a_translation(language):
    catalogue = read(po_of(language))
    untranslated = [message.id for message in catalogue if message.id and not all(forms(message.string))]
    fuzzy = [message.id for message in catalogue if message.id and message.fuzzy]
    assert not untranslated, untranslated
    assert not fuzzy, fuzzy


def test_turkish_has_its_plural_forms():
    assert read(PO).plural_forms == "nplurals=2; plural=(n != 1);"  # gettext's usual rule for Turkish


@pytest.mark.parametrize("language", TRANSLATED)
def test_translations_keep_every_placeholder(language):
    for message in read(po_of(language)):
        if not message.id:
            continue
        wanted = set().union(*(fields(text) for text in forms(message.id)))
        translated = [fields(text) for text in forms(message.string)]
        # A singular form may say "one" instead of {count}; the plural form has every placeholder.
        assert all(found <= wanted for found in translated) and translated[-1] == fields(forms(message.id)[-1]), (
            message.id, message.string)


def extracted() -> set:
    """What `pybabel extract -F babel.cfg` finds in the code now, by Babel's Python API."""
    with (ROOT / "babel.cfg").open() as config:
        method_map, options_map = parse_mapping_cfg(config)
    return {message for _file, _line, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options_map)}


def test_the_catalogues_match_the_code():
    in_code = extracted()
    for path in (POT, *map(po_of, TRANSLATED)):
        in_file = {message.id for message in read(path) if message.id}
        assert in_code - in_file == set(), f"not in {path.name}: extract and update (README, 'Add a language')"
        assert in_file - in_code == set(), f"{path.name} has strings the code no longer uses: update it"


@pytest.mark.parametrize("language", TRANSLATED)
def test_the_compiled_catalogue_matches_the_po(language):
    with po_of(language).with_suffix(".mo").open("rb") as file:
        compiled = {forms(tuple_of(message.id)): forms(tuple_of(message.string)) for message in read_mo(file)
                    if message.id}
    written = {forms(message.id): forms(message.string) for message in read(po_of(language)) if message.id}
    assert compiled == written, "compile it: pybabel compile -d vitviz/locales -D vitviz"


def calls_inside_f_strings(source: str) -> list[str]:
    """`_(` or `ngettext(` inside an f-string: Babel extracts no call there (Python 3.11 has one token for it)."""
    found, depth = [], 0
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    for token, following in zip(tokens, tokens[1:] + tokens[-1:], strict=True):
        if token.type == tokenize.STRING and re.match(r"(?i)r?fr?['\"]", token.string):
            found += re.findall(r"\b(?:_|ngettext)\(", token.string)
        if sys.version_info >= (3, 12):  # f-strings come as FSTRING_START … FSTRING_END with the code inside
            depth += {tokenize.FSTRING_START: 1, tokenize.FSTRING_END: -1}.get(token.type, 0)
            if depth and token.string in ("_", "ngettext") and following.string == "(":
                found.append(token.string + "(")
    return found


def test_no_translation_call_inside_an_f_string():
    offenders = {str(path.relative_to(ROOT)): calls for path in SOURCES
                 if (calls := calls_inside_f_strings(path.read_text(encoding="utf-8")))}
    assert not offenders, "write _('… {x} …').format(x=…) instead: " + str(offenders)


# --- library messages -------------------------------------------------------------------------------------------


def test_a_message_reads_as_english_and_is_translated_with_its_parts():
    turkish = i18n.translations("tr")
    inner = Message("The image has too many pixels (the limit is {megapixels} megapixels).", megapixels=40)
    outer = Message("{repo}: {reason}", repo="org/model", reason=inner)
    assert str(outer) == "org/model: The image has too many pixels (the limit is 40 megapixels)."
    assert outer.translated(turkish) == "org/model: Görüntüde çok fazla piksel var (sınır 40 megapiksel)."
    assert pickle.loads(pickle.dumps(outer)).translated(turkish) == outer.translated(turkish)
    busy = plural_message("{count} CPU-second", "{count} CPU-seconds", 1)
    assert (str(busy), busy.translated(turkish)) == ("1 CPU-second", "1 CPU-saniye")
    assert str(plural_message("{count} CPU-second", "{count} CPU-seconds", 3)) == "3 CPU-seconds"
    with pytest.raises(ImageError) as refused:
        load_image(b"")
    assert refused.value.args[0].translated(turkish) == "Dosya boş."


def test_every_catalogue_is_read_once_per_process():
    assert i18n.translations("tr") is i18n.translations("tr")
    assert i18n.translations("en").gettext("Shape") == "Shape"
    with pytest.raises(ValueError):
        i18n.translations("xx")


# --- refusals, in Turkish -------------------------------------------------------------------------------------


@functools.cache
def turkish_msgids() -> frozenset:
    return frozenset(forms(message.id)[0] for message in read(PO) if message.id and all(forms(message.string)))


def untranslated_parts(text) -> list[str]:
    """What of a library's sentence a Turkish reader would see in English: any part that is not a catalogued
    Message, unless it is technical (a tensor name, a shape, a value: no English words in it)."""
    if not isinstance(text, Message):
        return [str(text)] if ENGLISH_WORDS.search(str(text)) or re.search(r"[a-z]{3,} [a-z]{3,}", str(text)) else []
    found = [] if text.text in turkish_msgids() else [text.text]
    return found + [part for value in text.params.values() for part in untranslated_parts(value)]


def refusal(load) -> Message:
    with pytest.raises(ValueError) as refused:
        load()
    assert isinstance(refused.value.args[0], Message), f"not a catalogued sentence: {refused.value}"
    return refused.value.args[0]


def broken_checkpoints(tmp_path) -> dict[str, Message]:
    """Each kind of broken checkpoint a visitor can bring (vitviz's own, Hugging Face, timm), and what it is told."""
    from test_checkpoints import CONFIGS, hf_model
    from test_data_weights_train import bad_checkpoints

    from vitviz import convert, weights
    from vitviz.model import ViT, ViTConfig

    told = {name: refusal(lambda blob=blob: weights.load_bytes_model(blob))
            for name, (blob, _phrase) in bad_checkpoints(ViT(ViTConfig(labels=("a", "b", "c", "d")))).items()}
    hf_model(CONFIGS[0]).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    for field, value in (("image_std", [0, 0, 0]), ("hidden_size", "abc"), ("hidden_act", "swish"), ("image_size", 30)):
        (tmp_path / "config.json").write_text(json.dumps({**config, field: value}))
        told[f"config.json's {field}"] = refusal(lambda: weights.load(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps(config))
    state = {key: torch.zeros(1) for key in ("vit.embeddings.cls_token", "vit.layers.0.odd.weight")}
    told["Hugging Face keys"] = refusal(lambda: convert.from_hf(state, config))
    told["SwiGLU"] = refusal(lambda: convert.from_hf({"embeddings.cls_token": torch.zeros(1),
                                                        "encoder.layer.0.layer_scale1.lambda1": torch.zeros(1)},
                                                       {**config, "use_swiglu_ffn": True}))
    told["timm name"] = refusal(lambda: convert.timm_heads("resnet50"))
    told["a refusal with no catalogued reason"] = convert.invalid_configuration(TypeError("unhashable type: 'list'"))
    return told


def test_every_broken_checkpoint_is_refused_in_turkish(tmp_path):
    from vitviz import hub, studio

    told = broken_checkpoints(tmp_path)
    told["training failed"] = studio._failure(RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)"))
    told["training refused"] = studio._failure(ValueError(Message("The built-in data is square; this model's input is not.")))
    told["download failed"] = hub._explain(RuntimeError("Connection reset by peer"), "org/model", None).args[0]
    turkish = i18n.translations("tr")
    for name, message in told.items():
        assert not untranslated_parts(message), (name, str(message), untranslated_parts(message))
        assert message.translated(turkish) != str(message), name
    assert told["config-impossible"].translated(turkish) == (
        "Kontrol noktasının yapılandırması geçersiz: dim (96), heads sayısına (5) tam bölünmüyor.")


def test_a_broken_upload_is_explained_in_turkish_on_the_model_page(small_model):
    from test_data_weights_train import bad_checkpoints

    blob, _phrase = bad_checkpoints(small_model)["missing-key"]
    at = app(lang="tr")
    at.run()
    open_page(at, "pages/model.py")
    at.radio(key="model_source").set_value("Upload").run()
    at.file_uploader(key="model_upload").upload("broken.safetensors", blob).run()
    at.button(key="load_upload").click().run()
    assert [e.value for e in at.error] == ["Kontrol noktasının anahtarları modele uymuyor: eksik "
                                           "blocks.0.attn.qkv.bias; beklenmeyen yok."]


# --- choosing the language ------------------------------------------------------------------------------------


def test_the_browser_languages_are_read_in_order_of_preference():
    assert i18n.accepted("de-DE,de;q=0.9,tr;q=0.8,en;q=0.7") == ["de-DE", "de", "tr", "en"]
    assert i18n.accepted("en;q=0.5, tr-TR, *;q=0.1, fr;q=0") == ["tr-TR", "en"]
    assert i18n.preferred(i18n.accepted("de-DE,de;q=0.9,tr;q=0.8,en;q=0.7")) == "tr"
    assert i18n.preferred(["fr-FR", "en-GB"]) == "en"
    assert i18n.preferred(["fr"]) is None and i18n.preferred([]) is None


@pytest.fixture(autouse=True)
def clean_caches():
    st.cache_resource.clear()
    st.cache_data.clear()
    yield


def app(**query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update(query)
    return at


def test_the_browser_decides_a_first_visit_and_the_url_keeps_it():
    at = app()
    at.context["locale"] = "tr-TR"
    at.run()
    assert at.title[0].value == "vitviz: bir Vision Transformer'ın nasıl düşündüğünü görün"
    assert at.query_params["lang"] == ["tr"] or at.query_params["lang"] == "tr"
    english = app()
    english.context["locale"] = "fr-FR"  # not spoken: English
    english.run()
    assert english.title[0].value == "vitviz: see a Vision Transformer think"


def test_the_url_wins_and_the_switch_changes_the_language_on_every_page():
    at = app(lang="tr")
    at.context["locale"] = "en-US"
    at.run()
    assert at.title[0].value.startswith("vitviz: bir")
    open_page(at, "pages/step_10_3.py")
    assert at.title[0].value == "10.3 · Softmax" and at.expander[0].label == "Gösterim"
    at.radio(key="language_switch").set_value("en").run()
    assert at.expander[0].label == "Notation" and at.query_params["lang"] in ("en", ["en"])
    open_page(at, "pages/step_10_4.py")
    assert at.title[0].value == "10.4 · One token's context"
    assert not problems(at), problems(at)


def test_a_refused_upload_is_explained_in_turkish():
    at = app(lang="tr")
    at.run()
    open_page(at, "pages/step_1.py")
    at.radio(key="image_source").set_value("Upload").run()
    at.file_uploader(key="upload").upload("notes.png", b"not an image", "image/png").run()
    assert [e.value for e in at.error] == ["Bu dosya vitviz'in okuyabileceği bir görüntü biçiminde değil (PNG, JPEG, "
                                           "WebP, GIF, BMP ya da TIFF)."]


def test_only_the_projects_own_class_names_are_translated():
    from vitviz import convert
    from vitviz.model import ViTConfig
    from vitviz.ui.i18n import speaking

    with speaking(i18n.translations("tr")):
        assert state.class_names(ViTConfig(labels=data.CLASSES)) == ["daire", "halka", "üçgen", "kare", "yıldız", "artı",
                                                                      "kalp", "hilal"]
        numbered = ("class 0", "class 1")
        assert state.class_names(ViTConfig(labels=numbered, extra={"labels": convert.NUMBERED})) == ["sınıf 0", "sınıf 1"]
        assert state.class_names(ViTConfig(labels=numbered)) == list(numbered)  # a checkpoint that says "class 0" itself
        assert state.class_names(ViTConfig(labels=("tench", "circle"))) == ["tench", "circle"]
        assert state.class_names(ViTConfig(labels=data.CLASSES[::-1])) == list(data.CLASSES[::-1])  # not the shapes'


def test_samples_and_shapes_are_named_in_turkish_and_a_turkish_link_reopens_the_sample_in_english():
    from test_links import linked_app, written_query

    english_name = state.sample_names()[2]  # "Scene 3: <shape>": the kept value, and the link's, is English
    at = app(lang="tr")
    at.session_state["keep_sample_name"] = english_name  # as if picked in the sidebar (the share box is drawn only
    at.run()  # on AppTest's first run)
    picker = at.selectbox(key="sample_name")
    shape = english_name.removeprefix("Scene 3: ")
    assert shape in data.CLASSES and picker.value == english_name
    assert picker.options[2] == "Sahne 3: " + i18n.translations("tr").gettext(shape) != english_name
    assert "Fotoğraf: astronot" in picker.options and not any(name.startswith("Scene") for name in picker.options)
    assert written_query(at) == {"image": "scene-3", "lang": "tr"}
    open_page(at, "pages/step_13.py")  # the built-in model's classes are the project's words too
    said = next(text for text in shown(at) if text.startswith("Tahmin: **"))  # "Tahmin: **{p}** olasılıkla **{label}**."
    assert said.split("**")[3] in {i18n.translations("tr").gettext(name) for name in data.CLASSES} - set(data.CLASSES)
    english = linked_app({"image": "scene-3", "lang": "en"})
    assert english.session_state["keep_sample_name"] == english_name
    assert english.selectbox(key="sample_name").options[2] == english_name


def test_a_chosen_class_survives_a_language_switch():
    at = app(lang="en")
    at.run()
    open_page(at, "pages/step_14.py")
    at.selectbox(key="true_label").set_value("star").run()
    at.radio(key="language_switch").set_value("tr").run()
    picker = at.selectbox(key="true_label")
    assert picker.value == "star" and picker.format_func("star") == "yıldız" and "yıldız" in picker.options
    assert any("**yıldız**" in text for text in shown(at)), shown(at)  # "Çapraz entropi … **yıldız** …"
    assert not problems(at), problems(at)


# --- every wrapped page, in Turkish -------------------------------------------------------------------------


def show_page(page: str):
    return lambda at: open_page(at, page)


def show_model_source(source: str):
    def show(at: AppTest) -> None:
        open_page(at, "pages/model.py")
        at.radio(key="model_source").set_value(source).run()

    return show


def show_explorer_tab(tab: str):
    def show(at: AppTest) -> None:
        at.session_state["keep_explorer_tab"] = tab  # as a click on the tab, or a link's tab=, keeps it
        open_page(at, "pages/explorer.py")

    return show


def show_finished_studio_run(at: AppTest) -> None:
    from test_training import train_tiny

    train_tiny(at)


# The screens whose code is wrapped: every page, some explorer tabs, the model page's sources, a studio run.
WRAPPED_PAGES = ["pages/welcome.py", "pages/step_0.py", "pages/step_1.py", "pages/step_2.py",
                 *(f"pages/step_{i}.py" for i in range(3, 14) if i != 10),
                 *(f"pages/step_10_{i}.py" for i in range(1, 13)), "pages/step_14.py", "pages/model.py",
                 "pages/training.py", "pages/explorer.py", "pages/story.py"]
TURKISH_SCREENS = {
    **{page: show_page(page) for page in WRAPPED_PAGES},
    **{f"model page, {source}": show_model_source(source)
       for source in ("Built-in shapes model", "This session's models", "Local path", "Upload", "Hugging Face Hub")},
    "training studio after a run": show_finished_studio_run,
    **{f"explorer, {tab} tab": show_explorer_tab(tab) for tab in ("Occlusion", "Token norms", "Attribution")},
}
# Pages whose own text is not wrapped yet (none now): they must still render in a Turkish session.
UNWRAPPED_PAGES: list[str] = []
# Catalogued words that unwrapped code still shows in English; once it is wrapped with the same msgids,
# this set is empty.
SHOWN_BY_UNWRAPPED_CODE: set[str] = set()
UNWRAPPED_SENTENCES: tuple[str, ...] = ()


def strings(value) -> list[str]:
    """Every string in an element's protobuf; a plotly figure's JSON is read for its visible text."""
    if isinstance(value, Proto):
        return [text for _field, item in value.ListFields() for text in strings(item)]
    if isinstance(value, str):
        if value.startswith("{") and value.endswith("}"):
            try:
                return figure_strings(json.loads(value))
            except ValueError:
                pass
        return [value]
    if isinstance(value, (list, tuple)) or hasattr(value, "extend"):  # repeated fields
        return [text for item in value for text in strings(item)]
    return []


PLOTLY_FIELD = re.compile(r"%\{[^}]*\}")  # %{y}, %{z:.4f}: plotly fills them with the data


def hover_strings(template: str) -> list[str]:
    """A hover box's lines, each twice: with the data's places left out ("row") and filled ("row 0"), so that a
    catalogued label is found whole and a sentence with its placeholders filled."""
    lines = [line for line in re.split(r"<br>|<extra>|</extra>", template) if PLOTLY_FIELD.sub("", line).strip(" :,·")]
    return [text for line in lines for text in (PLOTLY_FIELD.sub("", line).strip(" :,·"), PLOTLY_FIELD.sub("0", line))]


def figure_strings(value) -> list[str]:
    if isinstance(value, dict):  # the template (plotly's own) is never shown; the data is not words
        return [text for key, item in value.items() if key not in ("template", "hovertemplate", "x", "y", "z", "symbol")
                for text in figure_strings(item)] + (
            hover_strings(value["hovertemplate"]) if isinstance(value.get("hovertemplate"), str) else [])
    if isinstance(value, list):
        return [text for item in value for text in figure_strings(item)]
    return [value] if isinstance(value, str) else []


def shown(at: AppTest) -> list[str]:
    """The text of every element on the page: titles, markdown, captions, labels, options, help, figure titles."""
    texts, pending = [], [at._tree]
    while pending:
        node = pending.pop()
        pending.extend(getattr(node, "children", {}).values())
        if getattr(node, "proto", None) is not None:
            texts += [text for text in strings(node.proto) if not text.startswith(("$$ID", "data:", "#"))]
    return texts


def turkish_problems(at: AppTest) -> list[str]:
    boundary = i18n.translations("tr").gettext("This part of the page could not be drawn ({what}). The rest of "
                                               "the page is unaffected.").split("{what}")[0]
    found = [f"exception: {e.value}" for e in at.exception]
    return found + [f"boundary: {w.value}" for w in at.warning if str(w.value).startswith(boundary)]


@pytest.fixture(scope="module")
def turkish_screens() -> dict[str, tuple[list[str], list[str]]]:
    """Each screen drawn once in one Turkish session: (its problems, its texts)."""
    st.cache_resource.clear()
    at = app(lang="tr")
    at.run()
    drawn = {}
    for name, show in {**TURKISH_SCREENS, **{page: show_page(page) for page in UNWRAPPED_PAGES}}.items():
        show(at)
        drawn[name] = (turkish_problems(at), shown(at))
    return drawn


@pytest.mark.parametrize("screen", [*TURKISH_SCREENS, *UNWRAPPED_PAGES])
def test_every_page_renders_in_turkish(turkish_screens, screen):
    found, _texts = turkish_screens[screen]
    assert not found, found


@functools.cache
def english_patterns() -> list[tuple[str, re.Pattern]]:
    """For each catalogued English text whose Turkish differs, a pattern that finds it shown: a label (one or two
    words) must be a whole text, a longer one may be part of a text; {placeholders} match anything."""
    patterns = []
    for message in read(PO):
        for msgid in forms(message.id):
            if not msgid or msgid in forms(message.string) or msgid in SHOWN_BY_UNWRAPPED_CODE:
                continue
            body = "".join(re.escape(literal) + (".+?" if name is not None else "")
                           for literal, name, _spec, _conversion in string.Formatter().parse(msgid))
            whole = len(msgid.split()) < 3
            patterns.append((msgid, re.compile(f"^{body}$" if whole else body, re.S)))
    return patterns


ENGLISH_WORDS = re.compile(r"\b(?:the|of|and|is|to|with|a|an)\b")


@pytest.mark.parametrize("screen", TURKISH_SCREENS)
def test_no_catalogued_text_is_shown_in_english(turkish_screens, screen):
    _found, texts = turkish_screens[screen]
    assert any("ş" in text or "ı" in text or "ğ" in text for text in texts), "no Turkish on the page"
    in_english = sorted({msgid for msgid, pattern in english_patterns() for text in texts if pattern.search(text)})
    assert not in_english, f"shown untranslated on {screen}: {in_english}"
    # A sentence nobody wrapped is not in the catalogue at all: English function words give it away.
    sentences = [text for text in texts if len(ENGLISH_WORDS.findall(text)) >= 2 and not text.startswith(
        UNWRAPPED_SENTENCES)]
    assert not sentences, f"English sentences on {screen}: {sentences}"


@pytest.mark.parametrize("screen", TURKISH_SCREENS)
def test_no_percent_sign_follows_a_number_in_turkish(turkish_screens, screen):
    """Turkish writes %87,3 (#26): no text, figure label or plotly format (".0%") puts the sign after a number.
    tests/test_numbers.py checks every number of the welcome page and steps 3 and 13 against English."""
    _found, texts = turkish_screens[screen]
    after = sorted({text for text in texts if re.search(r"\d%", text)})
    assert not after, after
