"""Image towers: CLIP's ModifiedResNet and ViT, sized by their arguments (tiny to RN50/ViT-B/32).

Both return {"tokens": per-patch features (B, N, width), "pooled": the pre-projection global
feature (B, width), "embed": the projected, un-normalised embedding (B, embed_dim)}.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .transformer import Transformer


class Bottleneck(nn.Module):
    """ResNet bottleneck with CLIP's anti-aliased stride: an avg-pool before the 3rd conv."""
    expansion = 4

    def __init__(self, cin, width, stride=1):
        super().__init__()
        cout = width * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.AvgPool2d(stride) if stride > 1 else nn.Identity(),
            nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.down = None
        if stride > 1 or cin != cout:
            self.down = nn.Sequential(nn.AvgPool2d(stride) if stride > 1 else nn.Identity(),
                                      nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return F.relu(self.body(x) + (x if self.down is None else self.down(x)))


class AttentionPool(nn.Module):
    """CLIP's attention pooling: the mean token queries all spatial tokens; the attention's own
    output projection maps straight to the embedding width (``kdim = vdim = width``)."""

    def __init__(self, tokens, width, heads, embed_dim):
        super().__init__()
        self.pos = nn.Parameter(torch.randn(tokens + 1, width) / width**0.5)
        self.heads = heads
        self.q, self.k, self.v = (nn.Linear(width, width) for _ in range(3))
        self.out = nn.Linear(width, embed_dim)

    def forward(self, x):  # x: (B, N, width)
        x = torch.cat([x.mean(1, keepdim=True), x], 1) + self.pos
        split = lambda t: t.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # noqa: E731  (B, heads, n, d)
        attended = F.scaled_dot_product_attention(split(self.q(x[:, :1])), split(self.k(x)), split(self.v(x)))
        return self.out(attended.transpose(1, 2).flatten(2)[:, 0])


class ModifiedResNet(nn.Module):
    """3-conv stem + avg-pool, four bottleneck stages, attention pooling (CLIP's RN50 at full size).

    ``stem_stride`` is 4 for 224-px images (CLIP) and 1-2 for the 32-128 px teaching images."""

    def __init__(self, layers, width, heads, embed_dim, image_size, stem_stride=4):
        super().__init__()
        half = width // 2
        self.stem = nn.Sequential(
            nn.Conv2d(3, half, 3, stride=2 if stem_stride >= 2 else 1, padding=1, bias=False),
            nn.BatchNorm2d(half), nn.ReLU(inplace=True),
            nn.Conv2d(half, half, 3, padding=1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
            nn.Conv2d(half, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.AvgPool2d(2) if stem_stride >= 4 else nn.Identity())
        stages, cin = [], width
        for i, n in enumerate(layers):
            w = width * 2**i
            stages += ([Bottleneck(cin, w, stride=1 if i == 0 else 2)]
                       + [Bottleneck(w * 4, w) for _ in range(n - 1)])
            cin = w * 4
        self.stages = nn.Sequential(*stages)
        side = image_size // min(stem_stride, 4) // 2 ** (len(layers) - 1)
        self.width = cin
        self.attnpool = AttentionPool(side * side, cin, heads, embed_dim)
        self.to(memory_format=torch.channels_last)  # NHWC convolutions and batch norms: faster on a CPU

    def forward(self, images):
        if not torch._C._functorch.is_batchedtensor(images):  # a grouped (vmapped) step has no memory format
            images = images.contiguous(memory_format=torch.channels_last)
        x = self.stem(images)
        x = self.stages(x).flatten(2).transpose(1, 2)  # (B, N, width)
        return {"tokens": x, "pooled": x.mean(1), "embed": self.attnpool(x)}


class VisionTransformer(nn.Module):
    """ViT: patch embedding, class token, pre-LN transformer, class state -> projection.

    The reference freezes the patch embedding at its random init (a quirk); we train it unless
    ``freeze_patch_embedding=True``. Patch tokens are taken before the final LayerNorm (as in the
    reference's FILIP); the class state after it."""

    def __init__(self, image_size, patch_size, width, layers, heads, embed_dim, freeze_patch_embedding=False,
                 activation="gelu"):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"VisionTransformer: image_size={image_size} is not a multiple of "
                             f"patch_size={patch_size}")
        self.patch_embedding = nn.Conv2d(3, width, patch_size, stride=patch_size, bias=False)
        self.patch_embedding.requires_grad_(not freeze_patch_embedding)
        n = (image_size // patch_size) ** 2
        self.class_embedding = nn.Parameter(torch.randn(width) * width**-0.5)
        self.positional_embedding = nn.Parameter(torch.randn(n + 1, width) * width**-0.5)
        self.ln_pre, self.ln_post = nn.LayerNorm(width), nn.LayerNorm(width)
        self.transformer = Transformer(width, layers, heads, activation)
        self.proj = nn.Parameter(torch.randn(width, embed_dim) * width**-0.5)
        self.width = width

    def forward(self, images):
        x = self.patch_embedding(images).flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(len(x), 1, -1)
        x = self.transformer(self.ln_pre(torch.cat([cls, x], 1) + self.positional_embedding))
        pooled = self.ln_post(x[:, 0])
        return {"tokens": x[:, 1:], "pooled": pooled, "embed": pooled @ self.proj}
