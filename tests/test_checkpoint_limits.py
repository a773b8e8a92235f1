"""Issue 13: no checkpoint, path or size a visitor sends can take the shared server down or look around it.

Every refusal is one sentence (a CheckpointError); the exploits about memory run in a fresh interpreter
that reports how much its peak RSS grew.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from conftest import fresh_app, open_page
from helpers import hostile

from vitviz import limits, weights
from vitviz.model import ViT, ViTConfig
from vitviz.weights import CheckpointError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def no_settings(tmp_path, monkeypatch):
    """The defaults of vitviz.limits, whatever this machine's environment or secrets.toml say."""
    monkeypatch.setattr(limits, "SECRETS_FILES", (tmp_path / "no-secrets.toml",))
    for setting in limits.SETTINGS:
        monkeypatch.delenv(f"VITVIZ_{setting.name.upper()}", raising=False)


def one_sentence(message: str) -> bool:
    return message.endswith(".") and "\n" not in message and "Traceback" not in message


MEASURE = """
import json, resource, sys, time
sys.path[:0] = [{root!r}, {tests!r}]
import torch
from vitviz import capture, weights

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

{setup}
before, start = peak_mb(), time.perf_counter()
try:
{exploit}
    outcome = "no error"
except weights.CheckpointError as exc:
    outcome = str(exc)
print(json.dumps({{"grown_mb": peak_mb() - before, "seconds": time.perf_counter() - start, "outcome": outcome}}))
"""


