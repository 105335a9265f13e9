"""Real images no one in this project made, as zero-shot tasks: scikit-learn's handwritten
digits, torchvision's CIFAR-10/100 and STL-10, and any ImageNet-style folder of class folders.

``load_digits`` holds 1,797 scanned 8x8 handwritten digits (UCI optdigits). ShapeCaps only ever
shows font-rendered digits, so zero-shot accuracy there measures transfer to real handwriting.
Every task is a :class:`ZeroShotTask`, so ``evaluate.zero_shot`` gives the same metrics and JSON.
"""
import functools
import importlib.util
import os
import pathlib

import numpy as np
import torch
import torch.nn.functional as F

from .scenes import COLOURS, DIGITS, SIZE_RADIUS
from .shapecaps import TASKS, ZeroShotTask


@functools.lru_cache(maxsize=1)
def _handwritten():
    """scikit-learn's digits as (images (1797, 8, 8), targets), read from the CSV file it ships:
    ``load_digits`` reads the same file, after importing all of ``sklearn.datasets`` (1.5 s)."""
    path = (pathlib.Path(importlib.util.find_spec("sklearn").origin).parent
            / "datasets" / "data" / "digits.csv.gz")
    table = np.loadtxt(path, delimiter=",")
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)


def sklearn_digits(image_size=32, device="cpu", n=None):
    """The first ``n`` (default all) digits, each centred at ShapeCaps' "large" size, in one of
    its colours (cycling) on grey."""
    images, target = (a[:n] for a in _handwritten())
    alpha = torch.tensor(images, dtype=torch.float32)[:, None] / 16  # ink, (N, 1, 8, 8)
    side = round(2 * SIZE_RADIUS[-1] * image_size)
    alpha = F.interpolate(alpha, size=(side, side), mode="bilinear", align_corners=False).clamp(0, 1)
    before = (image_size - side) // 2
    alpha = F.pad(alpha, (before, image_size - side - before) * 2)
    colours = torch.tensor(list(COLOURS.values()))[torch.arange(len(alpha)) % len(COLOURS)]
    images = torch.lerp(torch.full_like(alpha.expand(-1, 3, -1, -1), 0.5), colours[:, :, None, None], alpha)
    return ZeroShotTask("sklearn_digits", list(DIGITS), list(TASKS["digit"][1]), images.to(device),
                        torch.tensor(target, device=device))


PHOTO_TEMPLATES = ["a photo of a {}.", "a picture of a {}.", "an image of a {}.", "a photo of the {}.",
                   "a close-up photo of a {}.", "a low-resolution photo of a {}.", "a cropped photo of a {}.",
                   "a photo of a small {}.", "a photo of a large {}.", "a blurry photo of a {}."]
TORCHVISION_TASKS = {"cifar10": ("CIFAR10", {"train": False}), "cifar100": ("CIFAR100", {"train": False}),
                     "stl10": ("STL10", {"split": "test"})}


def _task(name, dataset, classnames, image_size, templates, device, n):
    from torchvision.transforms import v2

    resize = v2.Compose([v2.ToImage(), v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size),
                         v2.ToDtype(torch.float32, scale=True)])
    picks = (range(len(dataset)) if n is None
             else torch.linspace(0, len(dataset) - 1, min(n, len(dataset))).long().tolist())
    # spread over classes
    images, labels = zip(*[(resize(dataset[i][0].convert("RGB")), dataset[i][1]) for i in picks])
    return ZeroShotTask(name, [c.replace("_", " ") for c in classnames], list(templates or PHOTO_TEMPLATES),
                        torch.stack(images).to(device), torch.tensor(labels, device=device))


def torchvision_task(name, root, image_size=32, templates=None, download=False, n=None, device="cpu"):
    """CIFAR-10, CIFAR-100 or STL-10's test split (first ``n`` images) as a zero-shot task; class
    names come from torchvision. ``download=True`` fetches it into ``root`` when a network exists."""
    import torchvision.datasets as tvd

    if name not in TORCHVISION_TASKS:
        raise ValueError(f"torchvision_task: unknown {name!r}; choose from {sorted(TORCHVISION_TASKS)}")
    cls, split = TORCHVISION_TASKS[name]
    try:
        dataset = getattr(tvd, cls)(root, download=download, **split)
    except RuntimeError as e:
        raise FileNotFoundError(f"torchvision_task: {name} is not under root={root!r} ({e}); "
                                f"pass download=True where a network exists, "
                                f"or point root= at a local copy") from None
    return _task(name, dataset, dataset.classes, image_size, templates, device, n)


def image_folder_task(root, image_size=32, templates=None, n=None, device="cpu"):
    """An ImageNet-style validation folder (``root/<class name>/<images>``) as a zero-shot task."""
    from torchvision.datasets import ImageFolder

    if not os.path.isdir(root):
        raise FileNotFoundError(f"image_folder_task: {root!r} is not a folder of class folders")
    dataset = ImageFolder(root)
    return _task(os.path.basename(os.path.normpath(root)), dataset, dataset.classes, image_size, templates,
                 device, n)
