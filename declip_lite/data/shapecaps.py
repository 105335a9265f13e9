"""ShapeCaps: the embedded captioned-image dataset, and its zero-shot "downstream datasets"."""
import random
from dataclasses import dataclass

import torch

from .captions import NOUNS, caption, scene_dicts
from .render import render
from .scenes import COLOUR_NAMES, COUNTS, DIGITS, GEOMETRIC, SIZES, heldout_colour, randint, \
    sample_scenes, uniform

MAX_PAIRS = 10_000_000


def _check(name, value, lo, hi):
    if not lo <= value <= hi:
        raise ValueError(f"ShapeCaps: {name}={value!r} is out of range; expected {lo} <= {name} <= {hi}")


class ShapeCaps:
    """``n`` captioned images; pair ``i`` is a pure function of ``(seed, i)`` and nothing is stored.

    ``wrong_attribute_rate``: share of captions with one wrong attribute (colour or shape).
    ``swap_rate``: share of captions that belong to another image of the dataset.
    """

    def __init__(self, n, seed=0, image_size=32, wrong_attribute_rate=0.0, swap_rate=0.0,
                 kinds=(0.5, 0.25, 0.25), device="cpu"):
        _check("n", n, 1, MAX_PAIRS)
        _check("image_size", image_size, 32, 128)
        _check("wrong_attribute_rate", wrong_attribute_rate, 0.0, 1.0)
        _check("swap_rate", swap_rate, 0.0, 1.0)
        if len(kinds) != 3 or abs(sum(kinds) - 1) > 1e-6 or min(kinds) < 0:
            raise ValueError(f"ShapeCaps: kinds={kinds!r} must be 3 probabilities (single, group, relation) "
                             f"summing to 1")
        self.n, self.seed, self.image_size, self.kinds = n, seed, image_size, kinds
        self.wrong_attribute_rate, self.swap_rate = wrong_attribute_rate, swap_rate
        self.device = torch.device(device)

    def __len__(self):
        return self.n

    def _index(self, index):
        index = torch.as_tensor(index, dtype=torch.long, device=self.device).flatten()
        if len(index) and (index.min() < 0 or index.max() >= self.n):
            raise IndexError(f"ShapeCaps: index out of range for a dataset of {self.n} pairs")
        return index

    def scenes(self, index):
        return sample_scenes(self.seed, self._index(index), self.kinds)

    def images(self, index):
        """``(B, 3, S, S)`` images in [0, 1] on the dataset's device."""
        index = self._index(index)
        return render(sample_scenes(self.seed, index, self.kinds), self.image_size, self.seed, index)

    def _noise(self, index):
        swapped = uniform(self.seed, index, 30, 1)[:, 0] < self.swap_rate
        source = torch.where(swapped, randint(self.seed, index, 31, 1, self.n)[:, 0], index)
        wrong = (uniform(self.seed, index, 32, 1)[:, 0] < self.wrong_attribute_rate) & ~swapped
        return source, wrong, swapped

    def captions(self, index):
        """The (possibly noisy) captions; a swapped caption is another pair's clean caption."""
        index = self._index(index)
        source, wrong, _ = self._noise(index)
        scenes = scene_dicts(sample_scenes(self.seed, source, self.kinds))
        return [caption(s, random.Random(self.seed * 1_000_003 + i), w)
                for s, i, w in zip(scenes, source.tolist(), wrong.tolist())]

    def noisy(self, index):
        """Which pairs carry a wrong-attribute or swapped caption (ground truth for filters)."""
        _, wrong, swapped = self._noise(self._index(index))
        return wrong | swapped

    def subset(self, indices):
        return Subset(self, indices)

    def __getitem__(self, i):
        return self.images([i])[0], self.captions([i])[0]


