"""Step 6 · Embed all patches."""

from vitviz.ui.page import show_step

show_step("6")
