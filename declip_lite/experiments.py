"""Presets and cached runs: what the notebooks and ``python -m declip_lite.experiments`` train.

A run is (method, preset, seed, overrides). Its checkpoint and JSON result live under
``runs_dir``; a finished run is loaded instead of retrained, so notebooks re-execute in seconds.
A grid (``grids.py``) is a list of runs; ``run_grid`` trains the missing ones, in parallel
processes when asked, and returns every run's JSON record.
"""
import argparse
import contextlib
import hashlib
import importlib
import json
import multiprocessing
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace

import torch

from . import grids
from .checkpoint import RunLock
from .data.captioned import CaptionedImages, read_csv
from .data.external import sklearn_digits
from .data.loader import PairBatches, shapecaps_tokenizer
from .data.shapecaps import TASKS, ShapeCaps, make_task, make_tasks
from .distributed import from_main, init_from_env, is_main
from .evaluate import evaluate_tasks, image_features, linear_probe, save_json, zero_shot
from .filtering import keep_matched
from .models.clip import CLIPModel, model_config
from .objectives import make_objective, objective_class, objective_names
from .text.augment import TokenEDA
from .text.tokenizer import BPETokenizer
from .train import TrainConfig, Trainer, pick_device, seed_everything


@dataclass(frozen=True)
class Preset:
    pairs: int        # distinct training pairs
    steps: int
    batch_size: int
    warmup: int
    eval_n: int       # images per zero-shot task
    eval_every: int
    lr: float = 1e-3
    image_size: int = 32
    model: str = "rn-tiny"


PRESETS = {
    "smoke": Preset(pairs=2048, steps=60, batch_size=128, warmup=10, eval_n=256, eval_every=0),
    "cpu": Preset(pairs=20_000, steps=2000, batch_size=128, warmup=100, eval_n=1000, eval_every=250),
    "gpu": Preset(pairs=100_000, steps=4000, batch_size=256, warmup=200, eval_n=2000, eval_every=500),
}
SMALL_DATA = dict(pairs=2000, steps=1200)  # notebooks 02-06 in full mode: 77 epochs of few pairs, where DeCLIP helps
PROBE_SEED_OFFSET = 500  # linear probes train on other draws of each task than they are tested on

@dataclass
class Run:
    name: str
    method: str
    preset: Preset
    seed: int
    tokenizer: object
    dataset: ShapeCaps
    tasks: dict
    trainer: Trainer
    options: dict = None   # augmentation, noise, model and objective options
    seconds: float = None  # training time of the last fit()
    filter_report: dict = None  # what a data filter kept (see ``filtering.keep_matched``)
    record: dict = None    # the JSON result, once trained

    @property
    def model(self):
        return self.trainer.model

    @property
    def objective(self):
        return self.trainer.objective


def run_name(method, preset, seed, **options):
    key = json.dumps({"method": method, "preset": asdict(preset), "seed": seed, **options}, sort_keys=True, default=str)
    return f"{method}-s{seed}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"


def run_label(run):
    """A short readable name for progress bars: the method, then whatever differs from the defaults."""
    o = run.options or {}
    parts = [run.method, f"s{run.seed}"]
    parts += [f"{k}={v}" for k, v in sorted((o.get("objective") or {}).items())]
    parts += [o["augmentation"]] if o.get("augmentation", "clip") != "clip" else []
    parts += [f"noise={tuple(o['noise'])}"] if any(o.get("noise", ())) else []
    parts += ["filtered"] if "filter" in o else []
    return " ".join(parts)


def _preset(preset, overrides):
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"build: unknown preset {preset!r}; choose from {sorted(PRESETS)}")
        preset = PRESETS[preset]
    return replace(preset, **overrides)


