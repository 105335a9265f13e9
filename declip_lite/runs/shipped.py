"""Shipped results: where a notebook's full-mode numbers come from. On a GPU, or with
``RESULTS="train"``, it trains; on a CPU with ``RESULTS="auto"`` it reads what ``reproduce``
committed to ``results/<scale>/`` (the largest scale there: gpu, else cpu), records and weights,
and draws the same figures from them as from a fresh run."""
import json
import os
from dataclasses import asdict

import torch

from ..notebook import ParameterError
from . import cache
from .build import build, run_label
from .config import run_config
from .pool import run_grid
from .records import Record, Records

SCALES_LARGEST_FIRST = ("gpu", "cpu")


def source(results, smoke, device, shipped_dir="../results"):
    """The shipped folder to read (``results/gpu`` or ``results/cpu``), or None to train here."""
    if results not in ("auto", "train"):
        raise ParameterError(f"parameter RESULTS must be 'auto' or 'train', got {results!r}")
    if results == "train" or smoke or torch.device(device).type == "cuda":
        return None
    found = [os.path.join(shipped_dir, s) for s in SCALES_LARGEST_FIRST
             if os.path.exists(os.path.join(shipped_dir, s, "summary.json"))]
    if not found:
        return None
    with open(os.path.join(found[0], "summary.json")) as f:
        summary = json.load(f)
    print(f"shipped results: {found[0]} ({summary['runs']} runs on {summary['hardware']}, commit "
          f"{summary['commit'][:10]}); RESULTS='train' trains them on this machine instead")
    return found[0]


def scale_of(folder):
    return os.path.basename(os.path.normpath(folder))


def _shipped_json(config, folder):
    path = os.path.join(folder, "records", config.name + ".json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no shipped record of {config.method} seed {config.seed}; they were "
                                f"made by other code (rerun `make reproduce`) or set RESULTS='train'")
    with open(path) as f:
        return json.load(f)


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
    state = torch.load(path, map_location=run.trainer.device, weights_only=True)
    if state["model_config"] != asdict(run.model.config) or state["tokenizer"] != run.tokenizer.state_dict():
        raise ValueError(f"{path}: shipped weights of another model or vocabulary; set RESULTS='train'")
    for module, weights in ((run.model, state["model"]), (run.objective, state["objective"])):
        module.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in weights.items()})
    run.record = Record.from_json(data)
    trainer = run.trainer
    trainer.step, trainer.history, trainer.evals = state["step"], data.get("history", []), data["evals"]
    return run
