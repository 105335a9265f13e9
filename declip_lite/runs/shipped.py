"""Shipped results: where a notebook's full-mode numbers come from. With ``RESULTS="auto"`` it
reads what ``reproduce`` committed to ``results/<scale>/`` (records and weights) and draws the same
figures from them as from a fresh run: on a CPU always, on a GPU the grids of notebooks 07-08
from ``results/gpu`` (see :func:`source`). What the folder lacks is trained here, and said."""
import os
from dataclasses import asdict

import torch

from .. import grids
from ..checkpoint import load_torch, read_json
from ..notebook import ParameterError
from . import cache
from .build import build, run_label
from .config import run_config
from .pool import run_grid
from .records import Record, Records
from .reproduce import SUMMARY, WEIGHTS

SCALES_LARGEST_FIRST = ("gpu", "cpu")
FIX = "`git checkout results/` restores the shipped file, or `make reproduce SCALE=cpu` makes it again"


def _summary(folder):
    """The summary of the reproduction in ``folder`` (checked), or None when there is none."""
    path = os.path.join(folder, "summary.json")
    return read_json(path, FIX, SUMMARY) if os.path.exists(path) else None


def _complete(folder):
    """The summary of ``folder`` when its reproduction finished every planned run, else None."""
    summary = _summary(folder)
    return summary if summary and summary["runs"] >= summary.get("planned", summary["runs"]) else None


def lacking(folder, notebook, seed=0):
    """(records, weights): the runs notebook ``"07"`` or ``"08"`` needs that ``folder`` does not ship."""
    records, models = grids.notebook_needs(notebook, scale_of(folder), seed)
    missing = lambda configs, kind, ext: [c for c in configs  # noqa: E731
                                          if not os.path.exists(os.path.join(folder, kind, c.name + ext))]
    return missing(records, "records", ".json"), missing(models, "weights", ".pt")


def source(results, smoke, device, shipped_dir="../results", notebook=None, seed=0):
    """The shipped folder to read, or None to train here. A notebook's own runs (01-06,
    ``notebook=None``) train on a GPU and are read from a complete ``results/cpu`` on a CPU. The
    grids of notebook ``"07"`` or ``"08"`` are read from the largest scale shipped that holds every
    record and weight the notebook needs at ``seed`` (gpu, else cpu; on a GPU only gpu); where none
    holds all, from the smallest one shipped, and the runs it lacks train here (it says which).
    ``RESULTS="train"`` and smoke mode always train."""
    if results not in ("auto", "train"):
        raise ParameterError(f"parameter RESULTS must be 'auto' or 'train', got {results!r}")
    cuda = torch.device(device).type == "cuda"
    if results == "train" or smoke or (cuda and notebook is None):
        return None
    if notebook is None:
        folder = os.path.join(shipped_dir, "cpu")
        return _say(folder, _complete(folder), "")
    shipped = [(folder, summary) for s in (("gpu",) if cuda else SCALES_LARGEST_FIRST)
               if (summary := _summary(folder := os.path.join(shipped_dir, s)))]
    for folder, summary in shipped:
        records, weights = lacking(folder, notebook, seed)
        if not records and not weights:
            return _say(folder, summary, "")
    if not shipped:
        return None
    folder, summary = shipped[-1]
    records, weights = lacking(folder, notebook, seed)
    return _say(folder, summary, f"; it lacks {len(records)} of the records and {len(weights)} of the models "
                                 f"notebook {notebook} needs, which train here")


def _say(folder, summary, more):
    if summary:
        print(f"shipped results: {folder} ({summary['runs']} runs on {summary['hardware']}, commit "
              f"{summary['commit'][:10]}){more}; RESULTS='train' trains them on this machine instead")
        return folder
    return None


def scale_of(folder):
    return os.path.basename(os.path.normpath(folder))


def _shipped_json(config, folder):
    """The shipped record of ``config`` as JSON data, checked (``Record.from_json``)."""
    path = os.path.join(folder, "records", config.name + ".json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no shipped record of {config.method} seed {config.seed}; they were "
                                f"made by other code (rerun `make reproduce`) or set RESULTS='train'")
    data = read_json(path, FIX)
    Record.from_json(data, path, FIX)
    return data


def records(configs, folder, runs_dir, device=None, jobs=1):
    """The runs' records: read from ``folder`` when given, else ``run_grid``; the runs ``folder``
    lacks are trained here (``run_grid``, in ``runs_dir``), and it says which."""
    if folder is None:
        return run_grid(configs, runs_dir, device, jobs)
    missing = [c for c in configs if not os.path.exists(os.path.join(folder, "records", c.name + ".json"))]
    if missing:
        names = ", ".join(c.name for c in missing[:3]) + (", ..." if len(missing) > 3 else "")
        print(f"{folder} lacks {len(missing)} of these {len(configs)} runs ({names}): training them here",
              flush=True)
    trained = dict(zip(missing, run_grid(missing, runs_dir, device, jobs))) if missing else {}
    return Records(trained.get(c) or Record.from_json(_shipped_json(c, folder)) for c in configs)


def train(method="clip", preset="smoke", seed=0, runs_dir="data/runs", device=None, shipped_from=None,
          live_steps=0, **options):
    """``experiments.train``; or, with ``shipped_from`` (a :func:`source` folder), the shipped run
    of the same configuration, as :func:`fit` gives it."""
    if shipped_from is None:
        return cache.train(method, preset, seed, runs_dir, device=device, **options)
    return fit(build(run_config(method, preset, seed, **options), device=device), runs_dir, shipped_from,
               live_steps)


def fit(run, runs_dir="data/runs", shipped_from=None, live_steps=0):
    """``experiments.fit``; or, with ``shipped_from``, the shipped weights, record, history and
    evaluations put into ``run`` (a built run of the same configuration). ``live_steps`` steps are
    trained here first, so the student watches it learn; their history is ``run.live_history``."""
    if shipped_from is None:
        return cache.fit(run, runs_dir)
    config = run.config
    path = os.path.join(shipped_from, "weights", config.name + ".pt")
    if not os.path.exists(path):
        print(f"{path}: not shipped (weights are shipped for seed 0 of the runs notebooks draw): training "
              f"{config.method} seed {config.seed} here", flush=True)
        return cache.fit(run, runs_dir)
    data = _shipped_json(config, shipped_from)
    if live_steps:
        run.trainer.fit(steps=live_steps, label=f"{run_label(run)}, live")
        run.live_history = run.trainer.history
    state = load_torch(path, FIX, map_location=run.trainer.device, schema=WEIGHTS)
    if state["model_config"] != asdict(run.model.config) or state["tokenizer"] != run.tokenizer.state_dict():
        raise ValueError(f"{path}: shipped weights of another model or vocabulary; set RESULTS='train'")
    for module, weights in ((run.model, state["model"]), (run.objective, state["objective"])):
        module.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in weights.items()})
    run.record = Record.from_json(data)
    trainer = run.trainer
    trainer.step, trainer.history, trainer.evals = state["step"], data.get("history", []), data["evals"]
    return run
