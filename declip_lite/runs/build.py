"""From a run's arguments to an untrained run: data, tokenizer, zero-shot tasks, model, objective,
batches and a Trainer. Nothing here trains or caches (that is ``cache.py``)."""
import os
import platform
import subprocess
import time
from dataclasses import dataclass

import torch

from ..data.loader import PairBatches, shapecaps_tokenizer
from ..data.shapecaps import ShapeCaps, make_tasks
from ..evaluate import TaskEvaluator
from ..filtering import keep_matched
from ..models.clip import CLIPModel, model_config
from ..objectives import make_objective
from ..train import Trainer, pick_device, seed_everything
from .config import RunConfig, run_config
from .records import Record


@dataclass
class Run:
    config: RunConfig
    tokenizer: object
    dataset: ShapeCaps
    tasks: dict
    trainer: Trainer
    filter_report: dict = None  # what a data filter kept (see ``filtering.keep_matched``)
    record: Record = None  # the result, once trained
    live_history: list = None  # steps trained here before shipped weights replaced them (``shipped.fit``)
    started: float = None  # time.perf_counter() when building began: a record's total_seconds
    task_metrics: dict = None  # {task: full zero-shot metrics} of the trained model (``analysis.analyse``)
    group_size: int = 1  # the runs it trained with as one vmapped step (``runs.grouped``); 1: alone

    name = property(lambda self: self.config.name)
    method = property(lambda self: self.config.method)
    seed = property(lambda self: self.config.seed)
    options = property(lambda self: self.config.options)
    model = property(lambda self: self.trainer.model)
    objective = property(lambda self: self.trainer.objective)


def run_label(run):
    """A short readable name for progress bars: the method, then whatever differs from the defaults."""
    c = run.config
    parts = [c.method, f"s{c.seed}"] + [f"{k}={v}" for k, v in c.objective]
    parts += [c.data.augmentation] if c.data.augmentation != "clip" else []
    parts += [f"noise={c.data.noise}"] if any(c.data.noise) else []
    parts += ["filtered"] if c.data.filter_quantile is not None else []
    return " ".join(parts)


def make_trainer(dataset, tokenizer, config=None, tasks=None, device=None, eda=None):
    """Model, objective, batches and Trainer of ``config`` (a :class:`RunConfig`; default the smoke
    preset's CLIP run) on any captioned dataset (ShapeCaps, a filtered subset,
    :class:`CaptionedImages`), evaluated on the zero-shot ``tasks`` if given. The config's seed seeds
    the initial weights (and every RNG, as ``build`` does), whatever was drawn before."""
    config = config or RunConfig()
    seed_everything(config.seed)
    data = config.data
    model = model_config(config.model.tower, vocab_size=tokenizer.vocab_size, image_size=data.image_size,
                         context_length=tokenizer.context_length, eot_id=tokenizer.eot_id,
                         **dict(config.model.overrides))
    objective = make_objective(config.method, model, tokenizer.vocab_size, **dict(config.objective))
    batches = PairBatches.for_objective(dataset, tokenizer, min(data.batch_size, len(dataset)), objective,
                                        data.augmentation, seed=config.seed, device=device, eda=eda)
    evaluator = TaskEvaluator(tokenizer, tasks) if tasks else None
    return Trainer(CLIPModel(model), objective, batches, config.train, evaluator=evaluator, device=device)


def build(method="clip", preset="smoke", seed=0, device=None, scorer=None, **options):
    """Everything a ShapeCaps run needs, untrained: data, tokenizer, tasks and a Trainer.

    ``method``: a :class:`RunConfig`, or the method of one built from the other arguments
    (``RunConfig.of``'s: ``pairs=...`` and other bare settings, ``train_overrides``, ...). A filtered
    run (``filter_quantile``) needs its trained ``scorer`` run: it keeps the pairs the scorer finds
    matched (``filtering.keep_matched``)."""
    started = time.perf_counter()
    config = run_config(method, preset, seed, **options)
    data, device = config.data, pick_device(device)
    seed_everything(config.seed)
    tokenizer = shapecaps_tokenizer()
    dataset = ShapeCaps(data.pairs, seed=config.seed, image_size=data.image_size,
                        wrong_attribute_rate=data.noise[0], swap_rate=data.noise[1], device=device)
    report = None
    if config.scorer is not None:
        if scorer is None or scorer.name != config.scorer.name:
            raise ValueError(f"build: the filtered run {config.name} needs its trained scorer run "
                             f"{config.scorer.name}")
        keep, report = keep_matched(scorer.model, tokenizer, dataset, data.filter_quantile)
        dataset = dataset.subset(keep)
    tasks = make_tasks(n=data.eval_n, seed=config.seed, image_size=data.image_size, device=device)
    trainer = make_trainer(dataset, tokenizer, config, tasks, device)
    return Run(config, tokenizer, dataset, tasks, trainer, filter_report=report, started=started)


def commit():
    """The checkout's commit, with "+dirty" when files differ from it; outside git, $DECLIP_LITE_COMMIT
    (what a copy of the tree sent to another machine says it is), else "unknown"."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("DECLIP_LITE_COMMIT", "unknown")
    return sha.stdout.strip() + ("+dirty" if dirty else "")


def hardware(device):
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def step_cost(method="clip", preset="smoke", timed_steps=20, warmup_steps=5, device=None, **options):
    """What one training step of a fresh (untrained, uncached) run costs, after ``warmup_steps``:
    ``seconds``, the step's compute: wall-clock on a CPU (the host is the device, batch making
    included), the update's own device time between CUDA events on a GPU (the captured step is
    launch-bound: the host's work between replays would hide what the model costs); ``parameters``
    (model and objective); ``state_mb``, what training keeps between steps (weights, gradients and
    AdamW's two moments, float32); ``peak_mb``, the device's peak allocation during the timed steps
    (CUDA only, else None). ``method``, ``options``: ``build``'s."""
    trainer = build(method, preset, 0, device, **options).trainer
    for _ in range(warmup_steps):
        trainer.train_step()
    parameters = sum(p.numel() for m in (trainer.model, trainer.objective) for p in m.parameters())
    cost = {"parameters": parameters, "state_mb": 4 * 4 * parameters / 2**20, "peak_mb": None}
    if trainer.device.type != "cuda":
        start = time.perf_counter()
        for _ in range(timed_steps):
            trainer.train_step()
        return {**cost, "seconds": (time.perf_counter() - start) / timed_steps}
    with torch.cuda.device(trainer.device):
        torch.cuda.synchronize(trainer.device)
        torch.cuda.reset_peak_memory_stats(trainer.device)
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                  for _ in range(timed_steps)]
        for start, end in events:
            batch = trainer.batches.batch(trainer.step)
            start.record()
            trainer.apply(batch)
            end.record()
            trainer.step += 1
        torch.cuda.synchronize(trainer.device)
    seconds = sum(start.elapsed_time(end) for start, end in events) / 1e3 / timed_steps
    return {**cost, "seconds": seconds, "peak_mb": torch.cuda.max_memory_allocated(trainer.device) / 2**20}


def step_seconds(method="clip", preset="smoke", timed_steps=20, warmup_steps=5, device=None, **options):
    """Seconds per training step of a fresh run (:func:`step_cost`'s ``seconds``)."""
    return step_cost(method, preset, timed_steps, warmup_steps, device, **options)["seconds"]
