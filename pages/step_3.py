"""Step 3 · Cut into patches."""

from vitviz.ui.page import show_step

show_step("3")
