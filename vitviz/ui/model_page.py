"""The Model page: choose which ViT every step page runs, and see what it is."""

from __future__ import annotations

import logging
import math

import streamlit as st

from vitviz import limits, weights
from vitviz.ui import navigation, presets, state
from vitviz.ui.text import plain
from vitviz.weights import CheckpointError

log = logging.getLogger("vitviz")

BUILT_IN = "Built-in shapes model"
PRESETS = "Ready-made real models"
SOURCES = ("This session's models", "Local path", "Upload", "Hugging Face Hub")
CLASS_HEAD_READS = {"cls": "y (the CLS output)", "cls_distillation_mean": "y and y_dist: two heads, logits averaged",
                    "cls_patch_mean": "[y; the patch tokens' mean]"}


def _publish(name: str, loader) -> None:
    """Load with `loader()`, make it the session's model, or say in one sentence why not."""
    try:
        with st.spinner(f"Loading {plain(name)}…"):
            model = loader()
    except (CheckpointError, limits.SettingError) as exc:  # each is one sentence for the reader
        st.error(str(exc))
        return
    except Exception:  # a bug or a server fault: the details go to the server's log, not to the visitor
        log.exception("Loading %s failed", name)
        st.error(f"Loading {plain(name)} failed unexpectedly; the details are in the server's log.")
        return
    state.set_session_model(name, model)
    st.success(f"Every page now runs {plain(name)}.")


def _largest_side() -> int:
    """The largest square input within the token limit at the usual 16-pixel patches (the model's own patch
    size is known only once it loads, and `weights.load` checks the exact count then)."""
    return 16 * math.isqrt(max(limits.max_tokens() - 1, 0))


def _size_fields(key: str) -> tuple[int, int] | None:
    """Optional input size; empty means the checkpoint's own."""
    side = _largest_side()
    st.caption(f"Input size: leave at 0 to use the checkpoint's own. Other sizes resample the position embeddings; "
               f"this app takes up to {limits.max_tokens():,} tokens per image ({side} × {side} pixels in 16-pixel patches).")
    left, right = st.columns(2)
    height = left.number_input("Height", min_value=0, max_value=side, value=0, step=16, key=f"{key}_h")
    width = right.number_input("Width", min_value=0, max_value=side, value=0, step=16, key=f"{key}_w")
    return (int(height), int(width)) if height and width else None


def _local_path() -> None:
    """Load by name from the deployer's models directory; off, in one sentence, when there is none."""
    try:
        folder = limits.models_dir()
    except limits.SettingError as exc:
        st.error(str(exc))
        return
    if folder is None:
        st.info(weights.LOCAL_OFF)
        return
    path = st.text_input("Folder or file in this server's models directory", placeholder="vit-base-patch16-224",
                         key="model_path")
    architecture = st.text_input("timm architecture (timm files only)", key="path_arch")
    size = _size_fields("path")
    if st.button("Load", type="primary", disabled=not path, key="load_path"):
        _publish(path.rstrip("/").split("/")[-1],
                 lambda: weights.load_from_models_dir(path, architecture=architecture or None, image_size=size))


def show() -> None:
    navigation.ensure_navigation()
    st.title("Model")
    st.markdown("Every page shows the tensors of the model chosen here. Besides the built-in shapes model you can "
                "load a Vision Transformer from a Hugging Face folder (a ViT, DeiT or DINOv2: config.json with "
                "model.safetensors or pytorch_model.bin), a timm checkpoint (name its architecture, e.g. vit_small_patch16_224), a model "
                "trained in the Training studio, or a vitviz safetensors file.")
    left, right = st.columns([3, 2])
    with left:
        source = st.radio("Source", (PRESETS, BUILT_IN, *SOURCES), horizontal=True, key="model_source")
        if source == PRESETS:
            st.caption("Downloaded once from the Hugging Face Hub, then loaded from this server's disk.")
            presets.preset_picker("model_page")
        elif source == BUILT_IN:
            if st.button("Use the built-in model", type="primary"):
                state.use_default_model()
                st.success("Every page now runs the built-in shapes model.")
        elif source == "This session's models":
            names = list(state.session_models())
            if not names:
                st.info("No models yet: train one in the Training studio, or load one from another source.")
            else:
                name = st.selectbox("Model", names)
                if st.button("Use this model", type="primary"):
                    state.choose_session_model(name)
                    st.success(f"Every page now runs {plain(name)}.")
        elif source == "Local path":
            _local_path()
        elif source == "Upload":
            upload = st.file_uploader("Checkpoint", type=["safetensors", "pth", "pt", "bin"], key="model_upload")
            architecture = st.text_input("timm architecture (timm files only)", key="upload_arch")
            size = _size_fields("upload")
            if st.button("Load", type="primary", disabled=upload is None, key="load_upload"):
                _publish(upload.name, lambda: weights.load(upload.getvalue(), architecture=architecture or None,
                                                           image_size=size))
        else:
            model_id = st.text_input("Model id", placeholder="google/vit-base-patch16-224")
            size = _size_fields("hub")
            if st.button("Download and load", type="primary", disabled=not model_id, key="load_hub"):
                if presets.use_hub_model(model_id, size):
                    st.success(f"Every page now runs {model_id}.")
    with right:
        choice = state.current_model()
        describe(choice.model, choice.name)


def describe(model, name: str) -> None:
    config = model.config
    gh, gw = config.grid
    st.subheader("In use now")
    st.markdown(f"**{plain(name)}**")
    rows = {
        "input size (H × W)": f"{config.image_size[0]} × {config.image_size[1]}",
        "patch size p": config.patch_size,
        "patch grid": f"{gh} × {gw} = {config.num_patches} patches",
        "special tokens": ", ".join(config.special_labels) if config.num_special <= 3 else
        f"CLS and {config.special_tokens.count('register')} registers",
        "width d": config.dim,
        "layers L": config.depth,
        "heads h": f"{config.heads} (d_h = {config.head_dim})",
        "MLP width": config.mlp_dim,
        "LayerScale": "yes" if config.layer_scale else "no",
        "class head reads": CLASS_HEAD_READS[config.classifier] if config.num_labels else "no class head",
        "parameters": f"{weights.parameter_count(model):,}",
        "normalisation": f"mean {tuple(round(m, 3) for m in config.mean)}, std {tuple(round(s, 3) for s in config.std)}",
    }
    st.table({"": list(rows), "value": [str(v) for v in rows.values()]}, border="horizontal")
    labels = config.labels
    st.markdown(f"**{len(labels):,} labels:** " + ", ".join(plain(label) for label in labels[:30])
                + (" …" if len(labels) > 30 else ""))
