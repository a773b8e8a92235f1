"""Steps 10.1–10.12: inside one encoder block, at the layer (and head) chosen in the sidebar."""

from __future__ import annotations

import numpy as np
import streamlit as st
import torch

from vitviz import analysis, figures
from vitviz.i18n import N_
from vitviz.ui import about
from vitviz.ui.controls import View, persistent, query_picker, temperature_slider, token_label
from vitviz.ui.drawing import caption, columns, hover_words, image, image_grid, latex, markdown, show_figure, to_numpy
from vitviz.ui.i18n import _, listed, number
from vitviz.ui.specials import patch_overlay, special_weights, token_axis, token_heatmap
from vitviz.ui.state import Traced
from vitviz.ui.steps.step import HEAD, LAYER, QUERY, Section

SECTION = Section(N_("Inside one encoder layer"))


def _where(view: View) -> str:
    return _("layer {layer}, head {head}").format(layer=view.layer + 1, head=view.head + 1)


def _layer_scale(traced: Traced, view: View, branch: int) -> None:
    """What LayerScale is, and this layer's factors for one branch (1: attention, 2: the MLP)."""
    factors = np.abs(to_numpy(getattr(traced.model.blocks[view.layer], f"ls{branch}").gamma))
    name = "λ₁" if branch == 1 else "λ₂"
    markdown(_(
        "This model has **LayerScale** (Touvron et al., CaiT, 2021; DINOv2 uses it): before a branch's output is "
        "added, each of its d channels is multiplied by a learned factor, one vector λ₁ for attention and λ₂ for the "
        "MLP in every block. The method starts them at small values, so that a deep model begins close to the "
        "identity and opens each branch as it learns. In layer {layer}, |{name}| ranges from {low:.3g} to {high:.3g} "
        "(median {median:.3g})."
    ).format(layer=view.layer + 1, name=name, low=factors.min(), high=factors.max(), median=np.median(factors)))


def _token(traced: Traced, index: int) -> str:
    return token_label(index, traced.trace.grid, traced.trace.special_labels)


def _residual_sum(traced: Traced, view: View, names: tuple[str, str, str], before, update, after, title: str) -> None:
    """A residual step: before + update = after as three heatmaps, then how large each token's update is."""
    for column, name, tensor in zip(columns(3), names, (before, update, after), strict=True):
        with column:
            show_figure(token_heatmap(traced, to_numpy(tensor), title=name, x_title="d", y_title=_("token"), height=300))
    ratio = analysis.update_ratio(to_numpy(before), to_numpy(update))  # (N,)
    left, right = columns(2)
    with left:
        show_figure(
            figures.lines({_("‖update‖ / ‖input‖"): ratio}, title=title, x_title=token_axis(traced),
                          y_title=_("ratio"))
        )
    specials = listed(f"{label}: {number(value, '.3f')}"
                      for label, value in zip(traced.trace.special_labels, ratio, strict=False))
    right.image(
        patch_overlay(traced, ratio, colorscale=view.colorscale, opacity=0.7),
        caption=_("The same ratio per patch ({specials})").format(specials=specials),
        width="stretch",
    )


