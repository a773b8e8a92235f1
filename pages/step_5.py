"""Step 5 · Embed one patch."""

from vitviz.ui.page import show_step

show_step("5")
