"""The Model page: choose which ViT every step page runs, and see what it is."""

from __future__ import annotations

import logging
import math

import streamlit as st

from vitviz import limits, weights
from vitviz.facts import ModelFacts
from vitviz.i18n import N_
from vitviz.ui import about, navigation, presets, state
from vitviz.ui.i18n import _, glossed, listed, ngettext, number, say, translator
from vitviz.ui.text import plain
from vitviz.weights import CheckpointError

log = logging.getLogger("vitviz")

# The sources, by their English names (the radio's values, whatever the language; shown translated).
BUILT_IN = N_("Built-in shapes model")
PRESETS = N_("Ready-made real models")
SOURCES = (N_("This session's models"), N_("Local path"), N_("Upload"), N_("Hugging Face Hub"))
CLASS_HEAD_READS = {"cls": N_("y (the CLS output)"), "cls_distillation_mean": N_("y and y_dist: two heads, logits averaged"),
                    "cls_patch_mean": N_("[y; the patch tokens' mean]")}


def _publish(name: str, loader) -> None:
    """Load with `loader()`, make it the session's model, or say in one sentence why not."""
    try:
        with st.spinner(_("Loading {name}…").format(name=plain(name))):
            model = loader()
    except (CheckpointError, limits.SettingError) as exc:  # each is one sentence for the reader
        st.error(say(exc))
        return
    except Exception:  # a bug or a server fault: the details go to the server's log, not to the visitor
        log.exception("Loading %s failed", name)
        st.error(_("Loading {name} failed unexpectedly; the details are in the server's log.").format(name=plain(name)))
        return
    state.set_session_model(name, model)
    st.success(_("Every page now runs {name}.").format(name=plain(name)))


def _largest_side() -> int:
    """The largest square input within the token limit at the usual 16-pixel patches (the model's own patch
    size is known only once it loads, and `weights.load` checks the exact count then)."""
    return 16 * math.isqrt(max(limits.max_tokens() - 1, 0))


def _size_fields(key: str) -> tuple[int, int] | None:
    """Optional input size; empty means the checkpoint's own."""
    side = _largest_side()
    st.caption(_("Input size: leave at 0 to use the checkpoint's own. Other sizes resample the position embeddings; "
                 "this app takes up to {tokens:,} tokens per image ({side} × {side} pixels in 16-pixel patches).").format(
        tokens=limits.max_tokens(), side=side))
    left, right = st.columns(2)
    height = left.number_input(_("Height"), min_value=0, max_value=side, value=0, step=16, key=f"{key}_h")
    width = right.number_input(_("Width"), min_value=0, max_value=side, value=0, step=16, key=f"{key}_w")
    return (int(height), int(width)) if height and width else None


def _local_path() -> None:
    """Load by name from the deployer's models directory; off, in one sentence, when there is none."""
    try:
        folder = limits.models_dir()
    except limits.SettingError as exc:
        st.error(say(exc))
        return
    if folder is None:
        st.info(say(weights.LOCAL_OFF))
        return
    path = st.text_input(_("Folder or file in this server's models directory"), placeholder="vit-base-patch16-224",
                         key="model_path")
    architecture = st.text_input(_("timm architecture (timm files only)"), key="path_arch")
    size = _size_fields("path")
    if st.button(_("Load"), type="primary", disabled=not path, key="load_path"):
        _publish(path.rstrip("/").split("/")[-1],
                 lambda: weights.load_from_models_dir(path, architecture=architecture or None, image_size=size))


