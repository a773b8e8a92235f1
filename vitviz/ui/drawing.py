"""Where a step draws: the page in the browser, or a file (the story download).

Steps draw only through the functions here: `markdown`, `caption`, `info`, `text`, `latex`, `image`,
`show_figure`, `image_grid` and `columns`, never through `st.*` directly. They write to the
current canvas: the Streamlit page by default, or, inside `drawing_into(canvas)`, any other
object with the same methods (`story_file.HtmlCanvas` collects HTML). `columns()` returns one
canvas per column, and `with column:` draws into it, as with Streamlit's own columns.

Widgets belong to the browser: on another canvas (`live()` is False) the widget helpers in
`controls` draw the reader's kept choice as a line of text instead, read from `kept()`.
"""

from __future__ import annotations

import contextlib
import contextvars
import io

import numpy as np
import streamlit as st
from PIL import Image

from vitviz import figures
from vitviz.ui.i18n import _, separators

FIGURE_CONFIG = {"displaylogo": False}  # plotly's toolbar stays, with its "Download plot as a png"
JPEG_QUALITY = 90


def web_picture(picture):
    """A picture as the browser should get it: an RGB array as a quality-90 JPEG, anything else as it is.

    Streamlit writes an array at JPEG quality 100, two to three times the bytes of 90 for no visible
    difference (step 11's twelve layer maps at ViT-B, with `figures.fitted`: 68 KB at 90).
    """
    if isinstance(picture, np.ndarray) and picture.ndim == 3 and picture.shape[2] == 3:
        buffer = io.BytesIO()
        Image.fromarray(figures.to_uint8(picture)).save(buffer, "JPEG", quality=JPEG_QUALITY)
        return buffer.getvalue()
    return picture


class StreamlitCanvas:
    """Draws into a Streamlit container: `st` itself (whatever container is active) or one column."""

    def __init__(self, target=st) -> None:
        self.target = target

    def markdown(self, body: str) -> None:
        self.target.markdown(body)

    def caption(self, body: str) -> None:
        self.target.caption(body)

    def info(self, body: str) -> None:
        self.target.info(body)

    def text(self, body: str) -> None:
        self.target.text(body)

    def latex(self, body: str) -> None:
        self.target.latex(body)

    def image(self, picture, caption: str | None = None, width: int | str = "stretch") -> None:
        self.target.image(web_picture(picture), caption=caption, width=width)

    def figure(self, fig, key: str | None = None) -> None:
        self.target.plotly_chart(fig, width="stretch", config=FIGURE_CONFIG, key=key)

    def columns(self, spec) -> list[StreamlitCanvas]:
        return [StreamlitCanvas(column) for column in self.target.columns(spec)]

    def kept(self, store: str, default):
        """The reader's kept choice `store` (see controls.persistent), set to `default` on first use."""
        return st.session_state.setdefault(f"keep_{store}", default)

    def __enter__(self) -> StreamlitCanvas:
        self.target.__enter__()  # a column: Streamlit's own `with column:`
        return self

    def __exit__(self, *exc_info) -> bool | None:
        return self.target.__exit__(*exc_info)


_BROWSER = StreamlitCanvas()
_current: contextvars.ContextVar[object | None] = contextvars.ContextVar("vitviz_canvas", default=None)


def current():
    """The canvas steps draw on now: the Streamlit page unless `drawing_into` says otherwise."""
    return _current.get() or _BROWSER


def live() -> bool:
    """True when drawing to the browser, where widgets can be drawn and clicked."""
    return _current.get() is None


@contextlib.contextmanager
def drawing_into(canvas):
    """Make `canvas` current for the block: every step drawn inside writes to it."""
    token = _current.set(canvas)
    try:
        yield canvas
    finally:
        _current.reset(token)


def to_numpy(tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()


def markdown(body: str) -> None:
    current().markdown(body)


def caption(body: str) -> None:
    current().caption(body)


def info(body: str) -> None:
    current().info(body)


def text(body: str) -> None:
    """Preformatted text, shown as is (class names from a checkpoint, say)."""
    current().text(body)


def latex(body: str) -> None:
    """A formula, as st.latex writes it."""
    current().latex(body)


def image(picture, caption: str | None = None, width: int | str = "stretch") -> None:
    current().image(picture, caption=caption, width=width)


def show_figure(fig, key: str | None = None) -> None:
    """Every figure reaches the page (or the story file) here, written with the reader's decimal and thousands
    symbols: plotly formats its ticks and %{…} hover values by `layout.separators`."""
    current().figure(fig.update_layout(separators=separators()), key=key)


def hover_words() -> dict[str, str]:
    """`figures.HOVER_WORDS` in the reader's language: every figure with a hover box gets them as `words=`."""
    return {key: _(word) for key, word in figures.HOVER_WORDS.items()}


def columns(spec) -> list:
    return current().columns(spec)


def image_grid(items: list[tuple[np.ndarray, str]], per_row: int) -> None:
    """(picture, caption) pairs in rows of `per_row` columns."""
    for start in range(0, len(items), per_row):
        for column, (picture, label) in zip(columns(per_row), items[start : start + per_row], strict=False):
            column.image(picture, caption=label, width="stretch")
