"""Shared fixtures and helpers: models (the shipped one and a seeded untrained one), real images, and
driving the app with Streamlit's AppTest."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import streamlit as st
import torch
from PIL import Image, ImageDraw
from streamlit.testing.v1 import AppTest

from vitviz import data, weights
from vitviz.images import load_image, preprocess
from vitviz.model import ViT
from vitviz.train import default_config
from vitviz.ui import steps

# Seeds for test images. Training batches use [seed, step] and numpy pads a short seed with
# zeros, so an int seed s draws the same images as training step 0 of seed s: keep these away
# from the training seed (0) and from vitviz.train.HELD_OUT_SEED.
IMAGE_SEED = 424_242


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="session", autouse=True)
def private_cache_dir(tmp_path_factory):
    """Results vitviz keeps on disk (vitviz.background) go to a folder of this test run's own."""
    import os

    os.environ["VITVIZ_CACHE_DIR"] = str(tmp_path_factory.mktemp("vitviz-cache"))
    yield


def wait_for_background_work(timeout: float = 120.0) -> None:
    """Until every vitviz.background job has finished (so counts of forward passes settle)."""
    import time

    from vitviz import background

    deadline = time.monotonic() + timeout
    while background.unfinished() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not background.unfinished(), "background work did not finish"


@pytest.fixture(scope="session")
def default_model() -> ViT:
    """The shipped model, `vitviz.weights.load_default()` (shared, read-only)."""
    if not weights.DEFAULT_PATH.exists():
        pytest.fail(
            f"The default model {weights.DEFAULT_PATH} is missing: train it with `python -m vitviz.train` "
            "(the repository ships it, so this test must not be skipped)."
        )
    return weights.load_default()


@pytest.fixture
def forward_passes():
    """Counts every forward pass of the shared default model, batched or not."""

    st.cache_resource.clear()
    st.cache_data.clear()
    model = weights.load_default()
    calls = []
    handle = model.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    yield calls
    handle.remove()


@pytest.fixture
def small_model() -> ViT:
    """An untrained model of the default shape, seeded: enough for checks of the arithmetic."""
    torch.manual_seed(0)
    return ViT(default_config()).eval()


@pytest.fixture(scope="session")
def real_image_and_label() -> tuple[Image.Image, int]:
    """A generated shape image that went through PNG encoding and `load_image`, and its label."""
    images, labels = data.generate(1, seed=IMAGE_SEED)
    return load_image(png_bytes(Image.fromarray(images[0]))), int(labels[0])


@pytest.fixture(scope="session")
def real_image(real_image_and_label) -> Image.Image:
    return real_image_and_label[0]


