"""The training studio: train a ViT of your own in the browser."""

from vitviz.ui import page, training

page.ensure_navigation()
training.show()
