"""The pre-LN transformer shared by the text tower and the ViT (CLIP, Radford et al. 2021)."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class Attention(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        if width % heads:
            raise ValueError(f"Attention: width={width} is not divisible by heads={heads}")
        self.heads, self.qkv, self.out = heads, nn.Linear(width, 3 * width), nn.Linear(width, width)

    def forward(self, x, mask=None):
        B, L, W = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.heads, W // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(y.transpose(1, 2).reshape(B, L, W))


class QuickGELU(nn.Module):
    """x·σ(1.702x): the GELU approximation of OpenAI's CLIP towers and the DeCLIP reference's."""

    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


ACTIVATIONS = {"gelu": nn.GELU, "quick_gelu": QuickGELU}  # ModelConfig.activation


class Block(nn.Module):
    def __init__(self, width, heads, mlp_ratio=4, activation="gelu"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation={activation!r}: expected one of {sorted(ACTIVATIONS)}")
        self.ln_1, self.attn = nn.LayerNorm(width), Attention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_ratio * width), ACTIVATIONS[activation](),
                                 nn.Linear(mlp_ratio * width, width))

    def forward(self, x, mask=None):
        x = x + self.attn(self.ln_1(x), mask)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width, layers, heads, activation="gelu"):
        super().__init__()
        self.blocks = nn.ModuleList(Block(width, heads, activation=activation) for _ in range(layers))
        for b in self.blocks:  # CLIP's depth-scaled init of the residual projections
            nn.init.normal_(b.attn.out.weight, std=(2 * layers) ** -0.5 * width**-0.5)
            nn.init.normal_(b.mlp[2].weight, std=(2 * layers) ** -0.5 * width**-0.5)

    def forward(self, x, mask=None):
        for block in self.blocks:
            x = block(x, mask)
        return x