def _options(augmentation, noise, model_overrides, objective_options, filter_quantile, scorer_name):
    """The run options that name a run (with its preset and seed)."""
    # every method defaults to CLIP's crop-only views: the reference's MoCo views (and even the
    # milder "safe" ones) make ShapeCaps captions false and cost more than DeCLIP's signals add
    options = dict(augmentation=augmentation or "clip", noise=noise, model=model_overrides, objective=objective_options)
    if filter_quantile is not None:
        options["filter"] = dict(quantile=filter_quantile, scorer=scorer_name)
    return options


def spec_name(method="clip", preset="smoke", seed=0, device=None, augmentation=None, noise=(0.0, 0.0),
              model_overrides=None, objective_options=None, filter_quantile=None, **preset_overrides):
    """The name ``build`` gives the run of these ``train`` arguments, without building it."""
    scorer = None
    if filter_quantile is not None:
        scorer = spec_name(**scorer_spec(dict(preset=preset, noise=noise, augmentation=augmentation,
                                              model_overrides=model_overrides, **preset_overrides)))
    options = _options(augmentation, noise, model_overrides, objective_options, filter_quantile, scorer)
    return run_name(method, _preset(preset, preset_overrides), seed, **options)


def make_trainer(dataset, tokenizer, method="clip", preset="smoke", tasks=None, seed=0, device=None,
                 augmentation="clip", model_overrides=None, objective_options=None, eda=None):
    """Model, objective, batches and Trainer for ``method`` on any captioned dataset (ShapeCaps,
    a filtered subset, :class:`CaptionedImages`), evaluated on the zero-shot ``tasks`` if given."""
    preset = _preset(preset, {})
    config = model_config(preset.model, vocab_size=tokenizer.vocab_size, image_size=preset.image_size,
                          context_length=tokenizer.context_length, eot_id=tokenizer.eot_id, **(model_overrides or {}))
    objective = make_objective(method, config, tokenizer.vocab_size, **(objective_options or {}))
    batches = PairBatches.for_objective(dataset, tokenizer, min(preset.batch_size, len(dataset)), objective,
                                        augmentation, seed=seed, device=device, eda=eda)
    train_config = TrainConfig(steps=preset.steps, lr=preset.lr, warmup=preset.warmup, eval_every=preset.eval_every)
    evaluator = (lambda m: evaluate_tasks(m, tokenizer, tasks)) if tasks else None
    return Trainer(CLIPModel(config), objective, batches, train_config, evaluator=evaluator, device=device)


def build(method="clip", preset="smoke", seed=0, device=None, augmentation=None, noise=(0.0, 0.0),
          model_overrides=None, objective_options=None, filter_quantile=None, scorer=None, **preset_overrides):
    """Everything a ShapeCaps run needs, untrained: data, tokenizer, tasks and a Trainer.

    ``filter_quantile`` with a trained ``scorer`` run keeps only the pairs the scorer finds
    matched (``filtering.keep_matched``)."""
    preset = _preset(preset, preset_overrides)
    device = pick_device(device)
    seed_everything(seed)
    tokenizer = shapecaps_tokenizer()
    options = _options(augmentation, noise, model_overrides, objective_options, filter_quantile, scorer and scorer.name)
    dataset = ShapeCaps(preset.pairs, seed=seed, image_size=preset.image_size, wrong_attribute_rate=noise[0],
                        swap_rate=noise[1], device=device)
    report = None
    if filter_quantile is not None:
        if scorer is None:
            raise ValueError("build: filter_quantile needs a trained scorer run")
        keep, report = keep_matched(scorer.model, tokenizer, dataset, filter_quantile)
        dataset = dataset.subset(keep)
    tasks = make_tasks(n=preset.eval_n, seed=seed, image_size=preset.image_size, device=device)
    trainer = make_trainer(dataset, tokenizer, method, preset, tasks, seed, device, options["augmentation"],
                           model_overrides, objective_options)
    return Run(run_name(method, preset, seed, **options), method, preset, seed, tokenizer, dataset, tasks, trainer,
               options, filter_report=report)


def hardware(device):
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


SCORER_SEED = 1000  # the filter's scorer trains on this draw of the data, never on the filtered one


