"""Real Vision Transformers from the Hugging Face Hub, fetched file by file within a size limit.

Only the files vitviz reads are downloaded: config.json, preprocessor_config.json when the repo
has one (transformers keeps the normalisation there), and the top-level model.safetensors, or
pytorch_model.bin when there is no safetensors file; never TensorFlow, Flax or ONNX files, nor
shards in subfolders. Their sizes are read from the Hub first, and a model above the limit is
refused before its weights are fetched. Files go to huggingface_hub's usual cache, so a model
fetched once loads again with no network (or with HF_HUB_OFFLINE=1).

The cache is bounded (`limits.hub_cache_bytes`): after each fetch the least recently fetched models are
deleted until it fits, except those in use in this process: being fetched or loaded (`in_use`), or behind a
model that is still alive (`loaded_from`). A fetch marks its repo's folder as used now (its mtime).

No token is sent unless the caller passes one: the deployer's saved token stays on the server.
Every failure is a `CheckpointError` whose message is one sentence for the user (a `vitviz.i18n.Message`,
shown in the visitor's language by the app).
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vitviz import limits, weights
from vitviz.i18n import N_, Message, message_of
from vitviz.model import ViT
from vitviz.weights import CheckpointError

CONFIG = "config.json"
PREPROCESSOR = "preprocessor_config.json"
WEIGHTS = ("model.safetensors", "pytorch_model.bin")  # in order of preference
log = logging.getLogger("vitviz")
POLL_SECONDS = 0.1  # how often the caller's thread reports progress while a file downloads

Progress = Callable[[int, int], None]  # (bytes done, bytes in all)
log = logging.getLogger("vitviz")


@dataclass(frozen=True)
class Preset:
    repo_id: str
    title: str  # the model's name (marked with N_: two say a word in English)
    teaches: str  # one line: why look at this model (English, marked with N_: the app shows it translated)
    size_mb: int  # approximate download
    has_classifier: bool
    training: str  # how it was trained, one of `vitviz.facts.TRAINING`: recorded in the model's extra when loaded


PRESETS = (
    Preset("google/vit-base-patch16-224", N_("ViT-B/16"),
           N_("The model of the ViT paper itself: 12 layers of 12 heads over 196 patches, pretrained on ImageNet-21k, "
              "then taught the 1,000 ImageNet-1k classes."), 350, True, "imagenet-21k-1k"),
    Preset("facebook/deit-tiny-patch16-224", N_("DeiT-Tiny"),
           N_("The same design at a sixteenth of the size (3 heads, d = 192), trained on ImageNet-1k alone: "
              "quick enough on a CPU to try everything."), 22, True, "deit"),
    Preset("facebook/dino-vits16", N_("DINO ViT-S/16"),
           N_("Trained without a single label, so it has no classifier, yet its CLS token's attention outlines "
              "the objects in a photo."), 87, False, "dino"),
    Preset("timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k", N_("ViT-Ti/16 (timm)"),
           N_("A timm checkpoint: other key names and its own config format, the same arithmetic once mapped."), 23,
           True, "imagenet-21k-1k"),
    Preset("facebook/deit-small-distilled-patch16-224", N_("DeiT-S distilled"),
           N_("Two special tokens: CLS, and a distillation token that learned from a teacher network through a head "
              "of its own; the two heads' predictions are averaged."), 89, True, "deit-distilled"),
    Preset("facebook/dinov2-small", N_("DINOv2 ViT-S/14"),
           N_("Self-supervised at scale, with LayerScale and 14-pixel patches. Darcet et al. found a few background "
              "patches whose vectors grow far longer than the rest in the large DINOv2 models; the attention "
              "explorer's Token norms tab shows whether this small one has any."), 88, False, "dinov2"),
    Preset("facebook/dinov2-with-registers-small", N_("DINOv2 ViT-S/14 with registers"),
           N_("The same model given 4 register tokens as scratch space, the fix Darcet et al. proposed for those "
              "high-norm patches."), 88, False, "dinov2"),
)


def fetch(repo_id: str, *, max_bytes: int | None = None, progress: Progress | None = None,
          token: str | bool | None = None) -> Path:
    """The local folder holding what vitviz needs of the Hub model `repo_id`.

    `max_bytes` (default: `limits.max_download_bytes()`) bounds the files' total size.
    `progress(done_bytes, total_bytes)` is called on the caller's thread, several times a second
    while downloading, with growing counts that end at the total. `token` is sent only when
    given: a string, or True for huggingface_hub's saved token; None or False sends none.
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except (HFValidationError, TypeError) as exc:
        raise CheckpointError(Message("A Hub model id looks like google/vit-base-patch16-224.")) from exc
    with in_use(repo_id):
        folder = _fetch(repo_id, max_bytes, progress, token)
        _mark_used(folder)
        prune_cache()
    return folder


