"""Step 11 · Repeat the block."""

from vitviz.ui.page import show_step

show_step("11")
