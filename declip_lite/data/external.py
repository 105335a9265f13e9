"""Real images no one in this project made, as zero-shot tasks: scikit-learn's handwritten digits.

``load_digits`` holds 1,797 scanned 8x8 handwritten digits (UCI optdigits). ShapeCaps only ever
shows font-rendered digits, so zero-shot accuracy here measures transfer to real handwriting.
"""
import torch
import torch.nn.functional as F

from .scenes import COLOURS, DIGITS, SIZE_RADIUS
from .shapecaps import TASKS, ZeroShotTask


def sklearn_digits(image_size=32, device="cpu", n=None):
    """The first ``n`` (default all) digits, each centred at ShapeCaps' "large" size, in one of
    its colours (cycling) on grey."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images, target = digits.images[:n], digits.target[:n]
    alpha = torch.tensor(images, dtype=torch.float32)[:, None] / 16  # ink, (N, 1, 8, 8)
    side = round(2 * SIZE_RADIUS[-1] * image_size)
    alpha = F.interpolate(alpha, size=(side, side), mode="bilinear", align_corners=False).clamp(0, 1)
    before = (image_size - side) // 2
    alpha = F.pad(alpha, (before, image_size - side - before) * 2)
    colours = torch.tensor(list(COLOURS.values()))[torch.arange(len(alpha)) % len(COLOURS)]
    images = torch.lerp(torch.full_like(alpha.expand(-1, 3, -1, -1), 0.5), colours[:, :, None, None], alpha)
    return ZeroShotTask("sklearn_digits", list(DIGITS), list(TASKS["digit"][1]), images.to(device),
                        torch.tensor(target, device=device))
