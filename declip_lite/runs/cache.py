"""Load-or-train: a finished run is read from ``runs_dir``, an unfinished one resumed, a new one
trained; the filter's scorer first. Safe at every instant (see ``fit``)."""
import contextlib
import os
import time
from dataclasses import replace

from ..checkpoint import DamagedFile, RunLock, read_json, save_json
from ..distributed import is_main
from .analysis import result
from .build import build, run_label
from .config import run_config
from .records import Record


def train(method="clip", preset="smoke", seed=0, runs_dir="data/runs", progress=True, device=None, **options):
    """Build and train a run, or load it when ``runs_dir`` already holds it finished.

    ``method``: a :class:`RunConfig`, or the method of one built from the other arguments (as
    ``build``). A filtered run first trains (or loads) its CLIP scorer, on another draw of the same
    noisy data (``RunConfig.scorer``)."""
    config = run_config(method, preset, seed, **options)
    scorer = config.scorer and train(config.scorer, runs_dir=runs_dir, progress=progress, device=device)
    return fit(build(config, device=device, scorer=scorer), runs_dir, progress)


def fit(run, runs_dir="data/runs", progress=True):
    """Train ``run`` to its preset's steps and write its JSON result, resuming from ``runs_dir``.

    Safe at every instant: the final evaluation is part of the checkpoint, and the JSON (written
    last, after the history and per-task files) marks a finished run. A run killed anywhere is
    finished by the next call with the numbers of an uninterrupted run; a second process on the
    same run waits for the first and reads its record (``RunLock``); a damaged record is rebuilt."""
    if not runs_dir:
        run.trainer.fit(progress=progress, label=run_label(run))
        run.record = _timed(result(run), run)
        return run
    path = os.path.join(runs_dir, run.name)
    with RunLock(path) if is_main() else contextlib.nullcontext():
        if os.path.exists(path + ".pt"):
            run.trainer.load(path + ".pt")
        if run.trainer.step >= run.preset.steps and (data := finished_record(path + ".json", say=True)):
            run.record = Record.from_json(data)
            return run
        run.trainer.fit(checkpoint=path + ".pt", progress=progress, label=run_label(run))
        run.record = result(run)
        if is_main():
            run.trainer.save_history(path + ".history.json")
            for name, metrics in run.task_metrics.items():  # one JSON per (run, task), with the confusion matrix
                save_json(metrics, os.path.join(path + ".zero_shot", f"{name}.json"))
            run.record = _timed(run.record, run)
            save_json(run.record.to_json(), path + ".json")
    return run


def finished_record(path, say=False):
    """The JSON record at ``path``, or None when there is none or it is damaged; ``fit`` rebuilds a
    damaged one from the run's finished checkpoint, which holds its final evaluation (``say``: print so)."""
    if not os.path.exists(path):
        return None
    try:
        return read_json(path, "")
    except DamagedFile as e:
        if say:
            print(f"{str(e).rstrip('; ')}: rebuilding it from the run's checkpoint", flush=True)
        return None


def _timed(record, run):
    """``record`` with the run's total seconds in this process, from building to now."""
    return replace(record, total_seconds=time.perf_counter() - run.started if run.started else None)
