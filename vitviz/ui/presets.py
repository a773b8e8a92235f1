"""Real models one click away: the Hub presets, downloaded with a progress bar in megabytes.

A Hub model is loaded once per process and shared by every session that picks it
(`state.use_shared_model`), so a class choosing ViT-B/16 holds one copy of it.
"""

from __future__ import annotations

import logging

import streamlit as st

from vitviz import hub, limits, weights
from vitviz.i18n import Message, message_of
from vitviz.ui import state
from vitviz.ui.i18n import _, say
from vitviz.weights import CheckpointError

log = logging.getLogger("vitviz")


def hub_key(repo_id: str, image_size: tuple[int, int] | None = None) -> str:
    return f"hub:{repo_id}" + (f"@{image_size[0]}x{image_size[1]}" if image_size else "")


def use_hub_model(repo_id: str, image_size: tuple[int, int] | None = None) -> bool:
    """Download (or find in the cache) and use `repo_id` on every page; one sentence if that fails."""
    bar = st.progress(0.0, text=_("Asking the Hugging Face Hub for {repo}…").format(repo=repo_id))
    downloading = _("Downloading {repo}: {done:,.1f} of {total:,.1f} MB")

    def progress(done: int, total: int) -> None:
        bar.progress(done / total if total else 1.0, text=downloading.format(repo=repo_id, done=done / 1e6,
                                                                             total=total / 1e6))

    def load():
        try:
            model = hub.provenance(repo_id, weights.load(folder, image_size=image_size))
            return hub.loaded_from(repo_id, model)  # its files stay cached
        except CheckpointError as exc:
            raise CheckpointError(Message("{repo}: {reason}", repo=repo_id, reason=message_of(exc))) from exc

    try:
        with hub.in_use(repo_id):  # the files stay in the cache from the fetch until the model is loaded
            folder = hub.fetch(repo_id, progress=progress, token=limits.hub_token())
            bar.progress(1.0, text=_("Loading {repo}…").format(repo=repo_id))
            state.use_shared_model(hub_key(repo_id, image_size), repo_id, load)
    except (CheckpointError, limits.SettingError) as exc:
        bar.empty()
        st.error(say(exc))
        return False
    except Exception:  # a bug or a server fault (a full disk, say): the details go to the server's log
        log.exception("Loading %s failed", repo_id)
        bar.empty()
        st.error(_("Loading {name} failed unexpectedly; the details are in the server's log.").format(name=repo_id))
        return False
    bar.empty()
    return True


def preset_picker(where: str) -> None:
    """The presets, each with what it teaches and its download size, and a button that makes it the model in use."""
    in_use = state.current_model().key
    for preset in hub.PRESETS:
        text, button = st.columns([4, 1], vertical_alignment="center")
        about = _("about {size} MB").format(size=preset.size_mb)
        head = "" if preset.has_classifier else " · " + _("no classifier")
        title, teaches = _(preset.title), _(preset.teaches)
        text.markdown(f"**{title}** · {about}{head}  \n{teaches}")
        current = in_use == hub_key(preset.repo_id)
        if button.button(_("In use") if current else _("Use"), key=f"preset_{where}_{preset.repo_id}", disabled=current,
                         width="stretch", help=preset.repo_id):
            if use_hub_model(preset.repo_id):
                st.rerun()
