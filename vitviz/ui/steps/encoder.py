"""Steps 10.1–10.12: inside one encoder block, at the layer (and head) chosen in the sidebar."""

from __future__ import annotations

import numpy as np
import streamlit as st
import torch

from vitviz import analysis, figures
from vitviz.ui.controls import View, persistent, query_picker, token_label
from vitviz.ui.drawing import caption, columns, image, image_grid, latex, markdown, show_figure, to_numpy
from vitviz.ui.specials import patch_overlay, special_weights, token_axis, token_heatmap
from vitviz.ui.state import Traced
from vitviz.ui.steps.step import HEAD, LAYER, QUERY, Section

SECTION = Section("Inside one encoder layer")


def _where(view: View) -> str:
    return f"layer {view.layer + 1}, head {view.head + 1}"


def _layer_scale(traced: Traced, view: View, branch: int) -> None:
    """What LayerScale is, and this layer's factors for one branch (1: attention, 2: the MLP)."""
    factors = np.abs(to_numpy(getattr(traced.model.blocks[view.layer], f"ls{branch}").gamma))
    name = "λ₁" if branch == 1 else "λ₂"
    markdown(
        "This model has **LayerScale** (DINOv2): before a branch's output is added, each of its d channels is "
        "multiplied by a learned factor, one vector λ₁ for attention and λ₂ for the MLP in every block. Started at "
        "small values in training, they let a deep model begin close to the identity and open each branch as it "
        f"learns. In layer {view.layer + 1}, |{name}| ranges from {factors.min():.3g} to {factors.max():.3g} "
        f"(median {np.median(factors):.3g})."
    )


def _token(traced: Traced, index: int) -> str:
    return token_label(index, traced.trace.grid, traced.trace.special_labels)


def _residual_sum(traced: Traced, view: View, names: tuple[str, str, str], before, update, after, title: str) -> None:
    """A residual step: before + update = after as three heatmaps, then how large each token's update is."""
    for column, name, tensor in zip(columns(3), names, (before, update, after), strict=True):
        with column:
            show_figure(token_heatmap(traced, to_numpy(tensor), title=name, x_title="d", y_title="token", height=300))
    ratio = analysis.update_ratio(to_numpy(before), to_numpy(update))  # (N,)
    left, right = columns(2)
    with left:
        show_figure(
            figures.lines({"‖update‖ / ‖input‖": ratio}, title=title, x_title=token_axis(traced), y_title="ratio")
        )
    specials = ", ".join(f"{label}: {value:.3f}" for label, value in zip(traced.trace.special_labels, ratio, strict=False))
    right.image(
        patch_overlay(traced, ratio, colorscale=view.colorscale, opacity=0.7),
        caption=f"The same ratio per patch ({specials})",
        width="stretch",
    )


@SECTION.step(
    "10.1",
    "Q, K and V",
    text=(
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
                title=f"Block input X (layer {view.layer + 1})",
                x_title="d",
                y_title="token",
                height=300,
            )
        )
    with right:
        show_figure(
            token_heatmap(
                traced,
                to_numpy(layer.norm1), title="LN(X): each token normalised", x_title="d", y_title="token", height=300
            )
        )
    _layer_norm_note(traced, layer)
    qkv = to_numpy(layer.qkv)
    fig = token_heatmap(
        traced,
        qkv, title=f"LN(X) W_qkv: {qkv.shape[0]}×{qkv.shape[1]} = [Q | K | V]", x_title="3d", y_title="token"
    )
    for boundary in (d, 2 * d):
        fig.add_vline(x=boundary - 0.5, line=dict(color="#111", width=2))
    show_figure(fig)
    markdown(
        "**What the three are for.** A token's query says what it is looking for, its key what it can be found by, "
        "and its value what it hands over to the tokens that attend to it. All three come from the same normalised "
        "token through different columns of W_qkv, so what makes a token found and what it passes on can differ."
    )
    markdown(f"**Head {view.head + 1}'s slices**, columns {view.head * dh}–{(view.head + 1) * dh - 1} of each part:")
    cols = columns(3)
    for col, name in zip(cols, ("q", "k", "v"), strict=True):
        with col:
            show_figure(
                token_heatmap(
                    traced,
                    to_numpy(getattr(layer, name)[view.head]),
                    title=f"{name.upper()} ({_where(view)})",
                    x_title="d_h",
                    y_title="token",
                    height=320,
                )
            )


