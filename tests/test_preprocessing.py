"""The input a checkpoint's model sees is the one its own processor makes: vitviz follows preprocessor_config.json
(resize, crop, resample filter, rescale, normalisation) as transformers' PIL image processors do, and its
probabilities on a non-square photo match transformers' processor + model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import make_photo, png_bytes
from helpers.checkpoints import hf_deit_distilled, hf_dinov2, hf_vit

from vitviz import capture, convert, images, weights
from vitviz.images import Preprocessing, load_image, prepare

transformers = pytest.importorskip("transformers")

# Narrow and shallow, at the processors' own 224 pixels
VIT = dict(image_size=224, patch_size=16, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
           intermediate_size=64, num_labels=5)
DINOV2 = dict(image_size=518, patch_size=14, hidden_size=24, num_hidden_layers=1, num_attention_heads=2, mlp_ratio=2)


@pytest.fixture(scope="module")
def photo():
    """A non-square photo with odd sides, so every rounding of a resize and a crop's offsets shows."""
    return load_image(png_bytes(make_photo(301, 203)))


def saved(tmp_path, model, processor) -> None:
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)


def theirs(model, processor, photo) -> tuple[torch.Tensor, torch.Tensor]:
    pixels = processor(photo, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        out = model(pixels)
    result = out.logits[0].softmax(-1) if hasattr(out, "logits") else out.last_hidden_state[0]
    return pixels[0], result


def ours(folder, photo) -> tuple[images.Prepared, torch.Tensor]:
    model = weights.load(folder)
    prepared = prepare(photo, model.config)
    trace = capture.trace(model, prepared.pixels)
    return prepared, trace.probs if trace.logits is not None else trace.last_hidden_state


@pytest.mark.parametrize("family", ["vit", "deit-distilled"])
def test_probabilities_match_transformers_processor_and_model(family, photo, tmp_path):
    if family == "vit":  # ViTImageProcessor: the whole picture squeezed to 224×224, bilinear, 0.5/0.5
        hf, processor = hf_vit(VIT, seed=1), transformers.ViTImageProcessorPil()
    else:  # DeiTImageProcessor: squeezed to 256×256, bicubic, then the centre 224×224, ImageNet's statistics
        hf = hf_deit_distilled(VIT, seed=2)
        processor = transformers.DeiTImageProcessorPil(image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    saved(tmp_path, hf, processor)
    expected_pixels, expected = theirs(hf, processor, photo)
    prepared, probs = ours(tmp_path, photo)
    torch.testing.assert_close(prepared.pixels, expected_pixels, atol=1e-5, rtol=0)
    torch.testing.assert_close(probs, expected, atol=1e-4, rtol=0)
    plan = prepared.preprocessing
    if family == "vit":
        assert (plan.resize, plan.crop, images.RESAMPLE_NAMES[plan.resample]) == ((224, 224), None, "bilinear")
        assert prepared.crop_box == (0, 0, 301, 203)  # the whole picture
    else:
        assert (plan.resize, plan.crop, images.RESAMPLE_NAMES[plan.resample]) == ((256, 256), (224, 224), "bicubic")


def test_a_dinov2_sees_its_shorter_side_resized_and_the_centre_cropped(photo, tmp_path):
    # BitImageProcessor: the shorter side to 256 (the longer rounded down), bicubic, then the centre 224×224
    hf = hf_dinov2(DINOV2, seed=3)
    processor = transformers.BitImageProcessorPil(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224},
                                                  image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    saved(tmp_path, hf, processor)
    expected_pixels, _ = theirs(hf, processor, photo)
    prepared, _ = ours(tmp_path, photo)
    torch.testing.assert_close(prepared.pixels, expected_pixels, atol=1e-5, rtol=0)
    assert prepared.preprocessing.resize == 256 and prepared.display.shape == (224, 224, 3)
    # 301×203 -> 379×256, then 224 from the middle: columns 77 to 301 of the resized picture
    assert images.resized_size(301, 203, 256) == (379, 256)


def test_an_old_feature_extractor_config_reads_as_transformers_reads_it(photo, tmp_path):
    # facebook/deit-*'s file: sizes as single numbers, which DeiT reads as squares
    hf = hf_vit(VIT, seed=4)
    hf.save_pretrained(tmp_path)
    old = {"crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
           "feature_extractor_type": "DeiTFeatureExtractor", "image_mean": [0.485, 0.456, 0.406],
           "image_std": [0.229, 0.224, 0.225], "resample": 3, "size": 256}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(old))
    processor = transformers.DeiTImageProcessorPil(**{k: v for k, v in old.items() if k != "feature_extractor_type"})
    expected_pixels, expected = theirs(hf, processor, photo)
    prepared, probs = ours(tmp_path, photo)
    torch.testing.assert_close(prepared.pixels, expected_pixels, atol=1e-5, rtol=0)
    torch.testing.assert_close(probs, expected, atol=1e-4, rtol=0)


def test_the_settings_survive_vitvizs_own_format_and_a_model_without_them_keeps_vitvizs_crop(photo, tmp_path):
    hf = hf_deit_distilled(VIT, seed=5)
    saved(tmp_path, hf, transformers.DeiTImageProcessorPil())
    model = weights.load(tmp_path)
    weights.save(model, tmp_path / "own.safetensors")
    again = weights.load(tmp_path / "own.safetensors")
    assert images.preprocessing(again.config) == images.preprocessing(model.config) != images.VITVIZ_OWN
    torch.testing.assert_close(prepare(photo, again.config).pixels, prepare(photo, model.config).pixels, atol=0, rtol=0)
    (tmp_path / "preprocessor_config.json").unlink()  # no processor: vitviz's own centre crop and resize
    assert images.preprocessing(weights.load(tmp_path).config) == images.VITVIZ_OWN


def test_a_model_run_at_another_size_sets_its_processor_aside(photo, tmp_path):
    saved(tmp_path, hf_vit(VIT, seed=6), transformers.ViTImageProcessorPil())
    model = weights.load(tmp_path, image_size=(160, 192))
    plan = images.preprocessing(model.config)
    assert plan.kind == "vitviz" and plan.declined
    assert prepare(photo, model.config).display.shape == (160, 192, 3)


@pytest.mark.parametrize("settings", [
    {"resize": [100_000, 100_000], "crop": None, "resample": 2},  # far larger than the model's input
    {"resize": [224, 224], "crop": None, "resample": 99},  # no such filter
    {"resize": "224", "crop": None, "resample": 2},
    {"resize": [224, 224], "crop": None, "resample": 2, "rescale": float("nan")},
    "bicubic",
])
def test_hostile_settings_in_an_uploaded_file_fall_back_to_vitvizs_own(settings):
    from vitviz.model import ViTConfig

    config = ViTConfig(image_size=(224, 224), patch_size=16, dim=32, depth=1, heads=2, mlp_dim=64,
                       extra={"preprocessing": settings})
    assert images.preprocessing(config) == images.VITVIZ_OWN


def test_timm_follows_its_pretrained_cfg():
    # vit_*_augreg_in21k_ft_in1k: crop_pct 0.9, bicubic: the shorter side to ⌊224 / 0.9⌋ = 248, the centre 224
    processor = convert.timm_processor({"interpolation": "bicubic", "crop_pct": 0.9, "crop_mode": "center"}, (224, 224))
    assert processor == {"resize": 248, "crop": (224, 224), "resample": 3, "rescale": 1 / 255, "offsets": "round",
                         "origin": "timm"}
    assert convert.timm_processor({"crop_pct": 0.9}, (224, 224)) is None  # no interpolation named: vitviz's own
    assert convert.timm_training("augreg_in21k_ft_in1k") == "imagenet-21k-1k"
    assert convert.timm_training("augreg_in21k") == "imagenet-21k" and convert.timm_training("dino") is None
    # torchvision rounds an odd margin half to even, transformers floors it
    plan = Preprocessing("processor", resize=(9, 9), crop=(4, 4), resample=0, offsets="round")
    picture = load_image(png_bytes(make_photo(9, 9)))
    display, box = images._processed(picture, plan)
    assert box == (2, 2, 6, 6) and np.array_equal(display, np.asarray(picture)[2:6, 2:6])
    display, box = images._processed(picture, Preprocessing("processor", resize=(9, 9), crop=(4, 4), resample=0))
    assert box == (2, 2, 6, 6)  # (9 - 4) / 2 = 2.5: both give 2 here; 3.5 would split them
    display, box = images._processed(load_image(png_bytes(make_photo(11, 11))),
                                     Preprocessing("processor", resize=(11, 11), crop=(4, 4), resample=0, offsets="round"))
    assert box == (4, 4, 8, 8)  # round(3.5) = 4, where transformers' floor gives 3
