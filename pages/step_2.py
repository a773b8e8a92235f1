"""Step 2 · Set the label aside."""

from vitviz.ui.page import show_step

show_step("2")
