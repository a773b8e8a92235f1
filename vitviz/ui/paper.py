"""The three panels of the ViT paper's Fig. 7, drawn for the current model and image.

Shown on steps 5, 8 and 11 and in the attention explorer; each is one function here.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from vitviz import analysis, background, data, figures
from vitviz.images import normalise
from vitviz.ui import drawing, state
from vitviz.ui.drawing import caption, hover_words, image, show_figure
from vitviz.ui.i18n import _
from vitviz.ui.state import Traced

# Fig. 7's mean attention distance over generated images: images are added a batch at a time until every
# head's average is known to within TOLERANCE of the image's width (95% confidence), at least MIN_IMAGES and at
# most MAX_IMAGES. A small model runs all 64 in seconds; a ViT-B, whose heads vary little from image to image,
# stops much earlier with the same answer.
MIN_IMAGES, MAX_IMAGES = 16, 64
TOLERANCE = 0.01
CHUNK = 8  # images per forward pass: keeps (B, L, h, N, N) small even for ViT-B
CLEARLY_MORE_ALIKE = 0.05  # Fig. 7 centre: a neighbours' mean cosine this far above the rest's is "more alike"

@st.cache_resource(max_entries=8, show_spinner=False)
def _filter_components(model_key: str, _model) -> tuple[np.ndarray, np.ndarray]:
    # A property of the model alone: an SVD that takes ~0.2 s for ViT-B, so not on every rerun.
    return analysis.embedding_filter_components(_model.patch_embed.weight.detach().numpy(), count=28)


def filter_components(traced: Traced) -> None:
    config = traced.config
    components, share = _filter_components(traced.model_key, traced.model)
    tiles = figures.filters_as_images(components, config.patch_size, config.channels)
    image(figures.mosaic(tiles, 7, gap=2, factor=max(1, 40 // config.patch_size)), width=420)
    caption(_("The first {count} principal components of E's {d} filters, each drawn as a {p}×{p} RGB patch; "
              "together they explain {share:.0%} of the filters' variance (ViT paper, Fig. 7 left).").format(
        count=len(components), d=config.dim, p=config.patch_size, share=share.sum()))


def position_similarity(traced: Traced, vectors: np.ndarray | None = None, title: str | None = None) -> None:
    """Fig. 7 centre for the model's position embeddings, or for other per-position `vectors` (n, d)."""
    title = title or _("Cosine similarity of each position's embedding with all others")
    grid = traced.trace.grid
    vectors = traced.trace.pos_embedding.numpy() if vectors is None else vectors
    similarity = analysis.position_similarity(vectors, grid)
    n = grid[0] * grid[1]
    show_figure(figures.similarity_tiles(similarity.reshape(n, n), grid, title=title, words=hover_words()))
    near, far = analysis.neighbour_similarity(similarity)
    words = _("Tile (r, c) shows how similar the embedding of the patch at row r, column c is to every other "
              "position (ViT paper, Fig. 7 centre).")
    if near == near and far == far:  # a grid with both neighbours and positions further apart
        said = _("Here neighbouring positions resemble each other more than distant ones: mean cosine {near:.2f} "
                 "between neighbours, {far:.2f} between the rest.") if near - far > CLEARLY_MORE_ALIKE else \
            _("Here neighbouring positions do not resemble each other more than distant ones: mean cosine {near:.2f} "
              "between neighbours, {far:.2f} between the rest.")
        words += " " + said.format(near=near, far=far)
    caption(words)


@st.cache_resource(max_entries=8, show_spinner=False)
def _fingerprint(model_key: str, _model) -> str:
    # Hashes a few of the weights (about 12 MB for ViT-B): once per model, not on every rerun.
    return background.model_fingerprint(_model)


