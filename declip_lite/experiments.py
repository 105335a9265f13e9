"""Presets and cached runs: what the notebooks and ``python -m declip_lite.experiments`` train.

A run is named by its :class:`RunConfig` (method, seed; data, model, objective, train). Its checkpoint and
JSON record live under ``runs_dir``; a finished run is loaded instead of retrained, so notebooks
re-execute in seconds. A grid (``grids.py``) is a list of configurations; ``run_grid`` trains the
missing ones, in parallel processes when asked, and returns their :class:`Records`, which
``where``, ``one`` and ``summarise`` query.

This module is the experiment layer's one door; its rooms are in ``declip_lite/runs/``:
``config`` (presets, run configurations and names), ``build`` (a run, untrained), ``analysis``
(what a trained run shows), ``records`` (typed records and queries), ``cache`` (load or train),
``pool`` (grids in parallel), ``pipelines`` (CSV data, torchrun) and ``cli``.
"""
from .objectives import make_objective
from .runs.analysis import result
from .runs.build import build, hardware, make_trainer, run_label, step_cost, step_seconds
from .runs.cache import fit, train
from .runs.cli import main
from .runs.config import PRESETS, SMALL_DATA, DataConfig, RunConfig, configure
from .runs.pipelines import train_csv
from .runs.pool import run_grid
from .runs.records import Record, Records

__all__ = [
    "PRESETS", "SMALL_DATA", "DataConfig", "Record", "Records", "RunConfig", "build", "configure", "fit",
    "hardware", "main", "make_objective", "make_trainer", "result", "run_grid", "run_label", "step_cost",
    "step_seconds", "train", "train_csv",
]

if __name__ == "__main__":
    main()
