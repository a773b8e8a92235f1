"""A small pre-norm Vision Transformer with its attention written out.

The layout follows timm and Hugging Face (pre-norm blocks, one `qkv` Linear laid out
[q | k | v] with each part head-major, CLS token first, learned position embeddings), so
real checkpoints can be mapped onto it. What later ViTs add is data in `ViTConfig`, not a second
forward: more special tokens after CLS (DeiT's distillation token, DINOv2's registers), LayerScale
(CaiT's, which DINOv2 uses), and which tokens the class head reads. Every tensor of the forward pass enters or leaves a
module (an `nn.Identity` tap where no real module does), so the capture module can record it
with forward hooks, which cost almost nothing when nobody is listening.
"""

from __future__ import annotations

import math
import numbers
import reprlib
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from vitviz.i18n import Message

# Far above any published ViT (ViT-22B: d = 6144, 48 layers of 48 heads, MLP 24576; ImageNet-21k: 21,843
# classes): only a garbled or hostile configuration reaches them.
MAX_SIDE, MAX_CHANNELS, MAX_DIM, MAX_DEPTH, MAX_HEADS, MAX_MLP, MAX_LABELS = 4096, 16, 8192, 64, 64, 32768, 100_000
MAX_SPECIAL = 17  # CLS and up to 16 registers (DINOv2 uses 4; Darcet et al. tried up to 16)

# The tokens a ViT may put in front of its patches. CLS comes first in every model.
SPECIAL_KINDS = ("cls", "distillation", "register")
# What the class head reads from the final tokens Y (after the final LayerNorm):
CLASSIFIERS = (
    "cls",  # y_CLS W + b (ViT)
    "cls_distillation_mean",  # ½ (y_CLS W + b + y_dist W_d + b_d): DeiT's two heads, averaged at test time
    "cls_patch_mean",  # [y_CLS; mean of the patch tokens] W + b (DINOv2's linear classifier)
)


