"""Limits and switches a deployment sets, each with the reason it exists.

A setting is read when asked for, in this order: the environment variable VITVIZ_<NAME>
(VITVIZ_MAX_DOWNLOAD_MB), then the [vitviz] table of `.streamlit/secrets.toml` in the working
directory, then of `~/.streamlit/secrets.toml` (where Streamlit looks too), then its default.
Reading the TOML here, without Streamlit, keeps the library usable outside the app.

    [vitviz]
    max_download_mb = 400
    send_hub_token = true

A new limit is one more `Setting` line in SETTINGS.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

SECRETS_FILES = (Path(".streamlit/secrets.toml"), Path("~/.streamlit/secrets.toml"))
TABLE = "vitviz"


class SettingError(ValueError):
    """A setting that is not of its kind; the message names the variable or file to fix."""


@dataclass(frozen=True)
class Setting:
    name: str
    default: int | bool
    reason: str


SETTINGS = (
    Setting("max_download_mb", 1000, "A Hub model is refused above this many megabytes before its weights are "
                                     "fetched: the server's disk and memory are finite, and a big download stalls the app."),
    Setting("send_hub_token", False, "Send the deployer's saved Hugging Face token (HF_TOKEN or `hf auth login`) with Hub "
                                     "requests, to reach gated or private models: off, so visitors never use it."),
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
    Setting("training_heartbeat_seconds", 90, "A run stops when its browser tab has not been heard from for this "
                                              "many seconds, so a closed tab frees its core; over a minute, because "
                                              "browsers wake a hidden tab's timers only about once a minute."),
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
            raise SettingError(f"{path} is not a readable TOML file.") from exc
        if not isinstance(ours, dict):
            raise SettingError(f"[{TABLE}] in {path} must be a table of settings.")
        table.update(ours)
    return table


def _convert(setting: Setting, value: object, where: str) -> int | bool:
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
    kind = "true or false" if isinstance(setting.default, bool) else "a whole number of at least 0"
    raise SettingError(f"{where} must be {kind}, not {value!r}.")


def get(name: str) -> int | bool:
    """The value of the setting `name` (a name from SETTINGS), as the deployment sets it."""
    setting = _BY_NAME[name]
    variable = f"VITVIZ_{name.upper()}"
    if variable in os.environ:
        return _convert(setting, os.environ[variable], variable)
    table = _secrets_table()
    if name in table:
        return _convert(setting, table[name], f"{name} in the [{TABLE}] table of secrets.toml")
    return setting.default


def max_download_bytes() -> int:
    """The largest Hub download allowed, in bytes (max_download_mb megabytes of 10⁶ bytes)."""
    return int(get("max_download_mb")) * 1_000_000


def hub_token() -> bool | None:
    """What to pass as `token` to `vitviz.hub`: True (the saved token) if the deployer opted in, else None (none)."""
    return True if get("send_hub_token") else None


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
