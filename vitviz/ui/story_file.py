"""The story as one HTML file: every step's words, shape, formula and figures for one image and model.

`story_html` draws every step with the pages' own drawing code into an `HtmlCanvas` (see
`drawing`: steps write to whichever canvas is current) and wraps the result in a page that needs
nothing else: plotly.js once in its head, formulas as MathML (browsers draw it without a script or
a font to fetch; the LaTeX stays in each formula's annotation), pictures as base64 PNGs. Widgets
become a line with the reader's choice (`controls`). A byte budget bounds the file
(`limits.story_max_bytes`, 40 MB unless the deployment says otherwise): a figure that would pass it is left
out with a note.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import itertools
import logging

import numpy as np
import plotly.io as pio
import plotly.offline
from latex2mathml.converter import convert as latex_to_mathml
from markdown_it import MarkdownIt
from PIL import Image

import vitviz
from vitviz import figures, limits
from vitviz.ui import drawing, page, state, steps
from vitviz.ui.controls import View, token_label
from vitviz.ui.i18n import _, ngettext
from vitviz.ui.state import Traced
from vitviz.ui.text import plain

log = logging.getLogger("vitviz")

FRAME_BYTES = 100_000  # the page around the steps: title, contents, notation
_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")  # raw HTML in a text is shown, not run


def _markdown(body: str) -> str:
    return _MARKDOWN.render(body)


def _png(picture) -> bytes:
    if not isinstance(picture, Image.Image):
        picture = Image.fromarray(figures.to_uint8(np.asarray(picture)))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


class _Document:
    """What every canvas of one file shares: the reader's kept choices, figure ids, the byte budget."""

    def __init__(self, kept: dict, budget: int) -> None:
        self.kept = kept
        self.left = budget
        self.ids = itertools.count(1)
        self.charts = 0
        # Streamlit's own plotly template is filled in by its frontend, so a file names a complete one.
        self.template = pio.templates["plotly_white"].to_plotly_json()

    def take(self, part: str, *, always: bool = False) -> bool:
        """Count `part`'s bytes against the budget; False (and not counted) if it does not fit, unless `always`."""
        size = len(part.encode())
        if size > self.left and not always:
            return False
        self.left -= size
        return True


class HtmlCanvas:
    """A canvas (see `drawing.StreamlitCanvas` for the methods) that collects HTML."""

    def __init__(self, document: _Document) -> None:
        self.document = document
        self.parts: list[str | _Row] = []
        self._entered: list = []

    def _add(self, part: str) -> None:
        """Words: always kept (they are small), but counted."""
        self.document.take(part, always=True)
        self.parts.append(part)

    def _add_figure(self, part: str) -> bool:
        """A picture or a chart, if it fits the budget; a note in its place if not."""
        if self.document.take(part):
            self.parts.append(part)
            return True
        self._add('<p class="caption">' + html.escape(_("A figure was left out here: the file reached its size limit."))
                  + "</p>")
        return False

    def markdown(self, body: str) -> None:
        self._add(_markdown(body))

    def caption(self, body: str) -> None:
        self._add(f'<div class="caption">{_markdown(body)}</div>')

    def info(self, body: str) -> None:
        self._add(f'<div class="info">{_markdown(body)}</div>')

    def text(self, body: str) -> None:
        self._add(f"<pre>{html.escape(body)}</pre>")

    def latex(self, body: str) -> None:
        self._add(_formula(body))

    def image(self, picture, caption: str | None = None, width: int | str = "stretch") -> None:
        encoded = base64.b64encode(_png(picture)).decode("ascii")
        style = f' style="max-width:{width}px"' if isinstance(width, int) else ""
        label = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        alt = html.escape(caption or _("a picture"), quote=True)
        self._add_figure(f'<figure class="figure"{style}><img alt="{alt}" src="data:image/png;base64,{encoded}">'
                         f"{label}</figure>")

    def figure(self, fig, key: str | None = None) -> None:
        spec = fig.to_plotly_json()
        spec["layout"]["template"] = self.document.template  # as a plain dict: plotly's checks copy a template
        chart = pio.to_html(spec, validate=False, full_html=False, include_plotlyjs=False,
                            div_id=f"figure-{next(self.document.ids)}",
                            config={**drawing.FIGURE_CONFIG, "responsive": True})
        if self._add_figure(f'<div class="figure chart">{chart}</div>'):
            self.document.charts += 1

    def columns(self, spec) -> list[HtmlCanvas]:
        row = _Row([1] * spec if isinstance(spec, int) else list(spec), self.document)
        self.parts.append(row)
        return row.columns

    def kept(self, store: str, default):
        return self.document.kept.get(f"keep_{store}", default)

    def __enter__(self) -> HtmlCanvas:
        context = drawing.drawing_into(self)
        context.__enter__()
        self._entered.append(context)
        return self

    def __exit__(self, *exc_info) -> None:
        self._entered.pop().__exit__(*exc_info)

    def html(self) -> str:
        return "\n".join(part if isinstance(part, str) else part.html() for part in self.parts)


