"""Steps 3–9: from pixels to the token matrix the encoder receives."""

from __future__ import annotations

import streamlit as st

from vitviz import analysis, figures, permutation
from vitviz.i18n import N_
from vitviz.model import embed_by_convolution, sincos_2d
from vitviz.ui import about, paper
from vitviz.ui.controls import View, patch_slider, shuffle_number
from vitviz.ui.drawing import caption, columns, hover_words, image, markdown, show_figure, to_numpy
from vitviz.ui.i18n import _, number
from vitviz.ui.specials import PURPOSES, special_list, token_heatmap
from vitviz.ui.state import Traced
from vitviz.ui.steps.step import Section
from vitviz.ui.text import plain

SECTION = Section(N_("Patches and tokens"))

CLS_INIT_STD = 0.02  # how vitviz.model.ViT.reset_parameters starts the CLS token (tests/test_texts.py checks)
KEPT_START = 0.9  # step 8: a mean cosine with the sine-cosine start above this is "changed only a little"


@SECTION.step(
    "3",
    N_("Cut into patches"),
    text=N_(
        "The image is cut into a grid of square, non-overlapping p×p patches. Each patch will become one "
        "token, the way a word becomes one token in a language model."
    ),
    formula=r"n = \frac{H\,W}{p^2}",
    shape="(n, p, p, c)",
)
def step_3(traced: Traced, view: View) -> None:
    p = traced.config.patch_size
    gh, gw = traced.trace.grid
    left, right = columns(2)
    factor = figures.enlargement(traced.display, 320)
    left.image(
        figures.draw_grid(traced.display, p, factor), caption=_("A {rows}×{columns} grid of {p}×{p} patches").format(rows=gh, columns=gw, p=p),
        width="stretch",
    )
    tiles = to_numpy(traced.trace.patches)
    right.image(
        figures.mosaic(tiles, gw, gap=max(2, factor), factor=factor),
        caption=_("The patches pulled apart"),
        width="stretch",
    )
    markdown(_why_patches(traced))


def _why_patches(traced: Traced) -> str:
    """Why tokens are patches: attention's cost for one token per pixel against one per patch, for this model."""
    h, w = traced.config.image_size
    gh, gw = traced.trace.grid
    blocks = traced.config.depth * traced.config.heads
    pixels, tokens = h * w, traced.config.num_tokens  # the special tokens included with the patches
    return _(
        "**Why patches, not pixels.** Attention scores every token against every token, so its work grows with the "
        "square of the number of tokens. One token per pixel of this {w}×{h} input would be {pixels:,} tokens and "
        "{pixel_scores:,} scores in each head of each layer; as patches it is {tokens:,} tokens ({specials} included) "
        "and {token_scores:,} scores, {fewer:,.0f} times fewer. Over this model's "
        "{depth} layers × {heads} heads that is {all_pixel_scores:,} scores against "
        "{all_token_scores:,} per image. A single pixel also says little alone; a patch already holds a bit of "
        "edge, colour or texture."
    ).format(w=w, h=h, pixels=pixels, pixel_scores=pixels**2, tokens=tokens, specials=about.special_tokens(traced.facts),
             token_scores=tokens**2,
             fewer=pixels**2 / tokens**2, depth=traced.config.depth, heads=traced.config.heads,
             all_pixel_scores=blocks * pixels**2, all_token_scores=blocks * tokens**2)


