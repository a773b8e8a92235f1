"""Limits and switches a deployment sets, each with the reason it exists.

A setting is read when asked for, in this order: the environment variable VITVIZ_<NAME>
(VITVIZ_MAX_DOWNLOAD_MB), then the [vitviz] table of `.streamlit/secrets.toml` in the working
directory, then of `~/.streamlit/secrets.toml` (where Streamlit looks too), then its default.
Reading the TOML here, without Streamlit, keeps the library usable outside the app.

    [vitviz]
    max_download_mb = 400
    send_hub_token = true
    models_dir = "/srv/vitviz-models"

A new limit is one more `Setting` line in SETTINGS.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from vitviz.i18n import Message

SECRETS_FILES = (Path(".streamlit/secrets.toml"), Path("~/.streamlit/secrets.toml"))
TABLE = "vitviz"


class SettingError(ValueError):
    """A setting that is not of its kind; the message (a `vitviz.i18n.Message`) names the variable or file to fix."""


@dataclass(frozen=True)
class Setting:
    name: str
    default: int | bool | str
    reason: str


SETTINGS = (
    Setting("max_download_mb", 1000, "A Hub model is refused above this many megabytes before its weights are "
                                     "fetched: the server's disk and memory are finite, and a big download stalls the app."),
    Setting("send_hub_token", False, "Send the deployer's saved Hugging Face token (HF_TOKEN or `hf auth login`) with Hub "
                                     "requests, to reach gated or private models: off, so visitors never use it."),
    Setting("max_checkpoint_mb", 400, "A checkpoint file (an upload, a local file, a downloaded model) is refused above this many "
                                      "megabytes before it is read, and so are tensors that unpack to more: loading holds the file "
                                      "and the model at once, and 400 fits ViT-B/16 (346 MB of float32 weights)."),
    Setting("max_zip_ratio", 4, "A .pth archive that unpacks to more than this many times its own size is refused before it "
                                "is unpacked: torch.save stores tensors uncompressed, so only a zip bomb packs tighter."),
    Setting("max_tensors", 2000, "A checkpoint with more tensors than this is refused before any is read: ViT-H/14 has about "
                                 "520, and parsing a header of 400,000 empty entries took seconds and hundreds of megabytes."),
    Setting("max_header_kb", 2000, "A safetensors header, a .pth archive's directory, config.json or preprocessor_config.json is "
                                   "refused above this many kilobytes before it is parsed: a ViT's safetensors header takes tens "
                                   "of kilobytes, a config.json naming ImageNet-21k's 21,843 classes 1.8 MB."),
    Setting("max_tokens", 577, "A model whose input would make more tokens than this is refused: a trace keeps every "
                               "layer's scores and attention, L·h·N² numbers of 4 bytes each, so ViT-B/16 at 577 tokens "
                               "(384 × 384 pixels) holds 0.38 GB per image, and the built-in model at 512 × 512 held 2 GB."),
    Setting("models_dir", "", "The folder on the server whose models visitors may load by name (Model page, Local path): "
                              "empty, so no visitor reads the server's disk unless the deployer names one."),
    Setting("max_image_megapixels", 40, "Images with more pixels are refused from their header, before decoding: "
                                        "decoding needs 4 bytes a pixel at once (160 MB for 40 megapixels), "
                                        "whatever the file's size."),
    Setting("image_cache_mb", 128, "Decoded images and their previews kept for every session together, in "
                                   "megabytes: each is reduced to what the pages show, about 3 MB for a large photo."),
    Setting("trace_cache_mb", 600, "Traces (every tensor of one image through one model) kept for every session "
                                   "together, in megabytes: one ViT-B/16 trace is 150 MB, one of the built-in "
                                   "model 2 MB."),
    Setting("max_training_runs", 1, "Training runs at once on the whole server, every visitor's together: a run "
                                    "keeps a core busy for minutes, and every other visitor's pages share the cores "
                                    "left (0 turns training off)."),
    Setting("training_cpu_seconds", 600, "CPU-seconds one training run may use in all, resumes included: the studio "
                                         "refuses settings estimated to need more and stops a run that reaches it, "
                                         "since its largest settings would ask for tens of CPU-hours (0: no limit)."),
    Setting("training_heartbeat_seconds", 25, "A run stops when its browser tab has not been heard from for this "
                                              "many seconds, so a closed tab frees its core within half a minute. A "
                                              "tab hidden for minutes may be woken only once a minute by its browser "
                                              "and pause its run, which Resume continues; raise this to avoid that."),
    Setting("heavy_tasks", 1, "Long computations for one visitor that run at once on the whole server, every visitor's "
                              "together, each on one core: a faithfulness score (about 250 forward passes), a story "
                              "file (46 CPU-seconds at ViT-B/16), a trace's zip. Thirty visitors clicking at once "
                              "would otherwise ask 2 cores for 7,500 ViT-B forwards; a page finding every place taken "
                              "says to try again in a moment (0 turns them off)."),
    Setting("heavy_wait_seconds", 60, "How long a download waits for a place among heavy_tasks (its button turns "
                                      "meanwhile) before it fails: a download cannot show a sentence, so it waits "
                                      "its turn rather than being refused at once."),
    Setting("story_max_mb", 40, "The largest story file (Download this story), in megabytes: figures that would "
                                "pass it are left out with a note. Making one holds about three times its size; "
                                "ViT-B/16's is about 18 MB."),
    Setting("numbers_max_mb", 100, "The largest trace zip (Download the numbers), in megabytes: a trace above it in "
                                   "float32 is written in float16 (trace.json says so), and one above it even then is "
                                   "not offered. ViT-B/16's file is 172 MB in float32, 86 MB in float16."),
    Setting("download_cache_mb", 200, "Finished story files and trace zips kept for every visitor together, in "
                                      "megabytes, so a repeat click for the same image, model and view sends the "
                                      "file made before instead of making it again."),
    Setting("hub_cache_mb", 3000, "The most the Hugging Face download cache may hold, in megabytes: after each "
                                  "download the least recently used models are deleted until it fits, never one a "
                                  "model loaded in this process came from (0: no limit). A class trying many "
                                  "checkpoints would otherwise fill the disk."),
)
_BY_NAME = {setting.name: setting for setting in SETTINGS}
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


def _secrets_table() -> dict:
    """The merged [vitviz] tables, the working directory's first."""
    table: dict = {}
    for path in reversed(SECRETS_FILES):
        path = path.expanduser()
        if not path.is_file():
            continue
        try:
            ours = tomllib.loads(path.read_text(encoding="utf-8")).get(TABLE, {})
        except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as exc:
            raise SettingError(Message("{path} is not a readable TOML file.", path=path)) from exc
        if not isinstance(ours, dict):
            raise SettingError(Message("[{table}] in {path} must be a table of settings.", table=TABLE, path=path))
        table.update(ours)
    return table


