"""Step 10.12 · The block's output."""

from vitviz.ui.page import show_step

show_step("10.12")
