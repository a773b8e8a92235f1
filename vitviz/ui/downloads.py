"""What a reader can take away: the story as one HTML file, and the current image's numbers for a notebook.

Both files are made only when the reader clicks (Streamlit's deferred download: `data=` a callable, which
runs on a thread of its own, without the session), from what the page held when it was drawn. Making one
holds a place among the server's long computations (`quota.HEAVY`), on one torch thread; a click that finds
every place taken waits its turn (the button turns) up to `limits.heavy_wait_seconds`. A finished file is kept
(`download_cache`, bounded in bytes) under what it was made from, so a repeat click sends it again at once
(a story made while an average over many images was still computing is not kept: the next one has it).

A refusal cannot be said by the download itself (Streamlit shows only "Failed to generate file for
download"), so it is kept in the session's `NOTES` and said in a sentence on the page's next run.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import re
import struct
import zipfile

import streamlit as st
import torch

import vitviz
from vitviz import background, bytecache, limits, quota, train
from vitviz.ui import controls, i18n, state, story_file
from vitviz.ui.i18n import _, say
from vitviz.ui.state import Traced

log = logging.getLogger("vitviz")
NOTES_KEY = "vitviz_download_notes"  # session_state: {button: Message} refusals to say on the next run

NOTEBOOK_HINT = "from vitviz.capture import Trace; Trace.load('trace.safetensors'), or safetensors.torch.load_file"


def file_stem(name: str) -> str:
    """A file name's stem from an image's name: ASCII letters, digits and dashes."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "image"


# Held by st.cache_resource so that st.cache_resource.clear() empties it too.
@st.cache_resource(show_spinner=False)
def download_cache() -> bytecache.ByteCache:
    """Every session's finished story files and trace zips, keyed by what they were made from."""
    return bytecache.ByteCache(limits.download_cache_bytes(), len, max_entries=32)


def made_once(key: tuple, make, notes: dict | None = None, note_key: str = "") -> bytes:
    """The file kept under `key`, else `make()`'s, made in a place among the server's long computations (waiting
    up to `limits.heavy_wait_seconds` for one) on one torch thread. Raises `quota.ServerBusy` when no place came;
    its sentence is kept in `notes[note_key]` for the page to say. Needs no Streamlit session."""

    def bounded() -> bytes:
        with quota.HEAVY.holding(limits.heavy_tasks(), wait=limits.heavy_wait_seconds()), train.limited_threads(1):
            return make()

    try:
        return download_cache().get(key, bounded)
    except quota.ServerBusy as busy:
        log.warning("vitviz: a download found no place: %s", busy)
        if notes is not None:
            notes[note_key] = busy.args[0]
        raise


def _notes(note_key: str) -> dict:
    """This session's refused downloads, saying (once) the one `note_key` names if it was refused since."""
    notes = st.session_state.setdefault(NOTES_KEY, {})
    refused = notes.pop(note_key, None)
    if refused is not None:
        st.info(_("{reason} Your file was not made: click the button again.").format(reason=say(refused)),
                icon=":material/hourglass_top:")
    return notes


def story_key(traced: Traced, view: controls.View, kept: dict, model_name: str, language: str) -> tuple:
    """What a story file is made from: a second click with the same key gets the same file."""
    return ("story", traced.image_key, traced.model_key, model_name, view, language, limits.story_max_bytes(),
            repr(sorted((str(key), repr(value)) for key, value in kept.items())))


def story_button(traced: Traced) -> None:
    """"Download this story": every step for this image, model and view, as one HTML file."""
    if not limits.heavy_tasks():
        st.caption(say(quota.HEAVY.off))
        return
    view = controls.current_view(traced.config)
    kept = {key: value for key, value in st.session_state.items() if str(key).startswith("keep_")}
    model_name = state.current_model().title
    catalogue, language = i18n.catalogue(), i18n.language()  # the download runs later, on a thread with no session
    notes = _notes("story")

    def make() -> bytes:
        with i18n.speaking(catalogue):
            return story_file.story_html(traced, view, model_name=model_name, kept=kept, language=language)

    def story() -> bytes:
        key = story_key(traced, view, kept, model_name, language)
        page = made_once(key, make, notes, "story")
        if background.unfinished():  # a figure said its average was still being computed: not the file to keep
            download_cache().discard(key)
        return page

    st.download_button(
        _("Download this story"), icon=":material/download:", on_click="ignore", mime="text/html",
        data=story,
        file_name=f"vitviz-story-{file_stem(traced.image_name)}.html",
        help=_("One HTML file with every step's words, formulas and figures for this image and model; it opens "
               "in a browser without a network."),
    )


