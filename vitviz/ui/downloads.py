"""What a reader can take away: the story as one HTML file, and the current image's numbers for a notebook.

Both files are made only when the reader clicks (Streamlit's deferred download: the callable runs on a
thread of its own, without the session), from what the page held when it was drawn.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import struct
import zipfile

import streamlit as st

import vitviz
from vitviz.ui import controls, i18n, state, story_file
from vitviz.ui.i18n import _
from vitviz.ui.state import Traced

NOTEBOOK_HINT = "from vitviz.capture import Trace; Trace.load('trace.safetensors'), or safetensors.torch.load_file"


def file_stem(name: str) -> str:
    """A file name's stem from an image's name: ASCII letters, digits and dashes."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "image"


def story_button(traced: Traced) -> None:
    """"Download this story": every step for this image, model and view, as one HTML file."""
    view = controls.current_view(traced.config)
    kept = {key: value for key, value in st.session_state.items() if str(key).startswith("keep_")}
    model_name = state.current_model().title
    catalogue, language = i18n.catalogue(), i18n.language()  # the download runs later, on a thread with no session

    def story() -> bytes:
        with i18n.speaking(catalogue):
            return story_file.story_html(traced, view, model_name=model_name, kept=kept, language=language)

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


def sidecar(traced: Traced, model_name: str, shapes: dict[str, list[int]]) -> dict:
    """What a notebook needs besides the tensors: the image, the model's configuration and labels."""
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
        "tensors": shapes,
        "load_with": NOTEBOOK_HINT,
    }


def numbers_zip(traced: Traced, model_name: str) -> bytes:
    """trace.safetensors (`Trace.save`'s file) and trace.json (`sidecar`), zipped."""
    tensors = traced.trace.to_bytes()
    about = json.dumps(sidecar(traced, model_name, tensor_shapes(tensors)), indent=1, default=str)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("trace.safetensors", tensors, compress_type=zipfile.ZIP_STORED)  # floats barely compress
        archive.writestr("trace.json", about, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def numbers_button() -> None:
    """"Download the numbers" in the sidebar: the current image's whole trace, for a notebook, once it is traced."""
    traced = state.traced_if_ready()
    if traced is None:
        return
    model_name = state.current_model().name
    st.sidebar.download_button(
        _("Download the numbers"), icon=":material/download:", on_click="ignore", mime="application/zip",
        data=lambda: numbers_zip(traced, model_name),
        file_name=f"vitviz-trace-{file_stem(traced.image_name)}.zip",
        help=_("Every tensor of this image's forward pass (trace.safetensors) and the model's configuration and "
               "labels (trace.json). The README shows how to open them in a notebook."),
    )
