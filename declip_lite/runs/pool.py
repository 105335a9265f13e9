"""Grids of runs, trained in parallel processes when asked (tiny models leave a GPU mostly idle)."""
import importlib
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import torch

from ..objectives import objective_class
from .cache import train
from .config import scorer_spec, spec_name


def _record(spec, runs_dir, device, progress, threads=None, plugin=None):
    """The JSON record of ``spec``'s run: read when ``runs_dir`` has it, else trained. ``plugin``:
    the module that registers the objective, imported first in a fresh worker process."""
    if plugin:
        importlib.import_module(plugin)
    path = runs_dir and os.path.join(runs_dir, spec_name(**spec) + ".json")
    if path and os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    if threads:
        torch.set_num_threads(threads)
    return train(**spec, runs_dir=runs_dir, device=device, progress=progress).record


def run_grid(specs, runs_dir="data/runs", device=None, jobs=1, progress=True):
    """Train the runs in ``specs`` (dicts of ``train`` arguments) that ``runs_dir`` lacks; return
    every run's JSON record, in order. ``jobs`` > 1 trains in parallel processes (tiny models
    leave a GPU mostly idle). Filtered runs wait for the rest, so each scorer trains once."""
    filtered = [s for s in specs if s.get("filter_quantile") is not None]
    scorers = list({json.dumps(scorer_spec(s), sort_keys=True): scorer_spec(s) for s in filtered}.values())
    waves = [[s for s in specs if s.get("filter_quantile") is None] + scorers, filtered]
    records = {}
    for wave in waves:
        if jobs > 1 and len(wave) > 1:
            with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
                threads = max(1, (os.cpu_count() or 1) // jobs)
                futures = [pool.submit(_record, s, runs_dir, device, False, threads,
                                       objective_class(s["method"]).__module__) for s in wave]
                records.update({id(s): f.result() for s, f in zip(wave, futures)})
        else:
            records.update({id(s): _record(s, runs_dir, device, progress) for s in wave})
    return [records[id(s)] for s in specs]
