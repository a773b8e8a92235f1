"""The frame every step page shares: title, words, shapes, formula, figures, navigation."""

from __future__ import annotations

import logging
import re

import streamlit as st

from vitviz import steps
from vitviz.images import ImageError
from vitviz.ui import controls, navigation, render, state
from vitviz.ui.navigation import page_path

log = logging.getLogger("vitviz")

LAYER_STEPS = {s.key for s in steps.STEPS if s.key.startswith("10.")}
HEAD_STEPS = LAYER_STEPS - {"10.6", "10.8", "10.9", "10.10", "10.11", "10.12"}


def ensure_navigation() -> None:
    """Make a page look, navigate and respond the same when Streamlit ran it without app.py.

    Until some session in this process has called st.navigation, Streamlit treats a pages/
    folder as a legacy multipage app and runs a deep-linked page file on its own: no page
    config, no navigation, and widget ids that the next run will not recognise (the user's
    first click would be lost). Such a run turns the legacy mode off for the whole process,
    declares the navigation, and on a real server reruns, this time through app.py.
    """
    try:
        from streamlit.runtime import Runtime
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # a future Streamlit without the legacy mode
        return
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        navigation.configure()
        navigation.navigation()
        # AppTest runs every script in legacy mode and would lose its button clicks to a rerun;
        # it stands in a mock runtime, a real server does not.
        if Runtime.exists() and type(Runtime.instance()) is Runtime:
            st.rerun()


def sizes(config, grid: tuple[int, int]) -> dict[str, int]:
    gh, gw = grid
    return {
        "N": config.num_patches + 1, "n": gh * gw, "p": config.patch_size, "c": config.channels,
        "p'": config.patch_dim, "d": config.dim, "h": config.heads, "d_h": config.head_dim,
        "H": config.image_size[0], "W": config.image_size[1], "L": config.depth, "k": max(1, config.num_labels),
        "mlp": config.mlp_dim,
    }


_SYMBOL = re.compile(r"n\+1|p'|d_h|mlp|\b[NnpcdhHWLk]\b")


def shape_values(shape: str, values: dict[str, int]) -> str:
    """'(n+1, d)' -> '(65, 96)'."""
    def value(match: re.Match) -> str:
        token = match.group(0)
        return str(values["n"] + 1) if token == "n+1" else str(values.get(token, token))

    return _SYMBOL.sub(value, shape)


def symbols_line(values: dict[str, int]) -> str:
    order = ["n", "p", "c", "p'", "d", "h", "d_h", "L", "k"]
    return " · ".join(f"{name} = {values[name]}" for name in order)


def header(step: steps.Step, analysis: state.Analysis | None) -> None:
    st.title(step.label)
    st.markdown(step.text)
    if analysis is not None and step.shape:
        values = sizes(analysis.config, analysis.trace.grid)
        st.markdown(f"**Shape** `{step.shape}` = `{shape_values(step.shape, values)}` &nbsp;·&nbsp; {symbols_line(values)}")
    if step.formula:
        st.latex(step.formula)


def shared_controls(key: str, analysis: state.Analysis) -> None:
    """The sidebar widgets this step uses; `body` reads their kept values through `current_controls`."""
    config = analysis.config
    if key in LAYER_STEPS:
        controls.layer_head(config.depth, config.heads, with_head=key in HEAD_STEPS)
    controls.colour_scale()


def guarded(what: str, draw, *args) -> None:
    """Draw one part of a page; if it fails, say so in its place and log the traceback."""
    try:
        draw(*args)
    except Exception:  # an error boundary: the rest of the page must still render
        log.exception("vitviz: rendering %s failed", what)
        st.warning(f"This part of the page could not be drawn ({what}). The rest of the page is unaffected.")


def load_analysis() -> state.Analysis | None:
    try:
        return state.analysis()
    except ImageError as exc:
        st.error(str(exc))
    return None


def body(key: str, analysis: state.Analysis) -> None:
    """The step's own content, as both its page and the story page show it."""
    step = steps.BY_KEY[key]
    header(step, analysis)
    guarded(f"step {key}", render.RENDERERS[key], analysis, current_controls(analysis))


def current_controls(analysis: state.Analysis) -> controls.Controls:
    config = analysis.config
    kept = st.session_state
    return controls.Controls(
        layer=min(kept.get("keep_layer", 0), config.depth - 1),
        head=min(kept.get("keep_head", 0), config.heads - 1),
        query=min(kept.get("keep_query", 0), config.num_patches),
        colorscale=kept.get("keep_colorscale", "Viridis"),
    )


def nav_buttons(key: str, where: str = "bottom") -> None:
    before, after = steps.neighbours(key)
    left, _, right = st.columns([1, 2, 1])
    if before and left.button(f"← {before.label}", key=f"prev_{where}", width="stretch"):
        st.switch_page(page_path(before.key))
    if after and right.button(f"{after.label} →", key=f"next_{where}", width="stretch", type="primary"):
        st.switch_page(page_path(after.key))


def show_step(key: str) -> None:
    """A whole step page."""
    ensure_navigation()
    controls.image_picker()
    analysis = load_analysis()
    if analysis is None:
        return
    shared_controls(key, analysis)
    body(key, analysis)
    st.divider()
    nav_buttons(key)
