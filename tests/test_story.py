"""The Story page: a section at a time, and the shared controls rerun only the steps that read them."""

from __future__ import annotations

from conftest import fresh_app, open_page, problems, wait_for_background_work

from vitviz.ui import steps, story

STORY = "pages/story.py"


def titles(at) -> list[str]:
    return [t.value for t in at.title]


def open_section(at, section: steps.Section):
    at.session_state[story.section_key(section)] = True  # what a click on the section's title does
    return at.run()


def test_only_the_open_sections_are_drawn():
    at = open_page(fresh_app(), STORY)
    assert not problems(at), problems(at)
    first = steps.SECTIONS[0]
    assert titles(at) == ["The whole story", *(step.label for step in first.steps)]
    assert [e.label.split(" · ")[0].strip("*") for e in at.expander if "steps" in e.label] == [
        s.title for s in steps.SECTIONS]
    open_section(at, steps.SECTIONS[2])
    drawn = [s for i, s in enumerate(steps.SECTIONS) if i in (0, 2)]
    assert titles(at)[1:] == [step.label for section in drawn for step in section.steps]
    assert not problems(at), problems(at)


def test_continue_opens_the_next_section():
    at = open_page(fresh_app(), STORY)
    at.button(key=f"{story.section_key(steps.SECTIONS[0])}_next").click().run()
    assert steps.SECTIONS[1].steps[0].label in titles(at)


def test_a_shared_control_reruns_only_the_steps_that_read_it_and_never_the_model(forward_passes):
    at = open_page(fresh_app(), STORY)
    for section in steps.SECTIONS[1:]:
        open_section(at, section)
    wait_for_background_work()  # step 11's averages over many images, computed once per model
    at.run()
    assert not problems(at), problems(at)
    settled = len(forward_passes)

    def drawn_after(change) -> list[str]:
        change()
        after = titles(at)
        at.run()  # AppTest's tree now holds only what the change reran; a whole run brings the page back
        return after

    def readers(control: str) -> list[str]:
        return [step.label for step in steps.STEPS if control in step.controls]

    assert drawn_after(lambda: at.sidebar.selectbox(key="layer").set_value(2).run()) == readers(steps.LAYER)
    assert drawn_after(lambda: at.sidebar.selectbox(key="head").set_value(1).run()) == readers(steps.HEAD)
    at.session_state["keep_query"] = 5  # as a click on patch 4 would
    at.run()
    assert drawn_after(lambda: at.button(key="query_click_10.4_cls").click().run()) == readers(steps.QUERY)
    assert at.session_state["keep_query"] == 0
    # The colour scale is read by every step: the whole page.
    assert drawn_after(lambda: at.sidebar.selectbox(key="colorscale").set_value("Greys").run())[1:] == [
        step.label for step in steps.STEPS]
    open_section(at, steps.SECTIONS[0])
    assert not problems(at), problems(at)
    assert len(forward_passes) == settled
