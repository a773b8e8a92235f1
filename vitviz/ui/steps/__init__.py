"""The guide's steps in order. Each step is declared once, in the module of its section.

To add or change a step, edit its declaration in data.py, tokens.py, encoder.py, output.py or
training.py here, and give it a two-line page file in pages/ (its `Step.page`).
"""

from __future__ import annotations

from vitviz.ui.steps import data, encoder, output, tokens, training
from vitviz.ui.steps.step import HEAD, LAYER, QUERY, Section, Step

SECTIONS: tuple[Section, ...] = (data.SECTION, tokens.SECTION, encoder.SECTION, output.SECTION, training.SECTION)
STEPS: tuple[Step, ...] = tuple(step for section in SECTIONS for step in section.steps)
BY_KEY: dict[str, Step] = {step.key: step for step in STEPS}

__all__ = ["BY_KEY", "HEAD", "LAYER", "QUERY", "SECTIONS", "STEPS", "Section", "Step", "neighbours"]


def neighbours(key: str) -> tuple[Step | None, Step | None]:
    """The steps before and after `key`, in guide order."""
    index = [step.key for step in STEPS].index(key)
    before = STEPS[index - 1] if index > 0 else None
    after = STEPS[index + 1] if index + 1 < len(STEPS) else None
    return before, after
