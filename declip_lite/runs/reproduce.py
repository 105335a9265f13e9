"""``reproduce --scale smoke|cpu|gpu``: every run that the notebooks' full mode needs at a scale,
trained (or loaded from the cache) in parallel processes, one line per finished run, into
``results/<scale>/``: one JSON record per run (history thinned to 200 points), bf16 weights of
the runs whose models notebooks use (``grids.model_runs``), and ``summary.json`` (every
setting's mean ± std over seeds, the headline comparisons with their confidence intervals and
verdicts, where and how it ran). Resumable: rerun the same command, on this machine or on any
machine with the output folder (a run whose record, and weights where shipped, are there is done)."""
import math
import os
import platform
import time

import torch

from .. import report
from . import grids
from ..checkpoint import (COUNT, FINITE_TENSORS, NUMBER, OBJECT, SCORE, SECONDS, TENSORS, TEXT, DamagedFile,
                          MapOf, Optional, load_torch, read_json, save_json, write_durably)
from ..train import CHECKPOINT, HISTORY, pick_device
from .build import commit, hardware
from .config import configure, configure_all
from .cache import RUN_THREADS
from .pool import run_grid
from .records import Record, RecordPreset, Records

HISTORY_POINTS = 200
EXTENSIONS = {"records": ".json", "weights": ".pt"}  # records/<run name>.json, weights/<run name>.pt

# what the files it ships hold (``checkpoint.checked``): the summary and the bf16 weights
COMPARISON = {"difference": NUMBER, "low": Optional(NUMBER), "high": Optional(NUMBER), "seeds": COUNT,
              "verdict": TEXT}
SUMMARY = {"scale": TEXT, "hardware": TEXT, "commit": TEXT, "runs": COUNT, "planned": Optional(COUNT),
           "seconds": SECONDS, "headline": MapOf(COMPARISON),
           "summaries": [{"method": TEXT, "pairs": COUNT, "steps": COUNT, "encoder": TEXT, "options": OBJECT,
                          "seeds": [COUNT], "zero_shot": MapOf([SCORE])}]}
WEIGHTS = {"model": FINITE_TENSORS, "objective": TENSORS, "step": COUNT, "model_config": OBJECT,
           "tokenizer": OBJECT}


def plan(scale):
    """The run configurations of ``scale``, each once: notebook 07's grids (the headline first),
    notebook 08's, the runs whose models the notebooks use (01-06's own runs among them), notebook
    01's batch-size and temperature runs, then 02-06's runs at their other seeds."""
    configs = [c for name in grids.NOTEBOOK_GRIDS["07"] + grids.NOTEBOOK_GRIDS["08"]
               for c in grids.grid(name, scale)]
    seeds = grids.SCALES[scale].notebook_seeds[1:]
    return list(dict.fromkeys(configs + grids.model_runs(scale) + [*grids.batch_temperature(scale).values()]
                              + [c for seed in seeds for c in grids.notebook_runs(scale, seed)]))


def shipped_file(folder, kind, config):
    """The path of ``config``'s record (``kind`` "records") or bf16 weights ("weights") in ``folder``."""
    return os.path.join(folder, kind, config.name + EXTENSIONS[kind])


def thinned(history, points=HISTORY_POINTS):
    """At most ``points`` evenly spaced entries of a per-step history, the last one kept."""
    if len(history) <= points:
        return history
    keep = sorted({round(i * (len(history) - 1) / (points - 1)) for i in range(points)})
    return [history[i] for i in keep]


def export_weights(checkpoint, path):
    """The model's and the objective's weights of a training checkpoint, in bf16 (a quarter of it)."""
    state = load_torch(checkpoint, "delete it to retrain the run", schema=CHECKPOINT)
    compact = lambda d: {k: v.bfloat16() if v.is_floating_point() else v for k, v in d.items()}  # noqa: E731
    weights = {"model": compact(state["model"]), "objective": compact(state["objective"]),
               "step": state["step"], "model_config": state["model_config"],
               "tokenizer": state["tokenizer"]}
    write_durably(path, lambda f: torch.save(weights, f))


def small_data_rows(records, scale, settings=None):
    """The summaries of the plain runs (default options, or ``--set``'s ``settings``) at the grids'
    small-data setting of ``scale``: its whole preset, so a notebook's run at the same size but
    another evaluation is not among them."""
    settings = settings or {}
    spec = configure(grids.spec("clip", grids.SCALES[scale], 0),
                     {k: v for k, v in settings.items() if not k.startswith("objective.")})
    rows = records.summarise().where(preset=RecordPreset(**spec.stored()), noise=(0.0, 0.0), filtered=False,
                                     model=dict(spec.model.overrides) or None, augmentation="clip",
                                     train=spec.train_overrides or None)
    tuned = any(k.startswith("objective.") for k in settings)  # then each method's options are its own
    return rows if tuned else rows.where(objective=None)


def headline(records, scale, settings=None):
    """Each headline method against CLIP at the grid's small-data setting, interval and verdict."""
    rows = small_data_rows(records, scale, settings)
    present = {r.method for r in rows}
    if "clip" not in present:
        return {}
    clip = rows.one(method="clip")
    return {m: report.compare(clip, rows.one(method=m)) for m in grids.HEADLINE[1:] if m in present}


