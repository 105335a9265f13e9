"""CLIP: symmetric InfoNCE over a batch of image-text pairs (Radford et al. 2021, eq. 1 of DeCLIP).

    L = 1/2 [ CE(s I T^T, diag) + CE(s T I^T, diag) ],   I, T L2-normalised,  s = min(exp(logit_scale), 100)

Each rank scores its local rows against the all-gathered batch, targets offset by rank * B.
"""
import torch
import torch.nn.functional as F

from ..distributed import gather, world
from .contract import Objective
from .registry import register


def _targets(n, device):
    rank, _ = world()
    return torch.arange(n, device=device) + rank * n


def one_way_loss(queries, keys, scale):
    """CE of each local query against all gathered keys; the i-th key is query i's positive."""
    q, k = F.normalize(queries, dim=-1), gather(F.normalize(keys, dim=-1))
    return F.cross_entropy(scale * q @ k.T, _targets(len(q), q.device))


def contrastive_loss(image, text, scale):
    """The symmetric CLIP loss between two batches of (un-normalised) embeddings, at scale s = 1/τ."""
    return 0.5 * (one_way_loss(image, text, scale) + one_way_loss(text, image, scale))


@register("clip")
class CLIP(Objective):
    """The baseline: one image view, the clean caption."""

    def forward(self, enc):
        loss = contrastive_loss(enc["image"][0]["embed"], enc["text"]["caption"]["embed"], enc["scale"])
        return {"loss": loss, "clip": loss.detach()}
