"""Image views, batched with per-sample random parameters on the device.

``AUGMENTATIONS["moco"]`` is the reference's MoCo-v2 view (random resized crop 0.2-1, colour
jitter 0.4/0.4/0.4/0.1 with p=0.8, grayscale p=0.2, Gaussian blur p=0.5, flip), ``"clip"`` the
CLIP baseline's crop 0.5-1. On ShapeCaps these can make a caption false: hue jitter turns red
into orange, a flip swaps left and right and mirrors digits, a crop cuts an object out.
Grayscale erases colour, and a strong zoom makes a "small" object large. ``"safe"`` keeps
hue, never greys or flips, and crops mildly (area 0.6-1) around all objects. ``flip="rewrite"`` flips and
swaps left/right in the caption instead; that fixes relations but not a mirrored "7".

``moco_v2_transform`` is the same view for one PIL image or tensor, from torchvision's v2
transforms, for real-image datasets.
"""
import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..draws import Draws
from .scenes import SIZE_RADIUS


@dataclass(frozen=True)
class Augmentation:
    crop_scale: tuple = (0.2, 1.0)
    jitter: tuple = (0.4, 0.4, 0.4, 0.1)  # brightness, contrast, saturation, hue
    p_jitter: float = 0.8
    p_gray: float = 0.2
    p_blur: float = 0.5
    flip: str = "random"  # "random" | "rewrite" (flip and rewrite left/right) | "none"
    keep_objects: bool = False


AUGMENTATIONS = {
    "moco": Augmentation(),
    "clip": Augmentation(crop_scale=(0.5, 1.0), jitter=(0, 0, 0, 0), p_jitter=0, p_gray=0, p_blur=0,
                         flip="none"),
    "safe": Augmentation(crop_scale=(0.6, 1.0), jitter=(0.4, 0.4, 0.2, 0.0), p_gray=0.0, flip="none",
                         keep_objects=True),
    "none": Augmentation(crop_scale=(1.0, 1.0), jitter=(0, 0, 0, 0), p_jitter=0, p_gray=0, p_blur=0,
                         flip="none"),
}

_LUMA = torch.tensor([0.299, 0.587, 0.114])
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


@functools.lru_cache(maxsize=None)
def _colour_matrices(device):
    """Luma, RGB->YIQ and its inverse on ``device``, made once: a step copies and inverts nothing
    (on CUDA each would wait for the host)."""
    return _LUMA.to(device), _YIQ.to(device), torch.linalg.inv(_YIQ).to(device)


def object_boxes(scenes):
    """(B, 4) union box (x0, y0, x1, y1) of every object in each scene, in [0, 1] units."""
    r = torch.tensor(SIZE_RADIUS, device=scenes.x.device)[scenes.size]
    big, act = torch.tensor(2.0, device=r.device), scenes.active
    x0 = torch.where(act, scenes.x - r, big).amin(1)
    y0 = torch.where(act, scenes.y - r, big).amin(1)
    x1 = torch.where(act, scenes.x + r, -big).amax(1)
    y1 = torch.where(act, scenes.y + r, -big).amax(1)
    return torch.stack([x0, y0, x1, y1], 1).clamp(0, 1)


def _crop_boxes(aug, boxes, draws):
    """Random-resized-crop boxes (x0, y0, w, h) with area in crop_scale and aspect in [3/4, 4/3]."""
    lo, hi = aug.crop_scale
    area = lo + (hi - lo) * draws.rand()
    lo_r, hi_r = area.clamp_min(3 / 4).log(), (1 / area).clamp_max(4 / 3).log()  # keep w, h <= 1
    ratio = torch.exp(lo_r + (hi_r - lo_r) * draws.rand())
    w, h = (area * ratio).sqrt().clamp(max=1), (area / ratio).sqrt().clamp(max=1)
    lo_x, lo_y = torch.zeros_like(w), torch.zeros_like(h)
    hi_x, hi_y = 1 - w, 1 - h
    if boxes is not None:  # grow the crop to the objects' box, then slide it over them
        w, h = torch.maximum(w, boxes[:, 2] - boxes[:, 0]), torch.maximum(h, boxes[:, 3] - boxes[:, 1])
        lo_x, lo_y = (boxes[:, 2] - w).clamp_min(0), (boxes[:, 3] - h).clamp_min(0)
        hi_x, hi_y = torch.minimum(boxes[:, 0], 1 - w), torch.minimum(boxes[:, 1], 1 - h)
    x0 = lo_x + draws.rand() * (hi_x - lo_x).clamp_min(0)
    y0 = lo_y + draws.rand() * (hi_y - lo_y).clamp_min(0)
    return x0, y0, w, h


