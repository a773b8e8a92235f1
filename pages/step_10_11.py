"""Step 10.11 · The MLP."""

from vitviz.ui.page import show_step

show_step("10.11")