@SECTION.step(
    "10.1",
    N_("Q, K and V"),
    text=N_(
        "The block first normalises each token (LayerNorm), then one linear layer makes three vectors per "
        "token: a query, a key and a value. They are cut into h heads of width d_h, and each head works on "
        "its own slice."
    ),
    formula=r"[\,Q\ |\ K\ |\ V\,] = \mathrm{LN}(X)\,W_{qkv} + b_{qkv}",
    shape="(h, n+1, d_h)",
    controls=(LAYER, HEAD),
)
def step_10_1(traced: Traced, view: View) -> None:
    layer = traced.trace.layers[view.layer]
    d, dh = traced.config.dim, traced.config.head_dim
    left, right = columns(2)
    with left:
        show_figure(
            token_heatmap(
                traced,
                to_numpy(layer.input),
                title=_("Block input X (layer {layer})").format(layer=view.layer + 1),
                x_title="d",
                y_title=_("token"),
                height=300,
            )
        )
    with right:
        show_figure(
            token_heatmap(
                traced,
                to_numpy(layer.norm1), title=_("LN(X): each token normalised"), x_title="d", y_title=_("token"),
                height=300,
            )
        )
    _layer_norm_note(traced, layer)
    qkv = to_numpy(layer.qkv)
    fig = token_heatmap(
        traced,
        qkv, title=f"LN(X) W_qkv: {qkv.shape[0]}×{qkv.shape[1]} = [Q | K | V]", x_title="3d", y_title=_("token")
    )
    show_figure(figures.column_dividers(fig, [d - 0.5, 2 * d - 0.5]))
    markdown(_(
        "**What the three are for.** A token's query says what it is looking for, its key what it can be found by, "
        "and its value what it hands over to the tokens that attend to it. All three come from the same normalised "
        "token through different columns of W_qkv, so what makes a token found and what it passes on can differ."
    ))
    markdown(_("**Head {head}'s slices**, columns {first}–{last} of each part:").format(
        head=view.head + 1, first=view.head * dh, last=(view.head + 1) * dh - 1))
    cols = columns(3)
    for col, name in zip(cols, ("q", "k", "v"), strict=True):
        with col:
            show_figure(
                token_heatmap(
                    traced,
                    to_numpy(getattr(layer, name)[view.head]),
                    title=f"{name.upper()} ({_where(view)})",
                    x_title="d_h",
                    y_title=_("token"),
                    height=320,
                )
            )


def _layer_norm_note(traced: Traced, layer) -> None:
    """LayerNorm's formula, once, beside the first figure that shows it, with what it did to this layer's tokens."""
    latex(r"\mathrm{LN}(x) = \gamma \odot \frac{x - \mu}{\sqrt{\sigma^2 + \varepsilon}} + \beta")
    before = np.linalg.norm(to_numpy(layer.input), axis=1)
    after = np.linalg.norm(to_numpy(layer.norm1), axis=1)
    caption(_(
        "LayerNorm works on each token alone: μ and σ² are the mean and variance of its own d = {d} "
        "numbers, ε = {eps:g} only keeps the division safe, and γ and β ({d} "
        "learned numbers each) scale and shift every channel afterwards. So every token enters attention at a "
        "similar size: here their lengths go from {low_before:.2f}–{high_before:.2f} to "
        "{low_after:.2f}–{high_after:.2f}."
    ).format(d=traced.config.dim, eps=traced.config.layer_norm_eps, low_before=before.min(), high_before=before.max(),
             low_after=after.min(), high_after=after.max()))


@SECTION.step(
    "10.2",
    N_("Attention scores"),
    text=N_(
        "Every query is compared with every key by a dot product, scaled by the square root of the head width"
        " so the numbers stay in a range the softmax can use. Row i says how well token i's question fits "
        "each token."
    ),
    formula=r"A = \frac{Q K^\top}{\sqrt{d_h}}",
    shape="(h, n+1, n+1)",
    controls=(LAYER, HEAD),
)
def step_10_2(traced: Traced, view: View) -> None:
    scores = to_numpy(traced.trace.layers[view.layer].scores[view.head])
    show_figure(
        token_heatmap(
            traced,
            scores,
            keys=True,
            title=f"Q Kᵀ / √d_h, {_where(view)}: {scores.shape[0]}×{scores.shape[1]}",
            x_title=_("key token"),
            y_title=_("query token"),
            colorscale="RdBu_r",
            height=520,
            value_name=_("score"),
        ),
        key="scores",
    )
    labels = traced.trace.special_labels
    if len(labels) == 1:
        first = _("token 0 is CLS")
    else:
        first = _("the first {count} tokens are {names} and {last}").format(
            count=len(labels), names=", ".join(labels[:-1]), last=labels[-1])
    caption(_("Hover for values; {first}. Scores range from {low:.2f} to {high:.2f}.").format(
        first=first, low=scores.min(), high=scores.max()))
    dh = traced.config.head_dim
    markdown(_(
        "**Why a dot product.** Q_i · K_j multiplies the two vectors entry by entry and adds the products: it is large "
        "when the query's large entries meet large entries of the same sign in the key, near zero when they have "
        "nothing in common, and negative when they disagree. It equals ‖Q_i‖ ‖K_j‖ cos θ, so it rewards pointing the "
        "same way. A sum of d_h = {dh} products spreads more the wider the head, so it is divided by √{dh} = "
        "{root:.2f}; without that, the softmax on the next step would put nearly all weight on one key."
    ).format(dh=dh, root=dh**0.5))


