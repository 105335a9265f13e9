"""Shipped results: where a notebook's full-mode numbers come from. On a GPU, or with
``RESULTS="train"``, it trains; on a CPU with ``RESULTS="auto"`` it reads what ``reproduce``
committed to ``results/<scale>/`` (the largest scale there: gpu, else cpu), records and weights,
and draws the same figures from them as from a fresh run."""
import json
import os
from dataclasses import asdict

import torch

from ..notebook import ParameterError
from .build import build
from .cache import train
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


def records(configs, folder, runs_dir, device=None, jobs=1):
    """The runs' records: read from ``folder`` when given (each must be there), else ``run_grid``."""
    if folder is None:
        return run_grid(configs, runs_dir, device, jobs)
    out = []
    for config in configs:
        path = os.path.join(folder, "records", config.name + ".json")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no shipped record of {config.method} seed {config.seed}; they were "
                                    f"made by other code (rerun `make reproduce`) or set RESULTS='train'")
        with open(path) as f:
            out.append(Record.from_json(json.load(f)))
    return Records(out)


def trained(config, folder, runs_dir, device=None):
    """A trained run of ``config``: its shipped weights in a freshly built run when ``folder`` is
    given (the record and history too), else trained (or loaded) through the cache."""
    if folder is None:
        return train(config, runs_dir=runs_dir, device=device)
    path = os.path.join(folder, "weights", config.name + ".pt")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no shipped weights of {config.method} seed {config.seed} (only seed 0's "
                                f"are shipped); set SEED = 0 or RESULTS='train'")
    run = build(config, device=device)
    state = torch.load(path, map_location=run.trainer.device, weights_only=True)
    if state["model_config"] != asdict(run.model.config) or state["tokenizer"] != run.tokenizer.state_dict():
        raise ValueError(f"{path}: shipped weights of another model or vocabulary; set RESULTS='train'")
    for module, weights in ((run.model, state["model"]), (run.objective, state["objective"])):
        module.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in weights.items()})
    run.record = records([config], folder, runs_dir)[0]
    run.trainer.step = state["step"]
    return run
