"""Step 12 · The CLS output."""

from vitviz.ui.page import show_step

show_step("12")
