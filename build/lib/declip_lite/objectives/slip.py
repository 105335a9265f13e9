"""SLIP (Mu et al. 2022): CLIP on one view plus SimCLR between two more views of the image.

    L = L_CLIP(I_0, T) + L_SimCLR(h(f_1), h(f_2)),
    L_SimCLR = NT-Xent: mean over the 2N anchors of CE(sim(a, .) / tau), positive = the other view,
               negatives = every other view in the (gathered) batch, tau = 0.1

h is a 3-layer MLP (hidden 4096 -> out 256 in the reference; its last Linear has a bias) on the pre-projection
image feature f. View 0 is the run's weak (CLIP) view; views 1 and 2 are strong SimCLR-style views
("moco": crop 0.2-1, colour jitter, grey, blur, flip). They never meet a caption, so the
augmentations that falsify ShapeCaps captions are harmless here.
"""
import torch
import torch.nn.functional as F

from ..distributed import gather, world
from ..models.clip import image_width
from .clip import contrastive_loss
from .contract import Objective
from .registry import register
from .simsiam import _mlp


def nt_xent(a, b, temperature=0.1):
    """SimCLR's loss for N positive pairs (a_i, b_i); negatives are gathered across ranks."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    rank, size = world()
    n = len(a)
    keys = torch.cat([gather(a), gather(b)])                     # (2 N size, d)
    queries = torch.cat([a, b])                                  # (2 N, d)
    logits = queries @ keys.T / temperature
    rows = torch.arange(n, device=a.device)
    own = torch.cat([rows + rank * n, rows + (size + rank) * n])
    partner = torch.cat([own[n:], own[:n]])
    # a mask, no indexed write, no host check
    anchor = own[:, None] == torch.arange(len(keys), device=a.device)
    return F.cross_entropy(logits.masked_fill(anchor, float("-inf")), partner)  # never the anchor itself


@register("slip")
class SLIP(Objective):
    view_augmentations = (None, "moco", "moco")  # None: the run's augmentation
    scale_cap = None  # the reference caps the scale at 100 for CLIP and DeCLIP, not for SLIP

    def __init__(self, feature_dim, hidden=512, out=128, temperature=0.1):
        super().__init__()
        self.head = _mlp([feature_dim, hidden, hidden, out], last_bn=False)
        self.temperature = temperature

    @classmethod
    def build(cls, config, vocab_size, hidden=512, out=128, temperature=0.1):
        return cls(image_width(config), hidden, out, temperature)

    def forward(self, enc):
        base, v1, v2 = enc["image"]
        clip = contrastive_loss(base["embed"], enc["text"]["caption"]["embed"], enc["scale"])
        simclr = nt_xent(self.head(v1["pooled"]), self.head(v2["pooled"]), self.temperature)
        return {"loss": clip + simclr, "clip": clip.detach(), "simclr": simclr.detach()}
