"""From a run's arguments to an untrained run: data, tokenizer, zero-shot tasks, model, objective,
batches and a Trainer. Nothing here trains or caches (that is ``cache.py``)."""
import platform
import time
from dataclasses import dataclass

import torch

from ..data.loader import PairBatches, shapecaps_tokenizer
from ..data.shapecaps import ShapeCaps, make_tasks
from ..evaluate import evaluate_tasks
from ..filtering import keep_matched
from ..models.clip import CLIPModel, model_config
from ..objectives import make_objective
from ..train import TrainConfig, Trainer, pick_device, seed_everything
from .config import Preset, _options, _preset, run_name, sections


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


def run_label(run):
    """A short readable name for progress bars: the method, then whatever differs from the defaults."""
    o = run.options or {}
    parts = [run.method, f"s{run.seed}"]
    parts += [f"{k}={v}" for k, v in sorted((o.get("objective") or {}).items())]
    parts += [o["augmentation"]] if o.get("augmentation", "clip") != "clip" else []
    parts += [f"noise={tuple(o['noise'])}"] if any(o.get("noise", ())) else []
    parts += ["filtered"] if "filter" in o else []
    return " ".join(parts)


def make_trainer(dataset, tokenizer, method="clip", preset="smoke", tasks=None, seed=0, device=None,
                 augmentation="clip", model_overrides=None, objective_options=None, eda=None, train_overrides=None):
    """Model, objective, batches and Trainer for ``method`` on any captioned dataset (ShapeCaps,
    a filtered subset, :class:`CaptionedImages`), evaluated on the zero-shot ``tasks`` if given.
    ``train_overrides``: any other :class:`TrainConfig` field (grad_clip, sync_batchnorm, ...)."""
    preset = _preset(preset, {})
    config = model_config(preset.model, vocab_size=tokenizer.vocab_size, image_size=preset.image_size,
                          context_length=tokenizer.context_length, eot_id=tokenizer.eot_id, **(model_overrides or {}))
    objective = make_objective(method, config, tokenizer.vocab_size, **(objective_options or {}))
    batches = PairBatches.for_objective(dataset, tokenizer, min(preset.batch_size, len(dataset)), objective,
                                        augmentation, seed=seed, device=device, eda=eda)
    train_config = TrainConfig(steps=preset.steps, lr=preset.lr, warmup=preset.warmup, eval_every=preset.eval_every,
                               **sections({f"train.{k}": v for k, v in (train_overrides or {}).items()})["train"])
    evaluator = (lambda m: evaluate_tasks(m, tokenizer, tasks)) if tasks else None
    return Trainer(CLIPModel(config), objective, batches, train_config, evaluator=evaluator, device=device)


def build(method="clip", preset="smoke", seed=0, device=None, augmentation=None, noise=(0.0, 0.0),
          model_overrides=None, objective_options=None, filter_quantile=None, scorer=None, train_overrides=None,
          **preset_overrides):
    """Everything a ShapeCaps run needs, untrained: data, tokenizer, tasks and a Trainer.

    ``preset_overrides`` are :class:`Preset` fields (pairs, steps, ...); ``train_overrides`` other
    :class:`TrainConfig` fields. ``filter_quantile`` with a trained ``scorer`` run keeps only the
    pairs the scorer finds matched (``filtering.keep_matched``)."""
    preset = _preset(preset, preset_overrides, method)
    device = pick_device(device)
    seed_everything(seed)
    tokenizer = shapecaps_tokenizer()
    options = _options(augmentation, noise, model_overrides, objective_options, filter_quantile, scorer and scorer.name,
                       train_overrides)
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
                           model_overrides, objective_options, train_overrides=train_overrides)
    return Run(run_name(method, preset, seed, **options), method, preset, seed, tokenizer, dataset, tasks, trainer,
               options, filter_report=report)


def hardware(device):
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


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
