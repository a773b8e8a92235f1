"""Step 10.9 · Residual connection."""

from vitviz.ui.page import show_step

show_step("10.9")
