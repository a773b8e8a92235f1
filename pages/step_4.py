"""Step 4 · Flatten each patch."""

from vitviz.ui.page import show_step

show_step("4")
