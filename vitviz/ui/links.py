"""The reader's view in the page's URL, so that a link opens exactly this view on any server.

    /step_10_4?image=astronaut&layer=3&head=2&query=27

`restore()` takes the view from the URL on a session's first run (every page calls it first, through
`navigation.ensure_navigation`); `share_box()` writes the view into the URL and offers "Copy link to
this view" (app.py, after the page).
`PARAMS` is the one table of what travels; layers and heads count from 1 and patches from 0, as on
screen. A selection that `controls.persistent` keeps under "keep_<store>" travels with one line:

    Kept("colors", "colorscale", one_of(N_("no such colour scale"), figures.COLOUR_SCALES), default="Viridis"),

The language (`lang`) always travels, English too: `vitviz.ui.i18n.choose_language` reads it first on every
run and puts it back into the URL, and the share box's script keeps it there.

A value that does not fit (an unknown sample, head 40 on a 4-head model, a hostile string) is left at
its default, and one quiet note says so. An uploaded image or a model of the session's own cannot
travel: the share box says so. A Hub preset that this server has not downloaded yet is offered for
download, and the rest of the link waits for it.

Streamlit's `st.query_params` adds a browser history entry on every change (its frontend calls
history.pushState), so the share box's small script writes the URL with history.replaceState: moving a
slider does not fill the Back button. Page changes keep the query: Streamlit's navigation carries it
over, and the next/prev buttons pass `query()` to st.switch_page.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

import streamlit as st

from vitviz import figures, hub
from vitviz.i18n import LANGUAGES, N_, Message
from vitviz.ui import controls, i18n, presets, state
from vitviz.ui.i18n import _, say
from vitviz.ui.text import plain

RESTORED_KEY = "links_restored"  # session_state: the URL was read (once per session)
WAITING_KEY = "links_waiting"  # session_state: (preset, the link's other values) while the preset is not downloaded
MAX_TEXT = 100  # longer values are not looked at


@dataclass(frozen=True)
class Kept:
    """A selection kept in st.session_state["keep_<store>"], in the URL as `name`."""

    name: str
    store: str
    parse: Callable[[str], object]  # URL text -> kept value; ValueError(why) when it does not fit the model in use
    default: object = None  # left out of the URL; None: in the URL once the reader has chosen one
    show: Callable[[object], str] = str

    def read(self) -> str | None:
        value = st.session_state.get(f"keep_{self.store}")
        if value is None or value == self.default:
            return None
        try:
            self.parse(self.show(value))
        except ValueError:  # kept for a larger model than the one in use, which shows the default instead
            return None
        return self.show(value)

    def apply(self, text: str) -> None:
        st.session_state[f"keep_{self.store}"] = self.parse(text)


def _config():
    return state.current_model().model.config


def _whole(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,6}", text):  # ASCII digits only: int() would take "٣" and "1_0"
        raise ValueError(Message("not a whole number"))
    return int(text)


def counted(too_many: str, count: Callable[[], int]) -> Callable[[str], int]:
    """"1" … "count" in the URL, 0 … count − 1 kept (layers and heads count from 1 on screen); `too_many` says
    why a larger number does not fit, with the {count} (marked with N_)."""

    def parse(text: str) -> int:
        number, top = _whole(text), count()
        if not 1 <= number <= top:
            raise ValueError(Message(too_many, count=top))
        return number - 1

    return parse


def patch_number(text: str) -> int:
    number, patches = _whole(text), _config().num_patches
    if number >= patches:
        raise ValueError(Message("this model cuts the image into {count} patches, 0 to {last}", count=patches,
                                 last=patches - 1))
    return number


def query_token(text: str) -> int:
    """"cls", or a patch number: the query token (0 is CLS, 1 + i is patch i)."""
    return 0 if text.lower() == "cls" else 1 + patch_number(text)


def query_text(token: int) -> str:
    return "cls" if token == 0 else str(token - 1)


def one_of(missing: str, options: Callable[[], tuple[str, ...]] | tuple[str, ...]) -> Callable[[str], str]:
    """One of `options` (or of what `options()` gives), whatever its case in the URL; `missing` (marked with N_)
    says that the text is none of them."""

    def parse(text: str) -> str:
        names = options() if callable(options) else options
        match = next((name for name in names if name.lower() == text.lower()), None)
        if match is None:
            raise ValueError(Message(missing))
        return match

    return parse


def temperature(text: str) -> float:
    """One of step 10.3's temperatures, as the slider shows it ("0.5", "2")."""
    match = next((t for t in controls.TEMPERATURES if f"{t:g}" == text.strip()), None)
    if match is None:
        raise ValueError(Message("the temperature is one of {values}",
                                 values=", ".join(f"{t:g}" for t in controls.TEMPERATURES)))
    return match


def _explorer_tabs() -> tuple[str, ...]:
    from vitviz.ui import explorer  # the explorer's page imports this module, so not at the top

    return explorer.TABS


