"""Step 13 · Class probabilities."""

from vitviz.ui.page import show_step

show_step("13")