def train(method="clip", preset="smoke", seed=0, runs_dir="data/runs", progress=True, **options):
    """Build and train a run, or load it when ``runs_dir`` already holds it finished.

    With ``filter_quantile``, a CLIP scorer is first trained (or loaded) on another draw of the
    same noisy data (seed ``SCORER_SEED``), then filters this run's pairs."""
    if options.get("filter_quantile") is not None:
        options["scorer"] = train(**scorer_spec(dict(preset=preset, **options)), runs_dir=runs_dir, progress=progress)
    return fit(build(method, preset, seed, **options), runs_dir, progress)


def scorer_spec(spec):
    """The CLIP run that scores (filters) the pairs of the filtered run ``spec``."""
    drop = {"method", "seed", "filter_quantile", "objective_options"}
    return {"method": "clip", "seed": SCORER_SEED, **{k: v for k, v in spec.items() if k not in drop}}


def fit(run, runs_dir="data/runs", progress=True):
    """Train ``run`` to its preset's steps and write its JSON result, resuming from ``runs_dir``.

    Safe at every instant: the final evaluation is part of the checkpoint, and the JSON (written
    last, after the history and per-task files) marks a finished run. A run killed anywhere is
    finished by the next call with the numbers of an uninterrupted run; a second process on the
    same run is refused (``RunLock``)."""
    if not runs_dir:
        run.trainer.fit(progress=progress, label=run_label(run))
        run.seconds, run.record = run.trainer.train_seconds, result(run)
        return run
    path = os.path.join(runs_dir, run.name)
    with RunLock(path) if is_main() else contextlib.nullcontext():
        if os.path.exists(path + ".pt"):
            run.trainer.load(path + ".pt")
        if os.path.exists(path + ".json") and run.trainer.step >= run.preset.steps:
            with open(path + ".json") as f:
                run.record = json.load(f)
            return run
        run.trainer.fit(checkpoint=path + ".pt", progress=progress, label=run_label(run))
        run.seconds, run.record = run.trainer.train_seconds, result(run)
        if is_main():
            run.trainer.save_history(path + ".history.json")
            for name, task in run.tasks.items():  # one JSON per (run, task), with the confusion matrix
                save_json(zero_shot(run.model, run.tokenizer, task), os.path.join(path + ".zero_shot", f"{name}.json"))
            save_json(run.record, path + ".json")
    return run


def _with_mean(scores):
    return {**scores, "mean": sum(scores.values()) / len(scores)}


def analyse(run):
    """What a trained model shows beyond its zero-shot table: one prompt instead of the
    ensemble, linear probes, transfer to real handwriting and, for FILIP heads, token-wise
    zero-shot."""
    model, tok, p, dev = run.model, run.tokenizer, run.preset, run.trainer.device
    emb = {t: image_features(model, task.images) for t, task in run.tasks.items()}  # each task encoded once

    def probe(t, task):  # trained on a fresh draw of the task, tested on the zero-shot images
        train = make_task(t, p.eval_n, run.seed + PROBE_SEED_OFFSET, p.image_size, dev)
        return linear_probe(image_features(model, train.images), train.labels, emb[t], task.labels)["top1"]

    out = {"single_prompt": _with_mean({t: zero_shot(model, tok, task, task.templates[:1], image_emb=emb[t])["top1"]
                                        for t, task in run.tasks.items()}),
           "linear_probe": _with_mean({t: probe(t, task) for t, task in run.tasks.items()}),
           "transfer": {"sklearn_digits": zero_shot(model, tok, sklearn_digits(p.image_size, dev, p.eval_n))["top1"]}}
    head = run.objective.zero_shot_head
    if head is not None:
        out["zero_shot_filip"] = _with_mean({t: zero_shot(model, tok, task, filip=head)["top1"]
                                             for t, task in run.tasks.items()})
    return out


