"""The selections every page shares, and the widgets that set them: image, layer, head, query, colours.

`View` is the one store of what the reader has selected. Its values live in `st.session_state`
under a "keep_" key, apart from any widget, because Streamlit drops a widget's state when a
page that does not draw it runs. `links` puts them in the page's URL and takes them from a link.

Drawn into a file rather than the browser (`drawing.live()` is False, the story download), a widget
is a line of text with the reader's choice, taken from the canvas's kept values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st
from streamlit_image_coordinates import streamlit_image_coordinates

from vitviz import figures
from vitviz.i18n import N_
from vitviz.ui import drawing, state
from vitviz.ui.i18n import _, number, number_writer, translator
from vitviz.ui.text import plain

UPLOAD_TYPES = ["png", "jpg", "jpeg", "webp", "gif", "bmp", "tif", "tiff"]
# The image sources, by their English names (the kept values, and links' "Sample"); shown translated.
IMAGE_SOURCES = (N_("Sample"), N_("Upload"), N_("Camera"))


@dataclass(frozen=True)
class View:
    """What the reader has selected: every step draws from its Traced and this."""

    layer: int = 0  # 0-based; shown as "Layer 1 of L"
    head: int = 0  # 0-based; shown as "Head 1 of h"
    query: int = 0  # token index: 0 is CLS, then any other special tokens (s in all); s + i is patch i
    colorscale: str = "Viridis"


def current_view(config) -> View:
    """The kept selections. One beyond the model in use (a smaller model may follow a larger one) is back at
    its default, as the sidebar's widgets show it (`persistent`)."""
    kept = st.session_state

    def fitting(store: str, count: int) -> int:
        value = kept.get(f"keep_{store}", 0)
        return value if 0 <= value < count else 0

    return View(
        layer=fitting("layer", config.depth),
        head=fitting("head", config.heads),
        query=fitting("query", config.num_tokens),
        colorscale=kept.get("keep_colorscale", "Viridis"),
    )


def _kept(store: str, default):
    return drawing.current().kept(store, default)


READERS = "rerun_only"  # {kept value: keys of the fragments that read it}, set by a page that has such fragments


def rerun_only(readers: dict[str, list[str]]) -> None:
    """On this page, a change to a kept value reruns only the keyed fragments listed for it (the story's steps).

    Every page run starts without any (`navigation.ensure_navigation`); a page that draws keyed fragments
    says which read what, after drawing them, so every key named was drawn in this run.
    """
    st.session_state[READERS] = {store: keys for store, keys in readers.items() if keys}


def _rerun_readers(store: str) -> None:
    """From a widget's callback: rerun just the fragments that read `store`, if this page named any."""
    readers = st.session_state.get(READERS, {}).get(store)
    if readers:
        st.rerun(readers)  # replaces the whole-page rerun the widget would cause


def _keep(widget_key: str, store: str) -> None:
    st.session_state[f"keep_{store}"] = st.session_state[widget_key]
    _rerun_readers(store)


def persistent(widget, key: str, default, *, store: str | None = None, **kwargs):
    """Draw `widget` seeded from the kept value `store` (default: `key`), and keep what the user picks.

    Several widgets (on different pages, or twice on the story page) can share one kept value.
    """
    store = store or key
    value = _kept(store, default)
    options = kwargs.get("options")
    if options is not None and value not in options:
        value = default
    if "max_value" in kwargs and value > kwargs["max_value"]:
        value = default
    if not drawing.live():
        shown = kwargs.get("format_func", number)(value)
        drawing.markdown(f"{plain(kwargs.get('label', store))}: **{plain(shown)}**")
        return value
    st.session_state[key] = value
    return widget(key=key, on_change=_keep, args=(key, store), **kwargs)


def class_picker(widget, key: str, traced, default: int, label: str) -> int:
    """A class picker drawn with `widget` (e.g. st.selectbox or a column's): it shows the class names in the
    reader's language and keeps the checkpoint's own name, so the choice survives a language switch and a
    different model starts again at class `default`. Returns the chosen class's index."""
    names = list(traced.config.labels)
    shown = dict(zip(names, traced.labels, strict=True))
    choice = persistent(widget, key, names[default], label=label, options=names, format_func=shown.__getitem__)
    return names.index(choice)