def is_whole(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _whole(name: str, value: object, top: int) -> int:
    if not is_whole(value) or not 1 <= value <= top:
        raise ValueError(Message("{name} must be a whole number from 1 to {top:,}, not {value}", name=name, top=top,
                                 value=reprlib.repr(value)))
    return int(value)


def _real(name: str, value: object, positive: bool = False, each: bool = False) -> float:
    """`value` as a finite float (above zero if `positive`: a std or eps of 0 divides by zero); `each` for one value
    of a list."""
    try:
        number = float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else math.nan
    except OverflowError:
        number = math.nan
    if not math.isfinite(number) or (positive and number <= 0):
        value = reprlib.repr(value)
        if each:
            raise ValueError(Message("each value of {name} must be a positive number, not {value}", name=name, value=value)
                             if positive else
                             Message("each value of {name} must be a finite number, not {value}", name=name, value=value))
        raise ValueError(Message("{name} must be a positive number, not {value}", name=name, value=value) if positive
                         else Message("{name} must be a finite number, not {value}", name=name, value=value))
    return number


def _reals(name: str, values: object, positive: bool = False) -> tuple[float, ...]:
    if not isinstance(values, (tuple, list)):
        raise ValueError(Message("{name} must be a list of numbers, not {value}", name=name, value=reprlib.repr(values)))
    return tuple(_real(name, v, positive, each=True) for v in values)


@dataclass(frozen=True)
class ViTConfig:
    image_size: tuple[int, int] = (64, 64)  # (H, W)
    patch_size: int = 8
    channels: int = 3
    dim: int = 96
    depth: int = 4
    heads: int = 4
    mlp_dim: int = 192
    labels: tuple[str, ...] = ()
    layer_norm_eps: float = 1e-6
    activation: str = "gelu"  # "gelu" (exact) or "gelu_tanh" (the tanh approximation some checkpoints use)
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    # The tokens before the patches, in order: "cls", then a "distillation" token (DeiT) or "register"s (DINOv2).
    # Registers carry no position: their rows of E_pos are zero, as DINOv2 adds none to them.
    special_tokens: tuple[str, ...] = ("cls",)
    layer_scale: bool = False  # LayerScale (CaiT; DINOv2 uses it): each residual branch scaled channel by channel by λ
    classifier: str = "cls"  # which final tokens the class head reads: one of CLASSIFIERS
    position_antialias: bool = False  # resample E_pos with antialiasing, as transformers does for DINOv2 with registers
    extra: dict = field(default_factory=dict, compare=False)  # free-form provenance

    def __post_init__(self) -> None:
        # A configuration may come from an uploaded file: check every field's kind and range before any
        # arithmetic, so a bad one is a ValueError naming the field, never a crash or NaN further on.
        size = (self.image_size, self.image_size) if is_whole(self.image_size) else self.image_size
        if not isinstance(size, (tuple, list)) or len(size) != 2:
            raise ValueError(Message("image_size must be a number or a pair (H, W), not {value}",
                                     value=reprlib.repr(self.image_size)))
        object.__setattr__(self, "image_size", tuple(_whole("image_size", s, MAX_SIDE) for s in size))
        for name, top in (("patch_size", MAX_SIDE), ("channels", MAX_CHANNELS), ("dim", MAX_DIM), ("depth", MAX_DEPTH),
                          ("heads", MAX_HEADS), ("mlp_dim", MAX_MLP)):
            object.__setattr__(self, name, _whole(name, getattr(self, name), top))
        if not isinstance(self.labels, (tuple, list)) or not all(isinstance(label, str) for label in self.labels):
            raise ValueError(Message("labels must be a list of class names"))
        if len(self.labels) > MAX_LABELS:
            raise ValueError(Message("{count:,} labels are more than {limit:,}", count=len(self.labels), limit=MAX_LABELS))
        object.__setattr__(self, "labels", tuple(self.labels))
        object.__setattr__(self, "mean", _reals("mean", self.mean))
        object.__setattr__(self, "std", _reals("std", self.std, positive=True))
        object.__setattr__(self, "layer_norm_eps", _real("layer_norm_eps", self.layer_norm_eps, positive=True))
        if not isinstance(self.extra, dict):
            raise ValueError(Message("extra must be a dictionary"))
        if self.dim % self.heads:
            raise ValueError(Message("dim {dim} is not divisible by heads {heads}", dim=self.dim, heads=self.heads))
        if any(s % self.patch_size for s in self.image_size):
            raise ValueError(Message("image_size {size} is not a multiple of patch_size {patch}", size=self.image_size,
                                     patch=self.patch_size))
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(Message("mean and std need one value per channel"))
        if self.activation not in ("gelu", "gelu_tanh"):
            raise ValueError(Message("activation must be gelu or gelu_tanh, not {value}",
                                     value=reprlib.repr(self.activation)))
        self._check_tokens_and_head()

    def _check_tokens_and_head(self) -> None:
        specials = self.special_tokens
        if not isinstance(specials, (tuple, list)) or not 1 <= len(specials) <= MAX_SPECIAL:
            raise ValueError(Message("special_tokens must list 1 to {most} tokens, not {value}", most=MAX_SPECIAL,
                                     value=reprlib.repr(specials)))
        object.__setattr__(self, "special_tokens", tuple(specials))
        if specials[0] != "cls" or any(kind not in SPECIAL_KINDS[1:] for kind in specials[1:]):
            raise ValueError(Message("special_tokens must be 'cls' followed by 'distillation' or 'register' tokens, not "
                                     "{value}", value=reprlib.repr(specials)))
        if specials.count("distillation") > 1:
            raise ValueError(Message("a model has at most one distillation token"))
        for name in ("layer_scale", "position_antialias"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(Message("{name} must be true or false, not {value}", name=name,
                                         value=reprlib.repr(getattr(self, name))))
        if self.classifier not in CLASSIFIERS:
            raise ValueError(Message("classifier must be one of {names}, not {value}", names=", ".join(CLASSIFIERS),
                                     value=reprlib.repr(self.classifier)))
        if self.classifier == "cls_distillation_mean" and "distillation" not in specials:
            raise ValueError(Message("a classifier that reads the distillation token needs one"))

    @property
    def grid(self) -> tuple[int, int]:
        """Patch grid (gh, gw)."""
        return (self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size)

    @property
    def num_patches(self) -> int:
        gh, gw = self.grid
        return gh * gw

    @property
    def num_special(self) -> int:
        """s: the tokens in front of the patches (1 for the original ViT's CLS)."""
        return len(self.special_tokens)

    @property
    def num_tokens(self) -> int:
        """N = s + n."""
        return self.num_special + self.num_patches

    @property
    def special_labels(self) -> tuple[str, ...]:
        """How the special tokens are called on screen: ("CLS", "distillation") or ("CLS", "register 1", …)."""
        single = self.special_tokens.count("register") == 1
        numbers = iter(range(1, MAX_SPECIAL + 1))
        return tuple({"cls": "CLS", "distillation": "distillation"}.get(kind)
                     or ("register" if single else f"register {next(numbers)}") for kind in self.special_tokens)

    @property
    def head_width(self) -> int:
        """What the class head's W takes: d, or 2d for [y_CLS; mean of the patch tokens]."""
        return 2 * self.dim if self.classifier == "cls_patch_mean" else self.dim

    @property
    def patch_dim(self) -> int:
        """p' = p² c, the length of one flattened patch."""
        return self.patch_size * self.patch_size * self.channels

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ViTConfig:
        if not isinstance(values, dict):
            raise ValueError(Message("a configuration is a dictionary of fields"))
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in values.items() if k in known})


