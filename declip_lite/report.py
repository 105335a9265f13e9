"""From run summaries (``Records.summarise``) to the numbers notebooks 07-08 report: mean ± std
tables, the data multiple, equal-time interpolation."""
import math

import numpy as np


def format_table(rows, columns, label=lambda r: r.method, width=14):
    """A plain-text table: one line per row, ``mean±std`` per column."""
    head = f"{'':{width}s}" + "".join(f"{c[:11]:>13s}" for c in columns)
    lines = [f"{label(r)[:width]:{width}s}" + "".join(f"{r[c][0]:8.3f}±{r[c][1]:.2f}" if c in r else f"{'-':>13s}"
                                                    for c in columns) for r in rows]
    return "\n".join([head, *lines])


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


def verdict(delta, noise):
    """"helps", "hurts" or "neutral": whether a change in accuracy clears ``noise`` (e.g. the seed std)."""
    return "helps" if delta > noise else "hurts" if delta < -noise else "neutral"
