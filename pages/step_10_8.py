"""Step 10.8 · The attention output."""

from vitviz.ui.page import show_step

show_step("10.8")