@SECTION.step(
    "10.3",
    N_("Softmax"),
    text=N_(
        "Each row of scores is turned into weights that are positive and add up to one. Large scores take "
        "most of the weight; small ones fade towards zero."
    ),
    formula=r"P_{ij} = \frac{e^{A_{ij}}}{\sum_{j'} e^{A_{ij'}}}",
    shape="(h, n+1, n+1)",
    controls=(LAYER, HEAD),
)
def step_10_3(traced: Traced, view: View) -> None:
    layer = traced.trace.layers[view.layer]
    scores, attn = to_numpy(layer.scores[view.head]), to_numpy(layer.attn[view.head])
    left, right = columns(2)
    with left:
        show_figure(token_heatmap(traced, scores, keys=True, title=_("Scores"), x_title=_("key"), y_title=_("query"),
                                  value_name=_("score"), height=420))
    with right:
        show_figure(
            token_heatmap(
                traced,
                attn,
                keys=True,
                title=_("softmax(scores), row by row"),
                x_title=_("key"),
                y_title=_("query"),
                colorscale=view.colorscale,
                centred=False,
                height=420,
                value_name=_("weight"),
            )
        )
    sums = attn.sum(axis=1)
    markdown(_(
        "Every row sums to one: the sums range from **{low:.6f}** to **{high:.6f}**. "
        "The largest single weight is {largest:.3f}; a uniform row would give {uniform:.4f} each."
    ).format(low=sums.min(), high=sums.max(), largest=attn.max(), uniform=1 / attn.shape[1]))
    _temperature(traced, view)


def _temperature(traced: Traced, view: View) -> None:
    """Why √d_h: the scores divided once more by a temperature τ, and what that does to every head's entropy."""
    markdown(_(
        "**Why √d_h: a temperature.** Divide the scores once more, by a temperature τ: softmax(q kᵀ / (τ·√d_h)). At "
        "τ = 1 the model runs as it does; a larger τ flattens every row towards equal weights, a smaller τ sharpens "
        "it towards a single key. A row's entropy measures which: 0 nats when all its weight is on one key, log N "
        "when it is spread evenly over the N tokens."
    ))
    tau = temperature_slider()
    scores = to_numpy(traced.trace.layers[view.layer].scores)  # (h, N, N): q kᵀ / √d_h
    heads, count, dh = scores.shape[0], scores.shape[-1], traced.config.head_dim
    at_tau, trained = analysis.attention_entropy(scores, tau), analysis.attention_entropy(scores, 1.0)
    shown = f"{tau:g}"
    left, right = columns(2)
    with left:
        tempered = token_heatmap(traced, analysis.softmax(scores[view.head] / tau), keys=True,
                                 title=_("softmax(scores / τ), τ = {tau}, {where}").format(tau=shown, where=_where(view)),
                                 x_title=_("key"), y_title=_("query"), colorscale=view.colorscale, centred=False,
                                 height=380, value_name=_("weight"))
        show_figure(tempered.update_traces(zmin=0.0, zmax=1.0))  # one scale at every τ, so flattening shows
    with right:
        series = {_("τ = 1"): trained}
        if tau != 1:
            series[_("τ = {tau}").format(tau=shown)] = at_tau
        show_figure(figures.grouped_bars(
            series, [_("head {head}").format(head=head + 1) for head in range(heads)],
            title=_("Each head's mean entropy, layer {layer}").format(layer=view.layer + 1), y_title=_("nats"),
            level=(np.log(count), _("even weights: log N = {value:.2f}").format(value=np.log(count))), height=380))
    bare = 1 / dh**0.5
    numbers = dict(tau=shown, head=view.head + 1, entropy=at_tau[view.head], trained=trained[view.head], count=count,
                   uniform=np.log(count), dh=dh, bare=bare, mean=trained.mean(),
                   bare_entropy=analysis.attention_entropy(scores, bare).mean())
    if tau == 1:
        said = _("At τ = 1, the rows of head {head} have an entropy of {entropy:.2f} nats on average; even weights over "
                 "the N = {count} tokens would give log N = {uniform:.2f}.")
    else:
        said = _("At τ = {tau}, the rows of head {head} have an entropy of {entropy:.2f} nats on average (at τ = 1: "
                 "{trained:.2f}); even weights over the N = {count} tokens would give log N = {uniform:.2f}.")
    markdown(said.format(**numbers) + " " + _(
        "With these same q and k but no division by √d_h, that is τ = 1/√{dh} = {bare:.3f}, this layer's heads would "
        "average {bare_entropy:.2f} nats instead of {mean:.2f}."
    ).format(**numbers))


