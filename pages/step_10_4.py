"""Step 10.4 · One token's context."""

from vitviz.ui.page import show_step

show_step("10.4")
