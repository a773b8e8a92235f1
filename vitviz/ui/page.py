"""The frame every step page shares: title, words, shape, formula, the step's drawing, navigation."""

from __future__ import annotations

import logging
import re

import streamlit as st

from vitviz import glossary
from vitviz.i18n import LANGUAGES, N_
from vitviz.images import ImageError
from vitviz.ui import controls, links, navigation, state, steps
from vitviz.ui.controls import current_view
from vitviz.ui.i18n import _, catalogue, glossed, say

log = logging.getLogger("vitviz")


def sizes(config, grid: tuple[int, int]) -> dict[str, int]:
    """Each shape symbol's value for this model and image (k only for a model with a class head)."""
    gh, gw = grid
    values = {
        "N": config.num_special + gh * gw, "n": gh * gw, "s": config.num_special, "p": config.patch_size,
        "c": config.channels,
        "p'": config.patch_dim, "d": config.dim, "h": config.heads, "d_h": config.head_dim,
        "H": config.image_size[0], "W": config.image_size[1], "L": config.depth,
        "mlp": config.mlp_dim,
    }  # fmt: skip
    if config.num_labels:
        values["k"] = config.num_labels
    return values


_SYMBOL = re.compile(r"n\+1|p'|d_h|mlp|\b[NnpcdhHWLk]\b")


def shape_values(shape: str, values: dict[str, int]) -> str:
    """'(n+1, d)' -> '(65, 96)'; n+1 stands for every token, N (n+5 with CLS and 4 registers)."""

    def value(match: re.Match) -> str:
        symbol = match.group(0)
        return str(values["N"]) if symbol == "n+1" else str(values.get(symbol, symbol))

    return _SYMBOL.sub(value, shape)


def for_model(words: str | None, specials: int) -> str | None:
    """The guide's n+1 tokens (CLS and n patches) as n+s when the model puts s special tokens in front."""
    return words if words is None or specials == 1 else words.replace("n+1", f"n+{specials}")


def symbols_line(values: dict[str, int]) -> str:
    order = ["n", "p", "c", "p'", "d", "h", "d_h", "mlp", "L", "k"] if values["s"] == 1 else \
        ["n", "s", "p", "c", "p'", "d", "h", "d_h", "mlp", "L", "k"]
    return " · ".join(f"{name} = {values[name]}" for name in order if name in values)


# The one notation every step uses; each page shows it under its formula. Row i of a matrix M is M_i.
NOTATION = N_("""
| symbol | meaning |
|---|---|
| n, s, N = s + n | patches; special tokens in front of them (CLS first; a distillation token or registers in some models); tokens |
| I, x | the picture as the model receives it (H×W pixels, c channels, values 0–255); x, the normalised input |
| p, c, p' = p²c | patch side in pixels; channels; length of a flattened patch |
| d, h, d_h = d / h | token width; heads; width of one head |
| mlp, L, k | hidden width of the MLP; number of blocks; number of classes (none without a class head) |
| X_p, E, Z, Z₀ | the n×p' matrix of flattened patches; the patch embedding; X_p E + b; Z with the special tokens and positions |
| X = X_{l−1}, X', U, M, X_l | block l's input (X₀ = Z₀); X + attention; the MLP's hidden layer; the MLP's output; the block's output |
| Q, K, V, A, P, C | queries, keys, values; scores QKᵀ/√d_h; attention, the row softmax of A; contexts P V |
| O, λ₁, λ₂ | the attention's output; LayerScale's factors, in models that have it (X' = X + λ₁ ⊙ O) |
| i, j; m; l | query and key token indices (0..N−1); head (m = 1..h); block (l = 1..L) |
| y, p̂, t | the CLS output after the final LayerNorm; the class probabilities; the true class (step 14) |

Shapes leave out the batch dimension: the model reads a batch of one image. Row i of a matrix M is written M_i.

Numbering, everywhere: layers, heads and the grid's rows and columns count from 1 ("Layer 1", "Head 1",
"row 1, col 1"), while tokens, patches and every matrix's rows and columns count from 0, as the figures' axes
do: tokens 0 to s − 1 are the special tokens (token 0 is CLS) and patch i, read row by row, is token i + s.
""")


def header_parts(step: steps.Step, traced: state.Traced | None) -> tuple[str, str | None, str | None]:
    """A step's words, its shape line and its formula, for the model in use (the page and the story file)."""
    specials = traced.config.num_special if traced is not None else 1
    shape, symbols = None, step.shape_for(traced) if traced is not None else ""
    if symbols:
        values = sizes(traced.config, traced.trace.grid)
        shape = ("**" + _("Shape") + f"** `{for_model(symbols, specials)}` = `{shape_values(symbols, values)}` "
                 f"&nbsp;·&nbsp; {symbols_line(values)}")
    text = glossed(for_model(step.text_for(traced), specials))  # each key term's English where the page first uses it
    return text, shape, for_model(step.formula_for(traced), specials)


def glossary_line() -> str:
    """The key terms as the reader's language writes them beside the guide's English ones (empty in English)."""
    language = catalogue().language
    terms = glossary.TERMS.get(language)
    if not terms:
        return ""
    pairs = " · ".join(f"{term.word} = {term.english}" for term in terms)
    return "\n\n**" + _("{language} and English").format(language=LANGUAGES[language]) + ":** " + pairs


def header(step: steps.Step, traced: state.Traced | None) -> None:
    text, shape, formula = header_parts(step, traced)
    st.title(step.label)
    st.markdown(text)
    if shape:
        st.markdown(shape)
    if formula:
        st.latex(formula)
        with st.expander(_("Notation")):
            st.markdown(_(NOTATION) + glossary_line())


def sidebar_controls(uses: frozenset[str], traced: state.Traced) -> None:
    """The sidebar widgets for the shared controls in `uses`; steps read their values through `current_view`."""
    config = traced.config
    if steps.LAYER in uses:
        controls.layer_head(config.depth, config.heads, with_head=steps.HEAD in uses)
    controls.colour_scale()


def guarded(what: str, draw, *args) -> None:
    """Draw one part of a page; if it fails, say so in its place and log the traceback."""
    try:
        draw(*args)
    except Exception:  # an error boundary: the rest of the page must still render
        log.exception("vitviz: rendering %s failed", what)
        st.warning(_("This part of the page could not be drawn ({what}). The rest of the page is unaffected.").format(
            what=what))


def load_traced() -> state.Traced | None:
    """The session's image through its model, or None after saying in one sentence why not."""
    try:
        return state.traced()
    except ImageError as exc:
        st.error(say(exc))
    return None


def body(step: steps.Step, traced: state.Traced) -> None:
    """The step's own content, as both its page and the story page show it."""
    header(step, traced)
    guarded(_("step {key}").format(key=step.key), step.draw, traced, current_view(traced.config))


def nav_buttons(step: steps.Step, where: str = "bottom") -> None:
    before, after = steps.neighbours(step.key)
    left, _middle, right = st.columns([1, 2, 1])
    if before and left.button(f"← {before.label}", key=f"prev_{where}", width="stretch"):
        st.switch_page(before.page, query_params=links.query())
    if after and right.button(f"{after.label} →", key=f"next_{where}", width="stretch", type="primary"):
        st.switch_page(after.page, query_params=links.query())


def show_step(key: str) -> None:
    """A whole step page."""
    navigation.ensure_navigation()
    step = steps.BY_KEY[key]
    controls.image_picker()
    traced = load_traced()
    if traced is None:
        return
    sidebar_controls(step.controls, traced)
    body(step, traced)
    st.divider()
    nav_buttons(step)