@SECTION.step(
    "10.4",
    N_("One token's context"),
    text=N_(
        "Take one query's row of weights and mix the value vectors with them. The result is that token's new "
        "context: mostly made of the values of the tokens it attends to."
    ),
    formula=r"C_i = \sum_j P_{ij}\, V_j",
    shape="(d_h,)",
    controls=(LAYER, HEAD, QUERY),
)
def step_10_4(traced: Traced, view: View) -> None:
    layer = traced.trace.layers[view.layer]
    left, right = columns([1, 1])
    with left:
        query = query_picker(traced, key="query_click_10.4")
    row = to_numpy(layer.attn[view.head, query])
    with right:
        image(
            patch_overlay(traced, row, query=query, colorscale=view.colorscale),
            caption=_("Attention of {token} over the patches ({where}); {specials}").format(
                token=_token(traced, query), where=_where(view), specials=special_weights(traced, row)),
            width="stretch",
        )
    v = to_numpy(layer.v[view.head])
    context = row @ v
    show_figure(
        figures.heatmap(
            row[None],
            special_cols=traced.trace.special_labels,
            patch_names=(_("patch {index}"), _("patches {first}–{last}")),
            title=_("The query's attention row: one weight for each of the {count} tokens' value vectors").format(
                count=len(row)),
            x_title=_("token"),
            colorscale=view.colorscale,
            centred=False,
            height=140,
            value_name=_("weight"), words=hover_words(),
        )
    )
    show_figure(
        token_heatmap(
            traced,
            v, title=_("V for this head: one value vector per token"), x_title="d_h", y_title=_("token"), height=320
        )
    )
    recorded = to_numpy(layer.context[view.head, query])
    show_figure(
        figures.vector_strip(recorded, title=_("Context vector C_i = Σ_j P_ij V_j for {token}").format(
            token=_token(traced, query)), x_title=_("index"), words=hover_words())
    )
    caption(_("Computed here from the row and V, it matches the model's own context to within {gap:.1e}.").format(
        gap=np.abs(context - recorded).max()))


