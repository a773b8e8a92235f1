"""The three panels of the ViT paper's Fig. 7, drawn for the current model and image.

Shown on steps 5, 8 and 11 and in the attention explorer; each is one function here.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from vitviz import analysis, data, figures
from vitviz.images import normalise
from vitviz.ui import state
from vitviz.ui.state import Traced

DATASET_IMAGES = 64
CHUNK = 8  # images per forward pass: keeps (B, L, h, N, N) small even for ViT-B


@st.cache_resource(max_entries=8, show_spinner=False)
def _filter_components(model_key: str, _model) -> tuple[np.ndarray, np.ndarray]:
    # A property of the model alone: an SVD that takes ~0.2 s for ViT-B, so not on every rerun.
    return analysis.embedding_filter_components(_model.patch_embed.weight.detach().numpy(), count=28)


def filter_components(traced: Traced) -> None:
    config = traced.config
    components, share = _filter_components(traced.model_key, traced.model)
    tiles = figures.filters_as_images(components, config.patch_size, config.channels)
    st.image(figures.mosaic(tiles, 7, gap=2, factor=max(1, 40 // config.patch_size)), width=420)
    st.caption(f"The first {len(components)} principal components of E's {config.dim} filters, each drawn as a "
               f"{config.patch_size}×{config.patch_size} RGB patch; together they explain {share.sum():.0%} of the "
               "filters' variance (ViT paper, Fig. 7 left).")


def position_similarity(traced: Traced) -> None:
    grid = traced.trace.grid
    similarity = analysis.position_similarity(traced.trace.pos_embedding.numpy(), grid)
    n = grid[0] * grid[1]
    st.plotly_chart(figures.similarity_tiles(similarity.reshape(n, n), grid,
                                             title="Cosine similarity of each position's embedding with all others"),
                    width="stretch")
    st.caption("Tile (r, c) shows how similar the embedding of the patch at row r, column c is to every other "
               "position (ViT paper, Fig. 7 centre). Nearby positions, rows and columns resemble each other.")


@st.cache_resource(max_entries=4, show_spinner="Measuring attention distances over a batch…")
def _dataset_distance(model_key: str, _recorder) -> np.ndarray | None:
    config = _recorder.model.config
    size = config.image_size
    if size[0] != size[1]:
        return None
    images, _ = data.generate(DATASET_IMAGES, state.SCENE_SEED + 2, size=size[0])
    total = None
    for start in range(0, DATASET_IMAGES, CHUNK):
        maps = _recorder.attention_maps(normalise(images[start : start + CHUNK], config)).numpy()
        part = sum(analysis.mean_attention_distance(m, config.grid, config.patch_size) for m in maps)
        total = part if total is None else total + part
    return total / DATASET_IMAGES


def attention_distance(traced: Traced) -> None:
    config = traced.config
    this_image = analysis.mean_attention_distance(traced.trace.attentions().numpy(), traced.trace.grid, config.patch_size)
    dataset = _dataset_distance(traced.model_key, traced.recorder)
    series = {"this image": this_image}
    if dataset is not None:
        series[f"{DATASET_IMAGES} dataset images"] = dataset
    fig = figures.distance_scatter(series, title="Mean attention distance per head", height=320)
    st.plotly_chart(fig, width="stretch")
    st.caption(f"Each dot is one head: how far, in pixels, its patches look on average (ViT paper, Fig. 7 right). "
               f"The image is {config.image_size[1]} pixels wide; low dots attend locally, high dots globally.")


def fig7(traced: Traced) -> None:
    left, middle, right = st.columns(3)
    with left:
        st.markdown("**Embedding filters**")
        filter_components(traced)
    with middle:
        st.markdown("**Position embedding similarity**")
        position_similarity(traced)
    with right:
        st.markdown("**Mean attention distance**")
        attention_distance(traced)