def result(run):
    """The JSON record of a finished run (plain JSON data: lists, not tuples). ``zero_shot`` is the
    global cosine's; ``zero_shot_own`` the objective's own scorer's (FILIP's token-wise one)."""
    last = run.trainer.evals[-1] if run.trainer.evals else {}
    scores = {"zero_shot": {t: last.get(t) for t in [*TASKS, "mean"]}, **analyse(run)}
    scorer = run.objective.zero_shot_scorer
    own = scores["zero_shot_filip"] if scorer == "token-wise" else scores["zero_shot"]
    return json.loads(json.dumps({"name": run.name, "method": run.method, "seed": run.seed, "preset": asdict(run.preset), "options": run.options,
            "hardware": hardware(run.trainer.device), "train_seconds": run.seconds,
            "pairs_seen": run.trainer.step * run.preset.batch_size, "filter_report": run.filter_report,
            "recoveries": run.trainer.recoveries, **scores, "scorer": scorer, "zero_shot_own": own,
            "evals": run.trainer.evals, "torch": torch.__version__}))


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


def step_seconds(method="clip", preset="smoke", timed_steps=20, warmup_steps=5, device=None, **options):
    """Seconds per training step of a fresh (untrained, uncached) run, after ``warmup_steps``.
    ``options`` are ``build``'s (a preset's own ``steps`` does not matter here)."""
    trainer = build(method, preset, 0, device, **options).trainer
    for _ in range(warmup_steps):
        trainer.train_step()
    sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(timed_steps):
        trainer.train_step()
    sync()
    return (time.perf_counter() - start) / timed_steps


def summarise(records, field="zero_shot"):
    """Group run records (``result`` dicts) by everything but the seed; mean and std over seeds
    of each entry of ``records[i][field]`` (zero_shot, linear_probe, single_prompt, ...).

    Returns rows {method, pairs, steps, encoder, augmentation, objective, options, seeds, <key>: (mean, std)}."""
    groups, seen = {}, set()
    for r in records:
        if not r.get(field) or r.get("name", id(r)) in seen:  # a run listed by two grids counts once
            continue
        seen.add(r.get("name", id(r)))
        key = json.dumps([r["method"], r["preset"], r.get("options") or {}], sort_keys=True)
        groups.setdefault(key, []).append(r[field])
    rows = []
    for key, scores in groups.items():
        method, preset, options = json.loads(key)
        t = torch.tensor([[z[k] for k in scores[0]] for z in scores], dtype=torch.float64)
        std = t.std(0) if len(scores) > 1 else torch.zeros(t.shape[1], dtype=torch.float64)
        rows.append({"method": method, "pairs": preset["pairs"], "steps": preset["steps"], "encoder": preset["model"],
                     "augmentation": options.get("augmentation"), "objective": options.get("objective"),
                     "options": options, "seeds": len(scores),
                     **{k: (m, sd) for k, m, sd in zip(scores[0], t.mean(0).tolist(), std.tolist())}})
    return rows


def train_csv(csv, method="clip", preset="gpu", seed=0, runs_dir="data/runs", device=None, image_key="filepath",
              caption_key="title", sep=None, on_error="skip", max_skip_rate=0.01, vocab_size=8000,
              context_length=32, **preset_overrides):
    """Train ``method`` on an open_clip-style CSV of image files, with a BPE tokenizer trained on
    its captions; resumable from ``runs_dir``. Under torchrun every rank loads the CSV and trains
    on its share of each batch; rank 0 writes the checkpoint.

    BPE training is not deterministic (ties between merges), so rank 0 trains the tokenizer once,
    saves it beside the checkpoint, and every rank and every resume uses that file."""
    preset = _preset(preset, preset_overrides)
    seed_everything(seed)
    data = CaptionedImages(read_csv(csv, image_key, caption_key, sep), preset.image_size, on_error, max_skip_rate,
                           device, progress=is_main())
    path = os.path.join(runs_dir, f"{os.path.splitext(os.path.basename(csv))[0]}-{method}-s{seed}")
    state = None
    if is_main():
        if os.path.exists(path + ".tokenizer.json"):
            with open(path + ".tokenizer.json") as f:
                state = json.load(f)
        else:
            state = BPETokenizer.train(data.captions(range(len(data))), vocab_size, context_length).state_dict()
            save_json(state, path + ".tokenizer.json")
    tokenizer = BPETokenizer.from_state_dict(from_main(state))
    trainer = make_trainer(data, tokenizer, method, preset, seed=seed, device=device, eda=TokenEDA(tokenizer))
    with RunLock(path) if is_main() else contextlib.nullcontext():
        if os.path.exists(path + ".pt"):
            trainer.load(path + ".pt")
        trainer.fit(checkpoint=path + ".pt", progress=is_main())
    if is_main():
        save_json({"csv": csv, "load_report": data.report, "truncated_captions": data.truncated(tokenizer),
                   "tokenizer": path + ".tokenizer.json", "history": trainer.history}, path + ".json")
        print(f"{len(data)} pairs ({data.report['skipped']} bad rows skipped); checkpoint {path}.pt")
    return trainer


