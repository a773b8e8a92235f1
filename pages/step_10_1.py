"""Step 10.1 · Q, K and V."""

from vitviz.ui.page import show_step

show_step("10.1")