@SECTION.step(
    "10.5",
    N_("Every token's context"),
    text=lambda traced: _(
        "Doing the same for every row at once is one matrix product. That finishes one head: one context "
        "vector per token, {specials} included."
    ).format(specials=about.special_tokens(traced.facts)),
    formula=r"C = P\,V",
    shape="(n+1, d_h)",
    controls=(LAYER, HEAD, QUERY),
)
def step_10_5(traced: Traced, view: View) -> None:
    context = to_numpy(traced.trace.layers[view.layer].context[view.head])
    query = view.query
    show_figure(
        token_heatmap(
            traced,
            context,
            title=_("Context P V for every token ({where}): {rows}×{columns}").format(
                where=_where(view), rows=context.shape[0], columns=context.shape[1]),
            x_title="d_h",
            y_title=_("token"),
            height=460,
            highlight_row=query,
        )
    )
    caption(_("The outlined row is the query chosen on step 10.4: {token}.").format(token=_token(traced, query)))


@SECTION.step(
    "10.6",
    N_("Many heads"),
    text=N_(
        "All h heads do steps 10.2 to 10.5 in parallel, each with its own slice of Q, K and V. Each head can "
        "learn to look for different things; compare their attention maps below."
    ),
    formula=r"C^{(m)} = \mathrm{softmax}\!\left(\frac{Q^{(m)} K^{(m)\top}}{\sqrt{d_h}}\right) V^{(m)},\quad m = 1..h",
    shape="(h, n+1, d_h)",
    controls=(LAYER, QUERY),
)
def step_10_6(traced: Traced, view: View) -> None:
    layer = traced.trace.layers[view.layer]
    query = query_picker(traced, key="query_click_10.6")
    heads = traced.config.heads
    markdown(_("**Every head of layer {layer}**, attention of {token}:").format(
        layer=view.layer + 1, token=_token(traced, query)))
    rows = [to_numpy(layer.attn[h, query]) for h in range(heads)]
    shared = persistent(st.toggle, "heads_shared_scale", False, label=_("One colour scale for every head"))
    head_caption = _("Head {head}: patches {low:.2f}–{high:.2f}, {specials}")
    specials = traced.trace.num_special
    top = max(float(row[specials:].max()) for row in rows) if shared else None
    image_grid(
        [
            (
                patch_overlay(traced, row, query=query, size=192, colorscale=view.colorscale, vmax=top),
                head_caption.format(head=h + 1, low=row[specials:].min(), high=row[specials:].max(),
                                    specials=special_weights(traced, row, digits=2)),
            )
            for h, row in enumerate(rows)
        ],
        per_row=min(heads, 4),
    )
    if shared:
        caption(_("Colours run from 0 to {top:.2f}, the largest weight any head gives a patch, in every image.").format(
            top=top))
    else:
        caption(_(
            "Each image's colours run from its own lowest to its own highest patch weight (the range under it), so a "
            "head that spreads its weight evenly looks as contrasted as one that picks a single patch; compare the "
            "ranges, or turn on one colour scale for every head."
        ))
    markdown(_why_heads(traced))


def _why_heads(traced: Traced) -> str:
    """Why several heads cost no more than one, and where each head's projection is in W_qkv."""
    config = traced.config
    gh, gw = traced.trace.grid
    d, h, dh, tokens = config.dim, config.heads, config.head_dim, config.num_special + gh * gw
    return _(
        "**Why several heads.** With d_h = d / h, the {h} heads together cost what one head of the full width "
        "would: scoring every pair takes h · N² · d_h = N² · d multiplications ({h} · {tokens}² · {dh} = "
        "{tokens}² · {d} = {product:,} here), and the projection is one d×3d matrix W_qkv either way. What h heads "
        "buy is {h} different weighted averages per token instead of one, each free to look at other tokens. Each "
        "head's projection is a slice of that one matrix: head m's queries are columns (m−1)·d_h to m·d_h − 1 of its "
        "Q part (head {h}: columns {first}–{last}), and its keys and values the same columns of the K and V parts."
    ).format(h=h, tokens=tokens, dh=dh, d=d, product=h * tokens**2 * dh, first=(h - 1) * dh, last=h * dh - 1)


