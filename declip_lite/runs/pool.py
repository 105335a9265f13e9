"""Grids of runs, trained in parallel processes when asked (tiny models leave a GPU mostly idle)."""
import importlib
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed

import torch

from ..objectives import objective_class
from .cache import train
from .config import RunConfig
from .records import Record, Records


def _record(config, runs_dir, device, progress, threads=None, plugin=None):
    """The record of ``config``'s run: read when ``runs_dir`` has it, else trained. ``plugin``:
    the module that registers the objective, imported first in a fresh worker process."""
    if plugin:
        importlib.import_module(plugin)
    path = runs_dir and os.path.join(runs_dir, config.name + ".json")
    if path and os.path.exists(path):
        with open(path) as f:
            return Record.from_json(json.load(f))
    if threads:
        torch.set_num_threads(threads)
    return train(config, runs_dir=runs_dir, device=device, progress=progress).record


def run_grid(configs, runs_dir="data/runs", device=None, jobs=1, progress=True, on_record=None):
    """Train the runs in ``configs`` (:class:`RunConfig`, or dicts of ``train`` arguments) that
    ``runs_dir`` lacks; return every run's :class:`Record`, in order. ``jobs`` > 1 trains in
    parallel processes (tiny models leave a GPU mostly idle). Filtered runs wait for the rest, so
    each scorer trains once. ``on_record(config, record)`` is called as each run finishes. A run
    that fails does not stop the others: all failures are raised together at the end."""
    on_record = on_record or (lambda config, record: None)
    configs = [c if isinstance(c, RunConfig) else RunConfig.of(**c) for c in configs]
    filtered = [c for c in configs if c.scorer is not None]
    waves = [[c for c in configs if c.scorer is None] + [c.scorer for c in filtered], filtered]
    records, failed = {}, {}

    def finished(config, outcome):
        try:
            records[config] = outcome()
        except Exception as e:  # the other runs go on; every failure is named at the end
            failed[config.name] = e
        else:
            on_record(config, records[config])

    for wave in (list(dict.fromkeys(w)) for w in waves):  # a run listed twice trains once
        if jobs > 1 and len(wave) > 1:
            with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
                threads = max(1, (os.cpu_count() or 1) // jobs)
                futures = {pool.submit(_record, c, runs_dir, device, False, threads,
                                       objective_class(c.method).__module__): c for c in wave}
                for future in as_completed(futures):
                    finished(futures[future], future.result)
        else:
            for c in wave:
                finished(c, lambda: _record(c, runs_dir, device, progress))
    if failed:
        raise RuntimeError(f"run_grid: {len(failed)} of {len(records) + len(failed)} runs failed (the others are "
                           f"cached; run again to retry): " + "; ".join(f"{name}: {type(e).__name__}: {e}"
                                                                      for name, e in failed.items()))
    return Records(records[c] for c in configs)
