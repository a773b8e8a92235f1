"""Small Streamlit helpers every step and page draws with: figures, image grids, the patch and query pickers."""

from __future__ import annotations

import numpy as np
import streamlit as st

from vitviz.ui.controls import persistent
from vitviz.ui.i18n import _


def to_numpy(tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()


def show_figure(fig, key: str | None = None) -> None:
    st.plotly_chart(fig, width="stretch", config={"displaylogo": False}, key=key)


def image_grid(items: list[tuple[np.ndarray, str]], per_row: int) -> None:
    """(picture, caption) pairs in rows of `per_row` columns."""
    for start in range(0, len(items), per_row):
        for column, (picture, caption) in zip(st.columns(per_row), items[start : start + per_row], strict=False):
            column.image(picture, caption=caption, width="stretch")


def patch_slider(patches: int, step_key: str) -> int:
    """A patch index picked with a slider; the choice is shared by every step that shows one patch."""
    return persistent(
        st.slider,
        f"patch_{step_key}",
        min(patches - 1, patches // 2 + 3),
        store="patch",
        label=_("Patch"),
        min_value=0,
        max_value=patches - 1,
    )