def recovered(record):
    """The progress line's note of a run's loss-crash recoveries; flagged ("!") beyond one."""
    n = len(record.recoveries or ())
    return "" if n == 0 else f"  {'! ' if n > 1 else ''}{n} recover{'ies' if n > 1 else 'y'}"


def written(config, where, shipped_weights):
    """The record of ``config`` that an earlier call wrote to ``where`` (with its weights, when
    ``shipped_weights``), or None: then it is trained, or read from the runs' folder; a damaged
    one is said and made again."""
    path, weights = shipped_file(where, "records", config), shipped_file(where, "weights", config)
    if not os.path.exists(path) or (shipped_weights and not os.path.exists(weights)):
        return None
    try:
        fix = "this call makes it again"
        return Record.from_json(read_json(path, fix), path, fix)
    except DamagedFile as e:
        print(e, flush=True)
        return None


def reproduce(scale="smoke", out="results", runs_dir="data/runs", jobs=1, device=None, command=None,
              budget=None, group="auto", settings=None):
    """Train (or load) every run of ``scale``; write ``out/<scale>/``; return the Records.
    ``command``: how it was called, for the summary. ``budget``: seconds after which no run starts
    (the summary then says how many of the plan finished; rerun to train the rest); 0 starts none.
    ``group``: runs of one step signature as one vmapped step ("auto": on CUDA, ``runs.grouped``).
    ``settings``: ``--set``'s, applied to every run (``configure_all``): other runs, other names."""
    if budget is not None and not (isinstance(budget, (int, float)) and budget >= 0):
        raise ValueError(f"--budget must be a number of seconds >= 0, got {budget!r}")
    settings = settings or {}
    configs = configure_all(plan(scale), settings)  # no settings: the plan as it is
    models = {c.name for c in configure_all(grids.model_runs(scale), settings)}
    scorers = [c.scorer for c in configs if c.scorer is not None]
    total = len(set(configs) | set(scorers))  # filters' scorers too
    where = os.path.join(out, scale)
    os.makedirs(os.path.join(where, "records"), exist_ok=True)
    kept = {c.name: r for c in dict.fromkeys(configs + scorers) if (r := written(c, where, c.name in models))}
    start, done = time.perf_counter(), dict(kept)

    def finished(config, record):
        if config.name in done:  # a scorer kept from an earlier call, trained again for its filtered run
            return
        done[config.name] = record
        data = record.to_json()
        history_path = os.path.join(runs_dir, config.name + ".history.json")
        if os.path.exists(history_path):
            fix = (f"delete it and {config.name}.json beside it: the next call rebuilds both from the "
                   f"checkpoint")
            data["history"] = thinned(read_json(history_path, fix, HISTORY)["history"])
        if config.name in models:  # before the record: a record in ``where`` marks the run done
            export_weights(os.path.join(runs_dir, config.name + ".pt"),
                           shipped_file(where, "weights", config))
        save_json(data, shipped_file(where, "records", config))
        seconds = f"{record.train_seconds or 0:5.1f}/{record.total_seconds or 0:5.1f} s"
        print(f"[{len(done):3d}/{total}] {time.perf_counter() - start:6.0f} s  {config.method:12s} "
              f"s{config.seed} {record.pairs:5d} pairs  mean zero-shot {record.zero_shot_own['mean']:.3f}  "
              f"train/total {seconds}  {config.name}{recovered(record)}", flush=True)

    if kept:
        print(f"{len(kept)} of {total} runs already in {where}: not trained again", flush=True)
    deadline = None if budget is None else time.time() + budget
    trained = run_grid([c for c in configs if c.name not in kept], runs_dir, device, jobs, progress=False,
                       on_record=finished, deadline=deadline, group=group)
    by_name = {**kept, **{r.name: r for r in trained}}
    records = Records(by_name[c.name] for c in configs if c.name in by_name)
    comparisons = headline(records, scale, settings)
    for method, c in comparisons.items():
        print(f"{method} - clip: {c}")
    if len(done) < total:
        print(f"{len(done)} of {total} runs finished: the budget ({budget:g} s) ran out before the rest "
              f"started; rerun the same command to train them", flush=True)
    ran_on = records[0].hardware if records else hardware(pick_device(device))
    save_json({"scale": scale, "hardware": ran_on, "commit": commit(), "torch": torch.__version__,
               "python": platform.python_version(), "threads": RUN_THREADS, "jobs": jobs, "group": group,
               "command": command, "settings": settings,
               "seconds": time.perf_counter() - start, "runs": len(done), "planned": total, "budget": budget,
               # summed over the runs trained (not loaded) by whatever machine made each record
               "train_seconds": sum(r.train_seconds or 0 for r in records),
               "total_seconds": sum(r.total_seconds or 0 for r in records),
               "recoveries": sum(len(r.recoveries or ()) for r in done.values()),  # loss-crash recoveries
               "runs_with_recoveries": {r.name: len(r.recoveries) for r in done.values() if r.recoveries},
               "headline": {m: {k: None if v in (math.inf, -math.inf) else v for k, v in vars(c).items()}
                            for m, c in comparisons.items()},  # an unbounded interval (one seed) as null
               "summaries": [{"method": r.method, "pairs": r.pairs, "steps": r.steps, "encoder": r.encoder,
                              "options": r.options, "seeds": r.seeds, "zero_shot": r.values}
                             for r in records.summarise()]},
              os.path.join(where, "summary.json"))
    return records
