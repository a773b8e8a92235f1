"""Analyses of a Trace: pure numpy functions, arrays in, arrays out."""

from __future__ import annotations

import numpy as np


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = x - x.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


def update_ratio(before: np.ndarray, update: np.ndarray) -> np.ndarray:
    """Per token: how big the residual update is relative to what it is added to, ‖u‖ / ‖x‖."""
    return np.linalg.norm(update, axis=-1) / np.maximum(np.linalg.norm(before, axis=-1), 1e-12)


def cosine_to_next(vectors: np.ndarray) -> np.ndarray:
    """Cosine similarity between consecutive rows: (L,) -> (L-1,)."""
    a, b = vectors[:-1], vectors[1:]
    return (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)


# --- the ViT paper's analyses and attention attribution -------------------------------------------


def fuse_heads(attention: np.ndarray, head_fusion: str = "mean") -> np.ndarray:
    """(h, N, N) -> (N, N) by mean, max or min over heads."""
    if head_fusion == "mean":
        return attention.mean(axis=0)
    if head_fusion == "max":
        return attention.max(axis=0)
    if head_fusion == "min":
        return attention.min(axis=0)
    raise ValueError(f"head_fusion must be 'mean', 'max' or 'min', not {head_fusion!r}")


def _rollout(fused_layers: np.ndarray, discard_ratio: float) -> np.ndarray:
    """Shared by both rollouts: fused (L, N, N) maps -> (N, N)."""
    if not 0.0 <= discard_ratio < 1.0:
        raise ValueError("discard_ratio must be in [0, 1)")
    size = fused_layers.shape[-1]
    result = np.eye(size)
    for fused in fused_layers:
        fused = np.array(fused, dtype=np.float64)
        if discard_ratio > 0:
            flat = fused.reshape(-1)  # a view: zeroing it zeroes the map
            count = int(flat.size * discard_ratio)
            weakest = np.argsort(flat, kind="stable")[:count]
            flat[weakest[weakest != 0]] = 0.0  # index 0 is CLS→CLS, which is always kept
        mixed = fused + np.eye(size)  # the residual path: every token also keeps itself
        mixed /= mixed.sum(axis=-1, keepdims=True)
        result = mixed @ result  # later layers on the left
    return result


def attention_rollout(attentions: np.ndarray, head_fusion: str = "mean", discard_ratio: float = 0.0) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema, 2020) of attentions (L, h, N, N): an (N, N) map whose row i says how
    much of token i's final representation flows from each input token."""
    attentions = np.asarray(attentions, dtype=np.float64)
    fused = np.stack([fuse_heads(layer, head_fusion) for layer in attentions])
    return _rollout(fused, discard_ratio)


def gradient_rollout(attentions: np.ndarray, gradients: np.ndarray, discard_ratio: float = 0.0) -> np.ndarray:
    """Rollout of attention weighted by the gradient of one class score: per layer the head-mean of
    attention × gradient with negative values clipped to zero, then rolled out like `attention_rollout`."""
    weighted = np.clip((np.asarray(attentions) * np.asarray(gradients)).mean(axis=1), 0.0, None)
    return _rollout(weighted, discard_ratio)


def patch_centres(grid: tuple[int, int], patch_size: int) -> np.ndarray:
    """(n, 2) pixel coordinates (y, x) of every patch's centre, row-major."""
    gh, gw = grid
    ys, xs = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    return (np.stack([ys.ravel(), xs.ravel()], axis=1) + 0.5) * patch_size


def mean_attention_distance(attentions: np.ndarray, grid: tuple[int, int], patch_size: int) -> np.ndarray:
    """(L, h): the attention-weighted pixel distance between query and key patches, averaged over query
    patches (ViT paper, Fig. 7 right). The patches are the last gh·gw tokens: special tokens (CLS,
    distillation, registers) are dropped and the patch-to-patch rows renormalised."""
    attentions = np.asarray(attentions, dtype=np.float64)
    n = grid[0] * grid[1]
    patches = attentions[..., -n:, -n:]
    patches = patches / np.maximum(patches.sum(axis=-1, keepdims=True), 1e-12)
    centres = patch_centres(grid, patch_size)
    distances = np.linalg.norm(centres[:, None, :] - centres[None, :, :], axis=-1)  # (n, n)
    return (patches * distances).sum(axis=-1).mean(axis=-1)


