"""Step 8 · Add position embeddings."""

from vitviz.ui.page import show_step

show_step("8")
