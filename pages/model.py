"""The Model page."""

from vitviz.ui import model_page

model_page.show()