def _distance_job(traced: Traced) -> background.Job | None:
    """Every generated image's mean attention distances (images, L, h), computed once per model in the background."""
    model = traced.model
    config = model.config
    if config.image_size[0] != config.image_size[1]:  # the generator draws square images
        return None
    recorder = traced.recorder
    width = config.image_size[0]

    def work(report) -> np.ndarray:
        per_image = []
        for start in range(0, MAX_IMAGES, CHUNK):
            images, _ = data.generate(CHUNK, state.SCENE_SEED + 2 + start, size=width)
            maps = recorder.attention_maps(normalise(images, config)).numpy()
            per_image += [analysis.mean_attention_distance(m, config.grid, config.patch_size) for m in maps]
            report(len(per_image), MAX_IMAGES)
            _, halfwidth = analysis.mean_and_halfwidth(np.stack(per_image))
            if len(per_image) >= MIN_IMAGES and halfwidth.max() <= TOLERANCE * width:
                break
        return np.stack(per_image)

    fingerprint = _fingerprint(traced.model_key, model)
    path = background.cache_dir() / "attention-distance" / f"{fingerprint}-up-to-{MAX_IMAGES}.npy"
    return background.start(f"attention-distance:{fingerprint}", work, path)


def _distance_panel(traced: Traced, job: background.Job | None) -> None:
    config = traced.config
    # From the cached trace, once per (image, model): the panel reruns every second while the average is made.
    this_image = state.trace_cache().get(
        ("attention-distance", traced.image_key, traced.model_key),
        lambda: analysis.mean_attention_distance(traced.trace.attentions().numpy(), traced.trace.grid,
                                                 config.patch_size))
    series = {_("this image"): this_image}
    result = job.result if job is not None else None  # read once: the background job may finish during this run
    if result is not None:
        average, halfwidth = analysis.mean_and_halfwidth(result)
        series[_("{count} generated images").format(count=len(result))] = average
    show_figure(figures.distance_scatter(series, title=_("Mean attention distance per head"), height=320,
                                         x_title=_("layer"), y_title=_("mean attention distance (pixels)"), words=hover_words()))
    caption(_("Each dot is one head: how far, in pixels, its patches look on average (ViT paper, Fig. 7 right). "
              "The image is {width} pixels wide; low dots attend locally, high dots globally.").format(
        width=config.image_size[1]))
    if result is not None:
        caption(_("Averaged over {count} generated images, until every head's average was known to within "
                  "±{halfwidth:.1f} pixels (at a confidence of 95%) or {most} images were used.").format(
            count=len(result), halfwidth=halfwidth.max(), most=MAX_IMAGES))


def attention_distance(traced: Traced) -> None:
    """Fig. 7 right: this image's heads, and the same over many images once that is computed (in the background)."""
    job = _distance_job(traced)
    if not drawing.live():  # a file: what is known now
        _distance_panel(traced, job)
        if job is not None and not job.finished:
            caption(_("The average over generated images was still being computed when this was made."))
        return

    @st.fragment(run_every=1.0 if job is not None and not job.finished else None)
    def panel() -> None:
        _distance_panel(traced, job)
        if job is not None and not job.finished:
            st.progress(job.done / job.total, text=_(
                "Averaging over generated images: {done} done, up to {most}, stopping once every head's average is "
                "known to ±{tolerance:.1f} pixels (once per model, kept for later visits)").format(
                done=job.done, most=MAX_IMAGES, tolerance=TOLERANCE * traced.config.image_size[0]))
        elif job is not None and job.failed:
            st.caption(_("The average over many images could not be computed; the server log says why."))
        if job is not None and job.finished and not finished_before:
            st.rerun()  # the whole page, so this panel stops refreshing itself

    finished_before = job is None or job.finished
    panel()


def fig7(traced: Traced) -> None:
    left, middle, right = st.columns(3)
    with left:
        st.markdown("**" + _("Embedding filters") + "**")
        filter_components(traced)
    with middle:
        st.markdown("**" + _("Position embedding similarity") + "**")
        position_similarity(traced)
    with right:
        st.markdown("**" + _("Mean attention distance") + "**")
        attention_distance(traced)


