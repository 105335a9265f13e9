"""Shipped results: where a notebook's full-mode numbers come from. With ``RESULTS="auto"`` it
reads what ``reproduce`` committed to ``results/<scale>/`` (records and weights) and draws the same
figures from them as from a fresh run: on a CPU always, on a GPU the grids of notebooks 07-08
from ``results/gpu`` (which folder: ``notebook.source``). What the folder lacks is trained here,
and said."""
import os
from dataclasses import replace

from ..checkpoint import load_torch, read_json
from ..models.clip import same_model
from . import cache, grids
from .build import build, run_label
from .config import run_config
from .pool import run_grid
from .records import Record, Records
from .reproduce import SUMMARY, WEIGHTS, shipped_file

FIX = "`git checkout results/` restores the shipped file, or `make reproduce SCALE=cpu` makes it again"


def summary(folder):
    """The summary of the reproduction in ``folder`` (checked), or None when there is none."""
    path = os.path.join(folder, "summary.json")
    return read_json(path, FIX, SUMMARY) if os.path.exists(path) else None


def complete(folder):
    """The summary of ``folder`` when its reproduction finished every planned run, else None."""
    found = summary(folder)
    return found if found and found["runs"] >= found.get("planned", found["runs"]) else None


def lacking(folder, notebook, seed=0):
    """(records, weights): the runs notebook ``"07"`` or ``"08"`` needs that ``folder`` does not ship."""
    records, models = grids.notebook_needs(notebook, scale_of(folder), seed)
    def missing(configs, kind):
        return [c for c in configs if not os.path.exists(shipped_file(folder, kind, c))]
    return missing(records, "records"), missing(models, "weights")


def scale_of(folder):
    return os.path.basename(os.path.normpath(folder))


def _shipped_json(config, folder):
    """The shipped record of ``config`` as JSON data, checked (``Record.from_json``)."""
    path = shipped_file(folder, "records", config)
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
    missing = [c for c in configs if not os.path.exists(shipped_file(folder, "records", c))]
    if missing:
        names = ", ".join(c.name for c in missing[:3]) + (", ..." if len(missing) > 3 else "")
        print(f"{folder} lacks {len(missing)} of these {len(configs)} runs ({names}): training them here",
              flush=True)
    trained = dict(zip(missing, run_grid(missing, runs_dir, device, jobs))) if missing else {}
    return Records(trained.get(c) or Record.from_json(_shipped_json(c, folder)) for c in configs)


def over_seeds(run, folder):
    """The records of ``run``'s configuration at each seed its scale's notebooks compare over
    (``grids.Scale.notebook_seeds``) that ``folder`` ships, its own first; only its own when
    ``folder`` is None (smoke mode, or trained here): nothing trains for it."""
    seeds = grids.SCALES[scale_of(folder)].notebook_seeds if folder else ()
    others = [replace(run.config, seed=s) for s in seeds if s != run.config.seed]
    return Records([run.record] + [Record.from_json(_shipped_json(c, folder)) for c in others
                                   if os.path.exists(shipped_file(folder, "records", c))])


def train(method="clip", preset="smoke", seed=0, runs_dir="data/runs", device=None, shipped_from=None,
          live_steps=0, **options):
    """``experiments.train``; or, with ``shipped_from`` (a ``notebook.source`` folder), the shipped run
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
    path = shipped_file(shipped_from, "weights", config)
    if not os.path.exists(path):
        print(f"{path}: not shipped (weights are shipped for seed 0 of the runs notebooks draw): training "
              f"{config.method} seed {config.seed} here", flush=True)
        return cache.fit(run, runs_dir)
    data = _shipped_json(config, shipped_from)
    if live_steps:
        run.trainer.fit(steps=live_steps, label=f"{run_label(run)}, live")
        run.live_history = run.trainer.history
    state = load_torch(path, FIX, map_location=run.trainer.device, schema=WEIGHTS)
    same_vocabulary = state["tokenizer"] == run.tokenizer.state_dict()
    if not same_model(state["model_config"], run.model.config) or not same_vocabulary:
        raise ValueError(f"{path}: shipped weights of another model or vocabulary; set RESULTS='train'")
    as_float = lambda ws: {k: v.float() if v.is_floating_point() else v for k, v in ws.items()}  # noqa: E731
    run.trainer.restore({**run.trainer.state_dict(), "model": as_float(state["model"]),  # its own optimiser
                         "objective": as_float(state["objective"]), "step": state["step"],  # and RNGs
                         "final_step": state["step"], "history": data.get("history", []),
                         "evals": data["evals"]})
    run.record = Record.from_json(data)
    return run
