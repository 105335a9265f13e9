"""Exercises a student can check. Each notebook has at least two:

    def my_clip_loss(image, text, scale):
        ...                                   # the student's code
    exercises.check("01.clip_loss", my_clip_loss)

An implementation is graded on random inputs against the library function it re-derives; a
prediction against what the notebook measured (``check("05.self_rate", answer, self_rate=...)``).
An answer still ``None`` (or a function whose body is still ``...``) prints "not attempted" and
never stops a run; a wrong one gets a hint. ``check`` returns a :class:`Verdict`. The answers
live outside the notebooks, in ``solutions/``.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .data.loader import shapecaps_tokenizer
from .data.shapecaps import ShapeCaps
from .evaluate import classification_metrics, prompts
from .objectives.clip import contrastive_loss
from .objectives.declip import WEIGHTS
from .objectives.filip import token_wise_logits
from .objectives.mvs import multi_view_loss
from .objectives.nns import NNQueue
from .objectives.simsiam import simsiam_loss
from .report import compare
from .runs.records import Summary
from .text.augment import IGNORE, content_positions

EXERCISES = {}  # name -> grader(answer, **measured): None when right, else a hint


class NotAttempted(Exception):
    """The answer is still the placeholder."""


class Accepted(str):
    """A grader's note on an answer it accepts (shown after "correct")."""


@dataclass(frozen=True)
class Verdict:
    name: str
    status: str   # "correct", "wrong" or "not attempted"
    message: str

    passed = property(lambda self: self.status == "correct")

    def __repr__(self):
        mark = {"correct": "✓", "wrong": "✗", "not attempted": "·"}[self.status]
        return f"{mark} exercise {self.name}: {self.status}" + (f". {self.message}" if self.message else "")


def exercise(name):
    def register(grader):
        EXERCISES[name] = grader
        return grader
    return register


def check(name, answer, **measured):
    """Grade ``answer`` to exercise ``name``: a :class:`Verdict` (a notebook shows it as one line)."""
    if name not in EXERCISES:
        raise KeyError(f"no exercise {name!r}; there are {sorted(EXERCISES)}")
    try:
        if answer is None or answer is Ellipsis:
            raise NotAttempted
        hint = EXERCISES[name](answer, **measured)
        verdict = Verdict(name, "correct" if hint is None or isinstance(hint, Accepted) else "wrong",
                          hint or "")
    except NotAttempted:
        verdict = Verdict(name, "not attempted", "fill in the cell above and run it again")
    except Exception as e:  # the student's code failed: say how, never stop the notebook
        verdict = Verdict(name, "wrong", f"your answer raised {type(e).__name__}: {e}")
    return verdict


def _call(fn, *args):
    out = fn(*args)
    if out is None:
        raise NotAttempted
    return out


def _host(x):
    """An answer as a float32 CPU tensor: a student's may live on the notebook's device."""
    return torch.as_tensor(x).detach().float().cpu()


def _close(mine, expected, what, tol=1e-4):
    mine, expected = _host(mine), _host(expected)
    if mine.shape != expected.shape:
        return f"{what}: shape {tuple(mine.shape)}, expected {tuple(expected.shape)}"
    if not torch.allclose(mine, expected.float(), atol=tol, rtol=tol):
        return (f"{what}: {mine.flatten()[:3].tolist()} where the library gives "
                f"{expected.flatten()[:3].tolist()}")
    return None


def _same(answer, observed, choices):
    if answer not in choices:
        return f"answer one of {choices}, not {answer!r}"
    return None if answer == observed else f"you said {answer!r}; the run measured {observed!r}. Why?"


def _row(scores):
    """A :class:`Summary` row, or {seed: score} made into one, for ``report.compare``."""
    if isinstance(scores, Summary):
        return scores
    return Summary("m", None, {}, tuple(scores), {"mean": list(scores.values())})


def _on_evidence(answer, baseline, treatment, answers):
    """A prediction graded on the interval over seeds (``report.compare``), never on one seed:
    ``answers`` maps each answer to the verdict that makes it right ("reproduced": the treatment
    scores higher, "opposite": lower). An inconclusive interval accepts every answer."""
    if answer not in answers:
        return f"answer one of {tuple(answers)}, not {answer!r}"
    c = compare(_row(baseline), _row(treatment))
    interval = ("one seed a side gives no interval" if math.isinf(c.high) else
                f"difference {c.difference:+.3f}, 95 % interval [{c.low:+.3f}, {c.high:+.3f}] "
                f"over {c.seeds} seeds")
    if c.verdict == "inconclusive":
        return Accepted(f"the evidence cannot decide ({interval}): either answer stands until more seeds do")
    right = next(a for a, verdict in answers.items() if verdict == c.verdict)
    return (Accepted(interval) if answer == right
            else f"you said {answer!r}; measured over seeds, {right!r} ({interval}). Why?")


def _embeddings(b=16, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)