def _fetch(repo_id: str, max_bytes: int | None, progress: Progress | None, token: str | bool | None) -> Path:
    from huggingface_hub import HfApi

    limit = limits.max_download_bytes() if max_bytes is None else max_bytes
    token = token or False  # False: huggingface_hub must not fall back to the saved token
    try:
        info = HfApi().model_info(repo_id, files_metadata=True, token=token)
    except Exception as exc:  # sorted into one sentence each by _explain
        folder = _from_cache(repo_id, limit) if _unreachable(exc) else None
        if folder is None:
            raise _explain(exc, repo_id, token) from exc
        return folder
    if info.gated and not token:
        raise _gated(repo_id, token)
    sizes = {s.rfilename: s.size if s.size is not None else (s.lfs.size if s.lfs else None)
             for s in info.siblings or ()}
    files = _choose(repo_id, sizes)
    if any(sizes[name] is None for name in files):
        raise CheckpointError(Message("The Hub did not say how large {repo}'s files are, so vitviz does not download "
                                      "them.", repo=repo_id))
    total = sum(sizes[name] for name in files)
    _check_size(repo_id, total, limit)
    weights_size, checkpoint_limit = sizes[files[-1]], limits.max_checkpoint_bytes()
    if weights_size > checkpoint_limit:  # the loader would refuse it: say so before downloading it
        raise CheckpointError(Message("{repo}'s weights are {size:,} MB, more than this app's checkpoint limit of "
                                      "{limit:,} MB.", repo=repo_id, size=_mb(weights_size), limit=_mb(checkpoint_limit)))
    return _download(repo_id, [(name, sizes[name]) for name in files], token, progress)


def provenance(repo_id: str, model: ViT) -> ViT:
    """Record where `model` came from in its configuration's `extra`: the repo, and the training recipe its preset
    names (`vitviz.facts` reads them), unless the checkpoint recorded one itself."""
    model.config.extra["repo"] = repo_id
    preset = next((preset for preset in PRESETS if preset.repo_id == repo_id), None)
    if preset is not None:
        model.config.extra.setdefault("training", preset.training)
    return model


def load(repo_id: str, *, max_bytes: int | None = None, progress: Progress | None = None,
         token: str | bool | None = None, image_size: tuple[int, int] | None = None) -> ViT:
    """`fetch` the Hub model `repo_id` and load it as a vitviz `ViT` (see `weights.load` for `image_size`)."""
    with in_use(repo_id):
        folder = fetch(repo_id, max_bytes=max_bytes, progress=progress, token=token)
        try:
            model = weights.load(folder, image_size=image_size)
        except CheckpointError as exc:
            raise CheckpointError(Message("{repo}: {reason}", repo=repo_id, reason=message_of(exc))) from exc
        return loaded_from(repo_id, provenance(repo_id, model))


# --- the cache's size -----------------------------------------------------------------------------------

_USERS = threading.Lock()  # guards the two records below, and makes one prune at a time
_BUSY: collections.Counter[str] = collections.Counter()  # repos being fetched or loaded now, by how many callers
_MODELS: dict[str, weakref.WeakSet] = {}  # repo -> the models loaded from it that are still alive


@contextmanager
def in_use(repo_id: str) -> Iterator[None]:
    """Keep `repo_id`'s files in the cache for the `with` block (a fetch and the load that follows it)."""
    with _USERS:
        _BUSY[repo_id] += 1
    try:
        yield
    finally:
        with _USERS:
            _BUSY[repo_id] -= 1
            if not _BUSY[repo_id]:
                del _BUSY[repo_id]


def loaded_from(repo_id: str, model: ViT) -> ViT:
    """Record that `model` came from `repo_id`: its files stay in the cache while the model is alive."""
    with _USERS:
        _MODELS.setdefault(repo_id, weakref.WeakSet()).add(model)
    return model


def used_repos() -> set[str]:
    """The repos whose files this process needs now."""
    with _USERS:
        return _used()


def _used() -> set[str]:  # with _USERS held
    return set(_BUSY) | {repo for repo, models in _MODELS.items() if len(models)}


def _mark_used(folder: Path) -> None:
    """Mark the cached repo holding `folder` (…/models--org--name/snapshots/<rev>) as used now."""
    try:
        os.utime(folder.parent.parent)
    except OSError:  # a read-only cache: it is not pruned either
        pass