def mean_and_halfwidth(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean over axis 0 and the half-width of its 95% confidence interval (normal approximation)."""
    samples = np.asarray(samples, dtype=np.float64)
    count = samples.shape[0]
    spread = samples.std(axis=0, ddof=1) if count > 1 else np.full(samples.shape[1:], np.inf)
    return samples.mean(axis=0), 1.96 * spread / np.sqrt(count)


def position_similarity(pos_embedding: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(gh, gw, gh, gw) cosine similarity between patch position embeddings (Fig. 7 centre): the last gh·gw rows,
    so the rows of special tokens (CLS, distillation, registers) in front are dropped."""
    gh, gw = grid
    pos = np.asarray(pos_embedding, dtype=np.float64)
    if pos.shape[0] > gh * gw:
        pos = pos[-gh * gw :]
    if pos.shape[0] != gh * gw:
        raise ValueError(f"{pos.shape[0]} position embeddings do not fit a {gh}×{gw} grid")
    unit = pos / np.maximum(np.linalg.norm(pos, axis=1, keepdims=True), 1e-12)
    return (unit @ unit.T).reshape(gh, gw, gh, gw)


def neighbour_similarity(similarity: np.ndarray) -> tuple[float, float]:
    """(mean cosine between grid neighbours, mean cosine between positions that are not neighbours) of a
    (gh, gw, gh, gw) `position_similarity`: whether nearby positions resemble each other more. NaN where a grid has
    no such pair."""
    gh, gw = similarity.shape[:2]
    rows, cols = np.divmod(np.arange(gh * gw), gw)
    apart = np.abs(rows[:, None] - rows[None]) + np.abs(cols[:, None] - cols[None])  # grid steps between positions
    flat = similarity.reshape(gh * gw, gh * gw)
    near, far = flat[apart == 1], flat[apart > 1]
    return (float(near.mean()) if near.size else float("nan"), float(far.mean()) if far.size else float("nan"))


def embedding_filter_components(weight: np.ndarray, count: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """Principal components of the patch-embedding filters (Fig. 7 left).

    weight is E stored as (d, p'): d filters of p' values. Returns (components (k, p'), the share of
    variance each explains (k,)), k = min(count, d, p').
    """
    filters = np.asarray(weight, dtype=np.float64)
    centred = filters - filters.mean(axis=0, keepdims=True)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    k = min(count, vt.shape[0])
    variance = singular**2
    return vt[:k], variance[:k] / max(variance.sum(), 1e-12)


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, d), (N, d) -> (N,): the cosine between each row of a and the same row of b."""
    dot = (a * b).sum(axis=1)
    return dot / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


# --- attribution: one relevance per patch for one class --------------------------------------------
# Patch tokens are the last `patches` tokens and CLS is token 0, so a model with more special tokens
# between them (a distillation token, registers) gives the same answers. None means every token after CLS.


def _patch_count(tokens: int, patches: int | None) -> int:
    count = tokens - 1 if patches is None else patches
    if not 0 < count < tokens:
        raise ValueError(f"{count} patch tokens do not fit among {tokens} tokens with CLS first")
    return count


def cls_row(matrix: np.ndarray, patches: int | None = None) -> np.ndarray:
    """(N, N) token-to-token map -> (n,): what flows from each patch token into CLS."""
    return np.asarray(matrix)[0, -_patch_count(matrix.shape[-1], patches) :]


def raw_cls_attention(attentions: np.ndarray, patches: int | None = None) -> np.ndarray:
    """(L, h, N, N) -> (n,): the last layer's attention from CLS to each patch, averaged over heads."""
    return cls_row(np.asarray(attentions, dtype=np.float64)[-1].mean(axis=0), patches)


def chefer_relevance(attentions: np.ndarray, gradients: np.ndarray, patches: int | None = None) -> np.ndarray:
    """Chefer, Gur & Wolf (ICCV 2021), self-attention only: (L, h, N, N) attentions and the gradients of one class's
    logit with respect to them -> (n,). R starts as I; each layer in forward order adds Ā R, where
    Ā = E_h[(∇A ⊙ A)⁺] (clamped per head, then averaged); the patches' relevance is CLS's row of R."""
    attentions = np.asarray(attentions, dtype=np.float64)
    weighted = np.clip(attentions * np.asarray(gradients, dtype=np.float64), 0.0, None).mean(axis=1)  # (L, N, N)
    relevance = np.eye(attentions.shape[-1])
    for layer in weighted:
        relevance = relevance + layer @ relevance
    return cls_row(relevance, patches)


def grad_cam(activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """Grad-CAM on tokens, as pytorch-grad-cam does for a ViT: the last block's patch tokens (n, d) (LN₁'s output,
    CLS dropped) and the gradient of one class's logit with respect to them -> (n,). Each channel is weighted by
    its mean gradient over the patches; the map is the ReLU of the weighted sum."""
    activations, gradients = np.asarray(activations, dtype=np.float64), np.asarray(gradients, dtype=np.float64)
    return np.maximum(activations @ gradients.mean(axis=0), 0.0)


def per_patch_norm(values: np.ndarray, patch: int) -> np.ndarray:
    """(c, H, W) -> (gh, gw): the L2 norm over each patch's pixels and channels."""
    c, h, w = values.shape
    blocks = np.asarray(values).transpose(1, 2, 0).reshape(h // patch, patch, w // patch, patch, c)
    return np.sqrt((blocks**2).sum(axis=(1, 3, 4)))


def input_times_gradient(pixels: np.ndarray, gradient: np.ndarray, patch: int) -> np.ndarray:
    """(c, H, W) input and one class logit's gradient with respect to it -> (gh, gw): ‖x ⊙ ∂y/∂x‖ over each patch."""
    return per_patch_norm(np.asarray(pixels, dtype=np.float64) * np.asarray(gradient, dtype=np.float64), patch)


# --- faithfulness: deletion and insertion curves (Petsiuk et al., RISE, 2018) ----------------------


def curve_fractions(steps: int = 16) -> np.ndarray:
    """Evenly spaced fractions of the patches, 0 to 1."""
    return np.linspace(0.0, 1.0, steps)


def relevance_order(relevance: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Patch indices, most relevant first. Ties carry no ranking, so they are broken at random: a constant map
    gives a random order, not the raster order."""
    relevance = np.asarray(relevance, dtype=np.float64).ravel()
    return np.lexsort((rng.permutation(relevance.size), -relevance))


def step_masks(order: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """(n,) order, (F,) fractions -> (F, n) booleans: True for the first round(f·n) patches of the order."""
    n = order.size
    ranks = np.empty(n, dtype=np.int64)
    ranks[order] = np.arange(n)
    counts = np.rint(np.asarray(fractions) * n).astype(np.int64)
    return ranks[None, :] < counts[:, None]


def compose(base: np.ndarray, source: np.ndarray, masks: np.ndarray, patch: int) -> np.ndarray:
    """(c, H, W) base, (c, H, W) source, (B, n) masks -> (B, c, H, W): each image is `base` with the masked
    patches (row-major) taken from `source`."""
    c, h, w = base.shape
    grid = masks.reshape(-1, h // patch, w // patch)
    pixels = np.repeat(np.repeat(grid, patch, axis=1), patch, axis=2)[:, None]  # (B, 1, H, W)
    return np.where(pixels, source[None], base[None])


def mean_pixel_image(pixels: np.ndarray) -> np.ndarray:
    """(c, H, W) -> the same shape, every pixel the image's per-channel mean."""
    return np.broadcast_to(pixels.mean(axis=(1, 2), keepdims=True), pixels.shape).copy()


def _blur_matrix(size: int, sigma: float, truncate: float = 4.0) -> np.ndarray:
    """(size, size): a 1-D Gaussian filter as a matrix, edges mirrored through the border pixel's outer edge
    (d c b a | a b c d | d c b a), as scipy.ndimage's default."""
    radius = max(1, int(truncate * sigma + 0.5))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    columns = np.mod(np.arange(size)[:, None] + offsets[None, :], 2 * size)
    columns = np.where(columns >= size, 2 * size - 1 - columns, columns)
    matrix = np.zeros((size, size))
    np.add.at(matrix, (np.repeat(np.arange(size), offsets.size), columns.ravel()), np.tile(kernel, size))
    return matrix


def gaussian_blur(pixels: np.ndarray, sigma: float) -> np.ndarray:
    """(c, H, W) -> (c, H, W), each channel blurred by a Gaussian of standard deviation `sigma` pixels."""
    _, h, w = pixels.shape
    return _blur_matrix(h, sigma) @ np.asarray(pixels, dtype=np.float64) @ _blur_matrix(w, sigma).T


def curve_auc(fractions: np.ndarray, curves: np.ndarray) -> np.ndarray:
    """Area under each curve (..., F) over the fractions, by the trapezoid rule."""
    return np.trapezoid(curves, fractions, axis=-1)


# --- special tokens and token norms (Darcet et al., "Vision Transformers Need Registers", 2024) --------------


def patch_map(values: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(..., N) per-token values -> (..., gh, gw): the patch tokens, which are the last gh·gw, as a map."""
    values = np.asarray(values)
    return values[..., -grid[0] * grid[1] :].reshape(*values.shape[:-1], *grid)


def token_norms(states: np.ndarray) -> np.ndarray:
    """(L, N, d) token vectors, e.g. every block's output -> (L, N): the L2 norm of each token in each."""
    return np.linalg.norm(np.asarray(states, dtype=np.float64), axis=-1)


# An outlier's norm must clear both bounds, each set by its layer's patch norms (see high_norm_threshold).
OUTLIER_SPREADS = 6.0  # robust standard deviations above the median
OUTLIER_FACTOR = 3.0  # times the median
MAD_TO_SD = 1.4826  # for normally distributed values, 1.4826 × MAD estimates the standard deviation


def high_norm_threshold(norms: np.ndarray) -> float:
    """The norm above which a patch token counts as high-norm, set from its layer's own patch norms (n,).

    The larger of median + 6 · 1.4826 · MAD (six robust standard deviations: the median and the median
    absolute deviation hardly move when a few tokens are huge, where a mean and a standard deviation
    would be dragged up by the very outliers they should find) and 3 × median (so that a layer whose
    norms are all nearly equal, or merely spread, does not call a token "high" for a modest excess:
    Darcet et al.'s artifacts are several times, up to about ten times, the typical norm).
    """
    norms = np.asarray(norms, dtype=np.float64)
    median = float(np.median(norms))
    spread = MAD_TO_SD * float(np.median(np.abs(norms - median)))
    return max(median + OUTLIER_SPREADS * spread, OUTLIER_FACTOR * median)


def high_norm_patches(norms: np.ndarray) -> np.ndarray:
    """Indices of the patches (n,) whose norm is above `high_norm_threshold` of the same norms, largest first."""
    norms = np.asarray(norms, dtype=np.float64)
    above = np.flatnonzero(norms > high_norm_threshold(norms))
    return above[np.argsort(-norms[above], kind="stable")]


def attention_share(attentions: np.ndarray, query: int, keys: np.ndarray) -> np.ndarray:
    """(L, h, N, N) -> (L,): the share of `query`'s attention, averaged over heads, that goes to the tokens `keys`."""
    attentions = np.asarray(attentions, dtype=np.float64)
    keys = np.asarray(keys, dtype=int)
    return attentions[:, :, query][..., keys].sum(axis=-1).mean(axis=-1)


# --- step 8's shuffled patches and step 10.3's temperature ---------------------------------------------


def shuffle_patches(image: np.ndarray, order: np.ndarray, patch: int) -> np.ndarray:
    """(H, W, c) -> the same image with its p×p patches moved: the patch in slot i (row-major) is patch order[i]."""
    image = np.asarray(image)
    height, width, channels = image.shape
    gh, gw = height // patch, width // patch
    tiles = image.reshape(gh, patch, gw, patch, channels).swapaxes(1, 2).reshape(gh * gw, patch, patch, channels)
    return tiles[np.asarray(order)].reshape(gh, gw, patch, patch, channels).swapaxes(1, 2).reshape(image.shape)


def attention_entropy(scores: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Each head's attention entropy (nats, the mean over its rows) with its scores divided by `temperature` τ.

    `scores` (h, N, N) are the recorded q kᵀ / √d_h, so the rows are softmax(q kᵀ / (τ·√d_h)). A one-hot row has
    entropy 0, a uniform one log N. Written as log Σ e^z − Σ p z on shifted scores z, so that a weight that
    underflows to 0 adds 0 rather than 0 · log 0.
    """
    if not temperature > 0:
        raise ValueError("temperature must be positive")
    z = np.asarray(scores, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    total = e.sum(axis=-1)
    entropy = np.log(total) - (e * z).sum(axis=-1) / total
    return entropy.mean(axis=-1)