@SECTION.step(
    "4",
    N_("Flatten each patch"),
    text=N_(
        "Each patch is unrolled into one long row of numbers: every pixel's red, green and blue values in "
        "turn, left to right, top to bottom. Stacking the rows gives an n×p' matrix."
    ),
    formula=r"p' = p^2 c",
    shape="(n, p')",
)
def step_4(traced: Traced, view: View) -> None:
    n = traced.config.num_patches
    p, ch = traced.config.patch_size, traced.config.channels
    index = patch_slider(n, "4")
    left, right = columns([1, 2])
    factor = figures.enlargement(traced.display, 256)
    left.image(figures.draw_grid(traced.display, p, factor, highlight=index), caption=_("Patch {index}").format(index=index),
               width="stretch")
    left.image(
        figures.upscale(figures.to_uint8(to_numpy(traced.trace.patches[index])), 24),
        caption=_("The patch, enlarged"),
        width=160,
    )
    flat = to_numpy(traced.trace.flat_patches)
    with right:
        show_figure(
            figures.channel_bars(
                flat[index], ch, title=_("Patch {index} flattened: 1×{length}, values R, G, B in turn").format(
                    index=index, length=flat.shape[1]), words=hover_words()
            )
        )
        show_figure(
            figures.heatmap(
                flat,
                title=_("All patches: {n}×{length} (patch {index} outlined)").format(n=n, length=flat.shape[1],
                                                                                     index=index),
                x_title=_("p' (pixel by pixel, channels last)"),
                y_title=_("patch"),
                colorscale=view.colorscale,
                highlight_row=index,
                centred=False, words=hover_words(),
            )
        )
        gw = traced.trace.grid[1]
        caption(_(
            "What to look for: each row is one patch, in reading order ({columns} rows make one row of the grid). A "
            "patch of one flat colour repeats the same {channels} values along its whole row; a patch crossing an "
            "edge changes partway along. Bands of similar rows are runs of similar patches."
        ).format(columns=gw, channels=ch))