def prune_cache(max_bytes: int | None = None) -> list[str]:
    """Delete the least recently fetched models from huggingface_hub's cache until it holds at most `max_bytes`
    (default `limits.hub_cache_bytes()`; 0: no limit), never one `used_repos` names. The ids deleted."""
    from huggingface_hub import CacheNotFound, constants, scan_cache_dir

    limit = limits.hub_cache_bytes() if max_bytes is None else max_bytes
    if not limit:
        return []
    with _USERS:
        try:
            cache = scan_cache_dir(constants.HF_HUB_CACHE)  # read now: its default argument was read on import
        except CacheNotFound:
            return []
        except (OSError, ValueError):  # an unreadable cache: the download itself went well, so say it in the log
            log.exception("vitviz: could not read the Hub cache to keep it under %d MB", limit // 10**6)
            return []
        held, keep, deleted = cache.size_on_disk, _used(), []
        for repo in sorted(cache.repos, key=lambda repo: _last_used(repo.repo_path)):
            if held <= limit:
                break
            if repo.repo_type != "model" or repo.repo_id in keep:
                continue
            # huggingface_hub's own deletion: references first, then blobs, and blobs shared with other repos kept
            cache.delete_revisions(*(revision.commit_hash for revision in repo.revisions)).execute()
            held -= repo.size_on_disk
            deleted.append(repo.repo_id)
            log.info("vitviz: deleted %s from the Hub cache, which held more than %d MB", repo.repo_id, limit // 10**6)
    return deleted


def _last_used(folder: Path) -> float:
    try:
        return folder.stat().st_mtime
    except OSError:
        return 0.0


# --- what to fetch --------------------------------------------------------------------------------------


def _choose(repo_id: str, sizes: dict[str, int | None]) -> list[str]:
    """The files to download, config first, weights last."""
    if CONFIG not in sizes:
        raise CheckpointError(Message("{repo} has no config.json, so it is not a transformers or timm model vitviz can "
                                      "read.", repo=repo_id))
    weights_file = next((name for name in WEIGHTS if name in sizes), None)
    if weights_file is None:
        if any(name.endswith(".index.json") for name in sizes):
            raise CheckpointError(Message("{repo} has no model.safetensors or pytorch_model.bin at its top level (its "
                                          "weights are split into shards, which vitviz does not read).", repo=repo_id))
        raise CheckpointError(Message("{repo} has no model.safetensors or pytorch_model.bin at its top level.",
                                      repo=repo_id))
    return [CONFIG] + ([PREPROCESSOR] if PREPROCESSOR in sizes else []) + [weights_file]


def _check_size(repo_id: str, total: int, limit: int) -> None:
    if total > limit:
        raise CheckpointError(Message("{repo} is {size:,} MB, more than this app's limit of {limit:,} MB.", repo=repo_id,
                                      size=_mb(total), limit=_mb(limit)))


def _mb(count: int) -> float:
    """Bytes in MB, as a sentence shows them ("{size:,} MB"): whole from 10 MB up, one decimal below."""
    return round(count / 1e6) if count >= 10e6 else round(count / 1e6, 1)


# --- downloading ------------------------------------------------------------------------------------------


def _download(repo_id: str, files: list[tuple[str, int]], token: str | bool, progress: Progress | None) -> Path:
    total = sum(size for _name, size in files)
    reported = 0

    def report(done: int) -> None:
        nonlocal reported
        reported = min(total, max(reported, done))  # never backwards, even when a retry starts a file again
        progress(reported, total)

    if progress:
        report(0)
    done, path = 0, None
    for name, size in files:
        if progress:
            path = _download_reporting(repo_id, name, token, lambda count, before=done: report(before + count))
        else:
            path = _hf_download(repo_id, name, token)
        done += size
        if progress:
            report(done)
    return Path(path).parent


def _hf_download(repo_id: str, name: str, token: str | bool, tqdm_class: type | None = None,
                 local_files_only: bool = False) -> str:
    """hf_hub_download into the usual cache; its failures become one sentence."""
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(repo_id, name, token=token, tqdm_class=tqdm_class, local_files_only=local_files_only)
    except Exception as exc:  # sorted into one sentence each by _explain
        raise _explain(exc, repo_id, token) from exc


def _download_reporting(repo_id: str, name: str, token: str | bool, on_bytes: Callable[[int], None]) -> str:
    """Download on a worker thread while this thread reports the bytes written so far.

    huggingface_hub reports Xet downloads from a thread of its own; polling from the caller's thread
    means a UI can draw the progress where it draws everything else.
    """
    written = [0]
    outcome: dict = {}

    def work() -> None:
        try:
            outcome["path"] = _hf_download(repo_id, name, token, tqdm_class=_byte_counter(written))
        except BaseException as exc:  # raised again on the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=work, name=f"vitviz-download-{name}", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(POLL_SECONDS)
        on_bytes(written[0])
    if "error" in outcome:
        raise outcome["error"]
    return outcome["path"]


def _byte_counter(written: list[int]) -> type:
    """A silent tqdm class for hf_hub_download that adds the bytes written to `written[0]`."""
    from tqdm import tqdm

    class ByteCounter(tqdm):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **{**kwargs, "disable": True})

        def update(self, n: float | None = 1) -> None:
            written[0] += int(n or 0)

        # Xet downloads also report network bytes (compressed, deduplicated) here: only file bytes count.
        def update_transfer(self, n: int) -> None:
            pass

        def set_transfer_postfix_str(self, *args, **kwargs) -> None:
            pass

    return ByteCounter


def downloaded(repo_id: str) -> bool:
    """True when `repo_id` was fetched before and its files are in the cache (no network is asked)."""
    try:
        return _from_cache(repo_id, limits.max_download_bytes()) is not None
    except (CheckpointError, limits.SettingError):  # too large for this server's limit now, or a bad setting
        return False


def _from_cache(repo_id: str, limit: int) -> Path | None:
    """The folder of an earlier download of `repo_id` (for when the Hub cannot be reached), or None."""
    try:
        config = Path(_hf_download(repo_id, CONFIG, False, local_files_only=True))
    except CheckpointError:  # not cached
        return None
    for name in WEIGHTS:
        try:
            weights_path = Path(_hf_download(repo_id, name, False, local_files_only=True))
        except CheckpointError:  # not cached: try the next weights file
            continue
        files = [config, weights_path] + [p for p in [config.parent / PREPROCESSOR] if p.exists()]
        _check_size(repo_id, sum(p.stat().st_size for p in files), limit)
        return config.parent
    return None


# --- one sentence per failure -------------------------------------------------------------------------


def _unreachable(exc: BaseException) -> bool:
    """True when the Hub could not be asked at all (no network, offline mode, Hub down): try the cache."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    if isinstance(exc, (OfflineModeIsEnabled, LocalEntryNotFoundError, httpx2.TransportError)):
        return True
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return isinstance(exc, HfHubHTTPError) and status is not None and (status >= 500 or status == 429)


def _gated(repo_id: str, token: str | bool) -> CheckpointError:
    if token:
        return CheckpointError(Message("{repo} is a gated model, and the token sent has not been granted access to it.",
                                       repo=repo_id))
    return CheckpointError(Message("{repo} is a gated model that needs a Hugging Face account's approval, and this "
                                   "app sends no token.", repo=repo_id))


def _explain(exc: BaseException, repo_id: str, token: str | bool) -> CheckpointError:
    """The one sentence for what huggingface_hub raised."""
    import httpx2
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        LocalTokenNotFoundError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
    )

    if isinstance(exc, (OfflineModeIsEnabled, LocalEntryNotFoundError, httpx2.TransportError)):
        return CheckpointError(Message("The Hugging Face Hub cannot be reached (no network, or HF_HUB_OFFLINE is set), "
                                       "and {repo} was not downloaded before.", repo=repo_id))
    if isinstance(exc, GatedRepoError):
        return _gated(repo_id, token)
    if isinstance(exc, RepositoryNotFoundError):
        if token:
            return CheckpointError(Message("The Hugging Face Hub has no model {repo} that the token sent can see.",
                                           repo=repo_id))
        return CheckpointError(Message("The Hugging Face Hub has no public model {repo}: check the id (private models "
                                       "need a token, which this app does not send).", repo=repo_id))
    if isinstance(exc, RemoteEntryNotFoundError):
        return CheckpointError(Message("The Hub lists a file of {repo} that it then could not serve; try again later.",
                                       repo=repo_id))
    if isinstance(exc, LocalTokenNotFoundError):
        return CheckpointError(Message("A Hugging Face token was to be sent, but none is saved (set HF_TOKEN on the "
                                       "server)."))
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, HfHubHTTPError) and status is not None:
        return CheckpointError(Message("The Hugging Face Hub answered HTTP {status} when asked for {repo}.",
                                       status=status, repo=repo_id))
    log.warning("vitviz: downloading %s failed: %r", repo_id, exc)  # the exception's own words are for the deployer
    if isinstance(exc, OSError):  # a download cut short (size check), a full disk, an unwritable cache
        return CheckpointError(Message("Downloading {repo} failed on the way; try again.", repo=repo_id))
    return CheckpointError(Message("Downloading {repo} failed unexpectedly; the details are in the server's log.",
                                   repo=repo_id))
