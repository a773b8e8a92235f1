"""Which map to believe: the attention explorer's Faithfulness tab, and step 13's short answer.

Scoring runs the model a few hundred times, so it is kept in the trace cache per (image, model, class),
and a page states how long it will take, from a forward of this model timed here, before it starts one that
is not quick. A score holds one of the server's places for long computations (`quota.HEAVY`, every visitor's
together) and runs on one torch thread; with every place taken the page says to try again in a moment.

It runs on the page's own thread, with a progress bar, rather than as a background job: a visitor who
changes the class or closes the tab stops it at the next batch (Streamlit stops the run), so the server never
keeps computing a score nobody waits for.
"""

from __future__ import annotations

import time

import numpy as np
import streamlit as st

from vitviz import faithfulness, figures, limits, quota, train
from vitviz.faithfulness import Faithfulness, title
from vitviz.i18n import N_
from vitviz.ui import state
from vitviz.ui.controls import class_picker
from vitviz.ui.drawing import hover_words, image_grid, show_figure, web_picture
from vitviz.ui.i18n import _, number_writer, say
from vitviz.ui.state import Traced
from vitviz.ui.text import plain

QUICK_SECONDS = 2.0  # the explorer scores without asking when the estimate is at most this
LOW_PROBABILITY = 0.05  # below this, a class has too little probability for its curves to mean much


# Timed again after a minute, so the estimate follows how busy the server is now; on one thread, as scores run.
@st.cache_resource(max_entries=16, ttl=60, show_spinner=False)
def _forward_seconds(model_key: str, _model, _pixels) -> float:
    with train.limited_threads(1):
        return faithfulness.forward_seconds(_model, _pixels)


def estimate(traced: Traced) -> tuple[float, int, float]:
    """(seconds the score should take at most, forward passes it may need, seconds of one forward here)."""
    one = _forward_seconds(traced.model_key, traced.model, traced.trace.pixels)
    return faithfulness.longest_seconds(one, traced.config), faithfulness.most_forwards(traced.config), one


def duration(seconds: float) -> str:
    if seconds < 90:
        return _("{seconds:.1f} s").format(seconds=seconds) if seconds < 10 else _("{seconds:.0f} s").format(
            seconds=seconds)
    return _("{minutes:.0f} min").format(minutes=seconds / 60)


def shown(name: str) -> str:
    """A method's name at the start of a sentence, in the session's language."""
    return _(title(name))


def _key(traced: Traced, target: int) -> tuple:
    return ("faithfulness", traced.image_key, traced.model_key, target)


def cached(traced: Traced, target: int) -> Faithfulness | None:
    """The score kept for this image, model and class, or None."""
    found, result = state.trace_cache().peek(_key(traced, target))
    return result if found else None


def score(traced: Traced, target: int, progress=None) -> Faithfulness:
    """The score for this image, model and class: the one kept if it was made before (by anyone), else made now
    in one of the server's places for long computations, on one torch thread. Raises `quota.ServerBusy`
    (one sentence) when every place is taken. Needs no Streamlit session."""

    def make() -> Faithfulness:
        with quota.HEAVY.holding(limits.heavy_tasks()), train.limited_threads(1):
            return faithfulness.score(traced.recorder, traced.trace.pixels, target, progress)

    return state.trace_cache().get(_key(traced, target), make)


def run(traced: Traced, target: int, retry_key: str) -> Faithfulness | None:
    """Score now, with a progress bar over the curves' forward passes; None when the server is busy, with the
    sentence saying so and a "Try again" button (`retry_key`) unless long computations are turned off."""
    bar = st.progress(0.0, text=_("Computing the six maps…"))
    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        left = (time.perf_counter() - started) * (total - done) / done
        bar.progress(done / total, text=_("Deletion and insertion curves: {done} of {total} images, about {left} "
                                          "left").format(done=done, total=total, left=duration(left)))

    try:
        result = score(traced, target, progress)
    except quota.ServerBusy as busy:
        bar.empty()
        st.info(say(busy), icon=":material/hourglass_top:")
        if limits.heavy_tasks():  # busy, not turned off
            st.button(_("Try again"), key=retry_key)  # a click reruns the page, which asks again
        return None
    bar.empty()
    return result


def _overlay(traced: Traced, values: np.ndarray, colorscale: str, opacity: float, size: int) -> np.ndarray:
    return figures.attention_overlay(traced.display, values, size=size, opacity=opacity, colorscale=colorscale)


def faithfulness_tab(traced: Traced, colorscale: str, opacity: float) -> None:
    if traced.trace.logits is None:
        st.info(_("Faithfulness follows one class's probability as patches are removed, and this model has no "
                  "class head, so there is nothing to score."))
        return
    st.markdown(_(
        "Six ways to say which patches matter for a class. Each is tested on this image: delete the patches it "
        "ranks first (they take the image's mean colour) and the class's probability should fall fast; start from "
        "a blurred copy and put them back first, and it should rise fast. The areas under these curves, compared "
        "with random orders of the patches, score the maps. The scores depend on what replaces a patch (another "
        "colour or blur could rank the maps differently), and the half-deleted images look like no natural photo, so a "
        "map can also score well or badly for how the model reacts to such images."
    ))
    _what_each_computes(traced)
    labels = traced.labels
    target = class_picker(st.selectbox, "faithfulness_class", traced, int(traced.trace.probs.argmax()),
                          _("Class to explain"))
    result = cached(traced, target)
    if result is None:
        seconds, forwards, one = estimate(traced)
        if seconds > QUICK_SECONDS:
            slot = st.empty()  # the offer makes way for the result
            offer = slot.container()
            offer.markdown(_(
                "Scoring takes one backward pass and up to {forwards} forward passes in batches of {batch}: up to "
                "about **{duration}** for this model (one forward of one image took {milliseconds:.0f} ms here just "
                "now)."
            ).format(forwards=forwards, batch=faithfulness.BATCH, duration=duration(seconds), milliseconds=one * 1000))
            if not offer.button(_("Score the six maps"), key="faithfulness_run"):
                return
            slot.empty()
        result = run(traced, target, "faithfulness_retry")
        if result is None:
            return
    _draw(traced, result, labels[target], colorscale, opacity)


