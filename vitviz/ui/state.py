"""What a browser session has chosen, and the cached work that follows from it.

The chosen image is kept as bytes in `st.session_state`, apart from any widget, so it
survives page changes; so is the chosen model (a `ModelChoice`). The model runs once per
(image, model) in `traced()`; every control on every page re-renders from that cached Trace.
Decoded images and traces are kept in process-wide caches bounded in bytes (`vitviz.bytecache`,
sized by `vitviz.limits`): a cache that counted entries would let a few huge ones fill the server.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import uuid
from pathlib import Path

import numpy as np
import streamlit as st
import torch
from PIL import Image

from vitviz import bytecache, capture, convert, data, limits, studio, weights
from vitviz.facts import ModelFacts
from vitviz.i18n import N_
from vitviz.images import ImageError, Prepared, load_image, prepare
from vitviz.model import ViT, ViTConfig
from vitviz.ui.i18n import _, say

SAMPLES_DIR = Path(__file__).resolve().parents[2] / "assets" / "samples"
SCENE_SEED = 31_337  # the generated sample scenes; not a training seed
IMAGE_KEY = "vitviz_image"  # session_state: the chosen image as {"name", "bytes", "key"}
ERROR_KEY = "vitviz_image_error"


# The shipped photos' names (their files' stems), words the project chose: shown in the reader's language.
PHOTO_NAMES = {"astronaut": N_("astronaut"), "cat": N_("cat"), "coffee": N_("coffee"), "rocket": N_("rocket")}


def sample_names() -> list[str]:
    """The samples' names, in English whatever the reader's language: they key the caches, the kept choice and
    links (`links.sample_slug`). `sample_title` is what a reader sees."""
    scenes = [f"Scene {i + 1}: {data.CLASSES[label]}" for i, label in enumerate(_scene_labels())]
    photos = [f"Photo: {p.stem}" for p in sorted(SAMPLES_DIR.glob("*.jpg"))]
    return scenes + photos


def sample_title(name: str) -> str:
    """An image's name as the reader sees it: a sample's in the reader's language ("Sahne 1: artı"), an upload's
    file name as it is."""
    if name.startswith("Scene ") and name in sample_names():
        number, shape = name.removeprefix("Scene ").split(": ")
        return _("Scene {number}: {shape}").format(number=number, shape=_(shape))
    if name.startswith("Photo: ") and name in sample_names():
        stem = name.removeprefix("Photo: ")
        return _("Photo: {name}").format(name=_(PHOTO_NAMES[stem]) if stem in PHOTO_NAMES else stem)
    return name


def class_names(config: ViTConfig) -> list[str]:
    """A model's class names as the reader sees them. The project's own words are shown in the reader's language:
    the built-in shapes' names (carried by the built-in model and every Training-studio model) and the numbers
    vitviz gives the classes of a checkpoint that names none ("class 3"). A checkpoint's own names (ImageNet's, a
    visitor's) are shown as the checkpoint has them."""
    if config.labels == data.CLASSES:
        return [_(name) for name in config.labels]
    if config.extra.get("labels") == convert.NUMBERED:
        return [_("class {index}").format(index=index) for index in range(len(config.labels))]
    return list(config.labels)


@st.cache_data(max_entries=1)
def _scene_labels() -> list[int]:
    return [int(label) for label in data.generate(len(data.CLASSES) * 2, SCENE_SEED)[1]]


@st.cache_data(max_entries=64)
def sample_bytes(name: str) -> bytes:
    """PNG bytes of a generated scene, or the bytes of a shipped photo."""
    if name.startswith("Scene "):
        index = int(name.split(":")[0].split()[1]) - 1
        images, _labels = data.generate(len(data.CLASSES) * 2, SCENE_SEED)
        buffer = io.BytesIO()
        Image.fromarray(images[index]).save(buffer, format="PNG")
        return buffer.getvalue()
    return (SAMPLES_DIR / f"{name.removeprefix('Photo: ')}.jpg").read_bytes()


def _chosen(name: str, payload: bytes) -> dict:
    # The digest names the image in every cache; hashed once here, not on every rerun (uploads reach 50 MB).
    return {"name": name, "bytes": payload, "key": hashlib.sha256(payload).hexdigest()}


def set_image(name: str, payload: bytes) -> bool:
    """Make `payload` the session's image if it decodes; otherwise keep the old one and record why (in the
    session's language)."""
    chosen = _chosen(name, payload)
    try:
        decoded_image(chosen)
    except ImageError as exc:
        st.session_state[ERROR_KEY] = say(exc)
        return False
    st.session_state[IMAGE_KEY] = chosen
    st.session_state.pop(ERROR_KEY, None)
    return True


