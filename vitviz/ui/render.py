"""One render function per guide step. Both the step pages and the story page call these.

Each takes the session's `Analysis` (image, model, cached Trace) and the shared
`Controls`; none of them runs the model except step 14, which needs a backward pass.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import streamlit as st

from vitviz import analysis, data, figures
from vitviz.ui import paper, state
from vitviz.ui.controls import Controls, persistent, query_token, token_label
from vitviz.ui.state import Analysis


def _np(tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()


def _factor(display: np.ndarray, target: int = 256) -> int:
    return max(1, target // max(display.shape[:2]))


def _chosen_patch(n: int, step: str) -> int:
    return persistent(st.slider, f"patch_{step}", min(n - 1, n // 2 + 3), store="patch", label="Patch",
                      min_value=0, max_value=n - 1)


def image_grid(items: list[tuple[np.ndarray, str]], per_row: int) -> None:
    """(picture, caption) pairs in rows of `per_row` columns."""
    for start in range(0, len(items), per_row):
        for col, (picture, caption) in zip(st.columns(per_row), items[start : start + per_row], strict=False):
            col.image(picture, caption=caption, width="stretch")


def _fig(fig, key: str | None = None) -> None:
    st.plotly_chart(fig, width="stretch", config={"displaylogo": False}, key=key)


# --- 0–2: data ---------------------------------------------------------------------------------


@st.cache_resource(max_entries=4, show_spinner=False)
def _dataset_preview(model_key: str, _model, count: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import torch

    from vitviz.images import normalise

    images, labels = data.generate(count, state.SCENE_SEED + 1, size=_model.config.image_size[0])
    with torch.no_grad():
        predicted = _model(normalise(images, _model.config)).argmax(-1).numpy()
    return images, labels, predicted


def step_0(a: Analysis, c: Controls) -> None:
    names = a.config.labels
    if a.config.image_size[0] != a.config.image_size[1] or len(names) != len(data.CLASSES):
        st.info("This model was not trained on the built-in shapes, so there is no dataset preview for it.")
        return
    images, labels, predicted = _dataset_preview(a.model_key, a.model)
    st.markdown(f"**{len(names)} classes:** " + ", ".join(names))
    columns = st.columns(8)
    for i in range(len(labels)):
        mark = "✓" if predicted[i] == labels[i] else f"✗ model says {names[predicted[i]]}"
        columns[i % 8].image(figures.upscale(images[i], 2), caption=f"{names[labels[i]]} {mark}", width="stretch")
    right = int((predicted == labels).sum())
    st.caption(f"Captions give the generator's label, and ✓ where the model predicts it ({right} of {len(labels)} here).")


def step_1(a: Analysis, c: Controls) -> None:
    left, right = st.columns(2)
    left.image(state.preview(state.current_image()), caption=f"Your image, {a.image.width}×{a.image.height}",
               width="stretch")
    h, w = a.config.image_size
    right.image(figures.upscale(a.display, _factor(a.display, 384)),
                caption=f"What the model sees: a centre crop resized to {w}×{h}", width="stretch")
    pixels = _np(a.trace.pixels)
    mean, std = a.config.mean, a.config.std
    st.markdown("Normalisation per channel: " + ", ".join(
        f"{name}: mean {m:.3f}, std {s:.3f}" for name, m, s in zip("RGB", mean, std, strict=False)))
    _fig(figures.channel_histograms(pixels, title="Values of the normalised input, per channel"))


def step_2(a: Analysis, c: Controls) -> None:
    st.image(figures.upscale(a.display, _factor(a.display, 384)), caption="The image, with no label attached",
             width=384)


# --- 3–9: patches and tokens -------------------------------------------------------------------


def step_3(a: Analysis, c: Controls) -> None:
    p = a.config.patch_size
    gh, gw = a.trace.grid
    left, right = st.columns(2)
    factor = _factor(a.display, 320)
    left.image(figures.draw_grid(a.display, p, factor), caption=f"A {gh}×{gw} grid of {p}×{p} patches", width="stretch")
    tiles = _np(a.trace.patches)
    right.image(figures.mosaic(tiles, gw, gap=max(2, factor), factor=factor), caption="The patches pulled apart",
                width="stretch")


def step_4(a: Analysis, c: Controls) -> None:
    n = a.config.num_patches
    p, ch = a.config.patch_size, a.config.channels
    index = _chosen_patch(n, "4")
    left, right = st.columns([1, 2])
    factor = _factor(a.display, 256)
    left.image(figures.draw_grid(a.display, p, factor, highlight=index), caption=f"Patch {index}", width="stretch")
    left.image(figures.upscale(figures.to_uint8(_np(a.trace.patches[index])), 24), caption="The patch, enlarged",
               width=160)
    flat = _np(a.trace.flat_patches)
    with right:
        _fig(figures.channel_bars(flat[index], ch, title=f"Patch {index} flattened: 1×{flat.shape[1]}, values R, G, B in turn"))
        _fig(figures.heatmap(flat, title=f"All patches: {n}×{flat.shape[1]} (patch {index} outlined)",
                             x_title="p' (pixel by pixel, channels last)", y_title="patch", colorscale=c.colorscale,
                             highlight_row=index, centred=False))


def step_5(a: Analysis, c: Controls) -> None:
    n, d = a.config.num_patches, a.config.dim
    p, ch = a.config.patch_size, a.config.channels
    index = _chosen_patch(n, "5")
    flat = _np(a.trace.flat_patches)[index]
    weight = _np(a.model.patch_embed.weight)  # (d, p')
    embedding = _np(a.trace.patch_embeddings)[index]
    _fig(figures.vector_strip(flat, title=f"x: patch {index}, 1×{flat.size}", colorscale=c.colorscale))
    _fig(figures.heatmap(weight.T, title=f"E: {weight.shape[1]}×{d}", x_title="d", y_title="p'", colorscale="RdBu_r",
                         height=320))
    _fig(figures.vector_strip(embedding, title=f"x E + b: the patch's embedding, 1×{d}", colorscale="RdBu_r"))
    st.markdown(f"**E's {d} filters, each drawn as a {p}×{p} RGB patch** (stretched to full contrast):")
    if ch == 3:
        st.image(figures.mosaic(figures.filters_as_images(weight, p, ch), min(d, 24), gap=2, factor=max(1, 32 // p)),
                 width="stretch")
    st.markdown("**Their principal components**, the view of the ViT paper's Fig. 7:")
    paper.filter_components(a)


def step_6(a: Analysis, c: Controls) -> None:
    emb = _np(a.trace.patch_embeddings)
    gh, gw = a.trace.grid
    _fig(figures.heatmap(emb, title=f"Patch embeddings: {emb.shape[0]}×{emb.shape[1]}", x_title="d", y_title="patch",
                         colorscale="RdBu_r"))
    colours = figures.pca_colours(emb).reshape(gh, gw, 3)
    factor = _factor(a.display, 256)
    left, right = st.columns(2)
    left.image(figures.upscale(a.display, factor), caption="The image", width="stretch")
    right.image(figures.upscale(figures.to_uint8(colours), max(1, 256 // max(gh, gw))),
                caption="First three principal components of the embeddings as R, G, B", width="stretch")


def step_7(a: Analysis, c: Controls) -> None:
    _fig(figures.vector_strip(_np(a.trace.cls_token), title=f"The learned CLS token, 1×{a.config.dim}"))
    with_cls = _np(a.trace.with_cls)
    _fig(figures.heatmap(with_cls, title=f"[CLS; patch embeddings]: {with_cls.shape[0]}×{with_cls.shape[1]}, row 0 is CLS",
                         x_title="d", y_title="token", highlight_row=0))


def step_8(a: Analysis, c: Controls) -> None:
    pos = _np(a.trace.pos_embedding)
    _fig(figures.heatmap(pos, title=f"Position embeddings: {pos.shape[0]}×{pos.shape[1]}", x_title="d", y_title="position"))
    paper.position_similarity(a)
    left, right = st.columns(2)
    with left:
        _fig(figures.heatmap(_np(a.trace.with_cls), title="Before: [CLS; embeddings]", x_title="d", y_title="token", height=300))
    with right:
        _fig(figures.heatmap(_np(a.trace.tokens), title="After: + position embeddings", x_title="d", y_title="token", height=300))


def step_9(a: Analysis, c: Controls) -> None:
    tokens = _np(a.trace.tokens)
    _fig(figures.heatmap(tokens, title=f"Transformer input: {tokens.shape[0]}×{tokens.shape[1]}", x_title="d",
                         y_title="token", highlight_row=0, height=420))


# --- 10.x: one encoder block ---------------------------------------------------------------------


def _layer(a: Analysis, c: Controls):
    return a.trace.layers[c.layer]


def _where(a: Analysis, c: Controls) -> str:
    return f"layer {c.layer + 1}, head {c.head + 1}"


def step_10_1(a: Analysis, c: Controls) -> None:
    layer = _layer(a, c)
    d, dh = a.config.dim, a.config.head_dim
    left, right = st.columns(2)
    with left:
        _fig(figures.heatmap(_np(layer.input), title=f"Block input X (layer {c.layer + 1})", x_title="d", y_title="token", height=300))
    with right:
        _fig(figures.heatmap(_np(layer.norm1), title="LN(X): each token normalised", x_title="d", y_title="token", height=300))
    qkv = _np(layer.qkv)
    fig = figures.heatmap(qkv, title=f"LN(X) W_qkv: {qkv.shape[0]}×{qkv.shape[1]} = [Q | K | V]", x_title="3d", y_title="token")
    for boundary in (d, 2 * d):
        fig.add_vline(x=boundary - 0.5, line=dict(color="#111", width=2))
    _fig(fig)
    st.markdown(f"**Head {c.head + 1}'s slices**, columns {c.head * dh}–{(c.head + 1) * dh - 1} of each part:")
    cols = st.columns(3)
    for col, name in zip(cols, ("q", "k", "v"), strict=True):
        with col:
            _fig(figures.heatmap(_np(getattr(layer, name)[c.head]), title=f"{name.upper()} ({_where(a, c)})",
                                 x_title="d_h", y_title="token", height=320))


def step_10_2(a: Analysis, c: Controls) -> None:
    scores = _np(_layer(a, c).scores[c.head])
    _fig(figures.heatmap(scores, title=f"Q Kᵀ / √d_h, {_where(a, c)}: {scores.shape[0]}×{scores.shape[1]}",
                         x_title="key token", y_title="query token", colorscale="RdBu_r", height=520,
                         value_name="score"), key="scores")
    st.caption(f"Hover for values; token 0 is CLS. Scores range from {scores.min():.2f} to {scores.max():.2f}.")


def step_10_3(a: Analysis, c: Controls) -> None:
    layer = _layer(a, c)
    scores, attn = _np(layer.scores[c.head]), _np(layer.attn[c.head])
    left, right = st.columns(2)
    with left:
        _fig(figures.heatmap(scores, title="Scores", x_title="key", y_title="query", height=420))
    with right:
        _fig(figures.heatmap(attn, title="softmax(scores), row by row", x_title="key", y_title="query",
                             colorscale=c.colorscale, centred=False, height=420, value_name="weight"))
    sums = attn.sum(axis=1)
    st.markdown(f"Every row sums to one: the sums range from **{sums.min():.6f}** to **{sums.max():.6f}**. "
                f"The largest single weight is {attn.max():.3f}; a uniform row would give {1 / attn.shape[1]:.4f} each.")


def _query_picker(a: Analysis, step: str) -> int:
    return query_token(a.display, a.trace.grid, a.config.patch_size, key=f"query_click_{step}")


def overlay(a: Analysis, weights: np.ndarray, query: int, colorscale: str, *, opacity: float = 0.6,
            size: int = 256) -> np.ndarray:
    """What the model saw, about `size` pixels wide, with one weight per patch laid over it and the query outlined."""
    gh, gw = a.trace.grid
    return figures.attention_overlay(a.display, weights.reshape(gh, gw), factor=_factor(a.display, size),
                                     opacity=opacity, colorscale=colorscale, highlight=query - 1 if query else None,
                                     patch=a.config.patch_size)


def step_10_4(a: Analysis, c: Controls) -> None:
    layer = _layer(a, c)
    left, right = st.columns([1, 1])
    with left:
        query = _query_picker(a, "10.4")
    row = _np(layer.attn[c.head, query])
    with right:
        st.image(overlay(a, row[1:], query, c.colorscale), caption=f"Attention of {token_label(query, a.trace.grid)} over the patches "
                 f"({_where(a, c)}); CLS gets {row[0]:.3f}", width="stretch")
    v = _np(layer.v[c.head])
    context = row @ v
    _fig(figures.heatmap(row[None], title="The query's attention row: one weight per value vector", x_title="token",
                         colorscale=c.colorscale, centred=False, height=140, value_name="weight"))
    _fig(figures.heatmap(v, title="V for this head: one value vector per token", x_title="d_h", y_title="token", height=320))
    recorded = _np(layer.context[c.head, query])
    _fig(figures.vector_strip(recorded, title=f"Context vector Σ P_ij v_j for {token_label(query, a.trace.grid)}"))
    st.caption(f"Computed here from the row and V, it matches the model's own context to within "
               f"{np.abs(context - recorded).max():.1e}.")


def step_10_5(a: Analysis, c: Controls) -> None:
    context = _np(_layer(a, c).context[c.head])
    query = min(c.query, context.shape[0] - 1)
    _fig(figures.heatmap(context, title=f"Context P V for every token ({_where(a, c)}): {context.shape[0]}×{context.shape[1]}",
                         x_title="d_h", y_title="token", height=460, highlight_row=query))
    st.caption(f"The outlined row is the query chosen on step 10.4: {token_label(query, a.trace.grid)}.")


def step_10_6(a: Analysis, c: Controls) -> None:
    layer = _layer(a, c)
    query = _query_picker(a, "10.6")
    heads = a.config.heads
    st.markdown(f"**Every head of layer {c.layer + 1}**, attention of {token_label(query, a.trace.grid)}:")
    rows = [_np(layer.attn[h, query]) for h in range(heads)]
    image_grid([(overlay(a, row[1:], query, c.colorscale, size=192), f"Head {h + 1}: CLS {row[0]:.2f}, max {row.max():.2f}")
                for h, row in enumerate(rows)], per_row=min(heads, 4))


def step_10_7(a: Analysis, c: Controls) -> None:
    layer = _layer(a, c)
    concat = _np(layer.concat)
    dh = a.config.head_dim
    fig = figures.heatmap(concat, title=f"Heads side by side: {concat.shape[0]}×{concat.shape[1]}", x_title="d", y_title="token")
    for h in range(1, a.config.heads):
        fig.add_vline(x=h * dh - 0.5, line=dict(color="#111", width=2))
    _fig(fig)
    attn = a.model.blocks[c.layer].attn
    left, right = st.columns(2)
    with left:
        _fig(figures.heatmap(_np(attn.proj.weight).T, title="W_o (d×d)", x_title="out", y_title="in", height=320))
    with right:
        _fig(figures.heatmap(_np(layer.attn_out), title="Concatenation × W_o + b_o", x_title="d", y_title="token", height=320))


def step_10_8(a: Analysis, c: Controls) -> None:
    layer = _layer(a, c)
    left, right = st.columns(2)
    with left:
        _fig(figures.heatmap(_np(layer.input), title="Input of the attention (before LayerNorm)", x_title="d", y_title="token"))
    with right:
        _fig(figures.heatmap(_np(layer.attn_out), title="Output of the attention", x_title="d", y_title="token"))
    inp, out = _np(layer.input), _np(layer.attn_out)
    _fig(figures.lines({"‖input‖": np.linalg.norm(inp, axis=1), "‖attention output‖": np.linalg.norm(out, axis=1)},
                       title="Length of each token's vector", x_title="token (0 = CLS)", y_title="L2 norm"))


def _update_map(a: Analysis, before: np.ndarray, update: np.ndarray, title: str, c: Controls) -> None:
    ratio = analysis.update_ratio(before, update)
    gh, gw = a.trace.grid
    left, right = st.columns(2)
    with left:
        _fig(figures.lines({"‖update‖ / ‖input‖": ratio}, title=title, x_title="token (0 = CLS)", y_title="ratio"))
    right.image(figures.attention_overlay(a.display, ratio[1:].reshape(gh, gw), factor=_factor(a.display, 256),
                                          colorscale=c.colorscale, opacity=0.7),
                caption=f"The same ratio per patch (CLS: {ratio[0]:.3f})", width="stretch")


def step_10_9(a: Analysis, c: Controls) -> None:
    layer = _layer(a, c)
    cols = st.columns(3)
    for col, (name, tensor) in zip(cols, (("X", layer.input), ("+ O", layer.attn_out), ("= X'", layer.resid)), strict=True):
        with col:
            _fig(figures.heatmap(_np(tensor), title=name, x_title="d", y_title="token", height=300))
    _update_map(a, _np(layer.input), _np(layer.attn_out), "How much attention changed each token", c)


def step_10_10(a: Analysis, c: Controls) -> None:
    resid = _np(_layer(a, c).resid)
    _fig(figures.heatmap(resid, title=f"X' = X + O: {resid.shape[0]}×{resid.shape[1]}", x_title="d", y_title="token", height=420))


def step_10_11(a: Analysis, c: Controls) -> None:
    layer = _layer(a, c)
    hidden = _np(layer.mlp_hidden)
    _fig(figures.heatmap(hidden, title=f"GELU(LN(X') W_1 + b_1): {hidden.shape[0]}×{hidden.shape[1]}", x_title="hidden unit",
                         y_title="token", height=420))
    active = (hidden > 0).mean(axis=1)
    _fig(figures.lines({"share of hidden units > 0": active}, title="How many hidden units fire for each token",
                       x_title="token (0 = CLS)", y_title="share"))


def step_10_12(a: Analysis, c: Controls) -> None:
    layer = _layer(a, c)
    cols = st.columns(3)
    for col, (name, tensor) in zip(cols, (("X'", layer.resid), ("+ MLP", layer.mlp_out), ("= block output", layer.output)),
                                   strict=True):
        with col:
            _fig(figures.heatmap(_np(tensor), title=name, x_title="d", y_title="token", height=300))
    _update_map(a, _np(layer.resid), _np(layer.mlp_out), "How much the MLP changed each token", c)


# --- 11–13: output -------------------------------------------------------------------------------


def step_11(a: Analysis, c: Controls) -> None:
    gh, gw = a.trace.grid
    depth = len(a.trace.layers)
    st.markdown("**What CLS attends to in each layer** (mean over heads):")
    cls_rows = [_np(layer.attn[:, 0].mean(0)) for layer in a.trace.layers]
    image_grid([(figures.attention_overlay(a.display, row[1:].reshape(gh, gw), factor=_factor(a.display, 160),
                                           colorscale=c.colorscale), f"Layer {i + 1}") for i, row in enumerate(cls_rows)],
               per_row=min(depth, 6))
    cls = np.stack([_np(layer.output[0]) for layer in a.trace.layers])
    first = _np(a.trace.tokens[0])
    all_cls = np.vstack([first[None], cls])
    left, right = st.columns(2)
    with left:
        _fig(figures.lines({"cosine(CLS before, CLS after)": analysis.cosine_to_next(all_cls)}, x=np.arange(1, depth + 1),
                           title="How much each layer turns the CLS token", x_title="layer", y_title="cosine"))
    with right:
        _fig(figures.lines({"‖CLS‖": np.linalg.norm(all_cls, axis=1)}, title="Length of the CLS token",
                           x_title="after layer (0 = input)", y_title="L2 norm"))
    paper.attention_distance(a)
    norm, head = a.model.norm, a.model.head
    probs = analysis.logit_lens(cls, _np(norm.weight), _np(norm.bias), norm.eps, _np(head.weight), _np(head.bias))
    labels = a.labels
    shown = np.argsort(-probs[-1])[:10]  # the final top classes; a 1000-class model stays readable
    fig = figures.heatmap(probs[:, shown], title="Prediction read from each layer's CLS (final LayerNorm + head)",
                          x_title="class", y_title="layer", colorscale=c.colorscale, centred=False,
                          x_labels=[labels[i] for i in shown], y_labels=[f"layer {i + 1}" for i in range(depth)],
                          value_name="probability", height=140 + 30 * min(depth, 24))
    _fig(fig)


def step_12(a: Analysis, c: Controls) -> None:
    raw = _np(a.trace.layers[-1].output[0])
    _fig(figures.vector_strip(raw, title="CLS after the last block"))
    _fig(figures.vector_strip(_np(a.trace.cls_output), title=f"After the final LayerNorm: y, 1×{a.config.dim}"))


def step_13(a: Analysis, c: Controls) -> None:
    logits, probs = _np(a.trace.logits), _np(a.trace.probs)
    labels = a.labels
    order = np.argsort(-probs)
    k = min(10, len(labels))
    top = order[0]
    st.markdown(f"Prediction: **{labels[top]}** with probability **{probs[top]:.1%}**.")
    left, right = st.columns(2)
    with left:
        _fig(figures.bars(logits[order[:k]], [labels[i] for i in order[:k]], title="Logits (top classes)", value_format=".2f"))
    with right:
        _fig(figures.bars(probs[order[:k]], [labels[i] for i in order[:k]], title="Probabilities (softmax of the logits)",
                          value_format=".1%", highlight=0))


# --- 14: training --------------------------------------------------------------------------------


STEP_LEARNING_RATES = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


@st.cache_resource(max_entries=16, show_spinner="Backpropagating…")
def _gradient(image_key: str, model_key: str, label: int, lr: float, _model, _pixels):
    from vitviz.studio import one_step

    return one_step(_model, _pixels, label, lr)


def step_14(a: Analysis, c: Controls) -> None:
    from vitviz.studio import per_patch_norm

    labels = a.labels
    predicted = int(a.trace.probs.argmax())
    left, right = st.columns(2)
    with left:
        label = persistent(st.selectbox, "true_label", labels[predicted], label="The true label, as you see it",
                           options=labels)
    with right:
        lr = persistent(st.select_slider, "step_lr", 0.01, label="Learning rate η of the one step",
                        options=list(STEP_LEARNING_RATES), format_func=lambda v: f"{v:g}")
    index = labels.index(label)
    result = _gradient(a.image_key, a.model_key, index, float(lr), a.model, a.trace.pixels)
    st.markdown(f"Cross-entropy against **{label}**: **{result.loss:.4f}** "
                f"(the model gives it {result.probs_before[index]:.1%}).")
    per_patch = per_patch_norm(result.grad, a.config.patch_size)
    left, right = st.columns(2)
    left.image(figures.attention_overlay(a.display, per_patch, factor=_factor(a.display, 256), colorscale=c.colorscale,
                                         opacity=0.7),
               caption="Size of ∂L/∂pixels, summed over each patch", width="stretch")
    with right:
        _fig(figures.heatmap(per_patch, title="‖∂L/∂x‖ per patch", colorscale=c.colorscale, centred=False, height=320,
                             value_name="gradient norm"))
    st.markdown(
        f"**One gradient step.** On a copy of the model, every weight moves against its gradient, "
        f"w ← w − {lr:g} · ∂L/∂w, and the same image goes through again: the probability of **{label}** goes from "
        f"{result.probs_before[index]:.1%} to **{result.probs_after[index]:.1%}**, and the loss from "
        f"{result.loss:.4f} to {result.loss_after:.4f}. The model the pages show is not changed."
    )
    order = np.argsort(-result.probs_before)[: min(10, len(labels))]
    names = [labels[i] for i in order]
    mark = names.index(label) if label in names else None
    top = float(max(result.probs_before.max(), result.probs_after.max())) * 1.05  # one scale for both
    left, right = st.columns(2)
    for column, probs, title in ((left, result.probs_before, "Probabilities before the step"),
                                 (right, result.probs_after, "Probabilities after one step")):
        with column:
            fig = figures.bars(probs[order], names, title=title, value_format=".1%", highlight=mark)
            _fig(fig.update_xaxes(range=[0, top], tickformat=".0%"))


RENDERERS: dict[str, Callable[[Analysis, Controls], None]] = {
    "0": step_0, "1": step_1, "2": step_2, "3": step_3, "4": step_4, "5": step_5, "6": step_6, "7": step_7,
    "8": step_8, "9": step_9, "10.1": step_10_1, "10.2": step_10_2, "10.3": step_10_3, "10.4": step_10_4,
    "10.5": step_10_5, "10.6": step_10_6, "10.7": step_10_7, "10.8": step_10_8, "10.9": step_10_9,
    "10.10": step_10_10, "10.11": step_10_11, "10.12": step_10_12, "11": step_11, "12": step_12, "13": step_13,
    "14": step_14,
}
