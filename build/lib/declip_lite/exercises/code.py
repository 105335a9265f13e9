"""Exercises that re-derive a library function: the student's code is graded on random inputs
against it."""
import torch
import torch.nn.functional as F

from ..data.loader import shapecaps_tokenizer
from ..data.shapecaps import ShapeCaps
from ..evaluate import classification_metrics, prompts
from ..objectives.clip import contrastive_loss
from ..objectives.declip import WEIGHTS
from ..objectives.filip import token_wise_logits
from ..objectives.mvs import multi_view_loss
from ..objectives.nns import NNQueue
from ..objectives.simsiam import simsiam_loss
from ..report import compare
from ..runs.records import Summary
from ..text.augment import IGNORE, content_positions
from .grading import _call, _close, _embeddings, _host, exercise


# 00 · the data
@exercise("00.prompts")
def _prompts(fn):
    classnames, templates = ["star", "ring", "cross"], ["a {}", "a photo of a {}."]
    mine = _call(fn, classnames, templates)
    flat = [p for row in mine for p in row] if mine and isinstance(mine[0], (list, tuple)) else list(mine)
    if sorted(flat) == sorted(prompts(classnames, templates)) and flat != prompts(classnames, templates):
        return "the right prompts in another order: all templates of the first class, then the next class"
    return None if flat == prompts(classnames, templates) else "every template filled with every class name"


# 01 · CLIP
@exercise("01.clip_loss")
def _clip_loss(fn):
    image, text = _embeddings()
    expected = contrastive_loss(image, text, 10.0)
    mine = _call(fn, image, text, 10.0)
    cosines, diagonal = F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T, torch.arange(16)
    for wrong, hint in ((F.cross_entropy(10 * cosines, diagonal),
                         "only image->text: average both directions"),
                        (contrastive_loss(image, text, 1.0), "the logits are the cosines times the scale"),
                        (0.5 * (F.cross_entropy(10 * image @ text.T, diagonal)
                                + F.cross_entropy(10 * text @ image.T, diagonal)),
                         "normalise the embeddings first")):
        if torch.allclose(_host(mine), wrong, atol=1e-4):
            return hint
    return _close(mine, expected, "loss")


# 02 · image self-supervision
@exercise("02.simsiam_loss")
def _simsiam(fn):
    g = torch.Generator().manual_seed(2)
    p1, p2, z1, z2 = (torch.randn(8, 6, generator=g, requires_grad=True) for _ in range(4))
    mine = _call(fn, p1, p2, z1, z2)
    wrong = _close(mine.detach(), simsiam_loss(p1, p2, z1, z2).detach(), "loss")
    if wrong:
        return wrong + " (the mean negative cosine of each p with the other view's z, averaged over both)"
    mine.backward()
    if z1.grad is not None and z1.grad.abs().sum() > 0:
        return "the value is right, but gradients reach z: stop them (z.detach())"
    return None


# 03 · text self-supervision
@exercise("03.mask_tokens")
def _mask_tokens(fn):
    tokenizer = shapecaps_tokenizer()
    tokens = tokenizer.encode(ShapeCaps(400, seed=3).captions(range(400))).repeat(10, 1)
    masked, targets = (t.cpu() for t in _call(fn, tokens, tokenizer, 0.15, torch.Generator().manual_seed(3)))
    content = content_positions(tokens, tokenizer)
    selected = targets != IGNORE
    if (selected & ~content).any():
        return "special tokens (PAD, SOT, EOT, MASK) are never selected"
    if not torch.equal(targets[selected], tokens[selected]):
        return "targets are the original words at the selected positions, IGNORE (-100) elsewhere"
    if not torch.equal(masked[~selected], tokens[~selected]):
        return "unselected positions stay as they were"
    rate = selected.sum() / content.sum()
    if abs(rate - 0.15) > 0.01:
        return f"{rate:.1%} of the words selected, expected 15 %"
    as_mask = (masked[selected] == tokenizer.mask_id).float().mean()
    kept = (masked[selected] == tokens[selected]).float().mean()
    if abs(as_mask - 0.8) > 0.02 or abs(kept - 0.1) > 0.02:
        return (f"of the selected: {as_mask:.0%} MASK and {kept:.0%} unchanged, expected 80 % and 10 % "
                f"(and 10 % random)")
    return None


