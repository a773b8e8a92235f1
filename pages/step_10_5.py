"""Step 10.5 · Every token's context."""

from vitviz.ui.page import show_step

show_step("10.5")