class _Row:
    def __init__(self, weights: list[float], document: _Document) -> None:
        self.weights = weights
        self.columns = [HtmlCanvas(document) for _ in weights]

    def html(self) -> str:
        cells = "".join(f'<div class="column" style="flex:{weight} 1 0">{column.html()}</div>'
                        for weight, column in zip(self.weights, self.columns, strict=True))
        return f'<div class="row">{cells}</div>'


def _formula(latex: str) -> str:
    try:
        mathml = latex_to_mathml(latex, display="block")
    except Exception:  # a construct the converter does not know: the LaTeX itself is readable
        log.exception("vitviz: converting %r to MathML failed", latex)
        return f'<pre class="formula">{html.escape(latex)}</pre>'
    return f'<div class="formula">{mathml}</div>'


def _step_section(step: steps.Step, traced: Traced, view: View, document: _Document) -> str:
    canvas = HtmlCanvas(document)
    text, shape, formula = page.header_parts(step, traced)
    canvas.markdown(text)
    if shape:
        canvas.markdown(shape.replace("&nbsp;", " "))
    head = canvas.html() + (_formula(formula) if formula else "")
    body = HtmlCanvas(document)
    try:
        with drawing.drawing_into(body):
            step.draw(traced, view)
    except Exception:  # an error boundary, as on the pages: the rest of the story is still written
        log.exception("vitviz: writing step %s into the story failed", step.key)
        body.caption(_("This part of step {key} could not be drawn.").format(key=step.key))
    return (f'<section id="step-{step.slug}"><h2>{html.escape(step.label)}</h2>\n{head}\n{body.html()}\n'
            f"</section>")


def _about(traced: Traced, view: View, model_name: str) -> str:
    config = traced.config
    grid = traced.trace.grid
    classes = ngettext("{count:,} class.", "{count:,} classes.", len(traced.labels)).format(count=len(traced.labels)) \
        if traced.labels else _("no class head.")
    lines = [
        _("**Image:** {image} · **Model:** {model}: {depth} layers of {heads} heads, d = {d}, {width}×{height} input "
          "in {p}×{p} patches, {classes}").format(
            image=plain(state.sample_title(traced.image_name)), model=plain(model_name), depth=config.depth, heads=config.heads,
            d=config.dim, width=config.image_size[1], height=config.image_size[0], p=config.patch_size,
            classes=classes),
        _("**Shown:** layer {layer}, head {head}, query {query}, colour scale {colours}: the steps inside one encoder "
          "layer show this layer and head.").format(layer=view.layer + 1, head=view.head + 1,
                                                    query=token_label(view.query, grid, traced.trace.special_labels),
                                                    colours=plain(view.colorscale)),
    ]
    if traced.trace.probs is not None:
        probs = traced.trace.probs
        top = int(probs.argmax())
        lines.append(_("**Prediction:** {label} ({probability:.1%}).").format(label=plain(traced.labels[top]),
                                                                              probability=float(probs[top])))
    return "".join(_markdown(line) for line in lines)


