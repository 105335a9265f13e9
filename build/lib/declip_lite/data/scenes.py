"""ShapeCaps scenes: the attribute space and a counter-based sampler.

Every scene is a pure function of ``(seed, index)``: random numbers come from an integer
hash of (seed, index, stream), not from a stateful generator, so any subset of a 10 M-pair
dataset can be drawn in any order, in one batched call, on the CPU or the GPU, and nothing is
stored.
"""
from dataclasses import dataclass

import torch

GEOMETRIC = ["circle", "square", "triangle", "diamond", "star", "cross", "hexagon", "ring"]
DIGITS = [str(d) for d in range(10)]
SHAPES = GEOMETRIC + DIGITS  # shape id < 8: geometric; >= 8: a digit glyph
COLOURS = {
    "red": (0.86, 0.12, 0.12), "orange": (0.96, 0.52, 0.05), "yellow": (0.95, 0.88, 0.10),
    "green": (0.15, 0.70, 0.20), "cyan": (0.10, 0.80, 0.85), "blue": (0.12, 0.25, 0.90),
    "purple": (0.55, 0.15, 0.80), "pink": (0.98, 0.45, 0.75),
}
COLOUR_NAMES = list(COLOURS)
SIZES = ["small", "medium", "large"]
SIZE_RADIUS = (0.12, 0.18, 0.26)  # object radius as a fraction of the image side
POSITIONS = ["left", "right", "top", "bottom", "middle"]
POSITION_XY = ((0.25, 0.5), (0.75, 0.5), (0.5, 0.25), (0.5, 0.75), (0.5, 0.5))
COUNTS = ["one", "two", "three"]
KINDS = ["single", "group", "relation"]  # one object; 2-3 identical objects; two related objects
MAX_OBJECTS = 3


def heldout_colour(shape):
    """The one colour each geometric shape never wears in training (the composition split)."""
    return (3 * shape + 1) % len(COLOURS)


def _mix32(x):
    """A 32-bit integer hash (lowbias32) carried in int64, so it runs on every device."""
    m = 0xFFFFFFFF
    x = (x ^ (x >> 16)) & m
    x = (x * 0x7FEB352D) & m
    x = (x ^ (x >> 15)) & m
    x = (x * 0x846CA68B) & m
    return (x ^ (x >> 16)) & m


def uniform(seed, index, stream, n):
    """``(len(index), n)`` uniforms in [0, 1), a pure function of (seed, index, stream, column)."""
    index = index.to(torch.int64)
    key = _mix32(_mix32(torch.as_tensor(seed, dtype=torch.int64, device=index.device) & 0xFFFFFFFF)
                 ^ (stream * 0x9E3779B9 & 0xFFFFFFFF))
    cols = torch.arange(n, device=index.device, dtype=torch.int64)
    x = _mix32(_mix32(key ^ (index & 0xFFFFFFFF))[:, None] ^ (cols * 0x85EBCA6B & 0xFFFFFFFF))
    return (x >> 8).float() / float(1 << 24)


def randint(seed, index, stream, n, high):
    """``(len(index), n)`` integers in [0, high); ``high`` may be a tensor broadcast per row."""
    u = uniform(seed, index, stream, n)
    return (u * high).long().clamp_max(torch.as_tensor(high, device=u.device) - 1)


@dataclass
class Scenes:
    """A batch of scenes; object tensors are ``(B, MAX_OBJECTS)``, unused slots have active=False."""
    kind: torch.Tensor
    active: torch.Tensor
    shape: torch.Tensor
    colour: torch.Tensor
    size: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor
    position: torch.Tensor  # single objects: index into POSITIONS; relations: 0 horizontal, 1 vertical

    def __len__(self):
        return len(self.kind)


