"""Load-or-train: a finished run is read from ``runs_dir``, an unfinished one resumed, a new one
trained; the filter's scorer first. Safe at every instant (see ``fit``)."""
import contextlib
import os
import time
from dataclasses import replace

import torch

from ..checkpoint import DamagedFile, RunLock, read_json, save_json
from ..distributed import is_main
from ..train import HISTORY
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


RUN_THREADS = 1  # a CPU's intra-op threads for every run that writes a record: float sums depend on them


@contextlib.contextmanager
def run_threads():
    """Train and evaluate with :data:`RUN_THREADS` threads, whoever trains (a notebook, the CLI, a pool
    worker), so a record is a function of its configuration, not of the process; restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(RUN_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fit(run, runs_dir="data/runs", progress=True):
    """Train ``run`` to its preset's steps and write its JSON result, resuming from ``runs_dir``.

    Safe at every instant: the final evaluation is part of the checkpoint, and the JSON (written
    last, after the history and per-task files) marks a finished run. A run killed anywhere is
    finished by the next call with the numbers of an uninterrupted run; a second process on the
    same run waits for the first and reads its record (``RunLock``); a damaged record is rebuilt.
    It trains with :data:`RUN_THREADS` CPU threads (``run_threads``)."""
    with run_threads():
        return _fit(run, runs_dir, progress)


def _fit(run, runs_dir, progress):
    if not runs_dir:
        run.trainer.fit(progress=progress, label=run_label(run))
        run.record = _timed(result(run), run)
        return run
    path = os.path.join(runs_dir, run.name)
    with RunLock(path) if is_main() else contextlib.nullcontext():
        if os.path.exists(path + ".pt"):
            run.trainer.load(path + ".pt")
        if run.trainer.step >= run.config.train.steps and (record := finished_record(path, say=True)):
            run.record = record
            return run
        run.trainer.fit(checkpoint=path + ".pt", progress=progress, label=run_label(run))
        run.record = result(run)
        if is_main():
            run.trainer.save_history(path + ".history.json")
            # one JSON per (run, task), with the confusion matrix
            for name, metrics in run.task_metrics.items():
                save_json(metrics, os.path.join(path + ".zero_shot", f"{name}.json"))
            run.record = _timed(run.record, run)
            save_json(run.record.to_json(), path + ".json")
    return run


def finished_record(path, say=False):
    """The :class:`Record` of the finished run at ``path`` (its ``.json``, checked with the
    ``.history.json`` beside it), or None when there is none or either file is damaged (unparseable,
    a key missing, a wrong type or an impossible value): ``fit`` then rebuilds both from the run's
    finished checkpoint, which holds its final evaluation, or retrains the run (``say``: print so)."""
    if not os.path.exists(path + ".json"):
        return None
    try:
        record = Record.from_json(read_json(path + ".json", ""), path + ".json", "")
        if os.path.exists(path + ".history.json"):
            read_json(path + ".history.json", "", HISTORY)
        return record
    except DamagedFile as e:
        if say:
            checkpoint = os.path.exists(path + ".pt")
            remedy = "rebuilding it from the run's checkpoint" if checkpoint else "retraining the run"
            print(f"{str(e).rstrip('; ')}: {remedy}", flush=True)
        return None


def _timed(record, run):
    """``record`` with the run's total seconds in this process, from building to now."""
    return replace(record, total_seconds=time.perf_counter() - run.started if run.started else None)
