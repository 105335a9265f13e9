"""Exercises that predict what a notebook measures: graded against the measurement, and over seeds
where the notebook has them (never on one seed)."""
import math

from ..objectives.clip import contrastive_loss
from ..report import compare
from .grading import Accepted, _embeddings, _on_evidence, _row, _same, exercise


# 00 · the data
@exercise("00.chance")
def _chance(answer, tasks):
    wrong = [t for t, task in tasks.items()
             if not math.isclose(answer.get(t, -1), 1 / len(task.classnames), rel_tol=0.01)]
    return f"not {wrong}: chance is one over the number of classes, with balanced labels" if wrong else None


# 01 · CLIP
@exercise("01.log_b")
def _log_b(answer):
    image, text = _embeddings(b=128, d=64)
    measured = contrastive_loss(image, text, 1.0).item()  # random unit vectors: no pair is preferred
    if abs(answer - measured) / measured < 0.05:
        return None
    return (f"{answer:.3g} is far from the measured {measured:.2f}: with B candidates, each equally "
            f"likely, CE = log B")


# 02 · image self-supervision
SHORTCUT_MARGIN = 0.02  # of cosine: the shipped cpu runs end 0.062 apart (0.996 without the stop-gradient,
# 0.935 with)


@exercise("02.shortcut")
def _shortcut(answer, with_sg, without_sg):
    """``with_sg``, ``without_sg``: the two runs' final SimSiam cosines. "higher" when the run without
    the stop-gradient ends more than :data:`SHORTCUT_MARGIN` above the other, else "same"."""
    observed = "higher" if without_sg - with_sg > SHORTCUT_MARGIN else "same"
    return _same(answer, observed, ("higher", "same"))


# 03 · text self-supervision
@exercise("03.mlm_helps")
def _mlm_helps(answer, clip, clip_mlm):
    """``clip``, ``clip_mlm``: mean zero-shot per seed ({seed: score}) or Summary rows."""
    return _on_evidence(answer, clip, clip_mlm, {True: "reproduced", False: "opposite"})


# 04 · multi-view
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
@exercise("05.self_rate")
def _self_rate(answer, self_rate):
    return _same(answer, self_rate > 0.05, (True, False))


# 06 · DeCLIP
@exercise("06.largest_term")
def _largest_term(answer, last):
    terms = {k: last[k] for k in ("clip", "nns", "simsiam", "mlm")}
    return _same(answer, max(terms, key=terms.get), tuple(terms))


# 07 · findings
@exercise("07.verdict")
def _verdict(answer, verdict):
    return _same(answer, verdict, ("reproduced", "opposite", "inconclusive"))


# 08 · the CLIP benchmark
@exercise("08.worse_noise")
def _worse_noise(answer, wrong_attribute, swapped):
    """CLIP's mean zero-shot per seed at the highest rate of each noise ({seed: score} or Summary rows)."""
    return _on_evidence(answer, wrong_attribute, swapped,
                        {"swapped": "opposite", "wrong attribute": "reproduced"})


# 09 · your own data
@exercise("09.skipped")
def _skipped(answer, skipped):
    return (None if answer == skipped
            else f"you said {answer}; the reader skipped {skipped}. Look at the CSV's rows")