def show() -> None:
    navigation.ensure_navigation()
    st.title(_("Model"))
    st.markdown(glossed(_("Every page shows the tensors of the model chosen here. Besides the built-in shapes model you can "
                  "load a Vision Transformer from a Hugging Face folder (a ViT, DeiT or DINOv2: config.json with "
                  "model.safetensors or pytorch_model.bin), a timm checkpoint (name its architecture, e.g. "
                  "vit_small_patch16_224), a model trained in the Training studio, or a vitviz safetensors file.")))
    left, right = st.columns([3, 2])
    with left:
        source = st.radio(_("Source"), (PRESETS, BUILT_IN, *SOURCES), format_func=translator(), horizontal=True,
                          key="model_source")
        if source == PRESETS:
            st.caption(_("Downloaded once from the Hugging Face Hub, then loaded from this server's disk."))
            presets.preset_picker("model_page")
        elif source == BUILT_IN:
            if st.button(_("Use the built-in model"), type="primary", key="use_built_in"):
                state.use_default_model()
                st.success(_("Every page now runs the built-in shapes model."))
        elif source == "This session's models":
            names = list(state.session_models())
            if not names:
                st.info(_("No models yet: train one in the Training studio, or load one from another source."))
            else:
                name = st.selectbox(_("Model"), names, key="session_model")
                if st.button(_("Use this model"), type="primary", key="use_session_model"):
                    state.choose_session_model(name)
                    st.success(_("Every page now runs {name}.").format(name=plain(name)))
        elif source == "Local path":
            _local_path()
        elif source == "Upload":
            upload = st.file_uploader(_("Checkpoint"), type=["safetensors", "pth", "pt", "bin"], key="model_upload")
            architecture = st.text_input(_("timm architecture (timm files only)"), key="upload_arch")
            size = _size_fields("upload")
            if st.button(_("Load"), type="primary", disabled=upload is None, key="load_upload"):
                _publish(upload.name, lambda: weights.load(upload.getvalue(), architecture=architecture or None,
                                                           image_size=size))
        else:
            model_id = st.text_input(_("Model id"), placeholder="google/vit-base-patch16-224", key="hub_model_id")
            size = _size_fields("hub")
            if st.button(_("Download and load"), type="primary", disabled=not model_id, key="load_hub"):
                if presets.use_hub_model(model_id, size):
                    st.success(_("Every page now runs {name}.").format(name=model_id))
    with right:
        choice = state.current_model()
        describe(choice.model, choice.title)


def _triple(values) -> str:
    """A channel triple such as the normalisation's mean, written the reader's way: (0.485, 0.456, 0.406)."""
    return "(" + listed(number(round(v, 3)) for v in values) + ")"


def describe(model, name: str) -> None:
    config = model.config
    facts = ModelFacts.of(config)
    gh, gw = config.grid
    st.subheader(_("In use now"))
    st.markdown(f"**{plain(name)}**")
    rows = {
        _("input size (H × W)"): f"{config.image_size[0]} × {config.image_size[1]}",
        _("patch size p"): config.patch_size,
        _("patch grid"): ngettext("{rows} × {columns} = {count} patch", "{rows} × {columns} = {count} patches",
                                  config.num_patches).format(rows=gh, columns=gw, count=config.num_patches),
        _("special tokens"): ", ".join(config.special_labels) if config.num_special <= 3 else
        _("CLS and {count} registers").format(count=config.special_tokens.count("register")),
        _("width d"): config.dim,
        _("layers L"): config.depth,
        _("heads h"): f"{config.heads} (d_h = {config.head_dim})",
        _("MLP width"): config.mlp_dim,
        "LayerScale": _("yes") if config.layer_scale else _("no"),
        _("class head reads"): _(CLASS_HEAD_READS[config.classifier]) if config.num_labels else _("no class head"),
        _("parameters"): number(weights.parameter_count(model), ","),
        _("normalisation"): _("mean {mean}, std {std}").format(mean=_triple(config.mean), std=_triple(config.std)),
        _("a normalised 0 is"): about.zero_colour(facts),
        _("trained on"): _(about.TRAINING_SHORT[facts.training]),
    }
    st.table({"": list(rows), _("value"): [str(v) for v in rows.values()]}, border="horizontal")
    st.caption(about.preprocessing(facts, config.image_size))
    labels = state.class_names(config)
    if not labels:
        st.markdown(_("No class labels: this model has no class head."))
        return
    count = ngettext("{count:,} label:", "{count:,} labels:", len(labels)).format(count=len(labels))
    st.markdown(f"**{count}** " + ", ".join(plain(label) for label in labels[:30]) + (" …" if len(labels) > 30 else ""))
