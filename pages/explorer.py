"""The attention explorer."""

from vitviz.ui import explorer

explorer.show()