def kept_tabs(labels: list[str], key: str) -> list:
    """st.tabs that opens on the kept tab `key` (the first one at first) and keeps the reader's switch.

    `labels` are English (marked with N_): the kept value, and a link's name for it; the tabs show them translated.
    """
    shown = [_(label) for label in labels]
    value = st.session_state.get(f"keep_{key}", labels[0])  # kept (and in links) once the reader switches
    st.session_state[key] = shown[labels.index(value)] if value in labels else shown[0]
    return st.tabs(shown, key=key, on_change=_keep_tab, args=(key, dict(zip(shown, labels, strict=True))))


def _keep_tab(key: str, english: dict[str, str]) -> None:
    st.session_state[f"keep_{key}"] = english.get(st.session_state[key], next(iter(english.values())))
    _rerun_readers(key)


def patch_slider(patches: int, step_key: str) -> int:
    """A patch index picked with a slider; the choice is shared by every step that shows one patch."""
    return persistent(
        st.slider,
        f"patch_{step_key}",
        min(patches - 1, patches // 2 + 3),
        store="patch",
        label=_("Patch"),
        min_value=0,
        max_value=patches - 1,
    )


# Step 10.3's temperature τ (scores q kᵀ / (τ·√d_h)): from nearly one-hot rows to nearly uniform ones.
TEMPERATURES = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0)


def temperature_slider() -> float:
    """The temperature τ of step 10.3's demonstration, kept (and in links as `temperature`); 1 is the model as it
    runs."""
    write = number_writer()  # the reader's decimal comma: format_func may run on another thread
    return persistent(st.select_slider, "temperature", 1.0, label=_("Temperature τ"), options=TEMPERATURES,
                      format_func=lambda t: write(t, "g"))


def shuffle_number() -> int:
    """Which random order step 8 shuffles the patches in (kept, and in links as `shuffle`), with a button that
    draws another; in a file, the kept one."""
    number = _kept("shuffle", 0)
    if drawing.live():
        st.button(_("Shuffle again"), key="shuffle_again", on_click=_set_kept, args=("shuffle", number + 1))
    return number


def _set_kept(store: str, value) -> None:
    st.session_state[f"keep_{store}"] = value
    _rerun_readers(store)


def image_picker(container=None, preview_width: int | str = "stretch") -> None:
    """Sample / upload / camera. A bad file leaves the previous image in place and says why."""
    box = container or st.sidebar
    with box:
        source = persistent(st.radio, "image_source", "Sample", label=_("Image"), options=list(IMAGE_SOURCES),
                            format_func=translator(), horizontal=True)
        if source == "Sample":
            names = state.sample_names()
            titles = {name: state.sample_title(name) for name in names}  # translated now, not in format_func
            chosen = persistent(st.selectbox, "sample_name", names[0], label=_("Sample"), options=names,
                                format_func=titles.get)
            if state.current_image()["name"] != chosen:
                state.set_image(chosen, state.sample_bytes(chosen))
        elif source == "Upload":
            upload = st.file_uploader(_("Your image"), type=UPLOAD_TYPES, key="upload")
            _take_file(upload)
        else:
            shot = st.camera_input(_("Take a photo"), key="camera")
            _take_file(shot)
        error = st.session_state.get(state.ERROR_KEY)
        if error:
            st.error(error)
        st.caption(_("Model: {name} (change it on the Model page)").format(name=plain(state.current_model().title)))
        chosen = state.current_image()
        try:
            st.image(state.preview(chosen), caption=plain(state.sample_title(chosen["name"])), width=preview_width)
        except Exception:  # the kept image always decoded once; never let the sidebar fail
            st.caption(plain(state.sample_title(chosen["name"])))


def _take_file(upload) -> None:
    if upload is None:
        return
    marker = f"{upload.name}:{upload.size}:{getattr(upload, 'file_id', '')}"
    if st.session_state.get("last_file") == marker:
        return
    st.session_state["last_file"] = marker
    state.set_image(upload.name, upload.getvalue())