def _convert(setting: Setting, value: object, where: str) -> int | bool | str:
    if isinstance(setting.default, str):
        return str(value).strip()
    if isinstance(setting.default, bool):
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
    else:
        try:
            number = int(str(value).strip())
        except ValueError:
            number = -1
        if number >= 0:
            return number
    if isinstance(setting.default, bool):
        raise SettingError(Message("{where} must be true or false, not {value!r}.", where=where, value=value))
    raise SettingError(Message("{where} must be a whole number of at least 0, not {value!r}.", where=where, value=value))


def get(name: str) -> int | bool | str:
    """The value of the setting `name` (a name from SETTINGS), as the deployment sets it."""
    setting = _BY_NAME[name]
    variable = f"VITVIZ_{name.upper()}"
    if variable in os.environ:
        return _convert(setting, os.environ[variable], variable)
    table = _secrets_table()
    if name in table:
        return _convert(setting, table[name], Message("{name} in the [{table}] table of secrets.toml", name=name,
                                                      table=TABLE))
    return setting.default


def max_download_bytes() -> int:
    """The largest Hub download allowed, in bytes (max_download_mb megabytes of 10⁶ bytes)."""
    return int(get("max_download_mb")) * 1_000_000


def hub_token() -> bool | None:
    """What to pass as `token` to `vitviz.hub`: True (the saved token) if the deployer opted in, else None (none)."""
    return True if get("send_hub_token") else None


def max_checkpoint_bytes() -> int:
    """The largest checkpoint file, and the most its tensors may unpack to, in bytes."""
    return int(get("max_checkpoint_mb")) * 1_000_000


def max_zip_ratio() -> int:
    """How many times its own size a .pth archive may unpack to."""
    return int(get("max_zip_ratio"))


def max_tensors() -> int:
    """The most tensors a checkpoint may hold."""
    return int(get("max_tensors"))


def max_header_bytes() -> int:
    """The largest safetensors header, zip directory or JSON config, in bytes."""
    return int(get("max_header_kb")) * 1000


def max_tokens() -> int:
    """The most tokens (patches and special tokens: CLS, a distillation token, registers) a model may take per image."""
    return int(get("max_tokens"))


def models_dir() -> Path | None:
    """The folder visitors may load models from by name, resolved; None when the deployer named none."""
    name = str(get("models_dir"))
    if not name:
        return None
    folder = Path(name).expanduser().resolve()
    if not folder.is_dir():
        raise SettingError(Message("models_dir (VITVIZ_MODELS_DIR) must name a folder on this server."))
    return folder
def max_image_pixels() -> int:
    """The most pixels an image may have (max_image_megapixels times 10⁶)."""
    return int(get("max_image_megapixels")) * 1_000_000


def image_cache_bytes() -> int:
    return int(get("image_cache_mb")) * 1_000_000


def trace_cache_bytes() -> int:
    return int(get("trace_cache_mb")) * 1_000_000


def max_training_runs() -> int:
    """How many training runs may train at once in this server process."""
    return int(get("max_training_runs"))


def training_cpu_seconds() -> float:
    """The CPU-seconds one training run may use; 0 for no limit."""
    return float(get("training_cpu_seconds"))


def training_heartbeat_seconds() -> float:
    """How long a training run goes on without hearing from its browser tab; 0 for ever."""
    return float(get("training_heartbeat_seconds"))


def heavy_tasks() -> int:
    """How many long computations for one visitor may run at once in this server process."""
    return int(get("heavy_tasks"))


def heavy_wait_seconds() -> float:
    """How long a download waits for a place among `heavy_tasks`."""
    return float(get("heavy_wait_seconds"))


def story_max_bytes() -> int:
    return int(get("story_max_mb")) * 1_000_000


def numbers_max_bytes() -> int:
    return int(get("numbers_max_mb")) * 1_000_000


def download_cache_bytes() -> int:
    return int(get("download_cache_mb")) * 1_000_000


def hub_cache_bytes() -> int:
    """The most the Hub download cache may hold, in bytes; 0 for no limit."""
    return int(get("hub_cache_mb")) * 1_000_000
