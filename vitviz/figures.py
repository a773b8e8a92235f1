"""Pure figure builders: numpy arrays in, plotly figures (or RGB arrays) out.

Nothing here knows about Streamlit or torch (PIL only draws labels into pictures). Large matrices are reduced before they are
drawn (`shrink`), so a figure stays light in the browser whatever the model's size.
"""

from __future__ import annotations

import functools
import html
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image, ImageDraw
from plotly.colors import sample_colorscale

from vitviz.i18n import N_  # marks the English words below for the catalogue; the page translates them

CHANNEL_COLOURS = ("#d62728", "#2ca02c", "#1f77b4")
MAX_CELLS = 160  # per axis: beyond this a heatmap is block-averaged
COLOUR_SCALES = ("Viridis", "Inferno", "RdBu_r", "Cividis", "Turbo", "Greys")


def _labels(names) -> list[str]:
    """Category labels as plotly shows them: it renders some HTML in text (links among it), so escape it."""
    return [html.escape(str(name)) for name in names]


def layout(fig: go.Figure, title: str | None = None, height: int = 360, **kwargs) -> go.Figure:
    """The one look every figure shares: a small left-aligned title, tight margins, a fixed height."""
    fig.update_layout(
        title=dict(text=title, x=0, font=dict(size=14)) if title else None,
        height=height,
        margin=dict(l=10, r=10, t=40 if title else 10, b=10),
        **kwargs,
    )
    return fig