@SECTION.step(
    "5",
    N_("Embed one patch"),
    text=N_(
        "A single learned matrix E maps every flattened patch to a d-dimensional vector. Each of E's d "
        "columns is a filter the size of a patch: the embedding's entries say how strongly the patch matches "
        "each filter."
    ),
    formula=r"Z_i = X_{p,i}\, E + b,\quad E \in \mathbb{R}^{p' \times d}",
    shape="(d,)",
)
def step_5(traced: Traced, view: View) -> None:
    n, d = traced.config.num_patches, traced.config.dim
    p, ch = traced.config.patch_size, traced.config.channels
    index = patch_slider(n, "5")
    flat = to_numpy(traced.trace.flat_patches)[index]
    weight = to_numpy(traced.model.patch_embed.weight)  # (d, p')
    embedding = to_numpy(traced.trace.patch_embeddings)[index]
    show_figure(figures.vector_strip(flat, title=_("X_p,i: patch {index} flattened, 1×{length}").format(index=index, length=flat.size),
                                     colorscale=view.colorscale, x_title=_("index"), words=hover_words()))
    show_figure(
        figures.heatmap(
            weight.T, title=f"E: {weight.shape[1]}×{d}", x_title="d", y_title="p'", colorscale="RdBu_r", height=320, words=hover_words()
        )
    )
    caption(_as_convolution(traced))
    show_figure(figures.vector_strip(embedding, title=_("Z_i = X_p,i E + b: the patch's embedding, 1×{d}").format(d=d),
                                     colorscale="RdBu_r", x_title=_("index"), words=hover_words()))
    markdown(_("**E's {d} filters, each drawn as a {p}×{p} RGB patch** (stretched to full contrast):").format(d=d, p=p))
    if ch == 3:
        image(
            figures.mosaic(figures.filters_as_images(weight, p, ch), min(d, 24), gap=2, factor=max(1, 32 // p)),
            width="stretch",
        )
    markdown(_("**Their principal components**, the view of the ViT paper's Fig. 7:"))
    paper.filter_components(traced)


ROUNDING = 1e-4  # a difference this small, against the largest value compared (or 1), is float rounding


def _rounding(difference: float, scale: float) -> bool:
    return difference <= ROUNDING * max(1.0, scale)


# Steps 5 and 8 keep their small results (a number; a few arrays) here rather than in the trace cache, whose count of
# entries is sized for traces: a reader who shuffles again and again must not push other readers' traces out.
@st.cache_resource(max_entries=64, show_spinner=False)
def _convolution_gap(image_key: str, model_key: str, _traced: Traced) -> float:
    """max |conv2d(pixels, E as (d, c, p, p), stride p) − (x E + b)| over this image's embeddings."""
    model, trace = _traced.model, _traced.trace
    conv = embed_by_convolution(trace.pixels[None], model.patch_embed.weight.detach(), model.patch_embed.bias.detach(),
                                _traced.config.patch_size)[0]
    return float((conv - trace.patch_embeddings).abs().max())


def _as_convolution(traced: Traced) -> str:
    """E as the convolution checkpoints store, checked on this image: conv2d(pixels, E, stride p) against x E + b."""
    p, embeddings = traced.config.patch_size, traced.trace.patch_embeddings
    gap = _convolution_gap(traced.image_key, traced.model_key, traced)
    (n, d), c = embeddings.shape, traced.config.channels
    said = _(
        "**E is a convolution.** Checkpoints store it as {d} kernels of c×p×p = {c}×{p}×{p} numbers that slide over "
        "the image in steps of p = {p}: kernel = stride, so the kernel never lands on a pixel twice and each of its "
        "places covers exactly one patch. vitviz keeps the same numbers as this {length}×{d} matrix, each kernel "
        "flattened channels last."
    ).format(d=d, c=c, p=p, length=traced.config.patch_dim)
    numbers = dict(d=d, c=c, p=p, n=n, gap=gap)
    if gap == 0:
        checked = _("For this image, conv2d(pixels, E as ({d}, {c}, {p}, {p}), stride {p}) and x E + b agree exactly, "
                    "in all {n}×{d} embedding entries.")
    elif _rounding(gap, float(embeddings.abs().max())):
        checked = _("For this image, conv2d(pixels, E as ({d}, {c}, {p}, {p}), stride {p}) and x E + b differ by at "
                    "most {gap:.1e} over all {n}×{d} embedding entries: the same embeddings, up to float rounding.")
    else:
        checked = _("For this image, conv2d(pixels, E as ({d}, {c}, {p}, {p}), stride {p}) and x E + b differ by up "
                    "to {gap:.1e}, more than float rounding.")
    return said + " " + checked.format(**numbers)


@SECTION.step(
    "6",
    N_("Embed all patches"),
    text=N_(
        "The same E is applied to every patch at once, turning the n×p' patch matrix into an n×d matrix of "
        "embeddings. Patches that look alike land close together."
    ),
    formula=r"Z = X_p E + b,\quad X_p \in \mathbb{R}^{n \times p'}",
    shape="(n, d)",
)
def step_6(traced: Traced, view: View) -> None:
    emb = to_numpy(traced.trace.patch_embeddings)
    gh, gw = traced.trace.grid
    show_figure(
        figures.heatmap(
            emb,
            title=_("Patch embeddings: {rows}×{columns}").format(rows=emb.shape[0], columns=emb.shape[1]),
            x_title="d",
            y_title=_("patch"),
            colorscale="RdBu_r", words=hover_words(),
        )
    )
    colours = figures.pca_colours(emb).reshape(gh, gw, 3)
    factor = figures.enlargement(traced.display, 256)
    left, right = columns(2)
    left.image(figures.upscale(traced.display, factor), caption=_("The image"), width="stretch")
    right.image(
        figures.upscale(figures.to_uint8(colours), max(1, 256 // max(gh, gw))),
        caption=_("First three principal components of the embeddings as R, G, B"),
        width="stretch",
    )
    caption(_(
        "What to look for: patches drawn in similar colours have similar embeddings. Where the object, its edges "
        "and the background come out in different colours, E alone already tells them apart, before any attention. "
        "The colours only compare patches of this image: each component is stretched to its own range."
    ))


def _special_formula(traced: Traced) -> str:
    """Z₀ with this model's special tokens: [x_cls; Z], [x_cls; x_dist; Z] or [x_cls; r_1; …; r_4; Z]."""
    kinds = traced.config.special_tokens
    registers = kinds.count("register")
    parts = [r"x_\text{cls}"] + [r"x_\text{dist}"] * ("distillation" in kinds)
    parts += [r"r_1"] if registers == 1 else [r"r_1", r"\dots", rf"r_{{{registers}}}"] if registers else []
    return r"Z_0 = [\," + r";\ ".join([*parts, "Z"]) + r"\,]"


@SECTION.step(
    "7",
    N_("Add the CLS token"),
    text=N_(
        "One extra learned vector, the classification token (CLS), is put in front of the patch embeddings. It is "
        "the same vector for every image; through attention it gathers information from the patches about the "
        "whole image."
    ),
    formula=_special_formula,
    shape="(n+1, d)",
)
def step_7(traced: Traced, view: View) -> None:
    d, specials = traced.config.dim, traced.trace.special_labels
    with_cls = to_numpy(traced.trace.with_cls)
    if len(specials) == 1:
        show_figure(figures.vector_strip(to_numpy(traced.trace.cls_token), title=_("The learned CLS token, 1×{d}").format(d=d),
                                         x_title=_("index"), words=hover_words()))
    else:
        markdown(_("This model puts **{count} special tokens** in front of the patches, not one ({names}). Each is a "
                   "learned vector, the same for every image:").format(count=len(specials), names=special_list(traced)))
        markdown("\n".join("- " + _(PURPOSES[kind]) for kind in dict.fromkeys(traced.config.special_tokens)))
        show_figure(token_heatmap(traced, with_cls[: len(specials)],
                                  title=_("The learned special tokens, {count}×{d}").format(count=len(specials), d=d),
                                  x_title="d", y_title=_("token"), height=100 + 28 * len(specials)))
    show_figure(
        token_heatmap(
            traced,
            with_cls,
            title=_("[{names}; patch embeddings]: {rows}×{columns}").format(
                names=special_list(traced), rows=with_cls.shape[0], columns=with_cls.shape[1]),
            x_title="d",
            y_title=_("token"),
            highlight_row=0,
        )
    )
    markdown(_why_cls(traced))


# What the class head reads, as step 7 says it (English, marked with N_; shown translated).
_HEAD_READS_CLS = {
    "cls": N_("At the end the class head reads CLS alone (row 0; steps 12 and 13)."),
    "cls_distillation_mean": N_("At the end this model's two class heads read CLS and the distillation token (rows 0 "
                                "and 1), one each, and their logits are averaged (steps 12 and 13)."),
    "cls_patch_mean": N_("At the end this model's class head reads CLS beside the mean of the patch tokens (steps 12 "
                         "and 13)."),
    "none": N_("This model has no class head: CLS's final vector y is its description of the whole image (step 12)."),
}


def _why_cls(traced: Traced) -> str:
    """Why a CLS token, what this model's head reads, and how this model's CLS token started."""
    cls = to_numpy(traced.trace.cls_token)
    why = _(
        "**Why a token of its own.** CLS holds no part of the image, so nothing ties it to one place. In every layer "
        "it asks its own query and takes a weighted average of the tokens, with weights that depend on this image."
    ) + " " + _(_HEAD_READS_CLS[traced.facts.head]) + " " + _(
        "Some ViTs have no CLS token and average the patch tokens' final vectors instead (global average pooling): "
        "the ViT paper found the two work about as well once each has its own learning rate (appendix D.3)."
    ) + " "
    if _trained_by_vitviz(traced):
        return why + _(
            "vitviz starts it as small random numbers (a truncated normal with standard deviation "
            "{init}), and training moves it like any weight; this model's entries now have standard "
            "deviation {std:.3f}."
        ).format(init=CLS_INIT_STD, std=cls.std())
    return why + _(
        "This checkpoint's CLS token is loaded as stored; its entries have standard deviation {std:.3f}."
    ).format(std=cls.std())


def _trained_by_vitviz(traced: Traced) -> bool:
    """Made by vitviz's own code (the built-in model, the Training studio), which starts E_pos as sine-cosine waves,
    rather than converted from a checkpoint."""
    return traced.facts.positions == "sincos-start"


def _position_text(traced: Traced) -> str:
    facts = traced.facts
    words = _(
        "Attention by itself does not know where a token came from, so one vector per position is added to "
        "every token: the same patch content at two places gives two different tokens."
    ) + " "
    if _trained_by_vitviz(traced) and facts.position_grid is not None:  # no start to compare with on this grid
        words += _("vitviz starts these vectors as 2-D sine and cosine waves of the row and column, and training "
                   "adjusts them.")
    elif _trained_by_vitviz(traced):
        words += _(
            "vitviz starts these vectors as 2-D sine and cosine waves of the row and column, and "
            "training adjusts them; below, how much it changed them."
        )
    elif facts.training != "unknown":
        words += _("This checkpoint's vectors were learned in its training, like any other weight.")
    else:
        words += _("This checkpoint's vectors are loaded as stored.")
    if facts.position_grid is not None:
        (gh, gw), (rows, cols) = facts.position_grid, traced.config.grid
        words += " " + _(
            "The checkpoint holds them for a grid of {gh}×{gw} patches, and this model runs on {rows}×{cols}: vitviz "
            "resampled them to this grid (bicubic interpolation of each channel over the grid, as transformers does), "
            "so the vectors below are that resampling, not the stored vectors themselves."
        ).format(gh=gh, gw=gw, rows=rows, cols=cols)
    return words


@SECTION.step(
    "8",
    N_("Add position embeddings"),
    text=_position_text,
    formula=r"Z_0 \leftarrow Z_0 + E_\text{pos},\quad E_\text{pos} \in \mathbb{R}^{(n+1)\times d}",
    shape="(n+1, d)",
)
def step_8(traced: Traced, view: View) -> None:
    pos = to_numpy(traced.trace.pos_embedding)
    # How vitviz initialises them; None for a checkpoint, whose start vitviz does not know, and for vectors resampled
    # from another grid, whose start was that grid's.
    start = sincos_2d(traced.config.grid, traced.config.dim).numpy() \
        if _trained_by_vitviz(traced) and traced.facts.position_grid is None else None
    s = traced.trace.num_special
    if start is not None:
        kept = analysis.row_cosines(pos[s:], start)
        if kept.mean() >= KEPT_START:
            said = _("Each position's vector is still at cosine **{mean:.2f}** (lowest {lowest:.2f}) with its "
                     "sine-cosine start: training changed them only a little. The similarity tiles below show mostly "
                     "the start's pattern; the second set shows what training added.")
        else:
            said = _("Each position's vector is at cosine **{mean:.2f}** (lowest {lowest:.2f}) with its sine-cosine "
                     "start: training moved them well away from it. The second set of similarity tiles shows what "
                     "training added.")
        markdown(said.format(mean=kept.mean(), lowest=kept.min()))
    if "register" in traced.config.special_tokens:
        markdown(_("The registers get no position: DINOv2 adds position embeddings before it inserts them, so "
                   "their rows below are zero."))
    show_figure(
        token_heatmap(
            traced, pos, title=_("Position embeddings: {rows}×{columns}").format(rows=pos.shape[0], columns=pos.shape[1]),
            x_title="d", y_title=_("position")
        )
    )
    paper.position_similarity(traced)
    if start is not None:
        paper.position_similarity(traced, pos[s:] - start,
                                  _("Cosine similarity of what training added (learned − start)"))
    left, right = columns(2)
    with left:
        show_figure(
            token_heatmap(
                traced,
                to_numpy(traced.trace.with_cls),
                title=_("Before: [{names}; embeddings]").format(names=special_list(traced)),
                x_title="d",
                y_title=_("token"),
                height=300,
            )
        )
    with right:
        show_figure(
            token_heatmap(
                traced,
                to_numpy(traced.trace.tokens),
                title=_("After: + position embeddings"),
                x_title="d",
                y_title=_("token"),
                height=300,
            )
        )
    _shuffled_patches(traced)


def _shuffled_patches(traced: Traced) -> None:
    """What E_pos is for, tested: the patches shuffled, the model run with and without E_pos (`vitviz.permutation`)."""
    config = traced.config
    if config.num_patches < 2:
        return
    markdown(_(
        "**Shuffle the patches.** Below, this image's patches in a random order: their contents move, and each slot "
        "keeps its position embedding. The model runs on the shuffled image and on the original, once without E_pos "
        "and once with it, and each patch's output is compared with the output of the same patch in the original."
    ))
    left, right = columns([1, 2])
    with left:
        number = shuffle_number()
    with st.spinner(_("Running the model on the shuffled patches…")):  # here: it speaks the session's language
        test = _shuffle_test(traced.image_key, traced.model_key, number, traced)
    shuffled = analysis.shuffle_patches(traced.display, test.order, config.patch_size)
    factor = figures.enlargement(shuffled, 256)
    left.image(figures.draw_grid(shuffled, config.patch_size, factor), caption=_("The shuffled patches"),
               width="stretch")
    right.markdown(_shuffle_table(traced, test))
    markdown(_shuffle_verdict(test))


@st.cache_resource(max_entries=64, show_spinner=False)  # at most 2 × 2 × k probabilities each: 22 MB at k = 21,843
def _shuffle_test(image_key: str, model_key: str, number: int, _traced: Traced) -> permutation.ShuffleTest:
    order = permutation.patch_order(_traced.config.num_patches, number)
    trace = _traced.trace
    return permutation.shuffle_test(_traced.model, trace.pixels, order, trace.final_tokens)


def _shuffle_table(traced: Traced, test: permutation.ShuffleTest) -> str:
    """The shuffled image against the original, without E_pos and with it, as a Markdown table."""
    without, with_positions = test.without_positions, test.with_positions
    rows = [(_("Patch outputs, each followed to its new slot: largest difference"),
             without.patch_difference, with_positions.patch_difference)]
    kinds = traced.config.special_tokens
    named = {"cls": _("Output of CLS: largest change"),
             "distillation": _("Output of the distillation token: largest change")}
    for index, kind in enumerate(kinds):
        if kind in named:
            rows.append((named[kind], without.special_changes[index], with_positions.special_changes[index]))
    registers = [index for index, kind in enumerate(kinds) if kind == "register"]
    if registers:
        name = (_("Output of the register: largest change") if len(registers) == 1 else
                _("Outputs of the {count} registers: largest change").format(count=len(registers)))
        rows.append((name, without.special_changes[registers].max(), with_positions.special_changes[registers].max()))
    cells = [("", _("without E_pos"), _("with E_pos")), ("---",) * 3]
    cells += [(name, number(first, ".2g"), number(second, ".2g")) for name, first, second in rows]
    if without.probs is not None:
        cells.append((_("Prediction: original → shuffled"), _prediction(traced, without.probs),
                      _prediction(traced, with_positions.probs)))
    return "\n".join("| " + " | ".join(row) + " |" for row in cells)


def _prediction(traced: Traced, probs) -> str:
    """"cat 43.1% → cat 43.0%": the top class of the original and of the shuffled image, with its probability."""
    first, second = (int(row.argmax()) for row in probs)
    return _("{first} {first_p:.1%} → {second} {second_p:.1%}").format(
        first=plain(traced.labels[first]), first_p=probs[0, first], second=plain(traced.labels[second]),
        second_p=probs[1, second])


def _shuffle_verdict(test: permutation.ShuffleTest) -> str:
    """What the table shows, for this model and image."""
    without, with_positions = test.without_positions, test.with_positions
    said = []
    if not _rounding(max(without.patch_difference, without.special_changes.max()), test.scale):
        said.append(_("Without E_pos the outputs differ by more than float rounding."))
    elif len(without.special_changes) == 1:
        said.append(_("Without E_pos the model cannot tell the two orders apart: each patch's output moved with its "
                      "patch and CLS's output stayed (the differences are float rounding, where "
                      "the outputs' entries reach {scale:.1f}).").format(scale=test.scale))
    else:
        said.append(_("Without E_pos the model cannot tell the two orders apart: each patch's output moved with its "
                      "patch and the special tokens' outputs stayed (the differences are float rounding, "
                      "where the outputs' entries reach {scale:.1f}).").format(scale=test.scale))
    if without.probs is not None and without.probs[0].argmax() != with_positions.probs[0].argmax():
        said.append(_("Even the original image is read differently without E_pos: this model always runs with them."))
    if _rounding(with_positions.special_changes[0], test.scale):
        said.append(_("With E_pos CLS's output hardly changes either: this model's position embeddings make no "
                      "difference to it here."))
    else:
        said.append(_("With E_pos each patch arrives at another position, and CLS's output changes by up to "
                      "{change:.2g}: where a patch is, not only what it shows, reaches the output.").format(
            change=with_positions.special_changes[0]))
    return " ".join(said)


@SECTION.step(
    "9",
    N_("The transformer's input"),
    text=N_(
        "This (n+1)×d matrix is everything the encoder will see; from here on it is called X₀, the first "
        "block's input X. Each block keeps this shape: tokens go in, the same number of tokens of the same "
        "width come out."
    ),
    formula=r"X_0 = Z_0",
    shape="(n+1, d)",
)
def step_9(traced: Traced, view: View) -> None:
    tokens = to_numpy(traced.trace.tokens)
    show_figure(
        token_heatmap(
            traced,
            tokens,
            title=_("Transformer input: {rows}×{columns}").format(rows=tokens.shape[0], columns=tokens.shape[1]),
            x_title="d",
            y_title=_("token"),
            highlight_row=0,
            height=420,
        )
    )
