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


def logit_lens(layer_cls: np.ndarray, norm_weight: np.ndarray, norm_bias: np.ndarray, eps: float,
               head_weight: np.ndarray, head_bias: np.ndarray) -> np.ndarray:
    """Class probabilities read from each layer's CLS token (L, d) through the final LayerNorm and head: (L, k)."""
    return softmax(layer_norm(layer_cls, norm_weight, norm_bias, eps) @ head_weight.T + head_bias)


def update_ratio(before: np.ndarray, update: np.ndarray) -> np.ndarray:
    """Per token: how big the residual update is relative to what it is added to, ‖u‖ / ‖x‖."""
    return np.linalg.norm(update, axis=-1) / np.maximum(np.linalg.norm(before, axis=-1), 1e-12)


def cosine_to_next(vectors: np.ndarray) -> np.ndarray:
    """Cosine similarity between consecutive rows: (L,) -> (L-1,)."""
    a, b = vectors[:-1], vectors[1:]
    return (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)