@SECTION.step(
    "10.7",
    N_("Concatenate and project"),
    text=N_(
        "The heads' contexts are laid side by side, giving back a d-wide vector per token, and one more "
        "linear layer W_o mixes what the heads found."
    ),
    formula=r"O = [\,C^{(1)}\ |\ \dots\ |\ C^{(h)}\,]\,W_o + b_o",
    shape="(n+1, d)",
    controls=(LAYER,),
)
def step_10_7(traced: Traced, view: View) -> None:
    layer = traced.trace.layers[view.layer]
    concat = to_numpy(layer.concat)
    dh = traced.config.head_dim
    fig = token_heatmap(
        traced,
        concat, title=_("Heads side by side: {rows}×{columns}").format(rows=concat.shape[0], columns=concat.shape[1]),
        x_title="d", y_title=_("token"),
    )
    show_figure(figures.column_dividers(fig, [h * dh - 0.5 for h in range(1, traced.config.heads)]))
    w_o = to_numpy(traced.model.blocks[view.layer].attn.proj.weight).T  # (d_in, d_out): x W_o
    left, right = columns(2)
    with left:
        show_figure(figures.heatmap(w_o, title="W_o (d×d)", x_title=_("out"), y_title=_("in"), height=320, words=hover_words()))
    with right:
        show_figure(
            token_heatmap(
                traced,
                to_numpy(layer.attn_out), title=_("Concatenation × W_o + b_o"), x_title="d", y_title=_("token"),
                height=320,
            )
        )


@SECTION.step(
    "10.8",
    N_("The attention output"),
    text=N_(
        "Attention has produced exactly as many vectors as went in, each as wide as before, but every one now"
        " carries information from the tokens it attended to."
    ),
    shape="(n+1, d)",
    controls=(LAYER,),
)
def step_10_8(traced: Traced, view: View) -> None:
    layer = traced.trace.layers[view.layer]
    left, right = columns(2)
    with left:
        show_figure(
            token_heatmap(
                traced,
                to_numpy(layer.input), title=_("Input of the attention (before LayerNorm)"), x_title="d",
                y_title=_("token"),
            )
        )
    with right:
        show_figure(
            token_heatmap(traced, to_numpy(layer.attn_out), title=_("Output of the attention"), x_title="d",
                          y_title=_("token"))
        )
    inp, out = to_numpy(layer.input), to_numpy(layer.attn_out)
    show_figure(
        figures.lines(
            {_("‖input‖"): np.linalg.norm(inp, axis=1), _("‖attention output‖"): np.linalg.norm(out, axis=1)},
            title=_("Length of each token's vector"),
            x_title=token_axis(traced),
            y_title=_("L2 norm"),
        )
    )
    alike_in, alike_out = _mean_pairwise_cosine(inp), _mean_pairwise_cosine(out)
    if alike_out > alike_in:
        verdict = _("In this layer the output rows are more alike than the input rows: mean cosine {output:.2f} "
                    "between two tokens' outputs against {input:.2f} between their inputs.")
    else:
        verdict = _("In this layer the output rows are less alike than the input rows: mean cosine {output:.2f} "
                    "between two tokens' outputs against {input:.2f} between their inputs.")
    caption(_(
        "What to look for: compare rows. Tokens that attended to the same places tend to get similar output rows, and a "
        "column that is strong in every row is something attention adds to every token alike."
    ) + " " + verdict.format(output=alike_out, input=alike_in))


def _mean_pairwise_cosine(rows: np.ndarray) -> float:
    """The mean cosine similarity over all pairs of distinct rows: how alike the tokens are."""
    unit = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    gram = unit @ unit.T
    count = len(rows)
    return float((gram.sum() - np.trace(gram)) / max(1, count * (count - 1)))


