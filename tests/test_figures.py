"""Figures stay light: what the browser gets is bounded whatever the model's size, and still true to the data."""

from __future__ import annotations

import json

import numpy as np
import plotly.io

from vitviz import figures


def test_a_large_heatmap_is_block_averaged_and_sent_as_float32():
    matrix = np.random.default_rng(0).normal(size=(197, 3072))
    fig = figures.heatmap(matrix)
    z = fig.data[0].z
    assert z.dtype == np.float32 and z.shape == (99, 154)
    np.testing.assert_allclose(z[0, 0], matrix[:2, :20].mean(), rtol=1e-5)
    assert len(plotly.io.to_json(fig)) < 120_000  # about 61,000 values, not 605,000
    assert "mean of 2×20 blocks" in fig.data[0].hovertemplate


def test_channel_histograms_send_counts_not_pixels():
    pixels = np.random.default_rng(1).normal(size=(3, 224, 224))
    fig = figures.channel_histograms(pixels)
    assert [len(trace.y) for trace in fig.data] == [50, 50, 50]
    assert [int(np.sum(trace.y)) for trace in fig.data] == [224 * 224] * 3  # every pixel counted once
    assert len(json.dumps(fig.to_plotly_json(), default=str)) < 30_000


def test_labelled_mosaic_places_every_tile_below_its_column_label_and_right_of_its_row_label():
    tiles = np.zeros((6, 10, 10, 3), np.uint8)
    tiles[4] = 200  # row 1, column 1 of a 2×3 grid
    picture = figures.labelled_mosaic(tiles, 3, ["L1", "L2"], ["H1", "H2", "H3"], gap=2, margin=20)
    assert picture.shape == (2 * 12 - 2 + 10, 3 * 12 - 2 + 20, 3)
    top, left = 10 + 12, 20 + 12
    assert (picture[top : top + 10, left : left + 10] == 200).all()
    assert (picture[:10, :12] == 255).all()  # the corner above the row labels stays blank
    assert (picture[10:, :20] < 255).any() and (picture[:10, 20:] < 255).any()  # the labels are drawn


def test_captioned_mosaic_puts_each_tile_above_its_caption():
    tiles = np.zeros((5, 10, 12, 3), np.uint8)
    tiles[3] = 200  # row 1, column 0 of a 2×3 grid
    picture = figures.captioned_mosaic(tiles, 3, [f"Layer {i + 1}" for i in range(5)], gap=4, line=14)
    assert picture.shape == (2 * (10 + 14 + 4) - 4, 3 * (12 + 4) - 4, 3)
    top = 10 + 14 + 4
    assert (picture[top : top + 10, :12] == 200).all()
    assert (picture[10:24, :40] < 255).any()  # a caption under the first row
    assert (picture[top : top + 10, 2 * 16 :] == 255).all()  # no sixth tile


def test_an_overlay_is_about_the_size_asked_for_with_whole_patches_and_true_colours():
    rng = np.random.default_rng(2)
    per_patch = rng.random((14, 14))
    vit_b_input = rng.integers(0, 256, size=(224, 224, 3), dtype=np.uint8)
    thumbnail = figures.attention_overlay(vit_b_input, per_patch, size=160, outline=0)
    assert thumbnail.shape == (154, 154, 3)  # reduced to 11 pixels a patch, not sent at 224
    assert (thumbnail[0, :11] == (0, 255, 255)).all() and (thumbnail[0, 11:] != (0, 255, 255)).any()  # patch 0 outlined

    small_input = np.full((32, 32, 3), 100, np.uint8)
    overlay = figures.attention_overlay(small_input, per_patch[:4, :4], size=160, opacity=0.5, colorscale="Greys")
    assert overlay.shape == (160, 160, 3)  # enlarged 5 times, every pixel a crisp square
    brightest = np.unravel_index(per_patch[:4, :4].argmax(), (4, 4))
    colour = figures.colour_table("Greys")[255]
    expected = (0.5 * 100 + 0.5 * colour.astype(np.float32)).astype(np.uint8)
    cell = overlay[brightest[0] * 40 : (brightest[0] + 1) * 40, brightest[1] * 40 : (brightest[1] + 1) * 40]
    assert (cell == expected).all()


def test_column_dividers_keep_the_heatmaps_own_lines_and_span_the_plot():
    fig = figures.heatmap(np.zeros((5, 8)), special_rows=["CLS"])
    own = len(fig.layout.shapes)  # the line under the CLS row
    fig = figures.column_dividers(fig, [1.5, 3.5])
    added = fig.layout.shapes[own:]
    assert own == 1 and [(s.x0, s.x1, s.yref, s.y0, s.y1) for s in added] == [(1.5, 1.5, "paper", 0, 1), (3.5, 3.5, "paper", 0, 1)]


def test_pictures_reach_the_browser_as_jpeg_at_quality_90_not_streamlits_100():
    import io

    from PIL import Image
    from streamlit.elements.lib import image_utils

    from vitviz.ui import drawing

    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:224, 0:224]
    photo = np.stack([(x + y) / 2, x * 0.7, 200 - y * 0.5], axis=-1).clip(0, 255).astype(np.uint8)  # smooth, as photos are
    tiles = np.stack([figures.attention_overlay(photo, rng.random((14, 14)), size=160) for _ in range(6)])
    picture = figures.captioned_mosaic(tiles, 6, [f"Layer {i}" for i in range(6)])
    sent = drawing.web_picture(picture)
    decoded = np.asarray(Image.open(io.BytesIO(sent)))
    assert Image.open(io.BytesIO(sent)).format == "JPEG" and decoded.shape == picture.shape
    assert np.abs(decoded.astype(int) - picture).mean() < 6  # to the eye the same (quality 100: 3.5)
    assert len(sent) < 0.7 * len(image_utils._np_array_to_bytes(picture))  # what st.image would have sent
    assert drawing.web_picture("a URL") == "a URL"