def parameter_shapes(config: ViTConfig) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor in `ViT(config).state_dict()`, without building the model.

    Lets a loader check a checkpoint against its claimed configuration before allocating anything.
    """
    d, mlp, k, s = config.dim, config.mlp_dim, config.num_labels, config.num_special
    shapes: dict[str, tuple[int, ...]] = {
        "cls_token": (d,), "pos_embed": (config.num_tokens, d),
        "patch_embed.weight": (d, config.patch_dim), "patch_embed.bias": (d,),
    }
    if s > 1:
        shapes["extra_tokens"] = (s - 1, d)
    for i in range(config.depth):
        block = {
            "norm1.weight": (d,), "norm1.bias": (d,), "attn.qkv.weight": (3 * d, d), "attn.qkv.bias": (3 * d,),
            "attn.proj.weight": (d, d), "attn.proj.bias": (d,), "norm2.weight": (d,), "norm2.bias": (d,),
            "mlp.fc1.weight": (mlp, d), "mlp.fc1.bias": (mlp,), "mlp.fc2.weight": (d, mlp), "mlp.fc2.bias": (d,),
        }
        if config.layer_scale:
            block.update({"ls1.gamma": (d,), "ls2.gamma": (d,)})
        shapes.update({f"blocks.{i}.{name}": shape for name, shape in block.items()})
    shapes.update({"norm.weight": (d,), "norm.bias": (d,)})
    if k:
        shapes.update({"head.weight": (k, config.head_width), "head.bias": (k,)})
    if k and config.classifier == "cls_distillation_mean":
        shapes.update({"dist_head.weight": (k, d), "dist_head.bias": (k,)})
    return shapes


def patchify(pixels: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, c, H, W) -> (B, n, p·p·c): row-major patches, each flattened pixel by pixel, channels last."""
    b, c, h, w = pixels.shape
    p = patch_size
    x = pixels.reshape(b, c, h // p, p, w // p, p)
    x = x.permute(0, 2, 4, 3, 5, 1)  # B, gh, gw, p, p, c
    return x.reshape(b, (h // p) * (w // p), p * p * c)


def conv_kernel(weight: torch.Tensor, patch_size: int, channels: int) -> torch.Tensor:
    """E as checkpoints store it: the Linear weight (d, p·p·c) over channels-last patches as the Conv2d kernel
    (d, c, p, p) (`convert` maps the other way)."""
    return weight.reshape(weight.shape[0], patch_size, patch_size, channels).permute(0, 3, 1, 2)


def embed_by_convolution(pixels: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, c, H, W) -> (B, n, d): the patch embeddings as a checkpoint computes them, a convolution with
    kernel = stride = p, so each output pixel sees exactly one patch. Equal to `patchify(pixels) E + b`."""
    kernel = conv_kernel(weight, patch_size, pixels.shape[1])
    grid = nn.functional.conv2d(pixels, kernel, bias, stride=patch_size)  # (B, d, gh, gw)
    return grid.flatten(2).transpose(1, 2)  # row-major, as patchify orders the patches


def sincos_2d(grid: tuple[int, int], dim: int) -> torch.Tensor:
    """(gh·gw, dim) fixed 2-D sine/cosine position codes: half the channels encode rows, half columns."""
    gh, gw = grid
    quarter = dim // 4
    freqs = 1.0 / (100.0 ** (torch.arange(quarter, dtype=torch.float32) / max(1, quarter)))
    rows, cols = torch.meshgrid(torch.arange(gh, dtype=torch.float32), torch.arange(gw, dtype=torch.float32), indexing="ij")
    parts = []
    for coord in (rows.flatten(), cols.flatten()):
        angles = coord[:, None] * freqs[None]
        parts += [angles.sin(), angles.cos()]
    codes = torch.cat(parts, dim=1)
    return torch.nn.functional.pad(codes, (0, dim - codes.shape[1]))


class Attention(nn.Module):
    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.heads = config.heads
        self.head_dim = config.head_dim
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(config.dim, 3 * config.dim)
        self.proj = nn.Linear(config.dim, config.dim)
        # The softmax is a module so that one forward hook sees both the scores (its input) and
        # the attention probabilities (its output). q, k, v and each head's context are views of
        # qkv and of the concatenation W_o receives, so capture derives them from those.
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        # Split [q | k | v] with unbind on the (B, N, 3, h, d_h) view: its backward writes the three
        # gradients straight into qkv's layout, where indexing a permuted view would zero-fill and
        # copy (about a tenth of a training step).
        parts = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).unbind(2)  # each (B, N, h, d_h)
        q, k, v = (part.transpose(1, 2) for part in parts)
        # Scale q (N·d_h numbers) rather than the scores (N·N): the same q kᵀ / √d_h, less work.
        scores = (q * self.scale) @ k.transpose(-2, -1)
        attn = self.softmax(scores)
        context = attn @ v  # (B, h, N, d_h)
        concat = context.transpose(1, 2).reshape(b, n, d)
        return self.proj(concat)


class MLP(nn.Module):
    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(config.dim, config.mlp_dim)
        self.act = nn.GELU(approximate="tanh" if config.activation == "gelu_tanh" else "none")
        self.fc2 = nn.Linear(config.mlp_dim, config.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    """LayerScale (Touvron et al., CaiT, 2021; used by DINOv2): a residual branch's output scaled channel by channel,
    λ ⊙ x."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(config.dim, eps=config.layer_norm_eps)
        self.attn = Attention(config)
        self.norm2 = nn.LayerNorm(config.dim, eps=config.layer_norm_eps)
        self.mlp = MLP(config)
        self.ls1 = LayerScale(config.dim) if config.layer_scale else nn.Identity()
        self.ls2 = LayerScale(config.dim) if config.layer_scale else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))  # capture records this as the input of norm2
        return x + self.ls2(self.mlp(self.norm2(x)))


class ViT(nn.Module):
    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.config = config
        self.patch_embed = nn.Linear(config.patch_dim, config.dim)  # E, stored as (d, p')
        self.cls_token = nn.Parameter(torch.zeros(config.dim))
        # The learned vectors of the special tokens after CLS (a distillation token, registers), if any.
        self.extra_tokens = nn.Parameter(torch.zeros(config.num_special - 1, config.dim)) if config.num_special > 1 else None
        self.pos_embed = nn.Parameter(torch.zeros(config.num_tokens, config.dim))
        self.with_cls = nn.Identity()
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.dim, eps=config.layer_norm_eps)
        # A checkpoint without a class head (DINO, a plain ViTModel) ends at y.
        k = config.num_labels
        self.head = nn.Linear(config.head_width, k) if k else None
        self.dist_head = nn.Linear(config.dim, k) if k and config.classifier == "cls_distillation_mean" else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Start positions as 2-D sine/cosine waves, as loud as the patch embeddings: with
        # the usual tiny random init a small ViT spends hundreds of steps at chance level
        # before it can tell one patch position from another.
        with torch.no_grad():
            self.pos_embed.zero_()
            self.pos_embed[self.config.num_special :] = sincos_2d(self.config.grid, self.config.dim)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        if self.extra_tokens is not None:
            nn.init.trunc_normal_(self.extra_tokens, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        # A patch Linear sees p' inputs: scale it like a conv would be initialised.
        nn.init.trunc_normal_(self.patch_embed.weight, std=1 / math.sqrt(self.config.patch_dim))

    def features(self, pixels: torch.Tensor, positions: bool = True) -> torch.Tensor:
        """(B, c, H, W) -> the final token matrix (B, N, d), before the final LayerNorm; with `positions` False,
        E_pos is left out (step 8's shuffled patches, `vitviz.permutation`)."""
        flat = patchify(pixels, self.config.patch_size)  # recorded as the input of patch_embed
        embedded = self.patch_embed(flat)
        batch = embedded.shape[0]
        special = [self.cls_token.expand(batch, 1, -1)]
        if self.extra_tokens is not None:
            special.append(self.extra_tokens.expand(batch, -1, -1))
        x = self.with_cls(torch.cat([*special, embedded], dim=1))  # [CLS; other special tokens; patches]
        if positions:
            x = x + self.pos_embed  # capture records these tokens as the first block's input
        for block in self.blocks:
            x = block(x)
        return x

    def classify(self, y: torch.Tensor) -> torch.Tensor:
        """Final tokens Y (B, N, d), after the final LayerNorm -> logits (B, k), as `config.classifier` says."""
        if self.config.classifier == "cls_patch_mean":
            return self.head(torch.cat([y[:, 0], y[:, self.config.num_special :].mean(dim=1)], dim=-1))
        logits = self.head(y[:, 0])
        if self.dist_head is not None:  # DeiT: the distillation token's own head, averaged with CLS's
            logits = (logits + self.dist_head(y[:, self.config.special_tokens.index("distillation")])) / 2
        return logits

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, c, H, W) normalised pixels -> logits (B, k), or y, the CLS output (B, d), without a class head."""
        y = self.norm(self.features(pixels))
        return y[:, 0] if self.head is None else self.classify(y)