def sample_slug(name: str) -> str:
    """"Photo: astronaut" -> "astronaut", "Scene 3: star" -> "scene-3"."""
    if name.startswith("Scene "):
        return "scene-" + name.split(":")[0].split()[1]
    return name.removeprefix("Photo: ").lower()


class Image:
    """The image, when it is a sample: uploads and camera shots cannot travel in a URL."""

    name = "image"

    def read(self) -> str | None:
        chosen = state.current_image()
        if not state.is_sample(chosen) or chosen["name"] == state.sample_names()[0]:
            return None
        return sample_slug(chosen["name"])

    def apply(self, text: str) -> None:
        names = {sample_slug(name): name for name in state.sample_names()}
        name = names.get(text.lower())
        if name is None:
            raise ValueError(Message("no such sample"))
        st.session_state["keep_image_source"] = "Sample"
        st.session_state["keep_sample_name"] = name
        state.set_image(name, state.sample_bytes(name))


class Model:
    """The built-in model (left out) or a Hub preset; a model of the session's own cannot travel."""

    name = "model"

    def read(self) -> str | None:
        key = state.current_model().key
        return next((preset.repo_id for preset in hub.PRESETS if presets.hub_key(preset.repo_id) == key), None)

    def apply(self, text: str) -> None:
        preset = next((preset for preset in hub.PRESETS if preset.repo_id.lower() == text.lower()), None)
        if preset is None:
            raise ValueError(Message("not one of this app's Hub models"))
        if state.current_model().key == presets.hub_key(preset.repo_id):
            return
        if not hub.downloaded(preset.repo_id):
            raise _Waiting(preset)
        if not presets.use_hub_model(preset.repo_id):  # says why in one sentence
            raise ValueError(Message("it could not be loaded"))


class _Waiting(Exception):
    def __init__(self, preset: hub.Preset) -> None:
        self.preset = preset


class Language:
    """The session's language, always in the URL (English too), so that a copied link opens in the same language.
    `i18n.choose_language` has read it before `restore` runs, on every run: the URL wins there."""

    name = i18n.QUERY_KEY

    def read(self) -> str:
        return i18n.language()

    def apply(self, text: str) -> None:
        if text not in LANGUAGES:
            raise ValueError(Message("no such language"))


PARAMS = (
    Image(),
    Model(),  # before the rest: they are checked against the model in use
    Kept("layer", "layer", counted(N_("this model has {count} layers"), lambda: _config().depth), default=0,
         show=lambda i: str(i + 1)),
    Kept("head", "head", counted(N_("this model has {count} heads"), lambda: _config().heads), default=0,
         show=lambda i: str(i + 1)),
    Kept("query", "query", query_token, default=0, show=query_text),
    Kept("patch", "patch", patch_number),
    Kept("colors", "colorscale", one_of(N_("no such colour scale"), figures.COLOUR_SCALES), default="Viridis"),
    Kept("tab", "explorer_tab", one_of(N_("no such tab"), _explorer_tabs)),
    Kept("temperature", "temperature", temperature, default=1.0, show=lambda t: f"{t:g}"),
    Kept("shuffle", "shuffle", _whole, default=0),
    Language(),
)


def query() -> dict[str, str]:
    """The URL query of the reader's view now: every value that is not its default."""
    values = {param.name: param.read() for param in PARAMS}
    return {name: text for name, text in values.items() if text is not None}


def _apply(values: dict[str, str]) -> list[str]:
    """Apply the link's `values` in PARAMS order; what did not fit, as short notes."""
    misfits = []
    for index, param in enumerate(PARAMS):
        if param.name not in values:
            continue
        text = values[param.name]
        try:
            if len(text) > MAX_TEXT:
                raise ValueError(Message("too long"))
            param.apply(text)
        except _Waiting as waiting:
            later = {param.name: values[param.name] for param in PARAMS[index + 1 :] if param.name in values}
            st.session_state[WAITING_KEY] = (waiting.preset.repo_id, later)
            break
        except ValueError as why:
            misfits.append(f"{param.name}={plain(text[:40])} ({plain(say(why))})")
    return misfits


def _note(misfits: list[str]) -> None:
    if misfits:
        st.toast(_("Part of this link did not fit and was left at its default: {misfits}.").format(
                 misfits="; ".join(misfits)),
                 icon=":material/link_off:", duration="long")


def restore() -> None:
    """On a session's first run, take the view from the URL; while a link's Hub model waits, offer it."""
    if RESTORED_KEY not in st.session_state:
        st.session_state[RESTORED_KEY] = True
        values = {param.name: st.query_params.get(param.name) for param in PARAMS if param.name in st.query_params}
        _note(_apply(values))
    if WAITING_KEY in st.session_state:
        _offer_waiting_model()