@SECTION.step(
    "10.9",
    N_("Residual connection"),
    text=N_(
        "The block's input is added back to the attention output. The attention only has to learn a change to"
        " each token, and signals and gradients have a direct path through the network."
    ),
    formula=lambda traced: r"X' = X + \lambda_1 \odot O" if traced.config.layer_scale else r"X' = X + O",
    shape="(n+1, d)",
    controls=(LAYER,),
)
def step_10_9(traced: Traced, view: View) -> None:
    layer = traced.trace.layers[view.layer]
    scaled = traced.config.layer_scale
    if scaled:
        _layer_scale(traced, view, 1)
    _residual_sum(
        traced,
        view,
        ("X", "+ λ₁ ⊙ O" if scaled else "+ O", "= X'"),
        layer.input,
        layer.attn_update,
        layer.resid,
        _("How much attention changed each token"),
    )


@SECTION.step(
    "10.10",
    N_("After the residual"),
    text=N_(
        "The sum has the same shape again. Below it is compared with the block's input X, token by token: how "
        "long each vector is before and after, and how far attention turned it."
    ),
    shape="(n+1, d)",
    controls=(LAYER,),
)
def step_10_10(traced: Traced, view: View) -> None:
    layer = traced.trace.layers[view.layer]
    before, after = to_numpy(layer.input), to_numpy(layer.resid)  # X and X', (N, d)
    turned = analysis.row_cosines(before, after)
    show_figure(
        token_heatmap(
            traced,
            after, title=("X' = X + λ₁ ⊙ O" if traced.config.layer_scale else "X' = X + O")
            + f": {after.shape[0]}×{after.shape[1]}", x_title="d", y_title=_("token"), height=420
        )
    )
    left, right = columns(2)
    with left:
        show_figure(
            figures.lines(
                {"‖X‖": np.linalg.norm(before, axis=1), "‖X'‖": np.linalg.norm(after, axis=1)},
                title=_("Length of each token before and after"),
                x_title=token_axis(traced),
                y_title=_("L2 norm"),
            )
        )
    with right:
        show_figure(
            figures.lines(
                {"cos(X, X')": turned},
                title=_("How far attention turned each token (1 = same direction)"),
                x_title=token_axis(traced),
                y_title=_("cosine"),
            )
        )
    most = int(turned.argmin())
    caption(_(
        "What to look for: X' keeps X's pattern, since the residual adds attention's output to it rather than "
        "replacing it, so look for the rows that differ from the block input X (step 10.9 shows both). The cosine "
        "plot finds them: the lower the dot, the more attention turned that token. Here it turned {token} "
        "most (cosine {cosine:.2f}); the median token keeps cosine {median:.2f}."
    ).format(token=_token(traced, most), cosine=turned[most], median=np.median(turned)))


@SECTION.step(
    "10.11",
    N_("The MLP"),
    text=N_(
        "Each token now goes on its own through a small two-layer network: normalise, widen to the hidden "
        "size, apply GELU, narrow back to d. The hidden layer U is what the figures show."
    ),
    formula=r"U = \mathrm{GELU}(\mathrm{LN}(X') W_1 + b_1),\quad M = U\,W_2 + b_2",
    shape="(n+1, mlp)",
    controls=(LAYER, QUERY),
)
def step_10_11(traced: Traced, view: View) -> None:
    layer = traced.trace.layers[view.layer]
    hidden = to_numpy(layer.mlp_hidden)
    show_figure(
        token_heatmap(
            traced,
            hidden,
            title=f"GELU(LN(X') W_1 + b_1): {hidden.shape[0]}×{hidden.shape[1]}",
            x_title=_("hidden unit"),
            y_title=_("token"),
            height=420,
        )
    )
    _gelu(traced, view)
    config = traced.config
    d, width = config.dim, config.mlp_dim
    attention_parameters = 4 * d * d + 4 * d  # W_qkv, b_qkv, W_o, b_o
    mlp_parameters = 2 * d * width + width + d  # W_1, b_1, W_2, b_2
    if mlp_parameters > attention_parameters:
        sizes = _("In this model the MLP (hidden width {width:,}) holds {mlp:,} parameters per block and attention "
                  "{attention:,}, so the MLP holds more.")
    else:
        sizes = _("In this model the MLP (hidden width {width:,}) holds {mlp:,} parameters per block and attention "
                  "{attention:,}, so attention holds more.")
    caption(sizes.format(width=width, mlp=mlp_parameters, attention=attention_parameters) + " " + _(
        "The figure shows U; GELU lets small negative values through, so below zero is not the same as off."))
    active = (hidden > 0).mean(axis=1)
    show_figure(
        figures.lines(
            {_("share of hidden units > 0"): active},
            title=_("Share of each token's hidden units above zero (GELU passes small negative values too)"),
            x_title=token_axis(traced),
            y_title=_("share"),
        )
    )


