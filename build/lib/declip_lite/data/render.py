"""Batched rendering of ShapeCaps scenes with torch ops (CPU or GPU).

Every shape, digits included, is an anti-aliased alpha template in one texture atlas. An
object is one affine ``grid_sample`` lookup into its own tile, so the cost per object does not
grow with the number of shapes. Backgrounds are grey with low-frequency shading plus a tiled
noise texture at a per-sample offset.
"""
import functools
import math

import numpy as np

import torch
import torch.nn.functional as F

from .scenes import COLOURS, DIGITS, GEOMETRIC, SIZE_RADIUS, uniform

TILE = 64      # template resolution
EXTENT = 1.25  # a tile spans [-EXTENT, EXTENT] in object units; the shape fills radius 1
NOISE = 128    # side of the tiled background-noise texture


def _geometric_mask(name, u, v):
    r, a = torch.sqrt(u**2 + v**2), torch.atan2(v, u)
    if name == "circle":
        return r <= 1
    if name == "square":
        return (u.abs() <= 0.8) & (v.abs() <= 0.8)
    if name == "triangle":
        return (v <= 0.75) & (u.abs() <= (v + 0.95) / 1.7)  # apex up (v grows downwards)
    if name == "diamond":
        return u.abs() + v.abs() <= 1
    if name == "star":  # five points: radius oscillates between 0.45 and 1
        k = torch.cos(5 * (a + math.pi / 2)) * 0.5 + 0.5
        return r <= 0.45 + 0.55 * k**3
    if name == "cross":
        return ((u.abs() <= 0.3) & (v.abs() <= 0.95)) | ((v.abs() <= 0.3) & (u.abs() <= 0.95))
    if name == "hexagon":
        return (v.abs() <= 0.87) & (v.abs() * 0.577 + u.abs() <= 1)
    if name == "ring":
        return (r <= 1) & (r >= 0.55)
    raise ValueError(f"unknown shape {name!r}")


def _digit_mask(digit, u, v):
    from matplotlib.font_manager import FontProperties
    from matplotlib.path import Path
    from matplotlib.textpath import TextPath

    path = TextPath((0, 0), digit, size=1, prop=FontProperties(family="DejaVu Sans", weight="bold"))
    verts = path.vertices
    lo, hi = verts.min(0), verts.max(0)
    centre, half = (lo + hi) / 2, (hi - lo).max() / 2
    pts = torch.stack([u.flatten(), -v.flatten()], 1).numpy() * half * 1.05 + centre
    inside = np.zeros(len(pts), dtype=bool)
    for poly in path.to_polygons():  # even-odd rule: a hole is a polygon inside a polygon
        inside ^= Path(poly).contains_points(pts)
    return torch.from_numpy(inside).view(u.shape)


@functools.lru_cache(maxsize=None)
def atlas():
    """``(1, 1, TILE, TILE * n_shapes)`` alpha atlas, 4x supersampled; built once per process."""
    ss = 4
    t = (torch.arange(TILE * ss) + 0.5) / (TILE * ss) * 2 * EXTENT - EXTENT
    v, u = torch.meshgrid(t, t, indexing="ij")
    masks = [_geometric_mask(n, u, v) for n in GEOMETRIC] + [_digit_mask(d, u, v) for d in DIGITS]
    tiles = [F.avg_pool2d(m.float()[None, None], ss) for m in masks]
    return torch.cat(tiles, dim=3)


@functools.lru_cache(maxsize=None)
def _noise_texture(device):
    g = torch.Generator().manual_seed(0)
    return (torch.rand(3, NOISE, NOISE, generator=g) - 0.5).to(device)


def render(scenes, image_size, seed, index):
    """Render ``scenes`` to a ``(B, 3, S, S)`` float tensor in [0, 1] on the scenes' device."""
    B, K = scenes.shape.shape
    dev, S = scenes.shape.device, image_size
    n = len(GEOMETRIC) + len(DIGITS)
    # --- objects: one separable affine lookup each into the atlas, active slots only --------
    live = scenes.active.flatten().nonzero()[:, 0]
    radius = torch.tensor(SIZE_RADIUS, device=dev)[scenes.size.flatten()[live]] * EXTENT
    cx, cy = scenes.x.flatten()[live], scenes.y.flatten()[live]
    tile_x = (2 * scenes.shape.flatten()[live].float() + 1) / n - 1  # tile centre, atlas coords
    X = (2 * torch.arange(S, device=dev) + 1) / S - 1  # pixel centres in [-1, 1]
    # pixel X -> object units (X/2 + 1/2 - cx) / r -> the shape's own tile of the atlas
    u = (X[None] / 2 + 0.5 - cx[:, None]) / radius[:, None]
    v = (X[None] / 2 + 0.5 - cy[:, None]) / radius[:, None]
    grid = torch.stack(torch.broadcast_tensors(u[:, None, :] / n + tile_x[:, None, None], v[:, :, None]), -1)
    inside = (u.abs() <= 1).float()  # never read a neighbouring tile
    alpha = torch.zeros(B * K, S, S, device=dev)
    alpha[live] = F.grid_sample(atlas().to(dev).expand(len(live), -1, -1, -1), grid,
                                align_corners=False)[:, 0] * inside[:, None, :]
    alpha = alpha.view(B, K, 1, S, S)
    # --- background: grey level, low-frequency shading, tiled noise at a random offset -------
    r = uniform(seed, index.to(dev), 20, 20)
    base = 0.35 + 0.3 * r[:, :1]
    shade = F.interpolate((r[:, 1:17].view(B, 1, 4, 4) - 0.5) * 0.25, size=(S, S), mode="bilinear",
                          align_corners=False)
    ox, oy = (r[:, 17] * NOISE).long(), (r[:, 18] * NOISE).long()
    ar = torch.arange(S, device=dev)
    rows, cols = (oy[:, None] + ar) % NOISE, (ox[:, None] + ar) % NOISE
    noise = _noise_texture(dev)[:, rows[:, :, None], cols[:, None, :]].permute(1, 0, 2, 3)
    img = base[:, :, None, None] + shade + 0.12 * r[:, 19, None, None, None] * noise
    # --- composite objects back to front ----------------------------------------------------
    rgb = torch.tensor(list(COLOURS.values()), device=dev)[scenes.colour]  # (B, K, 3)
    for k in range(K):
        img = torch.lerp(img, rgb[:, k, :, None, None], alpha[:, k])
    return img.clamp_(0, 1)
