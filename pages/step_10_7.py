"""Step 10.7 · Concatenate and project."""

from vitviz.ui.page import show_step

show_step("10.7")