# 00 · the data
@exercise("00.prompts")
def _prompts(fn):
    classnames, templates = ["star", "ring", "cross"], ["a {}", "a photo of a {}."]
    mine = _call(fn, classnames, templates)
    flat = [p for row in mine for p in row] if mine and isinstance(mine[0], (list, tuple)) else list(mine)
    if sorted(flat) == sorted(prompts(classnames, templates)) and flat != prompts(classnames, templates):
        return "the right prompts in another order: all templates of the first class, then the next class"
    return None if flat == prompts(classnames, templates) else "every template filled with every class name"


@exercise("00.chance")
def _chance(answer, tasks):
    wrong = [t for t, task in tasks.items()
             if not math.isclose(answer.get(t, -1), 1 / len(task.classnames), rel_tol=0.01)]
    return f"not {wrong}: chance is one over the number of classes, with balanced labels" if wrong else None


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


@exercise("01.log_b")
def _log_b(answer):
    image, text = _embeddings(b=128, d=64)
    measured = contrastive_loss(image, text, 1.0).item()  # random unit vectors: no pair is preferred
    if abs(answer - measured) / measured < 0.05:
        return None
    return (f"{answer:.3g} is far from the measured {measured:.2f}: with B candidates, each equally "
            f"likely, CE = log B")


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


SHORTCUT_MARGIN = 0.02  # of cosine: the shipped cpu runs end 0.057 apart (0.991 without the stop-gradient,
# 0.934 with)


@exercise("02.shortcut")
def _shortcut(answer, with_sg, without_sg):
    """``with_sg``, ``without_sg``: the two runs' final SimSiam cosines. "higher" when the run without
    the stop-gradient ends more than :data:`SHORTCUT_MARGIN` above the other, else "same"."""
    observed = "higher" if without_sg - with_sg > SHORTCUT_MARGIN else "same"
    return _same(answer, observed, ("higher", "same"))


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


@exercise("03.mlm_helps")
def _mlm_helps(answer, clip, clip_mlm):
    """``clip``, ``clip_mlm``: mean zero-shot per seed ({seed: score}) or Summary rows."""
    return _on_evidence(answer, clip, clip_mlm, {True: "reproduced", False: "opposite"})


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


@exercise("04.moco_hurts")
def _moco_hurts(answer, scores):
    """``scores[views][task]``: {seed: zero-shot top-1}. A task is right unless it rose with MoCo's
    views, or the seeds show another lost more (its interval's top below another's bottom); one
    seed a side shows nothing more."""
    drops = {t: compare(_row(scores["moco"][t]), _row(scores["clip"][t])) for t in scores["clip"]}
    if answer not in drops:
        return f"answer one of {tuple(drops)}, not {answer!r}"
    if drops[answer].difference < 0:
        return f"you said {answer!r}; with MoCo's views it rose ({-drops[answer].difference:+.3f}). Why?"
    floor = max(c.low for c in drops.values())
    possible = [t for t, c in drops.items() if c.high >= floor and c.difference >= 0]
    largest = max(drops, key=lambda t: drops[t].difference)
    if answer not in possible:
        return f"you said {answer!r}; measured over seeds, {' or '.join(map(repr, possible))} lost more. Why?"
    if len(possible) > 1:
        return Accepted(f"the largest measured drop is {largest!r} ({drops[largest].difference:+.3f}), "
                        f"but the seeds cannot rule out {len(possible) - 1} other task(s)")
    return Accepted(f"it lost {drops[answer].difference:+.3f} over {drops[answer].seeds} seeds")


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


@exercise("05.self_rate")
def _self_rate(answer, self_rate):
    return _same(answer, self_rate > 0.05, (True, False))


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


@exercise("06.largest_term")
def _largest_term(answer, last):
    terms = {k: last[k] for k in ("clip", "nns", "simsiam", "mlm")}
    return _same(answer, max(terms, key=terms.get), tuple(terms))


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


@exercise("07.verdict")
def _verdict(answer, verdict):
    return _same(answer, verdict, ("reproduced", "opposite", "inconclusive"))


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


@exercise("08.worse_noise")
def _worse_noise(answer, wrong_attribute, swapped):
    """CLIP's mean zero-shot per seed at the highest rate of each noise ({seed: score} or Summary rows)."""
    return _on_evidence(answer, wrong_attribute, swapped,
                        {"swapped": "opposite", "wrong attribute": "reproduced"})


# 09 · your own data
@exercise("09.top1")
def _top1(fn):
    g = torch.Generator().manual_seed(9)
    images, classes = (F.normalize(torch.randn(50, 6, generator=g), dim=-1),
                       F.normalize(torch.randn(4, 6, generator=g), dim=-1))
    labels = torch.randint(0, 4, (50,), generator=g)
    expected = classification_metrics(images @ classes.T, labels, 4)["top1"]
    return _close(_call(fn, images, classes, labels), torch.tensor(expected), "top-1")


@exercise("09.skipped")
def _skipped(answer, skipped):
    return (None if answer == skipped
            else f"you said {answer}; the reader skipped {skipped}. Look at the CSV's rows")
