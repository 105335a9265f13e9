"""Training batches: the image views and text views an objective asks for, already on the device.

Batch ``step`` is a pure function of (seed, step): the epoch's permutation is seeded by the
epoch, the augmentations by the step. A resumed run therefore sees exactly the batches the
uninterrupted run would have seen.
"""
import torch

from ..distributed import world
from ..draws import Draws
from ..text.augment import TokenEDA, mask_tokens
from .captions import ATTRIBUTE_WORDS, SYNONYM_GROUPS
from .scenes import content_key
from .views import AUGMENTATIONS, augment, object_boxes

CACHE_BYTES = 2**31  # cache rendered images (uint8) when the whole set fits in this


def _generator(device, *keys):
    seed = 0
    for k in keys:
        seed = (seed * 1_000_003 + int(k)) % (2**63 - 1)
    return torch.Generator(device=device).manual_seed(seed)


class PairBatches:
    """Batches of ``dataset`` for an objective with ``image_views`` and ``text_views``.
    ``batch_size`` is per process: under torchrun each rank takes its slice of the global batch.

    Text views: "caption" (tokens), "masked" (MLM-masked caption; adds ``mlm_targets``) and
    "eda" (token-level EDA; ``eda``: a :class:`TokenEDA`, ShapeCaps' synonyms by default).
    ``augmentation`` names an entry of ``AUGMENTATIONS``, or gives one name per image view
    (SLIP: a weak view for CLIP, two strong ones for SimCLR).
    """

    def __init__(self, dataset, tokenizer, batch_size, image_views=1, text_views=("caption",),
                 augmentation="clip", mask_prob=0.15, seed=0, device=None, eda=None):
        if batch_size < 2 or batch_size > len(dataset):
            raise ValueError(f"PairBatches: batch_size={batch_size} must be in "
                             f"[2, len(dataset)={len(dataset)}]")
        per_view = [augmentation] * image_views if isinstance(augmentation, str) else list(augmentation)
        if len(per_view) != image_views or not set(per_view) <= set(AUGMENTATIONS):
            raise ValueError(f"PairBatches: augmentation={augmentation!r} must be one name, or {image_views} "
                             f"names, from {sorted(AUGMENTATIONS)}")
        if len({AUGMENTATIONS[a].flip == "rewrite" for a in per_view}) > 1:
            raise ValueError("PairBatches: flip='rewrite' rewrites the caption, so every view must use it "
                             "or none")
        unknown = set(text_views) - {"caption", "masked", "eda"}
        if unknown:
            raise ValueError(f"PairBatches: unknown text view(s) {sorted(unknown)}")
        self.dataset, self.tokenizer, self.batch_size = dataset, tokenizer, batch_size
        self.image_views, self.text_views = image_views, tuple(text_views)
        self.augs, self.mask_prob, self.seed = [AUGMENTATIONS[a] for a in per_view], mask_prob, seed
        self.device = torch.device(device or dataset.device)
        n, S = len(dataset), dataset.image_size
        everything = torch.arange(n)
        tokens = torch.cat([tokenizer.encode(dataset.captions(everything[i:i + 8192]))
                            for i in range(0, n, 8192)])
        longest = int((tokens != tokenizer.pad_id).sum(1).max())  # pads trail: no caption needs more columns
        # one fixed text shape for the run, no per-step trim
        self.tokens = tokens[:, :longest].to(self.device)
        if hasattr(dataset, "scenes"):  # ShapeCaps: object boxes and what each image shows
            scenes = dataset.scenes(everything)
            self.boxes, self.content = (object_boxes(scenes).to(self.device),
                                        content_key(scenes).to(self.device))
        else:  # real images: the whole frame, and every image its own content
            self.boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0]], device=self.device).expand(n, 4)
            self.content = everything.to(self.device)
        self.images = None
        if n * 3 * S * S <= CACHE_BYTES:
            chunk = max(64, 4096 * 32 * 32 // S ** 2)  # about 50 MB of floats at any image size
            self.images = torch.cat([(dataset.images(everything[i:i + chunk]) * 255).round().to(torch.uint8)
                                     for i in range(0, n, chunk)]).to(self.device)
        # ShapeCaps' synonyms by default
        self.eda = eda or TokenEDA(tokenizer, SYNONYM_GROUPS, ATTRIBUTE_WORDS)
        self._epoch_order = (None, None)
        self.left_right = torch.tensor([tokenizer.ids.get(w, tokenizer.unk_id) for w in ("left", "right")],
                                       device=self.device)

    @classmethod
    def for_objective(cls, dataset, tokenizer, batch_size, objective, augmentation="clip", **options):
        """Batches with the image and text views ``objective`` declares: each image view gets the
        objective's own augmentation (SLIP's strong views) or else ``augmentation``."""
        per_view = [name or augmentation for name in objective.view_augmentations]
        return cls(dataset, tokenizer, batch_size, len(per_view), objective.text_views, per_view, **options)

    @property
    def steps_per_epoch(self):
        return len(self.dataset) // (self.batch_size * world()[1])

    def indices(self, step):
        """This rank's share of global batch ``step`` (one process: the whole batch)."""
        rank, size = world()
        epoch, k = divmod(step, self.steps_per_epoch)
        if self._epoch_order[0] != epoch:  # one permutation an epoch, moved to the device once
            perm = torch.randperm(len(self.dataset), generator=_generator("cpu", self.seed, epoch))
            self._epoch_order = (epoch, perm.to(self.device))
        start = (k * size + rank) * self.batch_size
        return self._epoch_order[1][start:start + self.batch_size]

    def pixels(self, index):
        if self.images is not None:
            return self.images[index].float() / 255
        return self.dataset.images(index.to(self.dataset.device)).to(self.device)

    def _rewrite_left_right(self, tokens, flipped):
        left, right = self.left_right
        swapped = torch.where(tokens == left, right, torch.where(tokens == right, left, tokens))
        return torch.where(flipped[:, None], swapped, tokens)

    def batch(self, step):
        """{"images": (V, B, 3, S, S), "texts": {name: (B, L)}, "ids": (B,), "content": (B,),
        ["mlm_targets"]}; ``content`` keys what each image shows (see ``scenes.content_key``)."""
        index = self.indices(step)
        g = _generator(self.device, self.seed, step, 1 + world()[0])
        return assemble(self, self.pixels(index), self.tokens[index], self.boxes[index], index,
                        self.content[index], Draws([g], len(index), self.device))


def assemble(maker, pixels, tokens, boxes, ids, content, draws):
    """A batch from its rows (of one run, or of K runs joined: :class:`JoinedBatches`) and its
    ``draws``: the image views ``maker`` declares, then its text views, drawing in the same order."""
    flipped = None
    if maker.augs[0].flip == "rewrite":  # one flip decision per pair, shared by views and caption
        flipped = draws.rand() < 0.5
        tokens = maker._rewrite_left_right(tokens, flipped)
    images = torch.stack([augment(pixels, aug, draws, boxes, flipped) for aug in maker.augs])
    out = {"images": images, "texts": {}, "ids": ids, "content": content}
    for name in maker.text_views:
        if name == "caption":
            out["texts"][name] = tokens
        elif name == "masked":
            out["texts"][name], out["mlm_targets"] = mask_tokens(tokens, maker.tokenizer, maker.mask_prob,
                                                                 draws)
        else:
            out["texts"][name] = maker.eda(tokens, draws)
    return out


class JoinedBatches:
    """K runs' :class:`PairBatches` (one objective's views and batch size, one tokenizer, cached
    images) made as one: ``batch(step)`` holds each run's own batch ``step`` bit for bit, stacked
    (K, ...), captions padded to the widest run's. Each run draws from its own generators exactly
    as alone (``Draws``); everything else runs once over K x B rows, from tables joined once."""

    def __init__(self, makers):
        if not self.can_join(makers):
            raise ValueError("JoinedBatches: the runs must be PairBatches that share batch size, views and "
                             "their augmentation, masking and tokenizer, and cache their images")
        first = makers[0]
        self.makers, self.device, width = makers, first.device, max(m.tokens.shape[1] for m in makers)
        pad_id = first.tokenizer.pad_id
        pad = lambda t: torch.nn.functional.pad(t, (0, width - t.shape[1]), value=pad_id)  # noqa: E731
        self.images = torch.cat([m.images for m in makers])
        self.tokens = torch.cat([pad(m.tokens) for m in makers])
        self.boxes, self.content = (torch.cat([m.boxes for m in makers]),
                                    torch.cat([m.content for m in makers]))
        self.offsets = torch.tensor([0] + [len(m.dataset) for m in makers[:-1]], device=self.device).cumsum(0)
        self.widths = [m.tokens.shape[1] for m in makers]
        self.positions = Draws.token_positions(self.widths, first.batch_size, self.device)

    @staticmethod
    def can_join(makers):
        if not all(type(m) is PairBatches and m.images is not None and "batch" not in vars(m)
                   for m in makers):
            return False  # another maker, uncached images, or a batch() replaced on the instance: made alone
        return len({(m.batch_size, tuple(m.augs), m.text_views, m.mask_prob, repr(m.tokenizer.state_dict()))
                    for m in makers}) == 1

    def batch(self, step):
        ms, K = self.makers, len(self.makers)
        ids = torch.cat([m.indices(step) for m in ms])
        rows = ids + self.offsets.repeat_interleave(ms[0].batch_size)
        gens = [_generator(self.device, m.seed, step, 1 + world()[0]) for m in ms]
        draws = Draws(gens, ms[0].batch_size, self.device, self.widths, self.positions)
        out = assemble(ms[0], self.images[rows].float() / 255, self.tokens[rows], self.boxes[rows], ids,
                       self.content[rows], draws)
        split = lambda t: t.view(K, -1, *t.shape[1:])  # noqa: E731
        return {"images": out["images"].view(out["images"].shape[0], K, -1,
                                             *out["images"].shape[2:]).transpose(0, 1),
                "texts": {k: split(v) for k, v in out["texts"].items()},
                **{k: split(out[k]) for k in ("ids", "content", "mlm_targets") if k in out}}


def shapecaps_tokenizer(context_length=24):
    """The word-level tokenizer over every word ShapeCaps captions and task prompts use."""
    from ..text.tokenizer import WordTokenizer
    from .captions import corpus
    from .shapecaps import TASKS

    prompts = [t.format(c) for names, templates in TASKS.values() for t in templates for c in names]
    return WordTokenizer.from_corpus(corpus() + prompts, context_length)
