"""Step 10.2 · Attention scores."""

from vitviz.ui.page import show_step

show_step("10.2")
