"""Step 1 · One image."""

from vitviz.ui.page import show_step

show_step("1")
