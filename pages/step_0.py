"""Step 0 · The data."""

from vitviz.ui.page import show_step

show_step("0")
