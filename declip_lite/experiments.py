"""Presets and cached runs: what the notebooks and ``python -m declip_lite.experiments`` train.

A run is (method, preset, seed, overrides). Its checkpoint and JSON result live under
``runs_dir``; a finished run is loaded instead of retrained, so notebooks re-execute in seconds.
"""
import argparse
import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, replace

import torch

from .data.loader import PairBatches, shapecaps_tokenizer
from .data.shapecaps import TASKS, ShapeCaps, make_tasks
from .evaluate import evaluate_tasks, save_json, zero_shot
from .models.clip import CLIPModel, image_width, model_config
from .objectives import CLIP, FILIP, SLIP, DeCLIP, DeFILIP
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

METHODS = {  # DeCLIP with some signals off; weights keep the reference's ratios to the CLIP term
    "clip": {},
    "clip+iss": dict(mvs=False, weights={"nns": 0, "mlm": 0}),
    "clip+tss": dict(mvs=False, weights={"nns": 0, "simsiam": 0}),
    "clip+nns": dict(mvs=False, weights={"simsiam": 0, "mlm": 0}),
    "clip+mvs": dict(weights={"clip": 1.0, "nns": 0, "simsiam": 0, "mlm": 0}),
    "clip+mvs+ss": dict(weights={"nns": 0}),  # the ablation ladder: clip, +mvs, +ss, declip
    "declip": {},
}
BENCHMARK = ["slip", "filip", "defilip"]  # the CLIP-benchmark paper's other objectives


def make_objective(method, config, vocab_size, **kwargs):
    """``method``: "clip" or a key of ``METHODS``; kwargs reach DeCLIP (weights, queue_size, ...)."""
    if method == "clip":
        if kwargs:
            raise TypeError(f"make_objective: CLIP takes no options, got {sorted(kwargs)}")
        return CLIP()
    if method == "slip":
        return SLIP(image_width(config), **kwargs)
    if method == "filip":
        return FILIP(image_width(config), config.text_width, **kwargs)
    if method == "defilip":
        return DeFILIP(config.embed_dim, config.text_width, vocab_size, image_width(config), **kwargs)
    if method not in METHODS:
        raise ValueError(f"make_objective: unknown method {method!r}; choose from {sorted(METHODS) + BENCHMARK}")
    return DeCLIP(config.embed_dim, config.text_width, vocab_size, **{**METHODS[method], **kwargs})


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

    @property
    def model(self):
        return self.trainer.model

    @property
    def objective(self):
        return self.trainer.objective


def run_name(method, preset, seed, **options):
    key = json.dumps({"method": method, "preset": asdict(preset), "seed": seed, **options}, sort_keys=True, default=str)
    return f"{method}-s{seed}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"


def build(method="clip", preset="smoke", seed=0, device=None, augmentation=None, noise=(0.0, 0.0),
          model_overrides=None, objective_options=None, **preset_overrides):
    """Everything a run needs, untrained: data, tokenizer, model, objective, batches, trainer."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"build: unknown preset {preset!r}; choose from {sorted(PRESETS)}")
        preset = PRESETS[preset]
    preset = replace(preset, **preset_overrides)
    device = pick_device(device)
    seed_everything(seed)
    tokenizer = shapecaps_tokenizer()
    config = model_config(preset.model, vocab_size=tokenizer.vocab_size, image_size=preset.image_size,
                          **(model_overrides or {}))
    objective = make_objective(method, config, tokenizer.vocab_size, **(objective_options or {}))
    # every method defaults to CLIP's crop-only views: the reference's MoCo views (and even the
    # milder "safe" ones) make ShapeCaps captions false and cost more than DeCLIP's signals add
    augmentation = augmentation or "clip"
    dataset = ShapeCaps(preset.pairs, seed=seed, image_size=preset.image_size, wrong_attribute_rate=noise[0],
                        swap_rate=noise[1], device=device)
    batches = PairBatches(dataset, tokenizer, preset.batch_size, objective.image_views, objective.text_views,
                          augmentation, seed=seed)
    tasks = make_tasks(n=preset.eval_n, seed=seed, image_size=preset.image_size, device=device)
    train_config = TrainConfig(steps=preset.steps, lr=preset.lr, warmup=preset.warmup, eval_every=preset.eval_every)
    trainer = Trainer(CLIPModel(config), objective, batches, train_config,
                      evaluator=lambda m: evaluate_tasks(m, tokenizer, tasks), device=device)
    options = dict(augmentation=augmentation, noise=noise, model=model_overrides, objective=objective_options)
    return Run(run_name(method, preset, seed, **options), method, preset, seed, tokenizer, dataset, tasks, trainer,
               options)


def hardware(device):
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def train(method="clip", preset="smoke", seed=0, runs_dir="data/runs", progress=True, **options):
    """Build and train a run, or load it when ``runs_dir`` already holds it finished."""
    return fit(build(method, preset, seed, **options), runs_dir, progress)


def fit(run, runs_dir="data/runs", progress=True):
    """Train ``run`` to its preset's steps (resuming from ``runs_dir``) and write its JSON result."""
    path = os.path.join(runs_dir, run.name) if runs_dir else None
    if path and os.path.exists(path + ".pt"):
        run.trainer.load(path + ".pt")
    if run.trainer.step < run.preset.steps:
        start = time.perf_counter()
        run.trainer.fit(checkpoint=path and path + ".pt", progress=progress)
        run.seconds = time.perf_counter() - start
        if path:
            save_json(result(run), path + ".json")
            run.trainer.save_history(path + ".history.json")
            for name, task in run.tasks.items():  # one JSON per (run, task), with the confusion matrix
                save_json(zero_shot(run.model, run.tokenizer, task), os.path.join(path + ".zero_shot", f"{name}.json"))
    return run


