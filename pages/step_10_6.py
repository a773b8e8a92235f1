"""Step 10.6 · Many heads."""

from vitviz.ui.page import show_step

show_step("10.6")