def current_image() -> dict:
    """The session's image, a generated scene until the user picks one."""
    if IMAGE_KEY not in st.session_state:
        name = sample_names()[0]
        st.session_state[IMAGE_KEY] = _chosen(name, sample_bytes(name))
    return st.session_state[IMAGE_KEY]


def _image_bytes(image: Image.Image) -> int:
    return image.width * image.height * 4  # Pillow keeps an RGB pixel in 4 bytes


# Held by st.cache_resource so that st.cache_resource.clear() empties them too.
@st.cache_resource(show_spinner=False)
def image_cache() -> bytecache.ByteCache:
    """Every session's decoded images and previews, keyed by ("decoded" or "preview", digest)."""
    return bytecache.ByteCache(limits.image_cache_bytes(), _image_bytes, max_entries=64)  # 32 images, 32 previews


def decoded_image(chosen: dict) -> Image.Image:
    """The chosen image decoded, reduced to what vitviz uses (`images.kept_size`)."""
    return image_cache().get(("decoded", chosen["key"]), lambda: load_image(chosen["bytes"]))


PREVIEW_SIDE = 640  # what the browser gets to show the original: a 24-megapixel photo is not sent whole


def _make_preview(image: Image.Image) -> Image.Image:
    image = image.copy()
    image.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE), Image.Resampling.LANCZOS)
    return image


def preview(chosen: dict) -> Image.Image:
    """A copy of the chosen image, decoded and no larger than PREVIEW_SIDE, for display."""
    return image_cache().get(("preview", chosen["key"]), lambda: _make_preview(decoded_image(chosen)))


def preview_of(image_key: str, image: Image.Image) -> Image.Image:
    """`preview` of an image already decoded (a Traced's), without the session's state."""
    return image_cache().get(("preview", image_key), lambda: _make_preview(image))


TRAINING_KEY = "studio_run"  # session_state: this session's studio.TrainingRun, from the Training studio


def training_run() -> studio.TrainingRun | None:
    return st.session_state.get(TRAINING_KEY)


MODEL_KEY = "vitviz_model"  # session_state: the ModelChoice this session uses, when not the default
MODELS_KEY = "vitviz_models"  # session_state: name -> ModelChoice, every model this session loaded or trained
MAX_SESSION_MODELS = 4  # a session keeps its last few models, so memory stays bounded
DEFAULT_MODEL_NAME = N_("built-in shapes model")


@dataclasses.dataclass(frozen=True)
class ModelChoice:
    """A model the pages can run, with the Recorder that stays attached to it for its lifetime."""

    key: str  # names the model in every cache
    name: str  # names it in the session's list of models
    model: ViT
    recorder: capture.Recorder

    @property
    def title(self) -> str:
        """The name to show: the built-in model's in the session's language, any other as it was given."""
        return _(self.name) if self.key == "default" else self.name


@st.cache_resource(show_spinner=False)
def _default_choice() -> ModelChoice:
    # One Recorder per process for the shared default model: every session's traces go through it.
    model = weights.load_default()
    return ModelChoice("default", DEFAULT_MODEL_NAME, model, capture.Recorder(model))


def set_session_model(name: str, model: ViT) -> None:
    """Make `model` this session's model for every page, and remember it for the Model page.

    The model must not be changed afterwards: traces are cached under a key made here, so
    publish a new model (a copy) after more training."""
    model.eval()
    choice = ModelChoice(f"session:{uuid.uuid4().hex}", name, model, capture.Recorder(model))
    st.session_state[MODEL_KEY] = choice
    _remember(choice)


MAX_SHARED_MODELS = 3  # Hub models kept in the process for every session: a ViT-B/16 is about 350 MB


@st.cache_resource(max_entries=MAX_SHARED_MODELS, show_spinner=False)
def _shared_choice(key: str, name: str, _load) -> ModelChoice:
    # One copy per process, read-only like the default model, so a class that picks the same preset
    # holds it once; its traces are shared too, since they are cached by model key.
    model = _load().eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return ModelChoice(key, name, model, capture.Recorder(model))


def use_shared_model(key: str, name: str, load) -> None:
    """Make the process-wide model `key` (made by `load()` on first use) this session's model for every page."""
    choice = _shared_choice(key, name, load)
    st.session_state[MODEL_KEY] = choice
    _remember(choice)


