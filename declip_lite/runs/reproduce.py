"""``reproduce --scale smoke|cpu|gpu``: every run that the notebooks' full mode needs at a scale,
trained (or loaded from the cache) in parallel processes, one line per finished run, into
``results/<scale>/``: one JSON record per run (history thinned to 200 points), and
``summary.json`` (every setting's mean ± std over seeds, the headline comparisons with their
confidence intervals and verdicts, where and how it ran). Resumable: rerun the same command."""
import json
import math
import os
import platform
import subprocess
import time

import torch

from .. import grids, report
from ..evaluate import save_json
from .pool import run_grid

HISTORY_POINTS = 200


def plan(scale):
    """The run configurations of ``scale``, each once: notebook 07's grids (the headline first),
    notebook 08's, then notebooks 01-06's own runs."""
    configs = [c for name in grids.NOTEBOOK_GRIDS["07"] + grids.NOTEBOOK_GRIDS["08"] for c in grids.grid(name, scale)]
    return list(dict.fromkeys(configs + grids.notebook_runs(scale)))


def thinned(history, points=HISTORY_POINTS):
    """At most ``points`` evenly spaced entries of a per-step history, the last one kept."""
    if len(history) <= points:
        return history
    keep = sorted({round(i * (len(history) - 1) / (points - 1)) for i in range(points)})
    return [history[i] for i in keep]


def commit():
    """The checkout's commit, with "+dirty" when files differ from it; "unknown" outside git."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha.stdout.strip() + ("+dirty" if dirty else "")


def headline(records, scale):
    """Each headline method against CLIP at the grid's small-data setting, interval and verdict."""
    s = grids.SCALES[scale]
    rows = records.summarise().where(pairs=s.small, steps=s.overrides["steps"], encoder="rn-tiny", noise=(0.0, 0.0),
                                     model=None, filtered=False, augmentation="clip", objective=None)
    clip = rows.one(method="clip")
    return {m: report.compare(clip, rows.one(method=m)) for m in grids.HEADLINE[1:]}


def reproduce(scale="smoke", out="results", runs_dir="data/runs", jobs=1, device=None, command=None):
    """Train (or load) every run of ``scale``; write ``out/<scale>/``; return the Records.
    ``command``: how it was called, for the summary."""
    configs = plan(scale)
    total = len(set(configs) | {c.scorer for c in configs if c.scorer is not None})  # filters' scorers too
    where = os.path.join(out, scale)
    os.makedirs(os.path.join(where, "records"), exist_ok=True)
    start, done = time.perf_counter(), []

    def finished(config, record):
        done.append(record)
        data = record.to_json()
        history_path = os.path.join(runs_dir, config.name + ".history.json")
        if os.path.exists(history_path):
            with open(history_path) as f:
                data["history"] = thinned(json.load(f)["history"])
        save_json(data, os.path.join(where, "records", config.name + ".json"))
        print(f"[{len(done):3d}/{total}] {time.perf_counter() - start:6.0f} s  {config.method:12s} "
              f"s{config.seed} {record.pairs:5d} pairs  mean zero-shot {record.zero_shot['mean']:.3f}  {config.name}",
              flush=True)

    records = run_grid(configs, runs_dir, device, jobs, progress=False, on_record=finished)
    comparisons = headline(records, scale)
    for method, c in comparisons.items():
        print(f"{method} - clip: {c}")
    save_json({"scale": scale, "hardware": records[0].hardware, "commit": commit(), "torch": torch.__version__,
               "python": platform.python_version(), "threads": torch.get_num_threads(), "jobs": jobs,
               "command": command,
               "seconds": time.perf_counter() - start, "runs": len(records),
               "headline": {m: {k: None if v in (math.inf, -math.inf) else v for k, v in vars(c).items()}
                            for m, c in comparisons.items()},  # an unbounded interval (one seed) as null
               "summaries": [{"method": r.method, "pairs": r.pairs, "steps": r.steps, "encoder": r.encoder,
                              "options": r.options, "seeds": r.seeds, "zero_shot": r.values}
                             for r in records.summarise()]},
              os.path.join(where, "summary.json"))
    return records
