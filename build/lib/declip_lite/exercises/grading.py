"""The exercises' registry, ``check`` and the helpers every grader shares."""
import math
from dataclasses import dataclass

import torch

from ..report import compare
from ..runs.records import Summary

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