def story_html(traced: Traced, view: View, *, model_name: str, kept: dict, budget: int | None = None,
               language: str = "en") -> bytes:
    """Every step for `traced` at `view`, as one self-contained HTML file (UTF-8).

    `kept` holds the reader's other choices ("keep_*" values, see controls.persistent): the patch of
    steps 4 and 5, step 14's label and learning rate. Needs no Streamlit session, so it can run on
    the thread of a deferred download; its words are in the language `_` speaks there (`i18n.speaking`), whose
    code is `language`.
    """
    shown = {"keep_layer": view.layer, "keep_head": view.head, "keep_query": view.query,
             "keep_colorscale": view.colorscale}  # what `view` says wins over an older kept value
    # plotly.js is 4.8 MB; heatmaps are at most 160×160 cells, so ViT-B/16's story is about 18 MB.
    budget = limits.story_max_bytes() if budget is None else budget
    plotly_js = plotly.offline.get_plotlyjs()
    document = _Document({**kept, **shown}, budget - len(plotly_js.encode()) - FRAME_BYTES)
    sections = [_step_section(step, traced, view, document) for step in steps.STEPS]
    made = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    contents = "".join(f'<li><a href="#step-{step.slug}">{html.escape(step.label)}</a></li>' for step in steps.STEPS)
    page_html = _PAGE.format(
        language=html.escape(language, quote=True),
        title=html.escape(_("vitviz story: {image} through {model}").format(image=state.sample_title(traced.image_name), model=model_name)),
        plotly=f"<script>{plotly_js}</script>" if document.charts else "",
        about=_about(traced, view, model_name),
        written=html.escape(_("Written by vitviz {version} on {made}. Every number and figure was computed by the model "
                              "for this image. The figures are interactive (hover, zoom); the camera in a figure's "
                              "toolbar saves it as a PNG.").format(version=vitviz.__version__, made=made)),
        notation_title=html.escape(_("Notation")),
        contents=contents,
        notation=_markdown(_(page.NOTATION) + page.glossary_line()),
        sections="\n".join(sections),
    )
    return page_html.encode("utf-8")


_PAGE = """<!DOCTYPE html>
<html lang="{language}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; margin: 0 auto;
       max-width: 1200px; padding: 1rem 2rem 4rem; line-height: 1.5; }}
h1 {{ font-size: 1.8rem; margin-bottom: 0.2rem; }}
h2 {{ font-size: 1.4rem; margin-top: 3rem; padding-top: 1rem; border-top: 1px solid #ddd; }}
section {{ margin-bottom: 1rem; }}
.row {{ display: flex; gap: 1.5rem; align-items: flex-start; }}
.column {{ min-width: 0; }}
figure {{ margin: 0.5rem 0; }}
figure img {{ width: 100%; image-rendering: pixelated; display: block; }}
figcaption, .caption {{ color: #666; font-size: 0.9rem; }}
.chart {{ margin: 0.5rem 0; }}
.formula {{ font-size: 1.25rem; margin: 0.6rem 0; }}
.info {{ background: #eef3fb; border-radius: 0.5rem; padding: 0.2rem 1rem; }}
code {{ background: #f4f4f6; padding: 0.1rem 0.3rem; border-radius: 0.25rem; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ddd; padding: 0.2rem 0.6rem; }}
nav ol {{ columns: 3; }}
</style>
{plotly}
</head>
<body>
<h1>{title}</h1>
<p class="caption">{written}</p>
{about}
<nav><ol>{contents}</ol></nav>
<details><summary>{notation_title}</summary>{notation}</details>
{sections}
</body>
</html>
"""