def result(run):
    """The JSON record of a finished run."""
    last = run.trainer.evals[-1] if run.trainer.evals else {}
    return {"name": run.name, "method": run.method, "seed": run.seed, "preset": asdict(run.preset), "options": run.options,
            "hardware": hardware(run.trainer.device), "train_seconds": run.seconds,
            "pairs_seen": run.trainer.step * run.preset.batch_size,
            "zero_shot": {t: last.get(t) for t in [*TASKS, "mean"]}, "evals": run.trainer.evals,
            "torch": torch.__version__}


def summarise(records):
    """Group run records (``result`` dicts) by setting; mean and std of zero-shot top-1 over seeds.

    Returns rows {method, pairs, steps, augmentation, objective, seeds, <task>: (mean, std)}."""
    groups = {}
    for r in records:
        o = r.get("options") or {}
        key = (r["method"], r["preset"]["pairs"], r["preset"]["steps"], o.get("augmentation"),
               json.dumps(o.get("objective"), sort_keys=True))
        groups.setdefault(key, []).append(r["zero_shot"])
    rows = []
    for (method, pairs, steps, aug, objective), scores in groups.items():
        t = torch.tensor([[z[k] for k in scores[0]] for z in scores], dtype=torch.float64)
        std = t.std(0) if len(scores) > 1 else torch.zeros(t.shape[1], dtype=torch.float64)
        rows.append({"method": method, "pairs": pairs, "steps": steps, "augmentation": aug,
                     "objective": json.loads(objective), "seeds": len(scores),
                     **{k: (m, sd) for k, m, sd in zip(scores[0], t.mean(0).tolist(), std.tolist())}})
    return rows


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


def main(argv=None):
    parser = argparse.ArgumentParser(description="Train declip-lite runs (cached) and summarise zero-shot accuracy.")
    parser.add_argument("methods", nargs="+", choices=sorted(METHODS) + BENCHMARK)
    parser.add_argument("--preset", default="smoke", choices=sorted(PRESETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="preset overrides, e.g. pairs=5000")
    parser.add_argument("--objective", nargs="*", default=[], metavar="OPTION=VALUE", help="e.g. exclude_self=true")
    parser.add_argument("--augmentation", default=None)
    parser.add_argument("--runs-dir", default="data/runs")
    parser.add_argument("--device", default=None)
    parser.add_argument("--summary", default=None, help="write the mean/std table and run records here (JSON)")
    args = parser.parse_args(argv)
    options = dict(device=args.device, augmentation=args.augmentation, **_assignments(args.set))
    if args.objective:
        options["objective_options"] = _assignments(args.objective)
    runs = [train(m, args.preset, s, args.runs_dir, **options) for m in args.methods for s in args.seeds]
    records = [result(r) for r in runs]
    for row in summarise(records):
        print(f"{row['method']:12s} " + "  ".join(f"{k} {row[k][0]:.3f}±{row[k][1]:.3f}" for k in [*TASKS, "mean"]))
    if args.summary:
        save_json({"hardware": hardware(runs[0].trainer.device), "runs": records}, args.summary)


if __name__ == "__main__":
    main()
