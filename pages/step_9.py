"""Step 9 · The transformer's input."""

from vitviz.ui.page import show_step

show_step("9")