def _draw(traced: Traced, result: Faithfulness, label: str, colorscale: str, opacity: float) -> None:
    st.markdown(_("**For “{label}”:** {verdict}").format(label=plain(label), verdict=say(result.verdict())))
    probability = float(result.deletion[0, 0])  # the first deletion step is the image itself
    if probability < LOW_PROBABILITY:
        st.caption(_("The model gives “{label}” {probability:.1%} on this image, so deleting patches has little to "
                     "lower and the curves say little about the maps.").format(label=plain(label), probability=probability))
    deletion, insertion = result.deletion_auc, result.insertion_auc
    image_grid(
        [
            (
                _overlay(traced, result.maps[i], colorscale, opacity, 220),
                ("★ " if i == result.best else "") + _("{name}: deletion {deletion:.2f}, insertion {insertion:.2f} "
                                                       "({standing})").format(
                    name=shown(name), deletion=deletion[i], insertion=insertion[i], standing=say(result.standing(i))),
            )
            for i, name in enumerate(result.methods)
        ],
        per_row=3,
    )
    best = result.methods[result.best]
    left, right = st.columns(2)
    for column, curves, random, what in (
        (left, result.deletion, result.random_deletion, _("Deletion: most relevant patches removed first")),
        (right, result.insertion, result.random_insertion, _("Insertion: most relevant patches put back first")),
    ):
        with column:
            show_figure(figures.perturbation_curves(
                result.fractions, {shown(name): curve for name, curve in zip(result.methods, curves, strict=True)},
                random.mean(axis=0), title=what, x_title=_("share of the patches"), highlight=shown(best),
                y_title=f"p({label})", words=hover_words(), number=number_writer(),
            ))
    st.caption(_(
        "Areas under the curves: lower is better for deletion, higher for insertion. Random: the mean of "
        "{orders} random orders ({random_deletion:.2f} and {random_insertion:.2f}); a map beats it when its area is "
        "better by more than {margin}. ★ marks the largest insertion minus deletion. The blur has σ = one patch "
        "({patch} pixels); both rollouts average the heads and discard nothing; Grad-CAM reads the last block's LN₁ "
        "output. {forwards} forward passes took {duration}."
    ).format(orders=faithfulness.RANDOM_ORDERS, random_deletion=result.random_deletion_auc,
             random_insertion=result.random_insertion_auc, margin=faithfulness.MARGIN, patch=traced.config.patch_size,
             forwards=result.forwards, duration=duration(result.seconds)))


def _what_each_computes(traced: Traced) -> None:
    """One line per method, and which of them see only part of what this model's head reads."""
    st.markdown("\n".join("- **" + shown(name) + "**: " + _(faithfulness.DESCRIPTIONS[name])
                           for name in faithfulness.METHODS))
    note = cls_row_note(traced)
    if note:
        st.caption(note)


def cls_row_note(traced: Traced) -> str:
    """For a head that reads more than CLS: which maps follow only CLS's row; "" otherwise."""
    if not traced.facts.reads_more_than_cls:
        return ""
    return _("The four attention maps (raw attention, both rollouts and Chefer relevance) follow only what flows into "
             "CLS, while this model's prediction also reads {more}: they see part of what the prediction reads. "
             "Grad-CAM and input × gradient follow the gradient of the whole prediction.").format(
        more=_(OTHER_READS[traced.facts.head]))


# What a class head reads besides CLS (the heads `ModelFacts.reads_more_than_cls` names).
OTHER_READS = {"cls_distillation_mean": N_("the distillation token"),
               "cls_patch_mean": N_("the mean of the patch tokens")}


def which_patches(traced: Traced, colorscale: str) -> None:
    """Step 13's short version: the predicted class and the most faithful map for it, computed on request."""
    st.markdown("**" + _("Which patches made this prediction?") + "**")
    target = int(traced.trace.probs.argmax())
    result = cached(traced, target)
    if result is None:
        seconds, forwards, _one = estimate(traced)
        slot = st.empty()  # the offer makes way for the answer
        offer = slot.container()
        offer.caption(_(
            "Six attribution maps, each tested by deleting and restoring the patches it ranks first; the one that "
            "moves the probability most is shown. It runs the model up to {forwards} times."
        ).format(forwards=forwards))
        if not offer.button(_("Find out (up to about {duration})").format(duration=duration(seconds)),
                            key="which_patches_run"):
            return
        slot.empty()
        result = run(traced, target, "which_patches_retry")
        if result is None:
            return
    best = result.best
    left, right = st.columns([1, 2])
    left.image(web_picture(_overlay(traced, result.maps[best], colorscale, 0.6, 256)), caption=shown(result.methods[best]),
               width="stretch")
    right.markdown(say(result.verdict()))
    right.caption(_("{method}: {description}").format(method=shown(result.methods[best]),
                                                      description=_(faithfulness.DESCRIPTIONS[result.methods[best]])))
    note = cls_row_note(traced)
    if note:
        right.caption(note)
    right.caption(_("The Attention explorer's Faithfulness tab shows all six maps and their curves, for any class, "
                    "and what each computes."))
