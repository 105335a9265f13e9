"""The dual encoder (image tower + text tower + one learnable logit scale) and named configs."""
import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn as nn

from .image import ModifiedResNet, VisionTransformer
from .text import TextEncoder


@dataclass(frozen=True)
class ModelConfig:
    image: str = "resnet"          # "resnet" | "vit"
    image_size: int = 32
    embed_dim: int = 64
    rn_layers: tuple = (1, 1, 1)
    rn_width: int = 16
    rn_heads: int = 4
    stem_stride: int = 4
    vit_patch: int = 4
    vit_width: int = 96
    vit_layers: int = 4
    vit_heads: int = 4
    freeze_patch_embedding: bool = False
    text_width: int = 96
    text_layers: int = 2
    text_heads: int = 4
    context_length: int = 24
    vocab_size: int = 256
    eot_id: int = 2
    causal: bool = True
    logit_scale_init: float = math.log(1 / 0.07)  # log(1/τ) at step 0: CLIP's τ = 0.07
    activation: str = "gelu"      # the MLPs' GELU; "quick_gelu": x·σ(1.702x), the reference's towers
    text_proj_bias: bool = False  # OpenAI CLIP's bias-free text projection; True: the reference's bias


def image_width(config):
    """Width of the image tower's per-patch tokens (what FILIP and SLIP's head consume)."""
    if config.image == "vit":
        return config.vit_width
    return config.rn_width * 2 ** (len(config.rn_layers) - 1) * 4


CONFIGS = {
    "rn-tiny": ModelConfig(),
    "vit-tiny": ModelConfig(image="vit"),
    # the reference's full-size towers (METHOD.md section 4): constructible, not trained here
    "rn50": ModelConfig(image_size=224, embed_dim=1024, rn_layers=(3, 4, 6, 3), rn_width=64, rn_heads=32,
                        stem_stride=4, text_width=512, text_layers=12, text_heads=8, context_length=77,
                        vocab_size=49409, eot_id=49407),
    "vit-b32": ModelConfig(image="vit", image_size=224, embed_dim=512, vit_patch=32, vit_width=768,
                           vit_layers=12, vit_heads=12, freeze_patch_embedding=True, text_width=512,
                           text_layers=12, text_heads=8, context_length=77, vocab_size=49409, eot_id=49407),
}


def same_model(saved, config):
    """Whether a checkpoint's ``model_config`` dict describes ``config``; a field it predates
    counts as its default (older checkpoints were saved before the field existed)."""
    return {**asdict(ModelConfig()), **saved} == asdict(config)


def model_config(name="rn-tiny", **overrides):
    if name not in CONFIGS:
        raise ValueError(f"model_config: unknown config {name!r}; choose from {sorted(CONFIGS)}")
    unknown = set(overrides) - set(asdict(CONFIGS[name]))
    if unknown:
        raise TypeError(f"model_config: unknown field(s) {sorted(unknown)}")
    return replace(CONFIGS[name], **{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()})


class CLIPModel(nn.Module):
    """Image and text towers into one joint space; ``logit_scale`` is log(1/temperature)."""

    def __init__(self, config=None):
        super().__init__()
        c = self.config = config or ModelConfig()
        if c.image == "resnet":
            self.visual = ModifiedResNet(c.rn_layers, c.rn_width, c.rn_heads, c.embed_dim, c.image_size,
                                         c.stem_stride)
        elif c.image == "vit":
            self.visual = VisionTransformer(c.image_size, c.vit_patch, c.vit_width, c.vit_layers, c.vit_heads,
                                            c.embed_dim, c.freeze_patch_embedding, c.activation)
        else:
            raise ValueError(f"ModelConfig.image={c.image!r}: expected 'resnet' or 'vit'")
        self.text = TextEncoder(c.vocab_size, c.context_length, c.text_width, c.text_layers, c.text_heads,
                                c.embed_dim, c.causal, c.activation, c.text_proj_bias)
        self.logit_scale = nn.Parameter(torch.tensor(float(c.logit_scale_init)))

    def encode_image(self, images):
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"encode_image: expected images of shape (B, 3, H, W), "
                             f"got {tuple(images.shape)}")
        return self.visual(images)

    def encode_text(self, tokens, causal=None):
        return self.text(tokens, self.config.eot_id, causal)

    @torch.no_grad()
    def clamp_logit_scale(self, low, high):
        self.logit_scale.clamp_(low, high)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "logit_scale"  # older checkpoints stored the scale as shape [1]
        if key in state_dict and state_dict[key].numel() == 1:
            state_dict[key] = state_dict[key].reshape(())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
