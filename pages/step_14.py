"""Step 14 · Training."""

from vitviz.ui.page import show_step

show_step("14")
