"""Step 10.10 · After the residual."""

from vitviz.ui.page import show_step

show_step("10.10")