def layer_head(depth: int, heads: int, *, with_head: bool = True) -> tuple[int, int]:
    layer_of, head_of = _("Layer {layer} of {depth}"), _("Head {head} of {heads}")  # translated now, not in format_func
    layer = persistent(st.sidebar.selectbox, "layer", 0, label=_("Layer"), options=list(range(depth)),
                       format_func=lambda i: layer_of.format(layer=i + 1, depth=depth))
    head = 0
    if with_head:
        head = persistent(st.sidebar.selectbox, "head", 0, label=_("Head"), options=list(range(heads)),
                          format_func=lambda i: head_of.format(head=i + 1, heads=heads))
    return layer, head


def colour_scale() -> str:
    return persistent(st.sidebar.selectbox, "colorscale", "Viridis", label=_("Colour scale"),
                       options=list(figures.COLOUR_SCALES))


def token_label(index: int, grid: tuple[int, int], specials: tuple[str, ...] = ("CLS",)) -> str:
    """Token `index`'s name: a special token's (`specials`, in order), or the patch's with its row and column."""
    if index < len(specials):
        return specials[index]
    row, col = divmod(index - len(specials), grid[1])
    return _("patch {patch} (row {row}, col {col})").format(patch=index - len(specials), row=row + 1, col=col + 1)


def _patch_at(click: dict, grid: tuple[int, int], cell: int) -> int:
    row = min(grid[0] - 1, int(click["y"]) // cell)
    col = min(grid[1] - 1, int(click["x"]) // cell)
    return row * grid[1] + col


def _clickable(picture: np.ndarray, *, key: str, on_click=None):
    # JPEG: the component sends the picture inside the page's own message; a PNG of it is ten times larger.
    return streamlit_image_coordinates(picture, key=key, image_format="JPEG", jpeg_quality=90, on_click=on_click)


def clicked_patch(picture: np.ndarray, grid: tuple[int, int], cell: int, *, key: str) -> int | None:
    """Show `picture` (a grid of `cell`-pixel patches) and return the patch a new click landed on.

    The component keeps returning its last click on every rerun, so a click is only new once.
    """
    click = _clickable(picture, key=key)
    if click is None:
        return None
    marker = (click.get("x"), click.get("y"), click.get("unix_time"))
    if st.session_state.get(f"{key}_seen") == marker:
        return None
    st.session_state[f"{key}_seen"] = marker
    return _patch_at(click, grid, cell)


def _set_query(query: int) -> None:
    st.session_state["keep_query"] = query
    _rerun_readers("query")


def _query_clicked(key: str, grid: tuple[int, int], cell: int, specials: int) -> None:
    click = st.session_state.get(key)
    if click:
        _set_query(specials + _patch_at(click, grid, cell))


def query_picker(traced: state.Traced, *, key: str) -> int:
    """Pick the query token by clicking a patch on the image, or a special token (CLS, …) by its button; CLS by default."""
    grid, patch = traced.trace.grid, traced.config.patch_size
    specials = traced.trace.special_labels
    query = _kept("query", 0)
    if query >= len(specials) + grid[0] * grid[1]:
        query = 0
    factor = figures.enlargement(traced.display, 448)  # a 14×14 grid needs cells big enough to click
    picture = figures.draw_grid(traced.display, patch, factor,
                                highlight=query - len(specials) if query >= len(specials) else None)
    if not drawing.live():
        drawing.image(picture, caption=_("The query: {token}").format(token=token_label(query, grid, specials)), width=picture.shape[1])
        return query
    st.caption(_("Click a patch to make it the query; the button switches back to CLS.") if len(specials) == 1 else
               _("Click a patch to make it the query, or pick one of the special tokens with its button."))
    _clickable(picture, key=key, on_click=lambda: _query_clicked(key, grid, patch * factor, len(specials)))
    if len(specials) == 1:
        left, right = st.columns([2, 1])
        buttons = [(right, _("Use CLS"))]
    else:
        short = [label.replace("register ", "reg. ") if len(specials) > 3 else label for label in specials]
        left, buttons = st.container(), list(zip(st.columns(len(specials)), short, strict=True))
    left.markdown(_("Query: **{token}**").format(token=token_label(query, grid, specials)))
    for index, (column, label) in enumerate(buttons):
        column.button(label, key=f"{key}_cls" if index == 0 else f"{key}_special_{index}", disabled=query == index,
                      width="stretch" if len(specials) > 1 else "content", on_click=_set_query, args=(index,))
    return query
