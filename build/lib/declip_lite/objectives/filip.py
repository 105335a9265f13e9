"""FILIP (Yao et al. 2022): token-wise late interaction instead of one vector per side.

Patch tokens x (before the image tower's final LayerNorm) and text tokens y are projected to a
dense space and L2-normalised. For image i and text l, with s_d a learnable scale of its own:

    logit_I2T(i, l) = mean_{p in P_i} max_{t in K_l} s_d <x_p, y_t>
    logit_T2I(l, i) = mean_{t in P_l} max_{p in K_i} s_d <x_p, y_t>

P_i / P_l: ALL of i's patches / l's token positions; K_i / K_l: each sample's top-k (16) patches /
tokens, ranked by the summed similarity to its own pair. Top-k picks what is matched against,
never what is averaged (as in the reference). Loss: CLIP's symmetric cross-entropy on these logits.

**Declared deviation** (``mask_padding=True``): padding never counts. The reference averages
over all 77 text positions, padding included, which drags every caption toward the pad
embedding; ``mask_padding=False`` does as the reference, over the columns every training caption
has (the training set's longest caption, see ``contract.encode``), not the full context. Like the
reference's FILIP config, the caption FILIP sees is the MLM-masked one (``masked_caption=True``).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..distributed import gather, world
from ..models.clip import image_width
from .contract import Objective
from .registry import register


def select_tokens(x, y, valid, k):
    """Keep-masks (B, N) and (B, L): each pair's top-k patches and valid tokens by own-pair sums."""
    sim = torch.einsum("bnd,bld->bnl", x, y).masked_fill(~valid[:, None, :], 0)
    patch_score = sim.sum(2)
    token_score = sim.sum(1).masked_fill(~valid, float("-inf"))

    def marked(like, top):  # out of place, with a tensor source: a grouped (vmapped) step batches it
        return torch.zeros_like(like, dtype=torch.bool).scatter(1, top,
                                                                torch.ones_like(top, dtype=torch.bool))

    keep_x = marked(patch_score, patch_score.topk(min(k, x.shape[1]), 1).indices)
    keep_y = marked(valid, token_score.topk(min(k, y.shape[1]), 1).indices) & valid
    return keep_x, keep_y


def token_wise_logits(x, y, keep_x, keep_y, scale, valid=None):
    """(B_img, B_txt) image->text and (B_txt, B_img) text->image late-interaction logits: every
    patch (every ``valid`` token, all when None) averages its best match among the other side's kept ones."""
    valid = torch.ones(y.shape[:2], dtype=torch.bool, device=y.device) if valid is None else valid
    sim = scale * torch.einsum("ind,ltd->ilnt", x, y)                        # (I, L, N, T)
    i2t = sim.masked_fill(~keep_y[None, :, None, :], float("-inf")).amax(3).mean(2)  # best kept token
    sim_t = sim.masked_fill(~keep_x[:, None, :, None], float("-inf")).amax(2)        # best kept patch
    t2i = (sim_t * valid[None]).sum(2) / valid.sum(1)[None]
    return i2t, t2i.T


@register("filip")
class FILIP(Objective):
    zero_shot_scorer = "token-wise"  # scored as it is trained (FILIP paper), not by the global cosine

    def __init__(self, image_width, text_width, dense_dim=64, k=16, mask_padding=True, masked_caption=True):
        super().__init__()
        self.image_proj, self.text_proj = nn.Linear(image_width, dense_dim), nn.Linear(text_width, dense_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.k, self.mask_padding, self.masked_caption = k, mask_padding, masked_caption

    @classmethod
    def build(cls, config, vocab_size, dense_dim=64, k=16, mask_padding=True, masked_caption=True):
        return cls(image_width(config), config.text_width, dense_dim, k, mask_padding, masked_caption)

    @property
    def text_views(self):
        return ("masked",) if self.masked_caption else ("caption",)

    @property
    def zero_shot_head(self):
        return self

    def loss(self, image_tokens, text_tokens, valid):
        x = F.normalize(self.image_proj(image_tokens), dim=-1)
        y = F.normalize(self.text_proj(text_tokens), dim=-1)
        valid = valid if self.mask_padding else torch.ones_like(valid)
        keep_x, keep_y = select_tokens(x, y, valid, self.k)
        scale = self.logit_scale.exp()
        rank, size = world()
        if size == 1:  # one similarity tensor gives both directions
            i2t, t2i = token_wise_logits(x, y, keep_x, keep_y, scale, valid)
        else:  # local rows against the gathered batch, in each direction
            i2t, _ = token_wise_logits(x, gather(y), keep_x, gather(keep_y), scale)
            _, t2i = token_wise_logits(gather(x), y, gather(keep_x), keep_y, scale, valid)
        target = torch.arange(len(x), device=x.device) + rank * len(x)
        return 0.5 * (F.cross_entropy(i2t, target) + F.cross_entropy(t2i, target))

    def forward(self, enc):
        text = enc["text"][self.text_views[0]]
        filip = self.loss(enc["image"][0]["tokens"], text["tokens"], text["valid"])
        return {"loss": filip, "filip": filip.detach()}
