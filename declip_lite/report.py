"""From run summaries (``Records.summarise``) to the numbers notebooks 07-08 report: mean ± std
tables, differences with confidence intervals and verdicts, the data multiple, equal-time
interpolation."""
import math
from dataclasses import dataclass

import numpy as np


def format_table(rows, columns, label=lambda r: r.method, width=14):
    """A plain-text table: one line per row, ``mean±std`` per column (one seed: its value and "1 seed",
    never a std of 0), and a flag on seeds whose run needed more than one loss-crash recovery."""
    def cell(r, c):
        if c not in r:
            return f"{'-':>13s}"
        mean, std = r[c]
        return f"{mean:8.3f}±{std:.2f}" if len(r.seeds) > 1 else f"{mean:8.3f}     "

    head = f"{'':{width}s}" + "".join(f"{c[:11]:>13s}" for c in columns)
    lines = [f"{label(r)[:width]:{width}s}" + "".join(cell(r, c) for c in columns)
             + ("  (1 seed)" if len(r.seeds) == 1 else "")
             + (f"  ! seed {', '.join(map(str, r.flagged))}: more than one recovery" if r.flagged else "")
             for r in rows]
    return "\n".join([head, *lines])


def mean_std(row, task="mean"):
    """A summary's score over its seeds as text: "0.612 ± 0.021 (3 seeds)", or "0.612 (1 seed)":
    one seed has no spread to show."""
    mean, std = row[task]
    return (f"{mean:.3f} ± {std:.3f} ({len(row.seeds)} seeds)" if len(row.seeds) > 1
            else f"{mean:.3f} (1 seed)")


def epoch_phase_means(history, key, steps_per_epoch):
    """{k: mean of ``key``} over the steps that trained on batch k of an epoch (0: its first),
    every epoch after the first: a cycle an epoch long, which a history thinned to every few steps
    cannot draw over steps but still samples at each k. Step s (1-based) trains on batch s - 1."""
    at = {}
    for row in history:
        if key in row and row["step"] > steps_per_epoch:
            at.setdefault((row["step"] - 1) % steps_per_epoch, []).append(row[key])
    return {k: float(np.mean(v)) for k, v in sorted(at.items())}


def pairs_to_reach(pairs, accuracy, target):
    """The pairs at which an accuracy-vs-pairs curve reaches ``target``, read linearly in
    log(pairs). None when the curve never gets there."""
    x, y = np.log(np.asarray(pairs, dtype=float)), np.asarray(accuracy, dtype=float)
    for i in range(len(x) - 1):
        if y[i] < target <= y[i + 1]:
            return math.exp(x[i] + (target - y[i]) / (y[i + 1] - y[i]) * (x[i + 1] - x[i]))
    return None if y[0] < target else float(pairs[0])


def at_equal_time(steps, accuracy, budget):
    """Accuracy at ``budget`` steps, linear between the measured (steps, accuracy) points."""
    return float(np.interp(budget, steps, accuracy))


def recovered(clean, noisy, filtered):
    """Share of the accuracy that noise cost which filtering won back."""
    lost = clean - noisy
    return (filtered - noisy) / lost if abs(lost) > 1e-9 else float("nan")


@dataclass(frozen=True)
class Comparison:
    """``treatment - baseline`` over seeds: the mean difference, its 95 % confidence interval
    [low, high], how it was computed ("paired" or "Welch"), and the verdict."""
    difference: float
    low: float
    high: float
    kind: str
    seeds: int
    verdict: str

    def __str__(self):
        if math.isinf(self.high):
            return f"{self.difference:+.3f} (one seed a side: no interval): {self.verdict}"
        return (f"{self.difference:+.3f} [{self.low:+.3f}, {self.high:+.3f}] "
                f"({self.kind}, {self.seeds} seeds): {self.verdict}")


def t_quantile(p, dof):
    """Student's t quantile (scipy, imported when a comparison is made: a training process never pays
    for it)."""
    from scipy.special import stdtrit

    return float(stdtrit(dof, p))


def compare(baseline, treatment, task="mean", expect=1, level=0.95):
    """Is ``treatment`` better than ``baseline`` (two :class:`Summary` rows) on ``task``?

    Paired over seeds when both ran the same seeds (the same seed draws the same training pairs
    and the same zero-shot tasks): a t interval of the per-seed differences. Welch's interval
    otherwise. The verdict is "reproduced" when the interval excludes 0 in the paper's direction
    ``expect`` (+1: the treatment is better, -1: worse), "opposite" when it excludes 0 the other
    way, else "inconclusive" (always, with fewer than 2 seeds a side)."""
    a = dict(zip(baseline.seeds, baseline.values[task]))
    b = dict(zip(treatment.seeds, treatment.values[task]))
    if set(a) == set(b) and len(a) > 1:
        d = np.array([b[s] - a[s] for s in sorted(a)])
        n = len(d)
        half = t_quantile(0.5 + level / 2, n - 1) * d.std(ddof=1) / math.sqrt(n)
        mean, kind = d.mean(), "paired"
    else:
        x, y = np.array(list(a.values())), np.array(list(b.values()))
        mean, kind, n = y.mean() - x.mean(), "Welch", min(len(x), len(y))
        if n < 2:
            half = math.inf
        else:
            vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
            dof = ((vx + vy) ** 2 / (vx ** 2 / (len(x) - 1) + vy ** 2 / (len(y) - 1)) if vx + vy > 0
                   else math.inf)
            half = t_quantile(0.5 + level / 2, dof) * math.sqrt(vx + vy)
    low, high = mean - half, mean + half
    near, far = sorted((expect * low, expect * high))  # the interval in the paper's direction
    verdict = "reproduced" if near > 0 else "opposite" if far < 0 else "inconclusive"
    return Comparison(float(mean), float(low), float(high), kind, n, verdict)
