"""Step 7 · Add the CLS token."""

from vitviz.ui.page import show_step

show_step("7")