def _assignments(pairs):
    """["k=v", ...] -> {k: v} with v parsed as JSON when it can be (numbers, booleans, lists)."""
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"expected KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def import_plugins(argv):
    """Import the modules named by ``--import`` first, so the objectives they register are choices."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--import", dest="imports", nargs="*", default=[])
    for module in pre.parse_known_args(argv)[0].imports:
        importlib.import_module(module)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    import_plugins(argv)
    parser = argparse.ArgumentParser(description="Train declip-lite runs or grids (cached) and summarise "
                                                 "zero-shot accuracy.")
    parser.add_argument("--import", dest="imports", nargs="*", default=[], metavar="MODULE",
                        help="modules that register objectives of your own (declip_lite.register)")
    parser.add_argument("names", nargs="+", choices=objective_names() + sorted(grids.GRIDS),
                        help="methods (with --preset/--seeds/--set) or whole grids (with --preset as their scale)")
    parser.add_argument("--preset", default="smoke", choices=sorted(PRESETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="preset overrides, e.g. pairs=5000")
    parser.add_argument("--objective", nargs="*", default=[], metavar="OPTION=VALUE", help="e.g. exclude_self=true")
    parser.add_argument("--augmentation", default=None)
    parser.add_argument("--methods", nargs="+", default=None, help="the methods a grid compares (default: its own)")
    parser.add_argument("--jobs", type=int, default=1, help="parallel training processes")
    parser.add_argument("--runs-dir", default="data/runs")
    parser.add_argument("--device", default=None)
    parser.add_argument("--summary", default=None, help="write the mean/std table and run records here (JSON)")
    parser.add_argument("--csv", default=None, help="train the (one) method on this CSV of image files instead")
    parser.add_argument("--csv-keys", nargs=2, default=["filepath", "title"], metavar=("IMAGE", "CAPTION"))
    args = parser.parse_args(argv)
    device = args.device or init_from_env()  # joins the process group under torchrun
    if args.csv:
        train_csv(args.csv, args.names[0], args.preset, args.seeds[0], args.runs_dir, device, *args.csv_keys,
                  **_assignments(args.set))
        return
    options = dict(augmentation=args.augmentation, **_assignments(args.set))
    if args.objective:
        options["objective_options"] = _assignments(args.objective)
    specs = []
    for name in args.names:
        if name in grids.GRIDS:
            specs += grids.grid(name, args.preset, args.methods)
        else:
            specs += [dict(method=name, preset=args.preset, seed=s, **options) for s in args.seeds]
    records = run_grid(specs, args.runs_dir, device, args.jobs)
    for row in summarise(records):
        print(f"{row['method']:12s} {row['pairs']:6d} {json.dumps(row['options'])[:60]:60s} "
              + "  ".join(f"{k} {row[k][0]:.3f}±{row[k][1]:.3f}" for k in ["shape", "mean"]))
    if args.summary:
        save_json({"hardware": records[0]["hardware"], "runs": records}, args.summary)


if __name__ == "__main__":
    main()
