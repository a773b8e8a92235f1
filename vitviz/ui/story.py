"""The Story page: every step on one page, a section of the guide at a time.

A section is drawn only once the reader opens it (the first is open), so the page answers in about
the time of one step page. Each step is a keyed fragment, and the story tells the shared controls
which steps read them (`controls.rerun_only`): moving the layer, head or query reruns just those
steps, from the cached trace.
"""

from __future__ import annotations

import streamlit as st

from vitviz.ui import controls, downloads, page, steps
from vitviz.ui.i18n import _
from vitviz.ui.state import Traced


def fragment_key(step: steps.Step) -> str:
    return f"story_{step.slug}"


def section_key(section: steps.Section) -> str:
    return "story_section_" + "_".join(section.title.lower().split())  # from the English title, in any language


def _open(section: steps.Section) -> None:
    """A section's "continue" button opens the next section, as if the reader had clicked its title."""
    st.session_state[section_key(section)] = True


def _draw_step(step: steps.Step, traced: Traced) -> None:
    @st.fragment(key=fragment_key(step))
    def draw() -> None:
        page.body(step, traced)

    draw()
    st.divider()


def _draw_section(section: steps.Section, traced: Traced, first: bool) -> list[steps.Step]:
    """The section, inside an expander drawn only while open; returns the steps it drew."""
    box = st.expander(_("**{section}** · steps {first}–{last}").format(
        section=_(section.title), first=section.steps[0].key, last=section.steps[-1].key),
        expanded=first, key=section_key(section), on_change="rerun")
    if not box.open:
        return []
    with box:
        for step in section.steps:
            _draw_step(step, traced)
        if section is not steps.SECTIONS[-1]:
            following = steps.SECTIONS[steps.SECTIONS.index(section) + 1]
            st.button(_("Continue: {section} ↓").format(section=_(following.title)), key=f"{section_key(section)}_next",
                      on_click=_open, args=(following,))
    return list(section.steps)


def show(traced: Traced) -> None:
    """Every section; the shared controls rerun only the drawn steps that read them."""
    uses = frozenset().union(*(step.controls for step in steps.STEPS))
    page.sidebar_controls(uses - {steps.QUERY}, traced)
    st.title(_("The whole story"))
    downloads.story_button(traced)
    st.caption(_("The whole guide on one page, a section at a time: open a section to draw its steps. The layer, "
                 "head and colour scale in the sidebar, and the query you click, apply to every step below."))
    drawn = []
    for number, section in enumerate(steps.SECTIONS):
        drawn += _draw_section(section, traced, first=number == 0)
    controls.rerun_only({
        control: [fragment_key(step) for step in drawn if control in step.controls]
        for control in (steps.LAYER, steps.HEAD, steps.QUERY)
    })