def sample_scenes(seed, index, kinds=(0.5, 0.25, 0.25), shapes=None, counts=None, holdout=True):
    """Draw scenes for ``index`` (a 1-D int tensor).

    kinds: probabilities of single / group / relation scenes. shapes: restrict single-scene
    shapes to these ids (the zero-shot tasks use it). counts: force group sizes (1 = single).
    holdout: keep the held-out shape x colour combinations out (training and attribute tasks).
    """
    B, K, dev = len(index), MAX_OBJECTS, index.device
    u = uniform(seed, index, 1, 16)
    probs = torch.tensor(kinds, device=dev).cumsum(0)
    kind = (u[:, :1] > probs[None, :-1]).sum(1)
    n_geo, n_col = len(GEOMETRIC), len(COLOURS)
    shape_pool = (torch.arange(len(SHAPES), device=dev) if shapes is None
                  else torch.as_tensor(shapes, device=dev))
    shape = shape_pool[randint(seed, index, 2, K, len(shape_pool))]
    shape = torch.where(kind[:, None] == 1, shape % n_geo, shape)  # groups are geometric
    colour = randint(seed, index, 3, K, n_col)
    size = randint(seed, index, 4, K, 3)
    jitter = (uniform(seed, index, 5, 2 * K) - 0.5) * 0.12
    position = randint(seed, index, 6, 1, len(POSITIONS))[:, 0]

    # single: one object at one of five anchors
    anchor = torch.tensor(POSITION_XY, device=dev)[position]
    x = anchor[:, :1].expand(B, K).clone()
    y = anchor[:, 1:].expand(B, K).clone()
    count = torch.ones(B, dtype=torch.long, device=dev)
    # group: 2-3 identical small/medium objects in distinct cells of a 3x3 grid
    group_count = (2 + (u[:, 1] > 0.5).long() if counts is None
                   else torch.as_tensor(counts, device=dev).expand(B))
    cells = uniform(seed, index, 7, 9).argsort(1)[:, :K]
    gx, gy = (cells % 3).float() / 3 + 1 / 6, (cells // 3).float() / 3 + 1 / 6
    is_group = kind == 1
    count = torch.where(is_group, group_count, count)
    x, y = torch.where(is_group[:, None], gx, x), torch.where(is_group[:, None], gy, y)
    for attr in (shape, colour, size):
        attr.copy_(torch.where(is_group[:, None], attr[:, :1].expand(B, K), attr))
    size.copy_(torch.where(is_group[:, None], size.clamp_max(1), size))
    # relation: two different objects, side by side (position 0) or one above the other (1)
    is_rel = kind == 2
    vertical = (u[:, 2] > 0.5).long()
    # object 0 takes the first place (left or top); the grammar randomises which is named first
    along = torch.tensor([0.27, 0.73, 0.27], device=dev).expand(B, K)
    across = torch.full((B, K), 0.5, device=dev)
    rx, ry = (torch.where(vertical[:, None] == 1, across, along),
              torch.where(vertical[:, None] == 1, along, across))
    x, y = torch.where(is_rel[:, None], rx, x), torch.where(is_rel[:, None], ry, y)
    count = torch.where(is_rel, torch.full_like(count, 2), count)
    same = (shape[:, 1] == shape[:, 0]) & (colour[:, 1] == colour[:, 0])
    colour[:, 1] = torch.where(is_rel & same, (colour[:, 1] + 1) % n_col, colour[:, 1])
    size.copy_(torch.where(is_rel[:, None], size.clamp_max(1), size))
    position = torch.where(is_rel, vertical, position)

    active = torch.arange(K, device=dev)[None] < count[:, None]
    if holdout:
        banned = (shape < n_geo) & (colour == heldout_colour(shape))
        colour = torch.where(banned, (colour + 1) % n_col, colour)
        if is_rel.any():  # the fix above must not make the two related objects identical
            same = is_rel & (shape[:, 1] == shape[:, 0]) & (colour[:, 1] == colour[:, 0])
            shape[:, 1] = torch.where(same, (shape[:, 1] + 1) % n_geo, shape[:, 1])
    x, y = x + jitter[:, :K], y + jitter[:, K:]
    return Scenes(kind, active, shape, colour, size, x, y, position)


def content_key(scenes):
    """(B,) int: equal iff two scenes show the same kind, count, shapes and colours (sizes and
    places aside), the facts most captions state. Neighbour precision compares these."""
    key = scenes.kind * 4 + scenes.active.sum(1)
    for k in range(MAX_OBJECTS):
        obj = torch.where(scenes.active[:, k], scenes.shape[:, k] * len(COLOURS) + scenes.colour[:, k], -1)
        key = key * (len(SHAPES) * len(COLOURS) + 1) + obj + 1
    return key