def make_photo(width: int = 300, height: int = 200) -> Image.Image:
    """A non-square photo-like RGB image: a smooth gradient with a few shapes drawn on it.

    Red (255, 0, 0) appears only in a bar along the left edge, outside the centre crop.
    """
    xs = torch.linspace(0, 1, width)
    ys = torch.linspace(0, 1, height)
    green = (40 + 150 * xs)[None, :].expand(height, width)
    blue = (60 + 160 * ys)[:, None].expand(height, width)
    red = torch.full((height, width), 20.0)
    array = torch.stack([red, green, blue], dim=-1).round().to(torch.uint8).numpy()
    image = Image.fromarray(array)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width // 8, height - 1), fill=(255, 0, 0))  # left bar, cut away by the crop
    cx, cy = width // 2, height // 2
    draw.ellipse((cx - 40, cy - 40, cx + 40, cy + 40), fill=(250, 250, 250))
    draw.polygon([(cx - 20, cy + 25), (cx + 20, cy + 25), (cx, cy - 25)], fill=(10, 10, 10))
    draw.line((width // 4, 10, width - 10, height - 10), fill=(255, 220, 0), width=5)
    return image


@pytest.fixture(scope="session")
def photo_image() -> Image.Image:
    """A 300×200 photo-like image, decoded through `load_image` like an upload."""
    return load_image(png_bytes(make_photo()))


# --- the app under AppTest -------------------------------------------------------------------------

APP = str(Path(__file__).resolve().parent.parent / "app.py")
STEP_PAGES = [step.page for step in steps.STEPS]
ALL_PAGES = ["pages/welcome.py", *STEP_PAGES, "pages/story.py"]


def photo_bytes(fmt: str = "JPEG", size=(300, 200)) -> bytes:
    """A non-square, photo-like picture with a shape in it."""
    image = Image.new("RGB", size, (40, 90, 160))
    draw = ImageDraw.Draw(image)
    for y in range(size[1]):
        draw.line([(0, y), (size[0], y)], fill=(40 + y // 3, 90, 160 - y // 4))
    draw.regular_polygon((size[0] // 2, size[1] // 2, min(size) // 3), 3, fill=(250, 240, 30))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def problems(at: AppTest) -> list[str]:
    """Exceptions, and error boundaries that caught something, on the current page."""
    found = [f"exception: {e.value}" for e in at.exception]
    found += [f"boundary: {w.value}" for w in at.warning if "could not be drawn" in str(w.value)]
    return found


def fresh_app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not problems(at), problems(at)
    return at


def open_page(at: AppTest, page: str) -> AppTest:
    at.switch_page(page)
    at.run()
    return at


def upload(at: AppTest, name: str, payload: bytes) -> AppTest:
    at.radio(key="image_source").set_value("Upload").run()
    at.file_uploader(key="upload").upload(name, payload, "image/jpeg").run()
    return at


def use_uploaded(at: AppTest, model: ViT, name: str) -> AppTest:
    """Make `model` the session's model through the Model page's upload, as a visitor would."""
    open_page(at, "pages/model.py")
    at.radio(key="model_source").set_value("Upload").run()
    at.file_uploader(key="model_upload").upload(name, weights.to_bytes(model), "application/octet-stream").run()
    at.button(key="load_upload").click().run()
    assert not at.error, [e.value for e in at.error]
    return at


def expected_prediction(payload: bytes) -> str:
    model = weights.load_default()
    logits = model(preprocess(load_image(payload), model.config)[None])[0]
    return model.config.labels[int(logits.argmax())]
# --- the Hugging Face Hub, on this machine -------------------------------------------------------------


@pytest.fixture(scope="session")
def timm_state():
    """A function: the weights of a transformers ViTForImageClassification under timm's key names."""
    from helpers.checkpoints import timm_state

    return timm_state


@pytest.fixture(scope="session")
def hub_checkpoints():
    """(repos, models): small random-weight repos laid out like the presets' and some broken ones, built with
    transformers, and the transformers model behind each loadable one (see tests/helpers/checkpoints.py)."""
    pytest.importorskip("transformers")
    from helpers.checkpoints import hub_repos

    return hub_repos()


@pytest.fixture
def fake_hub(hub_checkpoints, tmp_path, monkeypatch):
    """A Hub on 127.0.0.1 serving `hub_checkpoints`, huggingface_hub pointed at it with an empty cache and no
    token, and no vitviz settings of the machine's (tests/helpers/fake_hub.py)."""
    from helpers.fake_hub import FakeHub
    from huggingface_hub import constants

    from vitviz import limits

    hub = FakeHub(hub_checkpoints[0]).start()
    home = tmp_path / "hf"
    home.mkdir()
    # huggingface_hub reads these variables once, on import, into its constants: set both.
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    # With telemetry on, huggingface_hub's first request of a process fetches /api/agent-harnesses for its
    # user agent: off, every test's request log holds only what vitviz asked for.
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(home / ".agent_harnesses.json"))
    for variable in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "VITVIZ_MAX_DOWNLOAD_MB",
                     "VITVIZ_SEND_HUB_TOKEN", "VITVIZ_HUB_CACHE_MB"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(limits, "SECRETS_FILES", (tmp_path / ".streamlit" / "secrets.toml",))
    yield hub
    hub.stop()


def fill_studio_form(at: AppTest, settings) -> AppTest:
    """Open the Training studio and set its form to `settings` (a studio.Settings); nothing is clicked."""
    open_page(at, "pages/training.py")
    at.selectbox(key="studio_image_size").set_value(settings.image_size)
    at.selectbox(key="studio_patch").set_value(settings.patch_size)
    at.selectbox(key="studio_dim").set_value(settings.dim)
    at.number_input(key="studio_depth").set_value(settings.depth)
    at.selectbox(key="studio_heads").set_value(settings.heads)
    at.number_input(key="studio_steps").set_value(settings.steps)
    at.selectbox(key="studio_batch").set_value(settings.batch_size)
    return at
