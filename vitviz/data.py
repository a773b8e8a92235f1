"""The built-in dataset: coloured shapes on noisy backgrounds, drawn by numpy.

Every image is generated from a seed, so a dataset is a (count, seed) pair and nothing
is downloaded. Shapes are drawn from signed-distance functions in a unit frame that is
scaled, rotated and moved per image, which keeps the whole batch vectorised.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from statistics import NormalDist

import numpy as np

from vitviz.i18n import N_

# The class names, in English: the labels the built-in model and every Training-studio model carry in their
# files. They are the project's own words, so pages show them in the reader's language (`ui.state.class_names`).
CLASSES: tuple[str, ...] = (
    N_("circle"),
    N_("ring"),
    N_("triangle"),
    N_("square"),
    N_("star"),
    N_("plus"),
    N_("heart"),
    N_("crescent"),
)
IMAGE_SIZE = 64


def _polygon(u: np.ndarray, v: np.ndarray, sides: int) -> np.ndarray:
    """Signed distance (positive inside) to a regular polygon of circumradius 1."""
    angle = np.arctan2(v, u)
    radius = np.hypot(u, v)
    sector = 2 * np.pi / sides
    folded = np.mod(angle, sector) - sector / 2
    return np.cos(np.pi / sides) - radius * np.cos(folded)


def _star(u: np.ndarray, v: np.ndarray, points: int = 5, inner: float = 0.45) -> np.ndarray:
    """Signed distance to a star: fold into one half-spike, then test one edge."""
    half = np.pi / points
    angle = np.mod(np.arctan2(v, u) + np.pi / 2, 2 * half)  # a tip points up
    angle = np.where(angle > half, 2 * half - angle, angle)
    radius = np.hypot(u, v)
    px, py = radius * np.cos(angle), radius * np.sin(angle)
    tip = np.array([1.0, 0.0])
    valley = inner * np.array([np.cos(half), np.sin(half)])
    edge = valley - tip
    normal = np.array([-edge[1], edge[0]]) / np.hypot(*edge)  # points towards the centre
    if normal @ (-tip) < 0:
        normal = -normal
    # Plain floats: numpy scalars would promote a float32 batch to float64.
    return (px - float(tip[0])) * float(normal[0]) + (py - float(tip[1])) * float(normal[1])


def _box(u: np.ndarray, v: np.ndarray, half_w: float, half_h: float) -> np.ndarray:
    return np.minimum(half_w - np.abs(u), half_h - np.abs(v))


def _heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # Exact heart SDF (two arcs and a point), in a frame where the tip is at the origin.
    scale = 0.6
    x, y = np.abs(u) * scale, -v * scale + 0.55
    lobe = np.hypot(x - 0.25, y - 0.75) - 2**0.5 / 4
    diag = np.maximum(x + y, 0.0) * 0.5
    body = np.sqrt(np.minimum(x * x + (y - 1) ** 2, (x - diag) ** 2 + (y - diag) ** 2)) * np.sign(x - y)
    return -np.where(x + y > 1, lobe, body) / scale


def _shape_sdf(label: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    name = CLASSES[label]
    radius = np.hypot(u, v)
    if name == "circle":
        return 1 - radius
    if name == "ring":
        return 0.22 - np.abs(radius - 0.74)
    if name == "triangle":
        return _polygon(u, v - 0.15, 3)  # shift so the shape's centroid sits near the centre
    if name == "square":
        return _polygon(u, v, 4)
    if name == "star":
        return _star(u, v)
    if name == "plus":
        return np.maximum(_box(u, v, 0.3, 0.95), _box(u, v, 0.95, 0.3))
    if name == "heart":
        return _heart(u, v)
    if name == "crescent":
        return np.minimum(1 - radius, np.hypot(u - 0.5, v) - 0.82)
    raise ValueError(f"unknown class {label}")


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114])


def _gaussian_levels(count: int = 256) -> np.ndarray:
    """`count` equally likely values of a standard normal (its quantiles), scaled to unit variance."""
    normal = NormalDist()
    levels = np.array([normal.inv_cdf((i + 0.5) / count) for i in range(count)])
    return (levels / levels.std()).astype(np.float32)


_GAUSSIAN_LEVELS = _gaussian_levels()


def generate(count: int, seed: int, size: int = IMAGE_SIZE, parallel: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Return `count` images (uint8, N×size×size×3) and their labels (int64, N), fixed by `seed`.

    Every random number is drawn first, in one fixed order; then the images are drawn in chunks
    on a few threads (numpy lets go of the GIL inside its loops), so a batch takes about half as
    long on 2 cores and the result does not depend on how it was split. `parallel=False` draws
    them all on the calling thread instead (a training run on a shared server stays on its threads).
    """
    rng = np.random.default_rng(seed)
    scene = _draw_scenes(rng, count, size)
    images = np.empty((count, 3, size, size), dtype=np.uint8)  # channels first: see _render
    parts = (min(_THREADS, count // _MIN_CHUNK) or 1) if parallel else 1
    bounds = np.linspace(0, count, parts + 1).astype(int)
    chunks = [slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
    if parts == 1:
        _render(scene, chunks[0], size, images)
    else:
        list(_pool().map(lambda part: _render(scene, part, size, images), chunks))
    return images.transpose(0, 2, 3, 1), scene["labels"].astype(np.int64)


_THREADS = min(4, os.cpu_count() or 1)
_MIN_CHUNK = 16  # smaller batches are not worth a thread hand-off
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(_THREADS, thread_name_prefix="vitviz-data")
        return _POOL


def _draw_scenes(rng: np.random.Generator, count: int, size: int) -> dict[str, np.ndarray]:
    """Every random choice of `count` scenes, per image (float64), in the order they were always drawn."""
    f32 = np.float32
    labels = rng.integers(0, len(CLASSES), count)
    # Background: a linear gradient between two colours.
    start, end = rng.uniform(0, 1, (count, 3)), rng.uniform(0, 1, (count, 3))
    direction = rng.uniform(0, 2 * np.pi, count)
    # Three small dots as distractors, each present with probability 0.6.
    dots = []
    for _ in range(3):
        present = rng.uniform(0, 1, count) < 0.6
        cx, cy = rng.uniform(0, 1, count).astype(f32), rng.uniform(0, 1, count).astype(f32)
        radius = rng.uniform(0.015, 0.04, count).astype(f32)
        dots.append((present, cx, cy, radius, rng.uniform(0, 1, (count, 3)).astype(f32)))
    # The shape: size, place and rotation of a unit-frame SDF.
    radius = rng.uniform(0.2, 0.36, count)
    cx = rng.uniform(0.5 - (0.5 - radius) * 0.8, 0.5 + (0.5 - radius) * 0.8)
    cy = rng.uniform(0.5 - (0.5 - radius) * 0.8, 0.5 + (0.5 - radius) * 0.8)
    rotation = rng.uniform(0, 2 * np.pi, count)
    # Colour that stands out from the background's mean brightness.
    colour = rng.uniform(0, 1, (count, 3))
    background_luma = _luma((start + end) / 2)
    weak = np.abs(_luma(colour) - background_luma) < 0.3
    colour[weak] = np.clip(1.0 - colour[weak], 0, 1)
    still_weak = np.abs(_luma(colour) - background_luma) < 0.3
    colour[still_weak] = np.where(background_luma[still_weak, None] > 0.5, 0.05, 0.95)
    # Pixel grain: a strength per image, and one random byte per value (see _render).
    noise = rng.uniform(0.0, 0.08, count)
    grain = rng.integers(0, 256, (count, 3, size, size), dtype=np.uint8)
    return dict(
        labels=labels, start=start, end=end, direction=direction, dots=dots, radius=radius, cx=cx, cy=cy,
        rotation=rotation, colour=colour, noise=noise, grain=grain,
    )  # fmt: skip


def _render(scene: dict, part: slice, size: int, out: np.ndarray) -> None:
    """Draw the images `part` of `scene` into `out[part]` (uint8, N×3×size×size).

    Every per-pixel array is float32 and channels first, so numpy's inner loops run along whole
    rows instead of over 3 channels.
    """
    f32 = np.float32
    labels = scene["labels"][part]
    count = len(labels)
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size  # pixel centres in [0, 1]
    ys, xs = np.meshgrid(coords, coords, indexing="ij")

    start, end, direction = scene["start"][part], scene["end"][part], scene["direction"][part]
    cos, sin = np.cos(direction).astype(f32)[:, None, None], np.sin(direction).astype(f32)[:, None, None]
    ramp = cos * (xs - 0.5) + sin * (ys - 0.5)
    ramp = (ramp + 0.71) / 1.42
    images = (end - start).astype(f32)[:, :, None, None] * ramp[:, None]  # (N, 3, H, W)
    images += start.astype(f32)[:, :, None, None]

    # A dot only touches pixels within its radius plus half a pixel, so each is drawn in a small
    # window around its centre.
    half = int(np.ceil(0.04 * size)) + 2
    window = np.arange(-half, half + 1)
    every = np.arange(count)[:, None, None]
    for present, cx, cy, dot_r, colour in scene["dots"]:
        present, cx, cy, dot_r, colour = present[part], cx[part], cy[part], dot_r[part], colour[part]
        rows = np.clip((cy * size).astype(int)[:, None] + window, 0, size - 1)[:, :, None]  # (N, w, 1)
        cols = np.clip((cx * size).astype(int)[:, None] + window, 0, size - 1)[:, None, :]  # (N, 1, w)
        dist = np.hypot(coords[cols] - cx[:, None, None], coords[rows] - cy[:, None, None])
        alpha = np.clip((dot_r[:, None, None] - dist) * size + 0.5, 0, 1) * present[:, None, None]
        patch = images[every, :, rows, cols]  # (N, w, w, 3): the advanced indices come first
        images[every, :, rows, cols] = patch + alpha[..., None] * (colour[:, None, None, :] - patch)

    colour, radius = scene["colour"][part].astype(f32), scene["radius"][part].astype(f32)
    cx, cy = scene["cx"][part].astype(f32), scene["cy"][part].astype(f32)
    dx = (xs[None] - cx[:, None, None]) / radius[:, None, None]
    dy = (ys[None] - cy[:, None, None]) / radius[:, None, None]
    rotation = scene["rotation"][part]
    cos, sin = np.cos(rotation).astype(f32)[:, None, None], np.sin(rotation).astype(f32)[:, None, None]
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy
    sdf = np.empty_like(u)
    for label in range(len(CLASSES)):
        chosen = labels == label
        if chosen.any():
            sdf[chosen] = _shape_sdf(label, u[chosen], v[chosen])
    # Convert the unit-frame distance to pixels and antialias over one pixel.
    alpha = np.clip(sdf * radius[:, None, None] * size + 0.5, 0, 1)[:, None]  # (N, 1, H, W)
    images += alpha * (colour[:, :, None, None] - images)

    # Gaussian grain from one random byte per value: five times cheaper than drawing normals.
    grain = _GAUSSIAN_LEVELS.take(scene["grain"][part])
    grain *= scene["noise"][part].astype(f32)[:, None, None, None]
    images += grain
    images *= 255  # in place from here on: these arrays are the largest of the batch
    images += 0.5
    np.clip(images, 0, 255, out=images)
    out[part] = images  # the uint8 cast truncates, as astype did