def _layer_norm_note(traced: Traced, layer) -> None:
    """LayerNorm's formula, once, beside the first figure that shows it, with what it did to this layer's tokens."""
    latex(r"\mathrm{LN}(x) = \gamma \odot \frac{x - \mu}{\sqrt{\sigma^2 + \varepsilon}} + \beta")
    before = np.linalg.norm(to_numpy(layer.input), axis=1)
    after = np.linalg.norm(to_numpy(layer.norm1), axis=1)
    caption(
        f"LayerNorm works on each token alone: μ and σ² are the mean and variance of its own d = {traced.config.dim} "
        f"numbers, ε = {traced.config.layer_norm_eps:g} only keeps the division safe, and γ and β ({traced.config.dim} "
        "learned numbers each) scale and shift every channel afterwards. So every token enters attention at a "
        f"similar size: here their lengths go from {before.min():.2f}–{before.max():.2f} to "
        f"{after.min():.2f}–{after.max():.2f}."
    )


@SECTION.step(
    "10.2",
    "Attention scores",
    text=(
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
            x_title="key token",
            y_title="query token",
            colorscale="RdBu_r",
            height=520,
            value_name="score",
        ),
        key="scores",
    )
    labels = traced.trace.special_labels
    first = "token 0 is CLS" if len(labels) == 1 else \
        f"the first {len(labels)} tokens are {', '.join(labels[:-1])} and {labels[-1]}"
    caption(f"Hover for values; {first}. Scores range from {scores.min():.2f} to {scores.max():.2f}.")
    dh = traced.config.head_dim
    markdown(
        "**Why a dot product.** q · k multiplies the two vectors entry by entry and adds the products: it is large "
        "when the query's large entries meet large entries of the same sign in the key, near zero when they have "
        "nothing in common, and negative when they disagree. It equals ‖q‖ ‖k‖ cos θ, so it rewards pointing the "
        f"same way. A sum of d_h = {dh} products spreads more the wider the head, so it is divided by √{dh} = "
        f"{dh**0.5:.2f}; without that, the softmax on the next step would put nearly all weight on one key."
    )