def _gelu(traced: Traced, view: View) -> None:
    """What GELU is: the model's own activation drawn as a curve, with one token's hidden units on it."""
    mlp = traced.model.blocks[view.layer].mlp
    query = view.query  # any token, special ones included (current_view keeps it below N)
    with torch.no_grad():
        z = mlp.fc1(traced.trace.layers[view.layer].norm2[query])  # the token's hidden units before GELU
        span = torch.linspace(min(-4.0, float(z.min())), max(4.0, float(z.max())), 241)
        fine = torch.linspace(-3.0, 0.0, 3001)
        lowest = int(mlp.act(fine).argmin())
        curve, lowest_z, lowest_value = mlp.act(span), float(fine[lowest]), float(mlp.act(fine)[lowest])
        out = mlp.act(z)
    token = _token(traced, query)
    left, right = columns([3, 2])
    with left:
        show_figure(
            figures.activation_curve(
                span.numpy(),
                curve.numpy(),
                points=(z.numpy(), out.numpy()),
                points_name=_("{token}'s {count:,} hidden units").format(token=token, count=z.numel()),
                title=_("GELU, with the hidden units of {token} (layer {layer})").format(token=token,
                                                                                        layer=view.layer + 1),
                x_title=_("z, the hidden unit's input"),
                y_title=_("output"),
            )
        )
    with right:
        latex(r"\mathrm{GELU}(z) = z\,\Phi(z)")
        gelu = _(
            "**GELU** multiplies z by Φ(z), the chance that a standard normal number is below z. A large positive z "
            "passes almost unchanged, a large negative one becomes almost 0, and in between the curve dips to its "
            "lowest, {lowest:.3f} at z = {lowest_z:.2f}. Unlike ReLU it is smooth and lets small negative values "
            "through."
        ).format(lowest=lowest_value, lowest_z=lowest_z)
        if traced.config.activation == "gelu_tanh":
            gelu += " " + _("This model computes it with the usual tanh approximation, "
                            "0.5·z·(1 + tanh(√(2/π)·(z + 0.044715·z³))).")
        dots = _("The dots are {token}'s hidden units (the query of steps 10.4 and 10.6): {share:.0%} of them come out "
                 "above zero.").format(token=token, share=float((out > 0).float().mean()))
        markdown(gelu + " " + dots)


@SECTION.step(
    "10.12",
    N_("The block's output"),
    text=N_(
        "A second residual adds the MLP's output to its input. The block ends with the same (n+1)×d shape it "
        "started with, ready for the next block."
    ),
    formula=lambda traced: r"X_l = X' + \lambda_2 \odot M" if traced.config.layer_scale else r"X_l = X' + M",
    shape="(n+1, d)",
    controls=(LAYER,),
)
def step_10_12(traced: Traced, view: View) -> None:
    layer = traced.trace.layers[view.layer]
    scaled = traced.config.layer_scale
    if scaled:
        _layer_scale(traced, view, 2)
    _residual_sum(
        traced,
        view,
        ("X'", "+ λ₂ ⊙ M" if scaled else "+ M", "= X_l"),
        layer.resid,
        layer.mlp_update,
        layer.output,
        _("How much the MLP changed each token"),
    )
