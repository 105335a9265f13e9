"""Multi-view supervision (MVS): two image views x two text views, four CLIP losses (DeCLIP sec. 3.2).

    L_CLIP+MVS = 1/4 [ L(I1, T) + L(I2, T) + L(I1, T_aug) + L(I2, T_aug) ]

T is the caption (in the reference: its MLM-masked tokens), T_aug its EDA augmentation.
"""
from .clip import contrastive_loss


def multi_view_loss(images, texts, scale):
    """Mean symmetric CLIP loss over every (image view, text view) pair."""
    pairs = [(i, t) for i in images for t in texts]
    return sum(contrastive_loss(i, t, scale) for i, t in pairs) / len(pairs)