def _remember(choice: ModelChoice) -> None:
    models = st.session_state.setdefault(MODELS_KEY, {})
    models.pop(choice.name, None)
    models[choice.name] = choice
    while len(models) > MAX_SESSION_MODELS:
        models.pop(next(iter(models)))


def session_models() -> dict[str, ModelChoice]:
    return st.session_state.get(MODELS_KEY, {})


def choose_session_model(name: str) -> None:
    st.session_state[MODEL_KEY] = session_models()[name]


def use_default_model() -> None:
    st.session_state.pop(MODEL_KEY, None)


def current_model() -> ModelChoice:
    """The session's own model, or the shared default."""
    return st.session_state.get(MODEL_KEY) or _default_choice()


@dataclasses.dataclass(frozen=True)
class Traced:
    """One image through one model: everything a step draws from."""

    image_name: str
    image_key: str  # the image's digest: with model_key, what every per-image cache is keyed by
    image: Image.Image  # as uploaded, decoded
    prepared: Prepared  # what the model saw: its processor's (or vitviz's) resize and crop, normalised
    trace: capture.Trace
    model_key: str
    model: ViT
    recorder: capture.Recorder  # attached to `model`, for pages that run it again (occlusion, gradients)

    @property
    def config(self):
        return self.model.config

    @functools.cached_property
    def facts(self) -> ModelFacts:
        """What pages may say about the model in use (`vitviz.facts`): its tokens, head, training, normalisation."""
        return ModelFacts.of(self.model.config)

    @property
    def labels(self) -> list[str]:
        """The class names as the reader sees them (`class_names`; none for a model without a class head). The
        checkpoint's own are `config.labels`."""
        return class_names(self.config)

    @property
    def display(self) -> np.ndarray:  # (H, W, 3) uint8: the model's input as a picture
        return self.prepared.display


def held_bytes(value) -> int:
    """Bytes of the tensors and arrays in `value` (dataclasses such as Trace and Prepared, and tuples of them);
    memory that several of them share is counted once."""
    seen, total, pending = set(), 0, [value]
    while pending:
        item = pending.pop()
        if isinstance(item, torch.Tensor):
            address, size = item.untyped_storage().data_ptr(), item.untyped_storage().nbytes()
        elif isinstance(item, np.ndarray):
            address, size = item.ctypes.data, item.nbytes
        else:
            if dataclasses.is_dataclass(item):
                pending.extend(getattr(item, field.name) for field in dataclasses.fields(item))
            elif isinstance(item, (tuple, list)):
                pending.extend(item)
            continue
        if address not in seen:
            seen.add(address)
            total += size
    return total


@st.cache_resource(show_spinner=False)
def trace_cache() -> bytecache.ByteCache:
    """Every session's traces and other per-image model results, keyed by what they were computed from."""
    # As many entries as the three caches it replaces had: 24 traces, 16 occluded traces, 16 gradients.
    return bytecache.ByteCache(limits.trace_cache_bytes(), held_bytes, max_entries=56)


def cached_run(key: tuple, make, message: str | None = None):
    """`make()`'s result kept in the trace cache under `key`, with a spinner (`message`, in the session's
    language) while it is made."""
    cache = trace_cache()
    if key in cache:
        return cache.get(key, make)
    with st.spinner(message or _("Running the model…")):
        return cache.get(key, make)


def _trace(image: Image.Image, recorder: capture.Recorder) -> tuple[Prepared, capture.Trace]:
    prepared = prepare(image, recorder.model.config)
    return prepared, recorder.trace(prepared.pixels)


def is_sample(chosen: dict) -> bool:
    """True when the chosen image is one of the samples, unchanged (an upload cannot travel in a link)."""
    return chosen["name"] in sample_names() and hashlib.sha256(sample_bytes(chosen["name"])).hexdigest() == chosen["key"]


def traced_if_ready() -> Traced | None:
    """`traced()` when this image's trace through this model is cached already (so asking costs nothing)."""
    if ("trace", current_image()["key"], current_model().key) not in trace_cache():
        return None
    return traced()


def traced() -> Traced:
    """The session's image through the session's model, traced once per (image, model) and then cached."""
    chosen = current_image()
    choice = current_model()
    image = decoded_image(chosen)
    prepared, trace = cached_run(("trace", chosen["key"], choice.key), lambda: _trace(image, choice.recorder))
    return Traced(image_name=chosen["name"], image_key=chosen["key"], image=image, prepared=prepared, trace=trace,
                  model_key=choice.key, model=choice.model, recorder=choice.recorder)
