"""Every step on one scrolling page, a section at a time, drawn by the same code as the step pages."""

from vitviz.ui import controls, navigation, page, story

navigation.ensure_navigation()
controls.image_picker()
traced = page.load_traced()
if traced is not None:
    story.show(traced)