# 04 · multi-view
@exercise("04.multi_view_loss")
def _multi_view(fn):
    g = torch.Generator().manual_seed(4)
    images, texts = ([torch.randn(8, 6, generator=g) for _ in range(2)],
                     [torch.randn(8, 6, generator=g) for _ in range(2)])
    mine = _call(fn, images, texts, 10.0)
    diagonal = sum(contrastive_loss(i, t, 10.0) for i, t in zip(images, texts)) / 2
    if torch.allclose(_host(mine), diagonal, atol=1e-4):
        return "only two of the four pairs: every image view with every text view"
    return _close(mine, multi_view_loss(images, texts, 10.0), "loss")


# 05 · nearest neighbours
@exercise("05.nn_lookup")
def _nn_lookup(fn):
    g = torch.Generator().manual_seed(5)
    queue = NNQueue(6, size=32, exclude_self=True)
    queue.enqueue(torch.randn(32, 6, generator=g), ids=torch.arange(32))
    text, ids = queue.features[:8] + 0.01 * torch.randn(8, 6, generator=g), torch.arange(8)
    expected = queue.lookup(text * 3, ids)[2]
    mine = torch.as_tensor(_call(fn, queue.features, queue.ids, text * 3, ids)).cpu()
    if torch.equal(mine, torch.arange(8)):
        return "every caption found itself: exclude the queue entries with the caption's own id"
    return (None if torch.equal(mine, expected)
            else "the slot of the highest cosine, among the other samples' entries")


# 06 · DeCLIP
@exercise("06.total_loss")
def _total_loss(fn, weights=WEIGHTS):
    terms = {"clip": torch.tensor(2.0), "nns": torch.tensor(3.0), "simsiam": torch.tensor(-0.9),
             "mlm": torch.tensor(1.5), "mlm_acc": torch.tensor(0.4)}
    expected = sum(weights[k] * terms[k] for k in weights)
    mine = _call(fn, terms, weights)
    if torch.allclose(_host(mine), expected + terms["mlm_acc"]):
        return "mlm_acc is a diagnostic, not a loss: sum only the weighted terms"
    return _close(mine, expected, "total")


# 07 · findings
@exercise("07.paired_interval")
def _paired_interval(fn):
    clip, declip = (0.62, 0.62, 0.59, 0.60, 0.58), (0.68, 0.68, 0.61, 0.64, 0.63)
    row = lambda v: Summary("m", None, {}, tuple(range(5)), {"mean": v})  # noqa: E731
    c = compare(row(clip), row(declip))
    mine = _call(fn, clip, declip)
    if len(mine) != 3:
        return "return (difference, low, high)"
    welch = compare(row(clip), Summary("m", None, {}, tuple(range(5, 10)), {"mean": declip}))
    if abs(mine[1] - welch.low) < 1e-4:
        return "that is Welch's interval: the seeds pair the runs, so use the per-seed differences"
    return _close(mine, torch.tensor([c.difference, c.low, c.high]), "(difference, low, high)")


# 08 · the CLIP benchmark
@exercise("08.token_wise")
def _token_wise(fn):
    g = torch.Generator().manual_seed(8)
    x, y = (F.normalize(torch.randn(1, 9, 4, generator=g), dim=-1),
            F.normalize(torch.randn(1, 5, 4, generator=g), dim=-1))
    keep_x, keep_y = torch.ones(1, 9, dtype=torch.bool), torch.ones(1, 5, dtype=torch.bool)
    i2t = token_wise_logits(x, y, keep_x, keep_y, 1.0)[0][0, 0]
    mine = _call(fn, x[0], y[0])
    if torch.allclose(_host(mine), (x[0] @ y[0].T).max(0).values.mean()):
        return ("that is text->image (each token's best patch): average over patches of each patch's "
                "best token")
    return _close(mine, i2t, "image->text logit")


# 09 · your own data
@exercise("09.top1")
def _top1(fn):
    g = torch.Generator().manual_seed(9)
    images, classes = (F.normalize(torch.randn(50, 6, generator=g), dim=-1),
                       F.normalize(torch.randn(4, 6, generator=g), dim=-1))
    labels = torch.randint(0, 4, (50,), generator=g)
    expected = classification_metrics(images @ classes.T, labels, 4)["top1"]
    return _close(_call(fn, images, classes, labels), torch.tensor(expected), "top-1")