class Subset:
    """Pairs ``indices`` of a dataset, renumbered 0..len-1: what a data filter keeps."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = torch.as_tensor(indices, dtype=torch.long, device=dataset.device).flatten()
        self.image_size, self.device = dataset.image_size, dataset.device

    def __len__(self):
        return len(self.indices)

    def _source(self, index):
        return self.indices[torch.as_tensor(index, dtype=torch.long, device=self.device).flatten()]

    def scenes(self, index):
        return self.dataset.scenes(self._source(index))

    def images(self, index):
        return self.dataset.images(self._source(index))

    def captions(self, index):
        return self.dataset.captions(self._source(index))

    def noisy(self, index):
        return self.dataset.noisy(self._source(index))


@dataclass
class ZeroShotTask:
    """A labelled downstream dataset: images, labels, class names and prompt templates."""
    name: str
    classnames: list
    templates: list
    images: torch.Tensor
    labels: torch.Tensor
    attributes: dict = None  # one object an image: {"shape", "colour", ...: (N,) index into TASKS' names}

    def __len__(self):
        return len(self.labels)


_PLURALS = [pairs[0][1] for pairs in NOUNS.values()]
TASKS = {  # name: (class names, templates); templates use only words the captions use
    "shape": (GEOMETRIC, ["a {}", "there is a {}", "a picture of a {}", "a photo of a {}",
                          "a {} on a grey background", "an image of a {}"]),
    "colour": (COLOUR_NAMES, [f"a {{}} {s}" for s in GEOMETRIC]
               + ["a {} digit", "a picture of something {}"]),
    "size": (SIZES, [f"a {{}} {s}" for s in GEOMETRIC]),
    "position": (["on the left", "on the right", "at the top", "at the bottom", "in the middle"],
                 [f"a {s} {{}}" for s in GEOMETRIC]),  # same order as scenes.POSITIONS
    "count": (COUNTS, [f"{{}} {p}" for p in _PLURALS] + [f"there are {{}} {p}" for p in _PLURALS[:4]]),
    "digit": (DIGITS, ["the digit {}", "the number {}", "a {}", "a picture of the digit {}",
                       "a photo of a {}"]),
    # images show only held-out shape x colour pairs; the classes are all 64 pairs
    "composition": ([f"{c} {s}" for s in GEOMETRIC for c in COLOUR_NAMES],
                    ["a {}", "there is a {}", "a picture of a {}", "a photo of a {}"]),
}
TASK_SEED_OFFSET = 7_000_003  # tasks draw from seeds no training set uses


def make_task(name, n=512, seed=0, image_size=32, device="cpu"):
    """The zero-shot task ``name`` with ``n`` single-label images, drawn from held-out seeds."""
    if name not in TASKS:
        raise ValueError(f"make_task: unknown task {name!r}; choose from {sorted(TASKS)}")
    _check("n", n, 1, MAX_PAIRS)
    classnames, templates = TASKS[name]
    task_seed = seed + TASK_SEED_OFFSET * (1 + list(TASKS).index(name))
    index = torch.arange(n, device=device)
    single, geo = (1.0, 0.0, 0.0), range(len(GEOMETRIC))
    if name == "count":
        counts = 1 + randint(task_seed, index, 40, 1, 3)[:, 0]
        scenes = sample_scenes(task_seed, index, (0.0, 1.0, 0.0), counts=counts)
        labels = counts - 1
    elif name == "digit":
        scenes = sample_scenes(task_seed, index, single, shapes=range(len(GEOMETRIC), len(GEOMETRIC) + 10))
        labels = scenes.shape[:, 0] - len(GEOMETRIC)
    elif name == "colour":
        scenes = sample_scenes(task_seed, index, single)
        labels = scenes.colour[:, 0]
    else:
        scenes = sample_scenes(task_seed, index, single, shapes=geo, holdout=name != "composition")
        if name == "composition":
            scenes.colour[:, 0] = heldout_colour(scenes.shape[:, 0])
        labels = {"shape": scenes.shape[:, 0], "size": scenes.size[:, 0], "position": scenes.position,
                  "composition": scenes.shape[:, 0] * len(COLOUR_NAMES) + scenes.colour[:, 0]}[name]
    images = render(scenes, image_size, task_seed, index)
    attributes = None if name == "count" else {  # what else each image shows, beyond its label
        "colour": scenes.colour[:, 0], "size": scenes.size[:, 0], "position": scenes.position,
        **({"shape": scenes.shape[:, 0]} if name not in ("digit", "colour") else {})}  # geometric shapes only
    return ZeroShotTask(name, list(classnames), list(templates), images, labels.clone(), attributes)


def make_tasks(names=tuple(TASKS), n=512, seed=0, image_size=32, device="cpu"):
    return {t: make_task(t, n, seed, image_size, device) for t in names}

