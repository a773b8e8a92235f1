"""Step 10.3 · Softmax."""

from vitviz.ui.page import show_step

show_step("10.3")