def measured(exploit: str, setup: str = "", cwd: Path | None = None) -> dict:
    """Run `exploit` in a fresh interpreter after `setup`: its peak RSS growth in MB, seconds, and outcome
    (the CheckpointError's sentence, or "no error")."""
    script = MEASURE.format(root=str(ROOT), tests=str(ROOT / "tests"), setup=setup,
                            exploit="\n".join("    " + line for line in exploit.strip().splitlines()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VITVIZ_")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=cwd,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def report(capsys, what: str, figures: dict) -> None:
    with capsys.disabled():
        print(f"\n{what}: peak RSS +{figures['grown_mb']:.0f} MB in {figures['seconds']:.2f} s: {figures['outcome']}")


def vitviz_bytes(config: ViTConfig) -> bytes:
    torch.manual_seed(0)
    return weights.to_bytes(ViT(config).eval())


def with_metadata(payload: bytes, change) -> bytes:
    """A vitviz safetensors file whose JSON header went through `change(header)` (tensor data kept)."""
    length = int.from_bytes(payload[:8], "little")
    header = json.loads(payload[8 : 8 + length])
    change(header)
    return hostile.safetensors_bytes(header, payload[8 + length :])


# --- row 1: a pickle's zip archive is checked before torch.load unpacks it; raw bytes are bounded ------------


def test_a_zip_bomb_is_refused_before_it_unpacks(tmp_path, capsys):
    bomb = tmp_path / "bomb.pth"
    bomb.write_bytes(hostile.zip_bomb(1 << 30))  # 4.7 MB that unpacks to 1 GiB
    figures = measured("weights.load(payload)", setup=f"payload = open({str(bomb)!r}, 'rb').read()")
    report(capsys, "zip bomb upload (4.7 MB -> 1 GiB)", figures)
    assert "unpack" in figures["outcome"] and one_sentence(figures["outcome"]), figures
    assert figures["grown_mb"] < 100, figures


def test_a_compressed_archive_and_a_crowded_directory_are_refused():
    small_bomb = hostile.zip_bomb(1 << 24)  # 16 MiB of zeros in about 70 kB: within the limit, but no tensor packs so tight
    with pytest.raises(CheckpointError, match="compressed") as error:
        weights.load(small_bomb)
    assert one_sentence(str(error.value))
    with pytest.raises(CheckpointError, match="directory") as error:
        weights.load(hostile.many_members(60_000))
    assert one_sentence(str(error.value))


def test_a_legacy_pickle_is_refused_with_a_sentence(tmp_path):
    legacy = tmp_path / "legacy.pth"
    torch.save({"weight": torch.zeros(3)}, legacy, _use_new_zipfile_serialization=False)
    for source in (legacy, legacy.read_bytes()):
        with pytest.raises(CheckpointError, match="legacy") as error:
            weights.load(source)
        assert one_sentence(str(error.value))


def test_a_large_file_is_refused_before_it_is_read(tmp_path, capsys):
    # A valid torch checkpoint holding 600 MB of zeros, sparse on disk: torch.load read all of it before refusing.
    big = tmp_path / "big.pth"
    hostile.write_sparse_zip(big, hostile.torch_checkpoint_members(hostile.stored_zeros("archive/data/0", 600_000_000)))
    figures = measured(f"weights.load({str(big)!r})")
    report(capsys, "600 MB .pth on disk", figures)
    assert "MB" in figures["outcome"] and "limit" in figures["outcome"] and one_sentence(figures["outcome"]), figures
    assert figures["grown_mb"] < 50, figures


def test_an_upload_above_the_size_limit_is_refused(monkeypatch):
    payload = vitviz_bytes(ViTConfig(dim=256, mlp_dim=1024))  # about 3.7 MB
    assert weights.load(payload).config.dim == 256
    monkeypatch.setenv("VITVIZ_MAX_CHECKPOINT_MB", "1")
    with pytest.raises(CheckpointError, match="limit of 1.0 MB") as error:
        weights.load(payload)
    assert one_sentence(str(error.value))


# --- row 2: tokens per trace --------------------------------------------------------------------------------


def test_an_input_above_the_token_limit_is_refused_before_any_trace(capsys):
    figures = measured("model = weights.load(weights.DEFAULT_PATH, image_size=(512, 512))\n"
                       "capture.trace(model, torch.zeros(3, 512, 512))")
    report(capsys, "built-in model at 512 x 512", figures)
    assert "tokens" in figures["outcome"] and one_sentence(figures["outcome"]), figures
    assert figures["grown_mb"] < 100, figures


def test_the_token_limit_bounds_resize_and_a_checkpoints_own_size(monkeypatch):
    assert limits.max_tokens() == 577  # 384 x 384 at 16-pixel patches, 24 x 24 + 1
    model = weights.load_default()
    assert weights.resize(model, (192, 192)).config.num_patches + 1 == 577  # 24 x 24 patches of 8 pixels
    with pytest.raises(CheckpointError, match="577"):
        weights.resize(model, (200, 200))
    own_size = vitviz_bytes(ViTConfig(image_size=(256, 256), patch_size=8, dim=16, depth=1, heads=2, mlp_dim=16))
    with pytest.raises(CheckpointError, match="1,025 tokens") as error:
        weights.load(own_size)
    assert one_sentence(str(error.value))
    assert weights.load(own_size, image_size=(64, 64)).config.image_size == (64, 64)  # a smaller input is fine
    monkeypatch.setenv("VITVIZ_MAX_TOKENS", "2000")
    assert weights.load(own_size).config.num_patches == 1024


def test_the_model_pages_size_fields_follow_the_token_limit(monkeypatch):
    at = open_page(fresh_app(), "pages/model.py")
    at.radio(key="model_source").set_value("Upload").run()
    assert at.number_input(key="upload_h").max == at.number_input(key="upload_w").max == 384
    monkeypatch.setenv("VITVIZ_MAX_TOKENS", "197")
    at.run()
    assert at.number_input(key="upload_h").max == 224


# --- row 3: the local path loader -----------------------------------------------------------------------------


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    """A models directory the deployer allowed, holding one vitviz checkpoint, and a secret beside it."""
    models = tmp_path / "models"
    models.mkdir()
    weights.save(weights.load_default(), models / "shapes.safetensors")
    (tmp_path / "secret.safetensors").write_bytes((models / "shapes.safetensors").read_bytes())
    (tmp_path / "secret-folder").mkdir()
    monkeypatch.setenv("VITVIZ_MODELS_DIR", str(models))
    return models


def test_local_paths_are_off_without_a_models_directory(tmp_path):
    weights.save(weights.load_default(), tmp_path / "shapes.safetensors")
    with pytest.raises(CheckpointError, match="off") as error:
        weights.load_from_models_dir(str(tmp_path / "shapes.safetensors"))
    assert one_sentence(str(error.value))
    at = open_page(fresh_app(), "pages/model.py")
    at.radio(key="model_source").set_value("Local path").run()
    assert not at.text_input and len(at.info) == 1 and "off" in at.info[0].value and not at.exception


def test_a_model_inside_the_models_directory_loads(models_dir):
    assert weights.load_from_models_dir("shapes.safetensors").config == weights.load_default().config
    assert weights.load_from_models_dir(str(models_dir / "shapes.safetensors")).config.depth == 4


def test_every_path_outside_the_models_directory_gets_the_same_sentence(models_dir, tmp_path):
    (models_dir / "escape.safetensors").symlink_to(tmp_path / "secret.safetensors")
    (models_dir / "up").symlink_to(tmp_path)
    probes = ["../secret.safetensors", str(tmp_path / "secret.safetensors"), str(tmp_path / "secret-folder"),
              str(tmp_path / "missing"), "missing.safetensors", "escape.safetensors", "up/secret.safetensors",
              "up", "~", "~/.bashrc", "/etc/passwd", "/etc/shadow", "/proc/self/environ", "/", "..", "",
              "shapes.safetensors/../../secret.safetensors", "nul\0byte", "x" * 5000]
    sentences = set()
    for probe in probes:
        with pytest.raises(CheckpointError) as error:
            weights.load_from_models_dir(probe)
        sentences.add(str(error.value))
    assert len(sentences) == 1, sentences
    assert one_sentence(sentences.pop())


def test_a_fifo_is_refused_without_opening_it(models_dir):
    fifo = models_dir / "stuck.safetensors"
    os.mkfifo(fifo)
    for load in (lambda: weights.load(fifo), lambda: weights.load_from_models_dir("stuck.safetensors")):
        outcome: list = []

        def attempt(load=load, outcome=outcome) -> None:
            try:
                load()
            except CheckpointError as exc:
                outcome.append(str(exc))

        worker = threading.Thread(target=attempt, daemon=True)
        worker.start()
        worker.join(10)
        if worker.is_alive():  # it opened the FIFO and waits for a writer: release it before failing
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            pytest.fail("loading a FIFO blocked the thread")
        assert outcome and "not a regular file" in outcome[0] and one_sentence(outcome[0]), outcome


def test_the_model_page_loads_only_from_the_models_directory(models_dir, tmp_path):
    at = open_page(fresh_app(), "pages/model.py")
    at.radio(key="model_source").set_value("Local path").run()
    for probe in (str(tmp_path / "secret.safetensors"), "shapes.safetensors"):
        at.text_input(key="model_path").set_value(probe).run()
        at.button(key="load_path").click().run()
    assert len(at.error) == 0 and at.success and "shapes\\.safetensors" in at.success[0].value  # escaped Markdown
    at.text_input(key="model_path").set_value("../secret.safetensors").run()
    at.button(key="load_path").click().run()
    assert len(at.error) == 1 and not at.exception


# --- row 4: safetensors headers ---------------------------------------------------------------------------------


def test_a_header_of_400k_entries_is_refused_quickly_and_small(tmp_path, capsys):
    path = tmp_path / "entries.safetensors"
    path.write_bytes(hostile.many_entries(400_000))  # 23.5 MB of header
    figures = measured("weights.load(payload)", setup=f"payload = open({str(path)!r}, 'rb').read()")
    report(capsys, "400k-entry safetensors header (23.5 MB)", figures)
    assert "header" in figures["outcome"] and one_sentence(figures["outcome"]), figures
    assert figures["grown_mb"] < 50 and figures["seconds"] < 1, figures


@pytest.mark.parametrize(("entry", "words"), [
    ({"dtype": "F32", "shape": [1, 1, 1, 1, 1], "data_offsets": [0, 4]}, "shape"),
    ({"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}, "shape"),
    ({"dtype": "F32", "shape": "big", "data_offsets": [0, 4]}, "shape"),
], ids=["five-dimensions", "empty", "not-a-shape"])
def test_a_tensor_no_vit_has_is_refused_before_reading(entry, words):
    payload = hostile.safetensors_bytes({"blocks.0.x": entry}, bytes(4))
    with pytest.raises(CheckpointError, match=words) as error:
        weights.load(payload)
    assert one_sentence(str(error.value))


def test_tensor_names_and_counts_are_bounded():
    odd_name = hostile.safetensors_bytes({"a/../../b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, bytes(4))
    with pytest.raises(CheckpointError, match="name"):
        weights.load(odd_name)
    entry = {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}
    crowded = hostile.safetensors_bytes({f"t{i}": {**entry, "data_offsets": [4 * i, 4 * i + 4]} for i in range(3000)},
                                        bytes(4 * 3000))
    with pytest.raises(CheckpointError, match="3,000 tensors") as error:
        weights.load(crowded)
    assert one_sentence(str(error.value))


# --- row 5: configurations ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("field", "value"), [
    ("dim", 0), ("dim", 96.0), ("dim", "96"), ("heads", 0), ("depth", 10**9), ("patch_size", -8),
    ("image_size", [64]), ("image_size", [64, 64.5]), ("std", [0, 0.5, 0.5]), ("std", [-1, 0.5, 0.5]),
    ("mean", [float("nan"), 0.5, 0.5]), ("layer_norm_eps", -1e-6), ("layer_norm_eps", 0), ("layer_norm_eps", "small"),
    ("layer_norm_eps", float("inf")), ("labels", [1, 2]), ("labels", "abc"), ("extra", [1]), ("dim", True),
])
def test_an_invalid_configuration_is_one_sentence(field, value):
    payload = vitviz_bytes(ViTConfig(labels=("a", "b")))

    def change(header):
        config = json.loads(header["__metadata__"][weights.CONFIG_KEY])
        config[field] = value
        header["__metadata__"][weights.CONFIG_KEY] = json.dumps(config)

    with pytest.raises(CheckpointError, match="configuration") as error:
        weights.load(with_metadata(payload, change))
    assert one_sentence(str(error.value)), str(error.value)


def test_config_bounds_reject_absurd_models_before_allocating():
    for values in ({"dim": 100_000, "heads": 1}, {"heads": 1000, "dim": 96_000}, {"mlp_dim": 10**7},
                   {"labels": tuple(map(str, range(200_000)))}, {"channels": 100, "mean": (0.5,) * 100, "std": (0.5,) * 100}):
        with pytest.raises(ValueError):
            ViTConfig(**values)
    assert ViTConfig(image_size=(224, 224), patch_size=16, dim=768, depth=12, heads=12, mlp_dim=3072,
                     labels=tuple(map(str, range(21_843)))).num_patches == 196


def test_a_pth_whose_config_holds_a_tensor_is_one_sentence():
    import io

    model = ViT(ViTConfig()).eval()
    buffer = io.BytesIO()
    torch.save({"config": {**model.config.to_dict(), "dim": torch.tensor(96)}, "state_dict": model.state_dict()}, buffer)
    with pytest.raises(CheckpointError, match="configuration") as error:
        weights.load(buffer.getvalue())
    assert one_sentence(str(error.value))


def test_the_model_page_turns_any_other_failure_into_one_sentence(monkeypatch, caplog):
    def unreadable(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/srv/models/private")

    monkeypatch.setattr(weights, "load", unreadable)
    at = open_page(fresh_app(), "pages/model.py")
    at.radio(key="model_source").set_value("Upload").run()
    at.file_uploader(key="model_upload").upload("model.pth", b"PK\x03\x04", "application/octet-stream").run()
    at.button(key="load_upload").click().run()
    assert not at.exception and len(at.error) == 1 and one_sentence(at.error[0].value)
    assert "/srv/models" not in at.error[0].value
    assert "PermissionError" in caplog.text and "Traceback" in caplog.text


def test_the_hub_loader_turns_any_other_failure_into_one_sentence(monkeypatch, caplog):
    from vitviz import hub

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(hub, "fetch", full_disk)
    at = open_page(fresh_app(), "pages/model.py")
    at.radio(key="model_source").set_value("Hugging Face Hub").run()
    at.text_input[0].set_value("someone/some-vit").run()
    at.button(key="load_hub").click().run()
    assert not at.exception and len(at.error) == 1 and one_sentence(at.error[0].value)
    assert "No space left" in caplog.text and "Traceback" in caplog.text


# --- row 6: safetensors or zip, by structure -------------------------------------------------------------------------


def test_a_safetensors_file_whose_header_length_starts_with_0x80_loads():
    payload = weights.to_bytes(weights.load_default())
    length = int.from_bytes(payload[:8], "little")
    padded = length + (0x80 - length) % 256  # safetensors pads its header with spaces; any amount is valid
    assert padded % 256 == 0x80
    odd = struct.pack("<Q", padded) + payload[8 : 8 + length] + b" " * (padded - length) + payload[8 + length :]
    assert odd[:1] == b"\x80"
    model = weights.load(odd)
    pixels = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(model(pixels), weights.load_default()(pixels))


@pytest.mark.parametrize("payload", [b"", b"\x00" * 16, b"hello world, not a model", struct.pack("<Q", 10**6) + b"{}",
                                     struct.pack("<Q", 2) + b"[]", b"PK\x03\x04garbage"],
                         ids=["empty", "zeros", "text", "length-beyond-file", "json-list", "broken-zip"])
def test_anything_else_is_one_sentence(payload):
    with pytest.raises(CheckpointError) as error:
        weights.load(payload)
    assert one_sentence(str(error.value)), str(error.value)