def _colour_jitter(img, aug, draws):
    B = len(img)
    b, c, s, h = aug.jitter
    factor = lambda a: 1 + (draws.rand(1, 1, 1) * 2 - 1) * a  # noqa: E731
    luma_rgb, yiq, yiq_inverse = _colour_matrices(img.device)
    luma = luma_rgb[None, :, None, None]
    out = img * factor(b)
    mean = (out * luma).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    out = (out - mean) * factor(c) + mean
    grey = (out * luma).sum(1, keepdim=True)
    out = ((out - grey) * factor(s) + grey).clamp(0, 1)
    if h > 0:  # hue rotation: rotate the chroma plane of YIQ by 2*pi*hue
        angle = (draws.rand() * 2 - 1) * h * 2 * torch.pi
        cos, sin = angle.cos(), angle.sin()
        rot = torch.zeros(B, 3, 3, device=img.device)
        rot[:, 0, 0], rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = 1, cos, -sin, sin, cos
        m = yiq_inverse @ rot @ yiq
        out = torch.einsum("bij,bjhw->bihw", m, out).clamp(0, 1)
    return out


def _blur(img, sigma, sigma_max):
    """Per-sample Gaussian blur as two grouped 1-D convolutions, over 3 of the largest possible
    ``sigma_max`` each side (a size known on the host: no read of ``sigma``)."""
    B, C, S, _ = img.shape
    k = 2 * max(1, math.ceil(3 * sigma_max)) + 1
    x = torch.arange(k, device=img.device) - k // 2
    kern = torch.exp(-(x[None] ** 2) / (2 * sigma[:, None] ** 2))
    kern = (kern / kern.sum(1, keepdim=True)).repeat_interleave(C, 0)
    flat = img.reshape(1, B * C, S, S)
    flat = F.conv2d(F.pad(flat, (k // 2, k // 2, 0, 0), mode="reflect"), kern[:, None, None, :], groups=B * C)
    flat = F.conv2d(F.pad(flat, (0, 0, k // 2, k // 2), mode="reflect"), kern[:, None, :, None], groups=B * C)
    return flat.view(B, C, S, S)


def augment(images, aug, generator=None, boxes=None, flipped=None):
    """One random view of each image. ``flipped`` (B,) bool forces the flip decisions (so both
    views of a pair, and its rewritten caption, agree); otherwise they are drawn here.
    ``generator``: a torch.Generator, or the :class:`Draws` of K runs' batches made as one."""
    B, _, S, _ = images.shape
    draws = Draws.of(generator, B, images.device)
    x0, y0, w, h = _crop_boxes(aug, boxes if aug.keep_objects else None, draws)
    if flipped is None:
        flipped = (draws.rand() < 0.5 if aug.flip != "none"
                   else torch.zeros(B, dtype=torch.bool, device=images.device))
    sign = 1 - 2 * flipped.float()
    theta = torch.zeros(B, 2, 3, device=images.device)
    theta[:, 0, 0], theta[:, 0, 2] = w * sign, 2 * x0 + w - 1
    theta[:, 1, 1], theta[:, 1, 2] = h, 2 * y0 + h - 1
    grid = F.affine_grid(theta, (B, 3, S, S), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if aug.p_jitter > 0:
        on = draws.rand(1, 1, 1) < aug.p_jitter
        out = torch.where(on, _colour_jitter(out, aug, draws), out)
    if aug.p_gray > 0:
        on = draws.rand(1, 1, 1) < aug.p_gray
        luma = _colour_matrices(out.device)[0][None, :, None, None]
        out = torch.where(on, (out * luma).sum(1, keepdim=True).expand_as(out), out)
    if aug.p_blur > 0:  # MoCo's sigma 0.1-2 px at 224 px, scaled to this image size
        sigma = (0.1 + 1.9 * draws.rand()) * S / 224
        on = draws.rand(1, 1, 1) < aug.p_blur
        out = torch.where(on, _blur(out, sigma.clamp_min(0.05), max(0.05, 2.0 * S / 224)), out)
    return out


def moco_v2_transform(image_size, crop_scale=(0.2, 1.0)):
    """The reference view for single images (real data), from ``torchvision.transforms.v2``."""
    from torchvision.transforms import v2

    return v2.Compose([
        v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
        v2.RandomResizedCrop(image_size, scale=crop_scale, antialias=True),
        v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        v2.RandomGrayscale(p=0.2),
        v2.RandomApply([v2.GaussianBlur(2 * (image_size // 20) + 1,
                                        sigma=(0.1 * image_size / 224, 2.0 * image_size / 224 + 0.01))],
                       p=0.5),
        v2.RandomHorizontalFlip(),
    ])
