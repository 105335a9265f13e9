"""Shipped results: where a notebook's full-mode numbers come from. With ``RESULTS="auto"`` it
reads what ``reproduce`` committed to ``results/<scale>/`` (records and weights) and draws the same
figures from them as from a fresh run: on a CPU always, on a GPU the grids of notebooks 07-08
when a complete gpu reproduction is shipped (see :func:`source`); otherwise it trains."""
import os
from dataclasses import asdict

import torch

from ..checkpoint import load_torch, read_json
from ..notebook import ParameterError
from . import cache
from .build import build, run_label
from .config import run_config
from .pool import run_grid
from .records import Record, Records

SCALES_LARGEST_FIRST = ("gpu", "cpu")
FIX = "`git checkout results/` restores the shipped file, or `make reproduce SCALE=cpu` makes it again"


def _complete(folder):
    """The summary of ``folder`` when its reproduction finished every planned run, else None."""
    path = os.path.join(folder, "summary.json")
    if not os.path.exists(path):
        return None
    summary = read_json(path, FIX)
    return summary if summary["runs"] >= summary.get("planned", summary["runs"]) else None


def source(results, smoke, device, shipped_dir="../results", grids=False):
    """The shipped folder to read, or None to train here. A notebook's own runs (``grids=False``)
    train on a GPU and are read from ``results/cpu`` on a CPU; the grids of notebooks 07-08
    (``grids=True``) are read from the largest complete scale shipped (gpu, else cpu), on any device,
    or trained where none is. ``RESULTS="train"`` and smoke mode always train."""
    if results not in ("auto", "train"):
        raise ParameterError(f"parameter RESULTS must be 'auto' or 'train', got {results!r}")
    cuda = torch.device(device).type == "cuda"
    if results == "train" or smoke or (cuda and not grids):
        return None
    scales = SCALES_LARGEST_FIRST if grids else ("cpu",)
    found = [(os.path.join(shipped_dir, s), _complete(os.path.join(shipped_dir, s))) for s in scales]
    found = [(folder, summary) for folder, summary in found if summary and not (cuda and scale_of(folder) != "gpu")]
    if not found:
        return None
    folder, summary = found[0]
    print(f"shipped results: {folder} ({summary['runs']} runs on {summary['hardware']}, commit "
          f"{summary['commit'][:10]}); RESULTS='train' trains them on this machine instead")
    return folder


def scale_of(folder):
    return os.path.basename(os.path.normpath(folder))


def _shipped_json(config, folder):
    path = os.path.join(folder, "records", config.name + ".json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no shipped record of {config.method} seed {config.seed}; they were "
                                f"made by other code (rerun `make reproduce`) or set RESULTS='train'")
    return read_json(path, FIX)


def records(configs, folder, runs_dir, device=None, jobs=1):
    """The runs' records: read from ``folder`` when given (each must be there), else ``run_grid``."""
    if folder is None:
        return run_grid(configs, runs_dir, device, jobs)
    return Records(Record.from_json(_shipped_json(config, folder)) for config in configs)


def train(method="clip", preset="smoke", seed=0, runs_dir="data/runs", device=None, shipped_from=None, live_steps=0,
          **options):
    """``experiments.train``; or, with ``shipped_from`` (a :func:`source` folder), the shipped run
    of the same configuration, as :func:`fit` gives it."""
    if shipped_from is None:
        return cache.train(method, preset, seed, runs_dir, device=device, **options)
    return fit(build(run_config(method, preset, seed, **options), device=device), runs_dir, shipped_from, live_steps)


def fit(run, runs_dir="data/runs", shipped_from=None, live_steps=0):
    """``experiments.fit``; or, with ``shipped_from``, the shipped weights, record, history and
    evaluations put into ``run`` (a built run of the same configuration). ``live_steps`` steps are
    trained here first, so the student watches it learn; their history is ``run.live_history``."""
    if shipped_from is None:
        return cache.fit(run, runs_dir)
    config = run.config
    path = os.path.join(shipped_from, "weights", config.name + ".pt")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no shipped weights of {config.method} seed {config.seed} (only seed 0's "
                                f"are shipped); set SEED = 0 or RESULTS='train'")
    data = _shipped_json(config, shipped_from)
    if live_steps:
        run.trainer.fit(steps=live_steps, label=f"{run_label(run)}, live")
        run.live_history = run.trainer.history
    state = load_torch(path, FIX, map_location=run.trainer.device)
    if state["model_config"] != asdict(run.model.config) or state["tokenizer"] != run.tokenizer.state_dict():
        raise ValueError(f"{path}: shipped weights of another model or vocabulary; set RESULTS='train'")
    for module, weights in ((run.model, state["model"]), (run.objective, state["objective"])):
        module.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in weights.items()})
    run.record = Record.from_json(data)
    trainer = run.trainer
    trainer.step, trainer.history, trainer.evals = state["step"], data.get("history", []), data["evals"]
    return run