def tensor_shapes(safetensors_bytes: bytes) -> dict[str, list[int]]:
    """Each tensor's shape, from a safetensors file's header (8 bytes of length, then JSON)."""
    (length,) = struct.unpack("<Q", safetensors_bytes[:8])
    header = json.loads(safetensors_bytes[8 : 8 + length])
    return {name: entry["shape"] for name, entry in header.items() if name != "__metadata__"}


# Measured once per image and model: laying out a ViT-B's 200 tensors takes tens of milliseconds, and the button
# is drawn on every page run.
@st.cache_resource(max_entries=64, show_spinner=False)
def _file_sizes(image_key: str, model_key: str, _trace) -> dict[torch.dtype, int]:
    return {dtype: _trace.file_size(dtype) for dtype in (torch.float32, torch.float16)}


def numbers_size(traced: Traced, dtype: torch.dtype) -> int:
    """The bytes of the trace's safetensors file with its floating-point tensors in `dtype` (float32 or float16)."""
    return _file_sizes(traced.image_key, traced.model_key, traced.trace)[dtype]


def numbers_precision(traced: Traced) -> torch.dtype | None:
    """float32 (as computed) if the trace's file fits `limits.numbers_max_bytes`, else float16 if that fits, else
    None: a file that is not offered."""
    limit = limits.numbers_max_bytes()
    return next((dtype for dtype in (torch.float32, torch.float16) if numbers_size(traced, dtype) <= limit), None)


def precision_note(dtype: torch.dtype) -> str:
    """What trace.json says of the tensors' precision."""
    if dtype == torch.float32:
        return "float32, as the model computed them"
    return (f"float16 (about 3 significant digits): the model computed them in float32, but in float32 this file "
            f"would pass the server's limit of {limits.numbers_max_bytes() // 1_000_000} MB for it")


def sidecar(traced: Traced, model_name: str, shapes: dict[str, list[int]],
            dtype: torch.dtype = torch.float32) -> dict:
    """What a notebook needs besides the tensors: the image, the model's configuration and labels, the precision."""
    settings = dataclasses.asdict(traced.config)
    labels, provenance = settings.pop("labels"), settings.pop("extra")
    probs = traced.trace.probs
    return {
        "vitviz_version": vitviz.__version__,
        "image": traced.image_name,
        "model": model_name,
        "config": settings,
        "provenance": provenance,
        "labels": labels,
        "prediction": None if probs is None else labels[int(probs.argmax())],
        "precision": precision_note(dtype),
        "tensors": shapes,
        "load_with": NOTEBOOK_HINT,
    }


def numbers_zip(traced: Traced, model_name: str, dtype: torch.dtype = torch.float32) -> bytes:
    """trace.safetensors (`Trace.write`'s file, its floating-point tensors in `dtype`) and trace.json (`sidecar`),
    zipped; the tensors go into the zip one at a time, so making it holds the zip and one tensor more."""
    shapes = tensor_shapes(traced.trace.file_header(dtype))
    about = json.dumps(sidecar(traced, model_name, shapes, dtype), indent=1, default=str)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        with archive.open("trace.safetensors", "w") as entry:  # stored: floats barely compress
            traced.trace.write(entry, dtype)
        archive.writestr("trace.json", about, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def numbers_button() -> None:
    """"Download the numbers" in the sidebar: the current image's whole trace, for a notebook, once it is traced;
    in float16 when float32 would pass the server's limit, and not offered when even that would."""
    traced = state.traced_if_ready()
    if traced is None or not limits.heavy_tasks():  # not traced yet, or long computations turned off
        return
    model_name = state.current_model().name
    dtype = numbers_precision(traced)
    if dtype is None:
        st.sidebar.caption(_("The numbers of this image are {size:,.0f} MB even in float16, more than this server "
                             "allows for a download ({limit:,.0f} MB).").format(
            size=numbers_size(traced, torch.float16) / 1e6, limit=limits.numbers_max_bytes() / 1e6))
        return
    help_text = _("Every tensor of this image's forward pass (trace.safetensors) and the model's configuration and "
                  "labels (trace.json). The README shows how to open them in a notebook.")
    if dtype == torch.float16:
        help_text += " " + _("The tensors are in float16, half the size, since in float32 the file would pass this "
                             "server's limit of {limit:,.0f} MB; trace.json says so.").format(
            limit=limits.numbers_max_bytes() / 1e6)
    key = ("numbers", traced.image_key, traced.model_key, model_name, str(dtype))
    with st.sidebar:
        notes = _notes("numbers")
    st.sidebar.download_button(
        _("Download the numbers"), icon=":material/download:", on_click="ignore", mime="application/zip",
        data=lambda: made_once(key, lambda: numbers_zip(traced, model_name, dtype), notes, "numbers"),
        file_name=f"vitviz-trace-{file_stem(traced.image_name)}.zip",
        help=help_text,
    )