def shrink(matrix: np.ndarray, limit: int = MAX_CELLS) -> tuple[np.ndarray, int, int]:
    """Block-average a 2-D array so neither side exceeds `limit`; returns (array, row step, col step)."""
    rows, cols = matrix.shape
    rs, cs = max(1, -(-rows // limit)), max(1, -(-cols // limit))
    if rs == 1 and cs == 1:
        return matrix, 1, 1
    padded = np.full((-(-rows // rs) * rs, -(-cols // cs) * cs), np.nan)
    padded[:rows, :cols] = matrix
    blocks = padded.reshape(padded.shape[0] // rs, rs, padded.shape[1] // cs, cs)
    return np.nanmean(blocks, axis=(1, 3)), rs, cs


PATCH_NAMES = ("patch {index}", "patches {first}–{last}")
# The words figures write in their hover boxes, in English; a page passes them in its reader's language as
# `words=` (`drawing.hover_words()`). A {placeholder} is filled with plotly's %{…} or a number.
HOVER_WORDS = {"row": N_("row"), "column": N_("column"), "value": N_("value"),
               "blocks": N_("mean of {rows}×{cols} blocks"), "index": N_("index"),
               "position": N_("position in the flattened patch"), "share": N_("{share} of the patches"),
               "random order": N_("random order"), "cosine": N_("cosine similarity"), "head": N_("head {head}")}  # a token axis's cells: one patch, a block of them


def token_groups(length: int, specials: Sequence[str], limit: int = MAX_CELLS,
                 patch_names: tuple[str, str] = PATCH_NAMES) -> tuple[np.ndarray, list[str]]:
    """Cells along a token axis: each special token (CLS, distillation, registers) alone, then the patches in
    blocks of equal size so there are at most `limit` cells. Returns (each cell's first token, its label)."""
    count = len(specials)
    patches = length - count
    step = max(1, -(-patches // max(1, limit - count)))
    starts = np.concatenate([np.arange(count), np.arange(count, length, step)]).astype(int)
    one, block = patch_names
    names = [one.format(index=i) if step == 1 else block.format(first=i, last=min(i + step, patches) - 1)
             for i in range(0, patches, step)]
    return starts, [*specials, *names]


def _group_means(matrix: np.ndarray, starts: np.ndarray, axis: int) -> np.ndarray:
    sizes = np.diff(np.append(starts, matrix.shape[axis]))
    return np.add.reduceat(matrix, starts, axis=axis) / np.expand_dims(sizes, 1 - axis)


def _token_cells(matrix: np.ndarray, special_rows: Sequence[str], special_cols: Sequence[str],
                 patch_names: tuple[str, str] = PATCH_NAMES):
    """(cells, row starts, row labels or None, col starts, col labels or None): token axes grouped by
    `token_groups`, any other axis block-averaged like `shrink`."""
    axes = []
    for axis, specials in ((0, special_rows), (1, special_cols)):
        length = matrix.shape[axis]
        if specials:
            starts, names = token_groups(length, specials, patch_names=patch_names)
        else:
            starts, names = np.arange(0, length, max(1, -(-length // MAX_CELLS))), None
        matrix = _group_means(matrix, starts, axis)
        axes += [starts, names]
    return matrix, *axes


def heatmap(
    matrix: np.ndarray,
    *,
    title: str | None = None,
    x_title: str = "",
    y_title: str = "",
    colorscale: str = "RdBu_r",
    centred: bool = True,
    height: int = 360,
    y_labels: list[str] | None = None,
    x_labels: list[str] | None = None,
    value_name: str | None = None,
    highlight_row: int | None = None,
    special_rows: Sequence[str] = (),
    special_cols: Sequence[str] = (),
    patch_names: tuple[str, str] = PATCH_NAMES,
    words: dict[str, str] = HOVER_WORDS,
) -> go.Figure:
    """A matrix as a heatmap with hover values; big matrices are block-averaged first.

    When rows (or columns) are tokens, `special_rows` (`special_cols`) names the special tokens in front
    (CLS, distillation, registers): they keep a labelled row each, a line sets them apart from the patches,
    and only the patches are block-averaged; `patch_names` label the patches' cells. The hover box names the row, the
    column and the value (`value_name`, else words["value"]) in `words`.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    value_name = words["value"] if value_name is None else value_name
    if special_rows or special_cols:
        return _token_heatmap(matrix, special_rows, special_cols, title=title, x_title=x_title, y_title=y_title,
                              colorscale=colorscale, centred=centred, height=height, value_name=value_name,
                              highlight_row=highlight_row, patch_names=patch_names, words=words)
    small, rs, cs = shrink(matrix)
    ys = _labels(y_labels) if (y_labels is not None and rs == 1) else list(range(0, matrix.shape[0], rs))
    xs = _labels(x_labels) if (x_labels is not None and cs == 1) else list(range(0, matrix.shape[1], cs))
    bound = float(np.nanmax(np.abs(small))) if centred and small.size else None
    note = " (" + words["blocks"].format(rows=rs, cols=cs) + ")" if rs * cs > 1 else ""
    fig = go.Figure(
        go.Heatmap(
            z=small.astype(np.float32),  # half the bytes of float64, and more digits than the hover shows
            x=xs,
            y=ys,
            colorscale=colorscale,
            zmid=0 if centred else None,
            zmin=-bound if bound else None,
            zmax=bound if bound else None,
            hovertemplate=_cell_hover(words, value_name + note, x_title, y_title),
            colorbar=dict(thickness=12),
        )
    )
    fig.update_yaxes(autorange="reversed", title=y_title, type="category" if y_labels is not None else None,
                     showticklabels=matrix.shape[0] > 1)
    fig.update_xaxes(title=x_title, type="category" if x_labels is not None else None)
    if highlight_row is not None:
        # Category axes place cells at 0, 1, 2…; numeric ones at the (block) row index.
        row = highlight_row if y_labels is not None and rs == 1 else (highlight_row // rs) * rs
        half = 0.5 if y_labels is not None and rs == 1 else rs / 2
        fig.add_shape(type="rect", xref="paper", x0=0, x1=1, y0=row - half, y1=row + half,
                      line=dict(color="#f59e0b", width=2))
    return layout(fig, title, height)


def _cell_hover(words: dict[str, str], value_name: str, x_title: str, y_title: str) -> str:
    """A heatmap cell's hover box: each axis by its title (the row's and the column's words when untitled), and the value."""
    row, column = (html.escape(title or words[word]) for title, word in ((y_title, "row"), (x_title, "column")))
    return f"{row}: %{{y}}<br>{column}: %{{x}}<br>{html.escape(value_name)}: %{{z:.4f}}<extra></extra>"


def _token_ticks(names: list[str], specials: int, pixels: float, spacing: int = 14, patches_shown: int = 12) -> dict:
    """Ticks for a token axis `pixels` long: every special token by name when they fit `spacing` pixels apart (else
    CLS alone), and about `patches_shown` of the patch cells, clear of them (plotly would thin all alike)."""
    apart = max(1, -(-spacing * len(names) // max(int(pixels), 1)))  # cells between two readable ticks
    every = max(apart, -(-(len(names) - specials) // patches_shown))
    first = names[:specials] if apart == 1 else names[:1]
    ticks = first + names[specials + (every if apart > 1 else 0) :: every]  # patch 0 only when there is room
    return dict(tickmode="array", tickvals=ticks, ticktext=ticks)


def _token_heatmap(matrix: np.ndarray, special_rows: Sequence[str], special_cols: Sequence[str], *, title, x_title,
                   y_title, colorscale, centred, height, value_name, highlight_row, patch_names, words) -> go.Figure:
    small, row_starts, row_names, col_starts, col_names = _token_cells(matrix, special_rows, special_cols, patch_names)
    ys = _labels(row_names) if row_names else [int(i) for i in row_starts]
    xs = _labels(col_names) if col_names else [int(i) for i in col_starts]
    bound = float(np.abs(small).max()) if centred and small.size else None
    fig = go.Figure(go.Heatmap(
        z=small, x=xs, y=ys, colorscale=colorscale, zmid=0 if centred else None,
        zmin=-bound if bound else None, zmax=bound if bound else None, colorbar=dict(thickness=12),
        hovertemplate=_cell_hover(words, value_name, x_title, y_title),
    ))
    fig.update_yaxes(autorange="reversed", title=y_title, type="category" if row_names else None,
                     showticklabels=matrix.shape[0] > 1,
                     **_token_ticks(ys, len(special_rows), height - 90) if row_names else {})
    fig.update_xaxes(title=x_title, type="category" if col_names else None,
                     **_token_ticks(xs, len(special_cols), 800, 40) if col_names else {})  # a figure: about 800 px
    line = dict(color="rgba(255,255,255,0.9)", width=1, dash="dot")
    if len(special_rows) and row_names:  # between the last special token and the first patch
        fig.add_shape(type="line", xref="paper", x0=0, x1=1, y0=len(special_rows) - 0.5, y1=len(special_rows) - 0.5,
                      line=line)
    if len(special_cols) and col_names:
        fig.add_shape(type="line", yref="paper", y0=0, y1=1, x0=len(special_cols) - 0.5, x1=len(special_cols) - 0.5,
                      line=line)
    if highlight_row is not None and row_names:  # outline the cell that holds token `highlight_row`
        cell = int(np.searchsorted(row_starts, highlight_row, side="right") - 1)
        fig.add_shape(type="rect", xref="paper", x0=0, x1=1, y0=cell - 0.5, y1=cell + 0.5,
                      line=dict(color="#f59e0b", width=2))
    return layout(fig, title, height)


def vector_strip(values: np.ndarray, *, title: str | None = None, colorscale: str = "RdBu_r", height: int = 130,
                 x_title: str | None = None, words: dict[str, str] = HOVER_WORDS) -> go.Figure:
    """One vector as a 1×len strip (its axis titled words["index"] unless `x_title` says otherwise)."""
    return heatmap(np.asarray(values)[None, :], title=title, colorscale=colorscale, height=height,
                   x_title=words["index"] if x_title is None else x_title, words=words)


def channel_bars(flat: np.ndarray, channels: int, *, title: str | None = None, height: int = 240,
                 words: dict[str, str] = HOVER_WORDS) -> go.Figure:
    """A flattened patch (p·p·c values, channels last) as bars coloured by channel."""
    flat = np.asarray(flat)
    fig = go.Figure()
    names = ("R", "G", "B") if channels == 3 else tuple(f"ch{i}" for i in range(channels))
    for ch in range(channels):
        idx = np.arange(ch, flat.size, channels)
        fig.add_bar(x=idx, y=flat[idx], name=names[ch], marker_color=CHANNEL_COLOURS[ch % 3],
                    hovertemplate=f"{names[ch]} · {html.escape(words['index'])} %{{x}}<br>%{{y:.3f}}<extra></extra>")
    fig.update_layout(bargap=0, legend=dict(orientation="h", y=1.15))
    fig.update_xaxes(title=words["position"])
    return layout(fig, title, height)


def channel_histograms(pixels: np.ndarray, *, title: str | None = None, height: int = 260, x_title: str = "value",
                       y_title: str = "pixels") -> go.Figure:
    """Histogram of each channel's values; pixels (c, H, W)."""
    fig = go.Figure()
    names = ("R", "G", "B")
    # Counted here, not by plotly: the browser gets 50 bars a channel instead of every pixel's value.
    edges = np.linspace(float(pixels.min()), float(pixels.max()) + 1e-6, 51)
    centres, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
    for ch in range(pixels.shape[0]):
        counts, _ = np.histogram(pixels[ch], bins=edges)
        fig.add_bar(x=centres, y=counts, width=width, name=names[ch % 3], marker_color=CHANNEL_COLOURS[ch % 3],
                    opacity=0.55, hovertemplate="%{x:.2f}: %{y} " + y_title + "<extra></extra>")
    fig.update_layout(barmode="overlay", bargap=0, legend=dict(orientation="h", y=1.15))
    fig.update_xaxes(title=x_title)
    fig.update_yaxes(title=y_title)
    return layout(fig, title, height)


def bars(values: np.ndarray, labels: list[str], *, title: str | None = None, height: int = 300,
         highlight: int | None = None, value_format: str = ".3f", x_title: str = "", top: float | None = None,
         number=format) -> go.Figure:
    """Horizontal bars, largest on top, each labelled with its value written by `number(value, value_format)`
    (the page passes the reader's way of writing numbers; a percentage's sign goes where the reader puts it).
    `top` ends the value axis there (several charts on one scale)."""
    colours = ["#4f46e5" if i != highlight else "#f59e0b" for i in range(len(values))]
    fig = go.Figure(go.Bar(x=values, y=_labels(labels), orientation="h", marker_color=colours,
                           text=[number(v, value_format) for v in values], textposition="auto",
                           hovertemplate="%{y}: %{text}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title=x_title, range=None if top is None else [0, top])
    if value_format.endswith("%"):
        fig.update_xaxes(percent_ticks(max(values, default=1.0) if top is None else top, number))
    return layout(fig, title, height)


def percent_ticks(top: float, number=format, most: int = 6) -> dict:
    """An axis from 0 to `top` (a fraction) labelled in whole percentages written by `number`: plotly's own ".0%"
    always puts the sign after the number, which Turkish puts in front (%50)."""
    top = max(float(top), 1e-9)
    step = next((s for s in (0.01, 0.02, 0.05, 0.1, 0.2, 0.25) if top / s <= most - 1), 0.25)
    ticks = np.arange(0, top + step / 2, step)
    return dict(tickmode="array", tickvals=ticks, ticktext=[number(t, ".0%") for t in ticks])


def grouped_bars(series: dict[str, np.ndarray], labels: Sequence[str], *, title: str | None = None,
                 x_title: str = "", y_title: str = "", level: tuple[float, str] | None = None,
                 height: int = 300) -> go.Figure:
    """Vertical bars, one group per label and one bar per series; `level` (value, name) a dashed line across."""
    fig = go.Figure()
    names = _labels(labels)
    for name, values in series.items():
        fig.add_bar(x=names, y=np.asarray(values, dtype=float), name=html.escape(name),
                    hovertemplate=html.escape(name) + " · %{x}: %{y:.3f}<extra></extra>")
    if level is not None:  # a shape, not a trace: it spans the plot however few groups there are
        value, name = level
        fig.update_layout(
            shapes=[dict(type="line", xref="paper", x0=0, x1=1, y0=value, y1=value, line=dict(color="#888", dash="dash"))],
            annotations=[dict(xref="paper", x=1, y=value, text=html.escape(name), showarrow=False, xanchor="right",
                              yanchor="bottom", font=dict(size=11, color="#555"))])
    fig.update_xaxes(title=x_title, type="category")
    fig.update_yaxes(title=y_title, rangemode="tozero")
    fig.update_layout(barmode="group", legend=dict(orientation="h", x=0, y=-0.15, yanchor="top"))
    return layout(fig, title, height)


def lines(series: dict[str, np.ndarray], *, x: np.ndarray | None = None, title: str | None = None,
          x_title: str = "", y_title: str = "", height: int = 300, legend_right: bool = False,
          whole_x: bool = False) -> go.Figure:
    """One line per series; `legend_right` for many series, `whole_x` for an axis of whole numbers (layers)."""
    fig = go.Figure()
    for name, ys in series.items():
        xs = np.arange(len(ys)) if x is None else (_labels(x) if np.asarray(x).dtype.kind in "UO" else x)
        fig.add_scatter(x=xs, y=ys, mode="lines+markers", name=name)
    fig.update_xaxes(title=x_title, dtick=1 if whole_x else None)
    fig.update_yaxes(title=y_title)
    fig.update_layout(legend=dict(orientation="v", x=1.02, y=1, yanchor="top") if legend_right else
                      dict(orientation="h", y=1.15))
    return layout(fig, title, height)


def perturbation_curves(fractions: np.ndarray, curves: dict[str, np.ndarray], random: np.ndarray, *,
                        title: str | None = None, x_title: str = "", y_title: str = "probability",
                        highlight: str | None = None, height: int = 320, words: dict[str, str] = HOVER_WORDS,
                        number=format) -> go.Figure:
    """Deletion or insertion curves: one line per map, the random orders' mean dashed, `highlight` drawn thicker.
    The fractions are written as percentages by `number` (the reader's way)."""
    fig = go.Figure()
    shares = [number(f, ".0%") for f in fractions]
    share = html.escape(words["share"]).format(share="%{customdata}") + ": %{y:.3f}<extra></extra>"
    for name, ys in curves.items():
        fig.add_scatter(x=fractions, y=ys, customdata=shares, mode="lines", name=html.escape(name),
                        line=dict(width=4 if name == highlight else 1.8), hovertemplate=f"{html.escape(name)}<br>{share}")
    random_name = html.escape(words["random order"])
    fig.add_scatter(x=fractions, y=random, customdata=shares, mode="lines", name=random_name,
                    line=dict(color="#888", dash="dash"), hovertemplate=f"{random_name}<br>{share}")
    fig.update_xaxes(percent_ticks(1.0, number), title=x_title, range=[0, 1])
    fig.update_yaxes(title=y_title, range=[-0.02, 1.02])
    fig.update_layout(legend=dict(orientation="h", y=-0.25))
    return layout(fig, title, height)



def column_dividers(fig: go.Figure, xs: Sequence[float], colour: str = "#111", width: int = 2) -> go.Figure:
    """Vertical lines across the whole plot at `xs` (e.g. between heads), added in one layout update:
    plotly's add_vline re-validates every shape on each call, 10 ms a line at ViT-B's 11 head borders."""
    lines = [dict(type="line", xref="x", yref="paper", x0=x, x1=x, y0=0, y1=1, line=dict(color=colour, width=width))
             for x in xs]
    fig.update_layout(shapes=[*fig.layout.shapes, *lines])
    return fig

# --- images (RGB uint8 arrays), shown with st.image -------------------------------------------


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] or uint8 -> uint8."""
    if image.dtype == np.uint8:
        return image
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement, so every pixel stays a crisp square."""
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def draw_grid(image: np.ndarray, patch: int, factor: int, colour=(255, 255, 255), highlight: int | None = None) -> np.ndarray:
    """Upscale an image and draw the patch grid on it; optionally outline one patch (row-major index)."""
    big = upscale(to_uint8(image), factor).copy()
    step = patch * factor
    big[::step, :] = colour
    big[:, ::step] = colour
    big[-1, :] = colour
    big[:, -1] = colour
    if highlight is not None:
        gw = image.shape[1] // patch
        r, c = divmod(highlight, gw)
        y0, x0 = r * step, c * step
        for t in range(max(2, factor // 2)):
            big[y0 + t, x0 : x0 + step] = (255, 200, 0)
            big[min(y0 + step - 1 - t, big.shape[0] - 1), x0 : x0 + step] = (255, 200, 0)
            big[y0 : y0 + step, x0 + t] = (255, 200, 0)
            big[y0 : y0 + step, min(x0 + step - 1 - t, big.shape[1] - 1)] = (255, 200, 0)
    return big


def outline_box(image: np.ndarray, box: tuple[int, int, int, int], colour=(255, 200, 0), width: int = 3) -> np.ndarray:
    """A copy of `image` (h, w, 3) with the box (left, top, right, bottom) outlined inside its edges."""
    out = to_uint8(image).copy()
    left, top, right, bottom = (int(v) for v in box)
    right, bottom = min(right, out.shape[1]), min(bottom, out.shape[0])
    for t in range(width):
        out[min(top + t, bottom - 1), left:right] = colour
        out[max(bottom - 1 - t, top), left:right] = colour
        out[top:bottom, min(left + t, right - 1)] = colour
        out[top:bottom, max(right - 1 - t, left)] = colour
    return out


def mosaic(tiles: np.ndarray, columns: int, gap: int = 2, factor: int = 1, background: int = 255) -> np.ndarray:
    """Tiles (N, h, w, 3) laid out in a grid with gaps."""
    tiles = to_uint8(tiles)
    n, h, w, _ = tiles.shape
    rows = -(-n // columns)
    h, w = h * factor, w * factor
    out = np.full((rows * (h + gap) - gap, columns * (w + gap) - gap, 3), background, np.uint8)
    for i in range(n):
        r, c = divmod(i, columns)
        out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = upscale(tiles[i], factor)
    return out


def labelled_mosaic(tiles: np.ndarray, columns: int, row_labels: list[str], column_labels: list[str],
                    gap: int = 2, margin: int = 34) -> np.ndarray:
    """`mosaic` with a label left of each row and above each column: many small maps as one picture, so the
    browser gets one image instead of one element per map."""
    grid = mosaic(tiles, columns, gap=gap)
    out = np.full((grid.shape[0] + margin // 2, grid.shape[1] + margin, 3), 255, np.uint8)
    out[margin // 2 :, margin:] = grid
    picture = Image.fromarray(out)
    pen = ImageDraw.Draw(picture)
    h, w = tiles.shape[1:3]
    for r, label in enumerate(row_labels):
        pen.text((2, margin // 2 + r * (h + gap) + h // 2), label, fill=(40, 40, 40), anchor="lm")
    for c, label in enumerate(column_labels):
        pen.text((margin + c * (w + gap) + w // 2, margin // 4), label, fill=(40, 40, 40), anchor="mm")
    return np.asarray(picture)


def captioned_mosaic(tiles: np.ndarray, columns: int, captions: list[str], gap: int = 6, line: int = 16) -> np.ndarray:
    """`mosaic` with a caption under each tile: many small maps as one picture (one element for the browser)."""
    tiles = to_uint8(tiles)
    n, h, w, _ = tiles.shape
    rows = -(-n // columns)
    out = np.full((rows * (h + line + gap) - gap, columns * (w + gap) - gap, 3), 255, np.uint8)
    picture = Image.fromarray(out)
    pen = ImageDraw.Draw(picture)
    for i, (tile, caption) in enumerate(zip(tiles, captions, strict=True)):
        r, c = divmod(i, columns)
        top, left = r * (h + line + gap), c * (w + gap)
        picture.paste(Image.fromarray(tile), (left, top))
        pen.text((left + w // 2, top + h + line // 2), caption, fill=(60, 60, 60), anchor="mm")
    return np.asarray(picture)


def filters_as_images(weight: np.ndarray, patch: int, channels: int) -> np.ndarray:
    """Patch-embedding filters E (d, p·p·c) as (d, p, p, c) images, each stretched to [0, 1]."""
    tiles = weight.reshape(weight.shape[0], patch, patch, channels)
    low = tiles.min(axis=(1, 2, 3), keepdims=True)
    high = tiles.max(axis=(1, 2, 3), keepdims=True)
    return (tiles - low) / np.maximum(high - low, 1e-12)


def colourise(values: np.ndarray, colorscale: str = "Viridis", vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """A 2-D array mapped through a plotly colour scale -> (.., 3) uint8."""
    values = np.asarray(values, dtype=np.float64)
    lo = float(values.min()) if vmin is None else vmin
    hi = float(values.max()) if vmax is None else vmax
    t = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    return colour_table(colorscale)[np.clip((t * 255).round().astype(int), 0, 255)]


@functools.lru_cache(maxsize=32)
def colour_table(colorscale: str) -> np.ndarray:
    """The colour scale sampled at 256 steps, (256, 3) uint8, read-only.

    Kept per scale name because plotly's sampler validates every colour it returns: building the
    table took 16-50 ms, a dozen times a page where every layer has its own overlay.
    """
    table = np.array([_rgb(c) for c in sample_colorscale(colorscale, np.linspace(0, 1, 256))], dtype=np.uint8)
    table.flags.writeable = False
    return table


def _rgb(colour: str) -> tuple[int, int, int]:
    if colour.startswith("#"):
        return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
    inside = colour[colour.index("(") + 1 : colour.index(")")]
    return tuple(int(round(float(v))) for v in inside.split(",")[:3])


def enlargement(image: np.ndarray, size: int) -> int:
    """The whole-number factor that brings an image's longer side to about `size` pixels (at least 1)."""
    return max(1, size // max(image.shape[:2]))


def fitted(image: np.ndarray, grid: tuple[int, int], size: int) -> np.ndarray:
    """A uint8 picture brought to about `size` pixels on its longer side, its sides whole multiples of the
    patch grid (gh, gw): enlarged by a whole factor when small, so its pixels stay crisp squares, and
    reduced by area averaging when larger (a 224-pixel input shown as a 160-pixel thumbnail)."""
    if max(image.shape[:2]) <= size:
        return upscale(image, enlargement(image, size))
    cell = max(1, size // max(grid))
    return np.asarray(Image.fromarray(image).resize((grid[1] * cell, grid[0] * cell), Image.Resampling.BOX))


def attention_overlay(image: np.ndarray, per_patch: np.ndarray, *, size: int = 256, opacity: float = 0.6,
                      colorscale: str = "Inferno", vmax: float | None = None, weighted_opacity: bool = False,
                      outline: int | None = None) -> np.ndarray:
    """The image with one value per patch, a (gh, gw) map, laid over it; about `size` pixels on its longer side
    (`fitted`).

    Colours span the map's own range, or 0..`vmax` so several maps compare. With `weighted_opacity`
    a patch is covered more the larger its value, so low-attention parts of the picture stay
    readable. `outline` marks one patch (row-major index), e.g. the query.
    """
    gh, gw = per_patch.shape
    base = fitted(to_uint8(image), (gh, gw), size).astype(np.float32)
    cell_h, cell_w = base.shape[0] // gh, base.shape[1] // gw
    heat = colourise(per_patch, colorscale, vmin=0.0 if vmax is not None else None, vmax=vmax).astype(np.float32)
    if weighted_opacity:
        top = vmax if vmax is not None else float(per_patch.max()) or 1.0
        cover = (0.25 + 0.7 * np.clip(per_patch / top, 0.0, 1.0))[..., None].astype(np.float32)
    else:
        cover = np.full((gh, gw, 1), opacity, dtype=np.float32)
    heat, cover = (np.repeat(np.repeat(a, cell_h, axis=0), cell_w, axis=1) for a in (heat, cover))
    out = ((1 - cover) * base + cover * heat).astype(np.uint8)
    return out if outline is None else draw_outline(out, outline, gw, cell_h, cell_w)


def draw_outline(image: np.ndarray, index: int, gw: int, cell_h: int, cell_w: int, colour=(0, 255, 255)) -> np.ndarray:
    out = image.copy()
    r, c = divmod(index, gw)
    y0, x0, y1, x1 = r * cell_h, c * cell_w, (r + 1) * cell_h - 1, (c + 1) * cell_w - 1
    for t in range(2):
        out[y0 + t, x0 : x1 + 1] = colour
        out[y1 - t, x0 : x1 + 1] = colour
        out[y0 : y1 + 1, x0 + t] = colour
        out[y0 : y1 + 1, x1 - t] = colour
    return out


def pca_colours(vectors: np.ndarray) -> np.ndarray:
    """The first three principal components of row vectors, each stretched to [0, 1]: (N, 3)."""
    centred = vectors - vectors.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    components = centred @ vt[:3].T
    if components.shape[1] < 3:
        components = np.pad(components, ((0, 0), (0, 3 - components.shape[1])))
    low, high = components.min(axis=0), components.max(axis=0)
    return (components - low) / np.maximum(high - low, 1e-12)


def similarity_tiles(similarity: np.ndarray, grid: tuple[int, int], *, title: str | None = None, height: int = 520,
                     words: dict[str, str] = HOVER_WORDS) -> go.Figure:
    """(n, n) similarities between patch positions as a gh×gw grid of gh×gw tiles (ViT paper, Fig. 7)."""
    gh, gw = grid
    gap = 1
    canvas = np.full((gh * (gh + gap), gw * (gw + gap)), np.nan)
    for i in range(gh * gw):
        r, c = divmod(i, gw)
        canvas[r * (gh + gap) : r * (gh + gap) + gh, c * (gw + gap) : c * (gw + gap) + gw] = similarity[i].reshape(gh, gw)
    # Stretch the colours over the values present (learned embeddings rarely go below 0), as the paper does.
    low = float(np.nanmin(canvas))
    fig = go.Figure(go.Heatmap(z=canvas.astype(np.float32), colorscale="Viridis", zmin=min(low, 0.999), zmax=1, hoverongaps=False,
                               hovertemplate=html.escape(words["cosine"]) + " %{z:.3f}<extra></extra>",
                               colorbar=dict(thickness=12)))
    fig.update_yaxes(autorange="reversed", showticklabels=False, scaleanchor="x", showgrid=False, zeroline=False)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    return layout(fig, title, height)


def distance_scatter(series: dict[str, np.ndarray], *, title: str | None = None, height: int = 320,
                     x_title: str = "layer", y_title: str = "mean attention distance (pixels)",
                     words: dict[str, str] = HOVER_WORDS) -> go.Figure:
    """(L, h) distances per series: one dot per head at its layer, slightly offset per series."""
    fig = go.Figure()
    symbols = ("circle", "diamond", "square")
    for index, (name, values) in enumerate(series.items()):
        layers, heads = values.shape
        xs = np.repeat(np.arange(1, layers + 1), heads) + (index - (len(series) - 1) / 2) * 0.15
        fig.add_scatter(x=xs, y=values.ravel(), mode="markers", name=name, marker=dict(size=8, symbol=symbols[index % 3]),
                        customdata=np.tile(np.arange(1, heads + 1), layers),
                        hovertemplate=html.escape(words["head"]).format(head="%{customdata}") + "<br>%{y:.1f} px<extra>"
                        + html.escape(name) + "</extra>")
    fig.update_xaxes(title=x_title, dtick=1)
    fig.update_yaxes(title=y_title, rangemode="tozero")
    fig.update_layout(legend=dict(orientation="h", y=1.15))
    return layout(fig, title, height)


def activation_curve(z: np.ndarray, activation: np.ndarray, *, points: tuple[np.ndarray, np.ndarray] | None = None,
                     name: str = "GELU(z)", points_name: str = "", title: str | None = None, height: int = 300,
                     x_title: str = "z, the hidden unit's input", y_title: str = "output") -> go.Figure:
    """An activation function drawn as the curve (z, activation), with optional points (z, f(z)) laid on it."""
    fig = go.Figure()
    fig.add_scatter(x=z, y=activation, mode="lines", name=name, line=dict(color="#4f46e5", width=2),
                    hovertemplate="z %{x:.2f}<br>%{y:.3f}<extra></extra>")
    if points is not None:
        fig.add_scatter(x=points[0], y=points[1], mode="markers", name=_labels([points_name])[0],
                        marker=dict(color="#f59e0b", size=6, opacity=0.6, line=dict(width=0)),
                        hovertemplate="z %{x:.2f}<br>%{y:.3f}<extra></extra>")
    fig.add_hline(y=0, line=dict(color="#999", width=1))
    fig.add_vline(x=0, line=dict(color="#999", width=1))
    fig.update_xaxes(title=x_title)
    fig.update_yaxes(title=y_title)
    # Top left inside the axes: an activation stays near 0 there, so nothing is hidden.
    fig.update_layout(legend=dict(x=0.02, y=0.98, xanchor="left", yanchor="top", bgcolor="rgba(255,255,255,0.8)"))
    return layout(fig, title, height)


# --- token norms (the attention explorer's Token norms tab) -----------------------------------


def mark_patches(picture: np.ndarray, indices, grid: tuple[int, int], colour=(0, 255, 255)) -> np.ndarray:
    """`picture`, an image of a gh×gw patch grid, with the patches at `indices` (row-major) outlined."""
    cell_h, cell_w = picture.shape[0] // grid[0], picture.shape[1] // grid[1]
    for index in indices:
        picture = draw_outline(picture, int(index), grid[1], cell_h, cell_w, colour)
    return picture


# The words norm_histogram and norm_heatmap write on their figures (a page passes them in its reader's language).
NORM_WORDS = {"patches": "patches", "threshold": "threshold", "norm axis": "L2 norm of the token", "token": "token",
              "patch {index}": "patch {index}", "layer {layer}": "layer {layer}", "norm": "norm",
              "high-norm": "high-norm"}


def norm_histogram(patch_norms: np.ndarray, threshold: float, specials: dict[str, float], *, title: str | None = None,
                   height: int = 320, words: dict[str, str] = NORM_WORDS) -> go.Figure:
    """The patch tokens' norms as a histogram, the outlier threshold as a dashed line, each special token's norm
    as a dotted line with its name."""
    fig = go.Figure(go.Histogram(x=np.asarray(patch_norms), nbinsx=40, name=words["patches"], marker_color="#4f46e5",
                                 hovertemplate=f"{html.escape(words['norm'])} %{{x}}<br>%{{y}} "
                                               f"{html.escape(words['patches'])}<extra></extra>"))
    fig.add_vline(x=threshold, line=dict(color="#dc2626", width=2, dash="dash"),
                  annotation=dict(text=html.escape(words["threshold"]), font=dict(color="#dc2626")), annotation_position="top")
    for index, (name, norm) in enumerate(specials.items()):
        fig.add_vline(x=norm, line=dict(color="#f59e0b", width=2, dash="dot"),
                      annotation=dict(text=html.escape(name), font=dict(color="#b45309"), textangle=-90),
                      annotation_position="top right" if index % 2 else "bottom right")
    fig.update_xaxes(title=words["norm axis"])
    fig.update_yaxes(title=words["patches"])
    fig.update_layout(showlegend=False, bargap=0.05)
    return layout(fig, title, height)


def norm_heatmap(norms: np.ndarray, specials: Sequence[str], marked: Sequence[np.ndarray], *, title: str | None = None,
                 colorscale: str = "Viridis", height: int = 360, words: dict[str, str] = NORM_WORDS) -> go.Figure:
    """Token norms (L, N), layers down and tokens across, the special tokens first, every token drawn (a few
    thousand cells: outliers must not be averaged away); `marked[l]` (patch indices) crossed out at layer l."""
    norms = np.asarray(norms, dtype=np.float64)
    count = len(specials)
    xs = _labels([*specials, *(words["patch {index}"].format(index=i) for i in range(norms.shape[1] - count))])
    ys = [words["layer {layer}"].format(layer=i + 1) for i in range(norms.shape[0])]
    fig = go.Figure(go.Heatmap(z=norms, x=xs, y=ys, colorscale=colorscale, colorbar=dict(thickness=12, title=words["norm"]),
                               hovertemplate="%{y}, %{x}<br>" + html.escape(words["norm"]) + " %{z:.2f}<extra></extra>"))
    points = [(xs[count + int(i)], ys[layer]) for layer, indices in enumerate(marked) for i in indices]
    if points:
        fig.add_scatter(x=[x for x, _ in points], y=[y for _, y in points], mode="markers", name=words["high-norm"],
                        marker=dict(symbol="x-thin", size=9, line=dict(color="#f43f5e", width=2)),
                        hovertemplate="%{y}, %{x}: " + html.escape(words["high-norm"]) + "<extra></extra>")
    fig.add_shape(type="line", yref="paper", y0=0, y1=1, x0=count - 0.5, x1=count - 0.5,
                  line=dict(color="rgba(255,255,255,0.9)", width=1, dash="dot"))
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category", title=words["token"], **_token_ticks(xs, count, 1000, 40))
    fig.update_layout(showlegend=False)
    return layout(fig, title, height)