def _offer_waiting_model() -> None:
    repo_id, later = st.session_state[WAITING_KEY]
    preset = next(preset for preset in hub.PRESETS if preset.repo_id == repo_id)
    box = st.container(border=True)
    box.markdown(_("This link shows **{title}** ({repo}), about {size} MB from the Hugging Face Hub, which this server "
                   "has not downloaded yet. Until then the pages show the built-in model.").format(
        title=_(preset.title), repo=repo_id, size=preset.size_mb))
    left, right, _rest = box.columns([2, 2, 3])
    fetch = left.button(_("Download {title} and open the link").format(title=_(preset.title)), type="primary",
                        key="links_fetch")
    keep = right.button(_("Stay with the built-in model"), key="links_keep")
    if fetch:
        with box:
            loaded = presets.use_hub_model(repo_id)  # a progress bar in MB, or one sentence if it fails
        if not loaded:
            return
    if fetch or keep:
        del st.session_state[WAITING_KEY]
        _note(_apply(later))
        st.rerun()


def share_box() -> None:
    """The sidebar's "Copy link to this view" (which also keeps the URL up to date), and what cannot travel."""
    with st.sidebar:
        st.iframe(_link_script(urlencode(query())), height=44)
        cannot = []
        if not state.is_sample(state.current_image()):
            cannot.append(_("your image (an upload cannot travel in a link: it opens on the first sample)"))
        choice = state.current_model()
        if choice.key != "default" and Model().read() is None:
            cannot.append(_("your model {name} (the link opens with the built-in one)").format(name=plain(choice.name)))
        if cannot:
            things = cannot[0] if len(cannot) == 1 else _("{names} and {last}").format(names=cannot[0], last=cannot[1])
            st.caption(_("The link keeps everything else but {things}.").format(things=things))


def _link_script(query_string: str) -> str:
    """A button that copies the page's URL, and a script that keeps the URL's query at `query_string`
    (Streamlit's own `embed` options stay) without adding a history entry."""
    wanted = json.dumps(query_string).replace("</", "<\\/")
    copied = json.dumps(_("Copied")).replace("</", "<\\/")
    return (_LINK_HTML.replace("WANTED_QUERY", wanted).replace("COPIED_WORD", copied)
            .replace("COPY_LABEL", html.escape(_("Copy link to this view"))))


_LINK_HTML = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><style>
body { margin: 0; font-family: "Source Sans Pro", "Source Sans 3", system-ui, sans-serif; }
button { display: inline-flex; align-items: center; gap: 0.45rem; min-height: 2.5rem; padding: 0.25rem 0.75rem;
         font: inherit; font-size: 0.875rem; color: rgb(49, 51, 63); background: #fff; cursor: pointer;
         border: 1px solid rgba(49, 51, 63, 0.2); border-radius: 0.5rem; }
button:hover { border-color: #4f46e5; color: #4f46e5; }
#status { margin-left: 0.5rem; font-size: 0.85rem; color: #555; }
input { width: 95%; font-size: 0.85rem; padding: 0.4rem; }
</style></head><body>
<button id="copy" type="button"><svg width="18" height="18" viewBox="0 0 24 24" aria-hidden="true"><path fill="currentColor"
 d="M3.9 12c0-1.71 1.39-3.1 3.1-3.1h4V7H7c-2.76 0-5 2.24-5 5s2.24 5 5 5h4v-1.9H7c-1.71 0-3.1-1.39-3.1-3.1zM8 13h8v-2H8v2zm9-6h-4v1.9h4c1.71 0 3.1 1.39 3.1 3.1s-1.39 3.1-3.1 3.1h-4V17h4c2.76 0 5-2.24 5-5s-2.24-5-5-5z"/></svg>
COPY_LABEL</button><span id="status" role="status"></span>
<input id="fallback" readonly hidden>
<script>
const wanted = WANTED_QUERY;
const app = window.parent;
function link() {
  const url = new URL(app.location.href);
  const kept = [...url.searchParams].filter(([name]) => name.startsWith("embed"));
  url.search = new URLSearchParams([...kept, ...new URLSearchParams(wanted)]).toString();
  return url.href;
}
function sync() {
  const href = link();
  if (href !== app.location.href) app.history.replaceState(app.history.state, "", href);
}
sync();
setInterval(sync, 1000);  // Streamlit may redraw the URL on a page change; put the view back
document.getElementById("copy").addEventListener("click", async () => {
  sync();
  const href = app.location.href;
  let copied = false;
  try { await navigator.clipboard.writeText(href); copied = true; } catch (error) {}
  if (!copied) {  // no clipboard API (a plain-http address): select the link for the reader
    const box = document.getElementById("fallback");
    box.value = href; box.hidden = false; box.select();
    copied = document.execCommand("copy");
    if (copied) box.hidden = true; else document.getElementById("copy").hidden = true;  // the link, selected
  }
  document.getElementById("status").textContent = copied ? COPIED_WORD : "";
});
</script></body></html>
"""
