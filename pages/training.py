"""The training studio: train a ViT of your own in the browser."""

from vitviz.ui import navigation, studio_page

navigation.ensure_navigation()
studio_page.show()
