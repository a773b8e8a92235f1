"""Attribution maps against the papers' definitions, written here independently of vitviz's model and
analysis code, and the deletion and insertion curves on models built to have a known answer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vitviz import analysis, capture, data, faithfulness
from vitviz.faithfulness import Faithfulness
from vitviz.images import normalise
from vitviz.model import ViT, ViTConfig


def random_model() -> ViT:
    """A small model in float64 with weights large enough that attention is far from uniform."""
    torch.manual_seed(3)
    config = ViTConfig(image_size=(16, 24), patch_size=4, dim=24, depth=3, heads=3, mlp_dim=40, labels=("a", "b", "c"))
    model = ViT(config).double().eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.4)
    return model


def independent_forward(model: ViT, pixels: torch.Tensor, target: int) -> dict[str, torch.Tensor]:
    """The ViT's forward from its definition, with torch.nn.functional and the model's parameters; backpropagates
    class `target`'s logit and returns the attentions, the last block's LN₁ output and the input, with gradients."""
    config = model.config
    p, d, heads = config.patch_size, config.dim, config.heads
    x = pixels[None].clone().requires_grad_(True)
    gh, gw = config.grid
    # Row-major patches, each flattened pixel by pixel with the channels last.
    flat = x.reshape(1, config.channels, gh, p, gw, p).permute(0, 2, 4, 3, 5, 1).reshape(1, gh * gw, -1)
    tokens = torch.cat([model.cls_token[None, None], F.linear(flat, model.patch_embed.weight, model.patch_embed.bias)],
                       dim=1) + model.pos_embed
    n_tokens = tokens.shape[1]
    attentions, norm1 = [], None
    for block in model.blocks:
        norm1 = F.layer_norm(tokens, (d,), block.norm1.weight, block.norm1.bias, config.layer_norm_eps)
        norm1.retain_grad()
        qkv = F.linear(norm1, block.attn.qkv.weight, block.attn.qkv.bias).reshape(1, n_tokens, 3, heads, d // heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attention = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // heads), dim=-1)
        attention.retain_grad()
        attentions.append(attention)
        mixed = (attention @ v).transpose(1, 2).reshape(1, n_tokens, d)
        tokens = tokens + F.linear(mixed, block.attn.proj.weight, block.attn.proj.bias)
        hidden = F.layer_norm(tokens, (d,), block.norm2.weight, block.norm2.bias, config.layer_norm_eps)
        tokens = tokens + F.linear(F.gelu(F.linear(hidden, block.mlp.fc1.weight, block.mlp.fc1.bias)),
                                   block.mlp.fc2.weight, block.mlp.fc2.bias)
    y = F.layer_norm(tokens, (d,), model.norm.weight, model.norm.bias, config.layer_norm_eps)[:, 0]
    F.linear(y, model.head.weight, model.head.bias)[0, target].backward()
    return {"attentions": [a[0] for a in attentions], "attention_grads": [a.grad[0] for a in attentions],
            "norm1": norm1[0], "norm1_grad": norm1.grad[0], "pixels": x[0], "pixel_grad": x.grad[0]}


def test_every_map_equals_the_papers_definition_on_a_random_model():
    model = random_model()
    torch.manual_seed(4)
    pixels = torch.randn(3, 16, 24, dtype=torch.float64)
    target = 2
    ours = dict(zip(faithfulness.METHODS, faithfulness.attribution_maps(capture.Recorder(model), pixels, target),
                    strict=True))
    found = independent_forward(model, pixels, target)
    attentions, grads = found["attentions"], found["attention_grads"]
    tokens, gh, gw, p = attentions[0].shape[-1], 4, 6, 4
    eye = torch.eye(tokens, dtype=torch.float64)

    # Raw attention: the last layer's CLS row over the patches, heads averaged.
    expected = {"raw attention": attentions[-1].mean(0)[0, 1:]}
    # Abnar & Zuidema: Â_l = ½ A_l + ½ I with A_l the heads' mean, rolled out as Â_L ··· Â_1.
    rollout = eye
    for attention in attentions:
        rollout = (0.5 * attention.mean(0) + 0.5 * eye) @ rollout
    expected["attention rollout"] = rollout[0, 1:]
    # Gradient rollout: the heads' mean of A ⊙ ∇A, negatives dropped, then rolled out with the residual, rows
    # normalised.
    rollout = eye
    for attention, grad in zip(attentions, grads, strict=True):
        weighted = (attention * grad).mean(0).clamp(min=0) + eye
        rollout = (weighted / weighted.sum(-1, keepdim=True)) @ rollout
    expected["gradient rollout"] = rollout[0, 1:]
    # Chefer, Gur & Wolf 2021, eq. 5–6: R = I; per layer R ← R + E_h[(∇A ⊙ A)⁺] R.
    relevance = eye
    for attention, grad in zip(attentions, grads, strict=True):
        relevance = relevance + (grad * attention).clamp(min=0).mean(0) @ relevance
    expected["Chefer relevance"] = relevance[0, 1:]
    # pytorch-grad-cam on a ViT: LN₁ of the last block, CLS dropped, reshaped to (C, gh, gw); weights are the
    # gradients' spatial means; the map is ReLU of the weighted sum of channels.
    activations = found["norm1"][1:].reshape(gh, gw, -1).permute(2, 0, 1)
    channel_weights = found["norm1_grad"][1:].reshape(gh, gw, -1).permute(2, 0, 1).mean(dim=(1, 2))
    expected["Grad-CAM"] = torch.relu((channel_weights[:, None, None] * activations).sum(0))
    # Input × gradient, the L2 norm over each patch's pixels and channels.
    product = found["pixels"] * found["pixel_grad"]
    expected["input × gradient"] = product.reshape(3, gh, p, gw, p).pow(2).sum(dim=(0, 2, 4)).sqrt()

    for name, values in expected.items():
        values = values.detach().numpy().reshape(gh, gw)
        assert np.ptp(values) > 1e-3, name  # a map that says something, so equality means something
        np.testing.assert_allclose(ours[name], values, rtol=1e-6, atol=1e-9, err_msg=name)


def test_patch_tokens_are_the_last_ones():
    rng = np.random.default_rng(0)
    attentions = analysis.softmax(rng.normal(size=(2, 2, 6, 6)))
    grads = rng.normal(size=attentions.shape)
    # Five tokens after CLS of which the last four are patches (a distillation token or a register before them).
    assert analysis.raw_cls_attention(attentions, 4).tolist() == attentions[-1].mean(0)[0, 2:].tolist()
    np.testing.assert_array_equal(analysis.chefer_relevance(attentions, grads, 4),
                                  analysis.chefer_relevance(attentions, grads)[1:])
    with pytest.raises(ValueError):
        analysis.cls_row(np.eye(3), 3)


def test_blur_steps_masks_and_composition():
    constant = np.full((2, 12, 10), 0.7)
    np.testing.assert_allclose(analysis.gaussian_blur(constant, 3.0), constant)
    impulse = np.zeros((1, 41, 41))
    impulse[0, 20, 20] = 1.0
    blurred = analysis.gaussian_blur(impulse, 2.0)[0]
    offsets = np.arange(-20, 21)
    gaussian = np.where(np.abs(offsets) <= 8, np.exp(-0.5 * (offsets / 2.0) ** 2), 0.0)  # cut at 4σ, as scipy
    gaussian /= gaussian.sum()
    np.testing.assert_allclose(blurred, np.outer(gaussian, gaussian), atol=1e-12)
    masks = analysis.step_masks(np.array([2, 0, 3, 1]), np.array([0.0, 0.5, 1.0]))
    assert masks.tolist() == [[False] * 4, [True, False, True, False], [True] * 4]
    base, source = np.zeros((1, 4, 4)), np.ones((1, 4, 4))
    composed = analysis.compose(base, source, masks[1:2], patch=2)[0, 0]
    assert composed.tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0]]


def one_patch_model(special: int) -> ViT:
    """A ViT whose class depends on one patch only: CLS attends to that patch alone (by position), copies its
    brightness, and the head says "bright" when it is bright. d = 6: two content channels (+b, -b), two channels
    marking the special patch (+M, -M for it, -M, +M for the others) and two marking CLS."""
    config = ViTConfig(image_size=(16, 16), patch_size=4, dim=6, depth=1, heads=1, mlp_dim=4, labels=("dark", "bright"),
                       mean=(0.0,) * 3, std=(1.0,) * 3)
    model = ViT(config).double().eval()
    mark = 4.0
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        for norm in (model.blocks[0].norm1, model.blocks[0].norm2, model.norm):
            norm.weight.fill_(1.0)
        patch_dim = config.patch_dim
        model.patch_embed.weight[0] = 1.0 / patch_dim  # b, the patch's mean brightness
        model.patch_embed.weight[1] = -1.0 / patch_dim
        model.cls_token[4:] = torch.tensor([mark, -mark])
        model.pos_embed[1:, 2:4] = torch.tensor([-mark, mark])
        model.pos_embed[1 + special, 2:4] = torch.tensor([mark, -mark])
        attention = model.blocks[0].attn
        attention.qkv.weight[0, 4] = 40.0  # q: CLS's marker
        attention.qkv.weight[6, 2] = 1.0  # k: the special patch's marker
        attention.qkv.weight[12, 0] = 1.0  # v: the content
        attention.proj.weight[0, 0], attention.proj.weight[1, 0] = 1.0, -1.0
        model.head.weight[1, 0] = 60.0
        model.head.bias[1] = -6.0
    return model


def test_a_class_that_depends_on_one_patch_drops_at_the_first_deletion_step():
    special = 5
    model = one_patch_model(special)
    pixels = torch.full((3, 16, 16), 0.1, dtype=torch.float64)
    pixels[:, 4:8, 4:8] = 1.0  # patch 5 (row 1, col 1) is bright
    with torch.no_grad():
        assert model(pixels[None]).softmax(-1)[0, 1] > 0.9
        moved = pixels.clone()
        moved[:, 4:8, 4:8], moved[:, 8:12, 8:12] = 0.1, 1.0  # the bright patch elsewhere: "dark"
        assert model(moved[None]).softmax(-1)[0, 1] < 0.1
    others = [i for i in range(16) if i != special]
    first, last = np.array([special, *others]), np.array([*others, special])
    deletion, _, _ = faithfulness.curves(model, pixels, np.stack([first, last]), target=1)
    assert deletion[0, 0] > 0.9 and deletion[0, 1] < 0.1  # one patch of 16 deleted: the first step
    assert (deletion[0, 1:] < 0.1).all()
    assert (deletion[1, :-1] > 0.9).all() and deletion[1, -1] < 0.1
    maps = faithfulness.attribution_maps(capture.Recorder(model), pixels, target=1)
    assert maps[faithfulness.METHODS.index("raw attention")].argmax() == special


FLAT_ORDERS = 8


def test_a_constant_map_scores_like_random_orders(default_model):
    images, _ = data.generate(1, seed=777)
    pixels = normalise(images, default_model.config)[0]
    target = int(default_model(pixels[None]).argmax())
    n = default_model.config.num_patches
    rng = np.random.default_rng(1)
    flat = [analysis.relevance_order(np.ones(n), rng) for _ in range(FLAT_ORDERS)]
    assert len({tuple(order) for order in flat}) == FLAT_ORDERS  # ties broken at random, not in raster order
    rng = np.random.default_rng(2)
    random = [rng.permutation(n) for _ in range(faithfulness.RANDOM_ORDERS)]
    deletion, insertion, _ = faithfulness.curves(default_model, pixels, np.stack(flat + random), target)
    fractions = analysis.curve_fractions(faithfulness.STEPS)
    for curves in (deletion, insertion):
        areas = analysis.curve_auc(fractions, curves)
        flat_areas, random_areas = areas[:FLAT_ORDERS], areas[FLAT_ORDERS:]
        # Same distribution: the two means differ by less than three standard errors of their difference.
        spread = np.std(areas, ddof=1) * math.sqrt(1 / FLAT_ORDERS + 1 / len(random_areas))
        assert abs(flat_areas.mean() - random_areas.mean()) < 3 * spread, (flat_areas, random_areas)
        assert np.abs(curves[:FLAT_ORDERS].mean(0) - curves[FLAT_ORDERS:].mean(0)).max() < 0.5


def synthetic(deletion: list[float], insertion: list[float], random: tuple[float, float]) -> Faithfulness:
    """Scores whose curves are flat at the given heights, so their areas are those heights."""
    fractions = analysis.curve_fractions(4)
    flat = lambda heights: np.repeat(np.array(heights, dtype=float)[:, None], 4, axis=1)  # noqa: E731
    return Faithfulness(target=0, methods=("raw attention", "Grad-CAM", "input × gradient"), maps=np.zeros((3, 2, 2)),
                        fractions=fractions, deletion=flat(deletion), insertion=flat(insertion),
                        random_deletion=flat([random[0]] * 3), random_insertion=flat([random[1]] * 3), forwards=0,
                        seconds=0.0)


def test_the_verdict_follows_the_numbers():
    scores = synthetic([0.5, 0.1, 0.3], [0.5, 0.9, 0.6], random=(0.5, 0.5))
    assert scores.best == 1
    assert scores.verdict() == ("Grad-CAM is the most faithful here (deletion 0.10, insertion 0.90, against 0.50 and "
                                "0.50 for a random order); raw attention is no better than random.")
    assert scores.standing(2) == "better than random" and scores.standing(0) == "no better than random"
    saturated = synthetic([0.5, 0.2, 0.5], [1.0, 1.0, 1.0], random=(0.5, 0.98))
    assert "but only its deletion curve is clearly better than random" in saturated.verdict()
    assert synthetic([0.5] * 3, [0.5] * 3, random=(0.5, 0.5)).verdict().startswith("No map beats a random order")


def test_the_shipped_model_scores_every_map_for_its_prediction(default_model):
    images, _ = data.generate(1, seed=778)
    pixels = normalise(images, default_model.config)[0]
    target = int(default_model(pixels[None]).argmax())
    progress = []
    scores = faithfulness.score(capture.Recorder(default_model), pixels, target, lambda d, t: progress.append((d, t)))
    assert scores.maps.shape == (6, 8, 8) and scores.deletion.shape == scores.insertion.shape == (6, 16)
    assert progress[-1][0] == progress[-1][1] == scores.forwards <= faithfulness.most_forwards(default_model.config)
    assert np.allclose(scores.deletion[:, 0], scores.insertion[:, -1])  # both are the image itself


# --- the app ---------------------------------------------------------------------------------------


def test_step_13_scores_on_request_and_the_explorer_reuses_it(forward_passes, monkeypatch):
    from conftest import fresh_app, open_page, problems

    from vitviz.ui import attribution

    calls = []
    score = faithfulness.score
    monkeypatch.setattr(faithfulness, "score", lambda *args, **kwargs: (calls.append(args[2]), score(*args, **kwargs))[1])
    at = open_page(fresh_app(), "pages/step_13.py")
    assert not problems(at), problems(at)
    assert at.button(key="which_patches_run").label.startswith("Find out (up to about ")
    assert not calls and set(forward_passes) == {1}  # the trace and one timed forward: step 13 stays light
    at.button(key="which_patches_run").click().run()
    assert not problems(at), problems(at)
    verdict = next(m.value for m in at.markdown if "random order" in m.value)
    assert len(calls) == 1 and faithfulness.BATCH in forward_passes

    monkeypatch.setattr(attribution, "QUICK_SECONDS", float("inf"))  # score at once, however busy the machine
    at.session_state["keep_explorer_tab"] = "Faithfulness"  # only the open tab is drawn
    open_page(at, "pages/explorer.py")
    assert not problems(at), problems(at)
    assert len(calls) == 1  # the predicted class's score, from the cache
    assert any(m.value.endswith(verdict) for m in at.markdown)
    other = next(label for label in data.CLASSES if label != at.selectbox(key="faithfulness_class").value)
    at.selectbox(key="faithfulness_class").set_value(other).run()
    assert not problems(at), problems(at)
    assert calls[-1] == data.CLASSES.index(other)
    assert any(m.value.startswith(f"**For “{other}”:**") for m in at.markdown)
    assert sum("Deletion: most relevant" in str(chart.proto.spec) for chart in at.get("plotly_chart")) == 1