@SECTION.step(
    "10.3",
    "Softmax",
    text=(
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
        show_figure(token_heatmap(traced, scores, keys=True, title="Scores", x_title="key", y_title="query", height=420))
    with right:
        show_figure(
            token_heatmap(
                traced,
                attn,
                keys=True,
                title="softmax(scores), row by row",
                x_title="key",
                y_title="query",
                colorscale=view.colorscale,
                centred=False,
                height=420,
                value_name="weight",
            )
        )
    sums = attn.sum(axis=1)
    markdown(
        f"Every row sums to one: the sums range from **{sums.min():.6f}** to **{sums.max():.6f}**. "
        f"The largest single weight is {attn.max():.3f}; a uniform row would give {1 / attn.shape[1]:.4f} each."
    )


@SECTION.step(
    "10.4",
    "One token's context",
    text=(
        "Take one query's row of weights and mix the value vectors with them. The result is that token's new "
        "context: mostly made of the values of the tokens it attends to."
    ),
    formula=r"c_i = \sum_j P_{ij}\, v_j",
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
            caption=f"Attention of {_token(traced, query)} over the patches ({_where(view)}); "
            f"{special_weights(traced, row)}",
            width="stretch",
        )
    v = to_numpy(layer.v[view.head])
    context = row @ v
    show_figure(
        figures.heatmap(
            row[None],
            special_cols=traced.trace.special_labels,
            title=f"The query's attention row: one weight for each of the {len(row)} tokens' value vectors",
            x_title="token",
            colorscale=view.colorscale,
            centred=False,
            height=140,
            value_name="weight",
        )
    )
    show_figure(
        token_heatmap(
            traced,
            v, title="V for this head: one value vector per token", x_title="d_h", y_title="token", height=320
        )
    )
    recorded = to_numpy(layer.context[view.head, query])
    show_figure(
        figures.vector_strip(recorded, title=f"Context vector Σ P_ij v_j for {_token(traced, query)}")
    )
    caption(
        f"Computed here from the row and V, it matches the model's own context to within "
        f"{np.abs(context - recorded).max():.1e}."
    )


@SECTION.step(
    "10.5",
    "Every token's context",
    text=(
        "Doing the same for every row at once is one matrix product. That finishes one head: one context "
        "vector per token, CLS included."
    ),
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
            title=f"Context P V for every token ({_where(view)}): {context.shape[0]}×{context.shape[1]}",
            x_title="d_h",
            y_title="token",
            height=460,
            highlight_row=query,
        )
    )
    caption(f"The outlined row is the query chosen on step 10.4: {_token(traced, query)}.")


@SECTION.step(
    "10.6",
    "Many heads",
    text=(
        "All h heads do steps 10.2 to 10.5 in parallel, each with its own slice of Q, K and V. Different "
        "heads learn to look for different things, and their attention maps show it."
    ),
    formula=r"C^{(m)} = \mathrm{softmax}\!\left(\frac{Q^{(m)} K^{(m)\top}}{\sqrt{d_h}}\right) V^{(m)},\quad m = 1..h",
    shape="(h, n+1, d_h)",
    controls=(LAYER, QUERY),
)
def step_10_6(traced: Traced, view: View) -> None:
    layer = traced.trace.layers[view.layer]
    query = query_picker(traced, key="query_click_10.6")
    heads = traced.config.heads
    markdown(f"**Every head of layer {view.layer + 1}**, attention of {_token(traced, query)}:")
    rows = [to_numpy(layer.attn[h, query]) for h in range(heads)]
    shared = persistent(st.toggle, "heads_shared_scale", False, label="One colour scale for every head")
    specials = traced.trace.num_special
    top = max(float(row[specials:].max()) for row in rows) if shared else None
    image_grid(
        [
            (
                patch_overlay(traced, row, query=query, size=192, colorscale=view.colorscale, vmax=top),
                f"Head {h + 1}: patches {row[specials:].min():.2f}–{row[specials:].max():.2f}, "
                f"{special_weights(traced, row, digits=2)}",
            )
            for h, row in enumerate(rows)
        ],
        per_row=min(heads, 4),
    )
    if shared:
        caption(f"Colours run from 0 to {top:.2f}, the largest weight any head gives a patch, in every image.")
    else:
        caption(
            "Each image's colours run from its own lowest to its own highest patch weight (the range under it), so a "
            "head that spreads its weight evenly looks as contrasted as one that picks a single patch; compare the "
            "ranges, or turn on one colour scale for every head."
        )
    markdown(_why_heads(traced))


def _why_heads(traced: Traced) -> str:
    """Why several heads cost no more than one, and where each head's projection is in W_qkv."""
    config = traced.config
    gh, gw = traced.trace.grid
    d, h, dh, tokens = config.dim, config.heads, config.head_dim, gh * gw + 1
    last = f"head {h}: columns {(h - 1) * dh}–{h * dh - 1}"
    return (
        f"**Why several heads.** With d_h = d / h, the {h} heads together cost what one head of the full width "
        f"would: scoring every pair takes h · N² · d_h = N² · d multiplications ({h} · {tokens}² · {dh} = "
        f"{tokens}² · {d} = {h * tokens**2 * dh:,} here), and the projection is one d×3d matrix W_qkv either way. What h heads buy is "
        f"{h} different weighted averages per token instead of one, each free to look at other tokens. Each head's "
        f"projection is a slice of that one matrix: head m's queries are columns (m−1)·d_h to m·d_h − 1 of its Q "
        f"part ({last}), and its keys and values the same columns of the K and V parts."
    )


@SECTION.step(
    "10.7",
    "Concatenate and project",
    text=(
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
        concat, title=f"Heads side by side: {concat.shape[0]}×{concat.shape[1]}", x_title="d", y_title="token"
    )
    for h in range(1, traced.config.heads):
        fig.add_vline(x=h * dh - 0.5, line=dict(color="#111", width=2))
    show_figure(fig)
    w_o = to_numpy(traced.model.blocks[view.layer].attn.proj.weight).T  # (d_in, d_out): x W_o
    left, right = columns(2)
    with left:
        show_figure(figures.heatmap(w_o, title="W_o (d×d)", x_title="out", y_title="in", height=320))
    with right:
        show_figure(
            token_heatmap(
                traced,
                to_numpy(layer.attn_out), title="Concatenation × W_o + b_o", x_title="d", y_title="token", height=320
            )
        )


@SECTION.step(
    "10.8",
    "The attention output",
    text=(
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
                to_numpy(layer.input), title="Input of the attention (before LayerNorm)", x_title="d", y_title="token"
            )
        )
    with right:
        show_figure(
            token_heatmap(traced, to_numpy(layer.attn_out), title="Output of the attention", x_title="d", y_title="token")
        )
    inp, out = to_numpy(layer.input), to_numpy(layer.attn_out)
    show_figure(
        figures.lines(
            {"‖input‖": np.linalg.norm(inp, axis=1), "‖attention output‖": np.linalg.norm(out, axis=1)},
            title="Length of each token's vector",
            x_title=token_axis(traced),
            y_title="L2 norm",
        )
    )
    alike_in, alike_out = _mean_pairwise_cosine(inp), _mean_pairwise_cosine(out)
    more = "more" if alike_out > alike_in else "less"
    caption(
        "What to look for: compare rows. Tokens that attended to the same places tend to get similar output rows, and a "
        "column that is strong in every row is something attention adds to every token alike. In this layer the "
        f"output rows are {more} alike than the input rows: mean cosine {alike_out:.2f} between two tokens' outputs "
        f"against {alike_in:.2f} between their inputs."
    )


def _mean_pairwise_cosine(rows: np.ndarray) -> float:
    """The mean cosine similarity over all pairs of distinct rows: how alike the tokens are."""
    unit = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    gram = unit @ unit.T
    count = len(rows)
    return float((gram.sum() - np.trace(gram)) / max(1, count * (count - 1)))


@SECTION.step(
    "10.9",
    "Residual connection",
    text=(
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
        "How much attention changed each token",
    )


@SECTION.step(
    "10.10",
    "After the residual",
    text=(
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
            after, title=f"X' = X + O: {after.shape[0]}×{after.shape[1]}", x_title="d", y_title="token", height=420
        )
    )
    left, right = columns(2)
    with left:
        show_figure(
            figures.lines(
                {"‖X‖": np.linalg.norm(before, axis=1), "‖X'‖": np.linalg.norm(after, axis=1)},
                title="Length of each token before and after",
                x_title=token_axis(traced),
                y_title="L2 norm",
            )
        )
    with right:
        show_figure(
            figures.lines(
                {"cos(X, X')": turned},
                title="How far attention turned each token (1 = same direction)",
                x_title=token_axis(traced),
                y_title="cosine",
            )
        )
    most = int(turned.argmin())
    caption(
        "What to look for: X' keeps X's pattern, since the residual adds attention's output to it rather than "
        "replacing it, so look for the rows that differ from the block input X (step 10.9 shows both). The cosine plot finds them: the lower "
        f"the dot, the more attention turned that token. Here it turned {token_label(most, traced.trace.grid)} "
        f"most (cosine {turned[most]:.2f}); the median token keeps cosine {np.median(turned):.2f}."
    )


@SECTION.step(
    "10.11",
    "The MLP",
    text=(
        "Each token now goes on its own through a small two-layer network: normalise, widen to the hidden "
        "size, apply GELU, narrow back to d. The hidden layer H is what the figures show."
    ),
    formula=r"H = \mathrm{GELU}(\mathrm{LN}(X') W_1 + b_1),\quad M = H\,W_2 + b_2",
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
            x_title="hidden unit",
            y_title="token",
            height=420,
        )
    )
    _gelu(traced, view)
    config = traced.config
    d, width = config.dim, config.mlp_dim
    attention_parameters = 4 * d * d + 4 * d  # W_qkv, b_qkv, W_o, b_o
    mlp_parameters = 2 * d * width + width + d  # W_1, b_1, W_2, b_2
    larger = "the MLP" if mlp_parameters > attention_parameters else "attention"
    caption(
        f"In this model the MLP (hidden width {width:,}) holds {mlp_parameters:,} parameters per block and attention "
        f"{attention_parameters:,}, so {larger} holds more. The figure shows H; GELU lets small negative values "
        "through, so below zero is not the same as off."
    )
    active = (hidden > 0).mean(axis=1)
    show_figure(
        figures.lines(
            {"share of hidden units > 0": active},
            title="Share of each token's hidden units above zero (GELU passes small negative values too)",
            x_title=token_axis(traced),
            y_title="share",
        )
    )


def _gelu(traced: Traced, view: View) -> None:
    """What GELU is: the model's own activation drawn as a curve, with one token's hidden units on it."""
    mlp = traced.model.blocks[view.layer].mlp
    query = min(view.query, traced.config.num_patches)
    with torch.no_grad():
        z = mlp.fc1(traced.trace.layers[view.layer].norm2[query])  # the token's hidden units before GELU
        span = torch.linspace(min(-4.0, float(z.min())), max(4.0, float(z.max())), 241)
        fine = torch.linspace(-3.0, 0.0, 3001)
        lowest = int(mlp.act(fine).argmin())
        curve, lowest_z, lowest_value = mlp.act(span), float(fine[lowest]), float(mlp.act(fine)[lowest])
        out = mlp.act(z)
    token = token_label(query, traced.trace.grid)
    left, right = columns([3, 2])
    with left:
        show_figure(
            figures.activation_curve(
                span.numpy(),
                curve.numpy(),
                points=(z.numpy(), out.numpy()),
                points_name=f"{token}'s {z.numel():,} hidden units",
                title=f"GELU, with the hidden units of {token} (layer {view.layer + 1})",
            )
        )
    with right:
        latex(r"\mathrm{GELU}(z) = z\,\Phi(z)")
        approximation = (
            " This model computes it with the usual tanh approximation, 0.5·z·(1 + tanh(√(2/π)·(z + 0.044715·z³)))."
            if traced.config.activation == "gelu_tanh"
            else ""
        )
        markdown(
            "**GELU** multiplies z by Φ(z), the chance that a standard normal number is below z. A large positive z "
            "passes almost unchanged, a large negative one becomes almost 0, and in between the curve dips to its "
            f"lowest, {lowest_value:.3f} at z = {lowest_z:.2f}. Unlike ReLU it is smooth and lets small negative "
            f"values through.{approximation} The dots are {token}'s hidden units (the query of steps 10.4 and 10.6): "
            f"{float((out > 0).float().mean()):.0%} of them come out above zero."
        )


@SECTION.step(
    "10.12",
    "The block's output",
    text=(
        "A second residual adds the MLP's output to its input. The block ends with the same (n+1)×d shape it "
        "started with, ready for the next block."
    ),
    formula=lambda traced: r"Y = X' + \lambda_2 \odot M" if traced.config.layer_scale else r"Y = X' + M",
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
        ("X'", "+ λ₂ ⊙ M" if scaled else "+ M", "= block output"),
        layer.resid,
        layer.mlp_update,
        layer.output,
        "How much the MLP changed each token",
    )
