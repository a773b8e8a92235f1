"""What a step of the guide is: its words, its formula and shape, the controls it uses, and how it draws."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from vitviz.ui.i18n import _

LAYER, HEAD, QUERY = "layer", "head", "query"  # the shared controls a step can use (see controls.View)


@dataclass(frozen=True)
class Step:
    key: str  # "0" … "14", "10.1" … "10.12"
    title: str  # in English, marked with N_: `label` is what pages show
    section: str  # the section's title, in English
    text: str | Callable  # a few sentences (English, marked with N_), or text(traced) -> str where they depend on the model
    draw: Callable  # draw(traced: state.Traced, view: controls.View) -> None, with Streamlit
    formula: str | Callable | None = None  # LaTeX, shown with st.latex; or formula(traced) -> str or None
    shape: str | Callable = ""  # the step's tensor shape in symbols, or shape(traced) -> str; the page fills in values
    controls: frozenset[str] = field(default_factory=frozenset)  # of LAYER, HEAD, QUERY

    def text_for(self, traced) -> str:
        """The step's words for the model in use, in the session's language."""
        return self.text(traced) if callable(self.text) else _(self.text)

    def formula_for(self, traced) -> str | None:
        """The step's formula for the model in use (a DeiT's head, say, is not a ViT's; a model without a class head
        has no softmax to show)."""
        return self.formula(traced) if callable(self.formula) else self.formula

    def shape_for(self, traced) -> str:
        """The step's shape in symbols for the model in use ("" where the model has no such tensor)."""
        return self.shape(traced) if callable(self.shape) else self.shape

    @property
    def label(self) -> str:
        """"10.3 · Softmax", in the session's language."""
        return self.key + " · " + _(self.title)

    @property
    def slug(self) -> str:
        """The page's URL path, and the name of its file in pages/."""
        return "step_" + self.key.replace(".", "_")

    @property
    def page(self) -> str:
        return f"pages/{self.slug}.py"


class Section:
    """One part of the guide; its module declares each step once, with `@SECTION.step(...)` on the step's drawing."""

    def __init__(self, title: str) -> None:
        self.title = title  # in English, marked with N_; shown as _(title)
        self.steps: list[Step] = []

    def step(
        self,
        key: str,
        title: str,
        *,
        text: str,
        formula: str | Callable | None = None,
        shape: str | Callable = "",
        controls: tuple[str, ...] = (),
    ) -> Callable[[Callable], Callable]:
        def declare(draw: Callable) -> Callable:
            self.steps.append(Step(key, title, self.title, text, draw, formula, shape, frozenset(controls)))
            return draw

        return declare
