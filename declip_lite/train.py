"""One Trainer for every objective: AdamW with no-decay groups, warm-up + cosine, bf16 autocast on
CUDA, gradient clipping, the reference's logit-scale clamp, a tqdm bar (and live curves in
Jupyter), a per-step history, periodic zero-shot evaluation, loss-crash recovery, and atomic
checkpoints that resume exactly (the final evaluation included) and load with ``weights_only=True``.

The step is :meth:`Trainer.update`: forward, named terms, backward, AdamW, clamp, and the logged
values as one tensor, with no host sync. Eager, it is the readable reference; on CUDA the
Trainer captures it once as a CUDA graph and replays it (``TrainConfig.fast``, see ``graphed.py``).
"""
import copy
import math
import os
import random
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm import tqdm as text_bar
from tqdm.auto import tqdm as auto_bar

from .checkpoint import (ANY_NUMBER, COUNT, FINITE_TENSORS, LIST, NUMBER, OBJECT, POSITIVE, SECONDS, TENSOR,
                         Optional, load_torch, rng_state, save_json, set_rng_state, write_durably)
from .distributed import is_main, world
from .graphed import GraphedUpdate
from .live import LiveCurves, enabled as live_enabled
from .objectives.contract import encode
from .recovery import LossCrash, StepBoundaryInterrupt, first_crash, give_up_message

CHECKPOINT_VERSION = 4  # 2: the tokenizer is saved and checked on load; 3: loads with weights_only=True;
# 4: the heads' biases and the attention pool follow the reference

# what the files a Trainer writes hold (``checkpoint.checked``): a history JSON and a checkpoint
ROW = {"step": POSITIVE, "loss": NUMBER}
EVAL = {"step": COUNT}
RECOVERY = {"step": POSITIVE, "loss": ANY_NUMBER, "resumed_from": COUNT, "lr_scale": NUMBER}
HISTORY = {"history": [ROW], "evals": [EVAL], "recoveries": [RECOVERY]}
CHECKPOINT = {**HISTORY, "step": COUNT, "model": FINITE_TENSORS, "model_config": OBJECT,
              "objective": FINITE_TENSORS, "optimizer": {"state": OBJECT, "param_groups": [OBJECT]},
              "train_config": OBJECT, "tokenizer": Optional(OBJECT), "lr_scale": NUMBER,
              "final_step": Optional(COUNT), "train_seconds": SECONDS,
              "rng": {"torch": TENSOR, "numpy": LIST, "python": LIST}}


def pick_device(device=None):
    """``device`` if given, else CUDA when available, else CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class TrainConfig:
    steps: int = 1000
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.1
    betas: tuple = (0.9, 0.98)
    eps: float = 1e-8
    grad_clip: float = None  # max gradient norm; None: no clipping, as the reference's configs
    logit_scale_clamp: tuple = (3.0, 6.0)  # the reference; open_clip uses (0, ln 100)
    eval_every: int = 0                    # 0: only at the end of fit()
    flush_every: int = 25                  # steps between host syncs (history, bar, NaN check)
    checkpoint_every: int = 250             # steps between atomic checkpoints (when fit() is given a path)
    sync_batchnorm: bool = False           # several GPUs: BatchNorm statistics over the global batch
    spike_factor: float = 10.0             # a loss above this x the recent median is a crash (0: NaN only)
    recovery_lr_factor: float = 0.5        # after a crash: back to the last good state, lr x this
    max_recoveries: int = 3                # then stop with an error naming the first bad step
    # "auto": the step as a CUDA graph on one CUDA device, else eager; "eager": always the reference;
    # "graph": a CUDA graph or an error. Default: $DECLIP_LITE_FAST, else "auto"
    fast: str = field(default_factory=lambda: os.environ.get("DECLIP_LITE_FAST", "auto"))


def parameter_groups(modules, weight_decay):
    """AdamW groups: decay on weight matrices only; none on biases, norms, embeddings' scale."""
    decay, no_decay = [], []
    for module in modules:
        for name, p in module.named_parameters():
            if p.requires_grad:
                (decay if p.ndim >= 2 and "logit_scale" not in name else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(warmup, total):
    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
    return factor


class TrainStep(torch.nn.Module):
    """Model and objective as one module, so DDP can wrap (and synchronise) both."""

    def __init__(self, model, objective):
        super().__init__()
        self.model, self.objective = model, objective

    def forward(self, batch):
        return self.objective(encode(self.model, batch, self.objective.scale_cap))


class Trainer:
    """Trains ``model`` with ``objective`` on ``batches`` (a :class:`PairBatches`).

    Under torchrun (``distributed.init_from_env``), model and objective train as one DDP module;
    ``sync_batchnorm`` converts BatchNorm to SyncBatchNorm (GPUs only). Only rank 0 evaluates,
    shows progress and writes checkpoints."""

    def __init__(self, model, objective, batches, config=None, evaluator=None, device=None):
        self.config = config or TrainConfig()
        self.device = pick_device(device)
        if self.config.sync_batchnorm:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
            objective = torch.nn.SyncBatchNorm.convert_sync_batchnorm(objective)
        self.model, self.objective, self.batches = model.to(self.device), objective.to(self.device), batches
        self.step_module = TrainStep(self.model, self.objective)
        if world()[1] > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.step_module = torch.nn.parallel.DistributedDataParallel(self.step_module, device_ids=ids,
                                                                         find_unused_parameters=True)
        self.evaluator = evaluator  # model -> dict of metrics, called every eval_every steps
        c = self.config
        if c.fast not in ("auto", "eager", "graph"):
            raise ValueError(f"TrainConfig.fast={c.fast!r} (default: $DECLIP_LITE_FAST): expected 'auto', 'eager' "
                             f"or 'graph'")
        cuda = self.device.type == "cuda"
        # on CUDA the learning rate is a tensor the step reads, so a captured step follows the schedule
        self._lr = torch.tensor(c.lr, device=self.device) if cuda else None
        self.optimizer = torch.optim.AdamW(parameter_groups([model, objective], c.weight_decay),
                                           lr=c.lr if self._lr is None else self._lr, betas=c.betas, eps=c.eps,
                                           fused=True, capturable=cuda)  # one kernel, not a loop
        self.schedule = warmup_cosine(c.warmup, c.steps)
        self.graphed = (c.fast == "graph" or c.fast == "auto" and cuda) and world()[1] == 1
        if self.graphed and not cuda:
            raise ValueError(f"TrainConfig.fast='graph' needs a CUDA device, not {self.device}")
        self.step, self.history, self.evals, self._pending, self._live = 0, [], [], [], None
        self.recoveries, self.lr_scale, self.final_step, self.train_seconds = [], 1.0, None, 0.0
        self._fit_started = None  # perf_counter() while fit() runs: its seconds so far count in checkpoints
        self._tick, self._good, self._graph, self._keys, self._lrs = time.perf_counter(), None, None, None, []

    def _autocast(self):  # no weight-cast cache: a captured step must cast inside the graph
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda", cache_enabled=False)

    def lr(self, step=None):
        """The learning rate of ``step`` (default: the next one): lr x recovery scale x warm-up/cosine."""
        return self.config.lr * self.lr_scale * self.schedule(self.step if step is None else step)

    def update(self, batch):
        """One step on ``batch``: forward, named terms, backward, AdamW, logit-scale clamp. Returns the
        logged values as one tensor (the terms, then grad_norm and logit_scale; names in ``_keys``).
        No host sync, so a CUDA graph can capture it."""
        with self._autocast():
            terms = self.step_module(batch)
        self.optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip or float("inf"), foreach=True)
        self.optimizer.step()
        self.model.clamp_logit_scale(*self.config.logit_scale_clamp)
        self._keys = [*terms, "grad_norm", "logit_scale"]
        return torch.stack([*(v.detach().float() for v in terms.values()), grad_norm.float(),
                            self.model.logit_scale.detach().exp().float()])

    def train_step(self):
        """Take one step; {name: logged value} (0-d tensors on the device)."""
        self.model.train()
        self.objective.train()
        lr = self.lr()
        self._set_lr(lr)
        row = self.apply(self.batches.batch(self.step))
        self._pending.append(row)
        self._lrs.append(lr)
        self.step += 1
        return dict(zip(self._keys, row.unbind()))

    def apply(self, batch):
        """The update on ``batch``: a replay of the captured step when there is one (captured on the
        first call), else :meth:`update`, eagerly. Returns the logged values (see ``update``)."""
        if self.graphed and self._graph is None:
            self._graph = self._capture(batch)
        return self.update(batch) if self._graph is None else self._graph(batch).clone()

    def _set_lr(self, lr):
        if self._lr is None:
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        else:
            self._lr.fill_(lr)  # no sync: a kernel writes it

    def _capture(self, batch):
        """The step as a CUDA graph (``GraphedUpdate``), its warm-up undone; eager (None) with one
        warning if capture fails on this GPU, unless ``fast='graph'`` asked for it."""
        try:
            self._init_adamw_state()
            return GraphedUpdate(self.update, batch, self._state_tensors(), self.device)
        except Exception as e:  # noqa: BLE001 - any capture failure: the eager step is always right
            if self.config.fast == "graph":
                raise
            warnings.warn(f"Trainer: CUDA graph capture failed ({type(e).__name__}: {str(e).splitlines()[0]}); "
                          f"training eagerly", stacklevel=3)
            self.graphed = False
            return None

    def _init_adamw_state(self):
        """AdamW's state as its first step would create it (zero moments, step 0 on the device), made
        now, so that the warm-up before capture can be undone on it."""
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                if not self.optimizer.state[p]:
                    self.optimizer.state[p] = {"step": torch.zeros((), dtype=torch.float32, device=p.device),
                                               "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}

    def _state_tensors(self):
        """Every tensor a step writes: parameters, buffers (BatchNorm statistics, queues), AdamW's state."""
        tensors = [*self.step_module.state_dict(keep_vars=True).values()]
        return tensors + [v for s in self.optimizer.state.values() for v in s.values() if torch.is_tensor(v)]

    def _flush(self):
        """Move pending step records to the history in one host sync; pairs/s over the window."""
        if not self._pending:
            return {}
        values = torch.stack(self._pending).tolist()  # one device-to-host copy
        now = time.perf_counter()
        rate, self._tick = len(values) * self.batches.batch_size / max(now - self._tick, 1e-9), now
        first = self.step - len(values)
        rows = [{"step": first + i + 1, **dict(zip(self._keys, row)), "lr": lr, "pairs_per_s": rate}
                for i, (row, lr) in enumerate(zip(values, self._lrs))]
        self._pending, self._lrs = [], []
        crash = first_crash(rows, self.history, self.config.spike_factor)
        if crash is not None:
            raise crash
        self.history += rows
        return rows[-1]

    def evaluate(self):
        """The evaluator's metrics now (rank 0), recorded in ``evals``; None without an evaluator."""
        if self.evaluator is None or not is_main():
            return None
        self.model.eval()
        result = {"step": self.step, "pairs_seen": self.step * self.batches.batch_size, **self.evaluator(self.model)}
        self.evals.append(result)
        return result

    def fit(self, steps=None, checkpoint=None, progress=True, label=None):
        """Train until ``steps`` (default config.steps) have been taken in total, then evaluate.

        ``label`` names the progress bar (default: the objective's class). Ctrl-C stops after the
        current step, writes ``checkpoint`` and raises ``KeyboardInterrupt``; calling ``fit``
        again (or re-running the cell) resumes there."""
        total = steps or self.config.steps
        watched = progress and is_main() and live_enabled()  # a person in Jupyter: a widget bar and live curves
        bar = (auto_bar if watched else text_bar)(total=total, initial=self.step, disable=not (progress and is_main()),
                                                  desc=label or type(self.objective).__name__, dynamic_ncols=True,
                                                  mininterval=0.1 if watched or sys.stderr.isatty() else 10)  # a log: few lines
        self._live = LiveCurves(bar.desc) if watched else None
        self._tick, self._good, self._fit_started = time.perf_counter(), self._snapshot(), time.perf_counter()
        with StepBoundaryInterrupt() as interrupt, bar:  # the bar closes before any error is printed
            while self.step < total and not interrupt.requested:
                try:
                    self._fit_step(total, checkpoint, bar)
                except LossCrash as crash:  # one process: recover; under torchrun every rank would have to agree
                    if world()[1] > 1:
                        raise FloatingPointError(f"{crash}; resume from the last checkpoint") from None
                    self._recover(crash)
                    bar.n = self.step
                    bar.refresh()
        if self._live:
            self._live.update(self.history, final=True)
        self.train_seconds, self._fit_started = self.seconds_trained(), None
        if interrupt.requested:
            self._stop_interrupted(checkpoint, total)
        if self.final_step != total:  # a resumed run that died during its final evaluation redoes it
            self.evaluate()
            self.final_step = total
            if checkpoint:
                self.save(checkpoint)
        return self.evals[-1] if self.evals else None

    def _fit_step(self, total, checkpoint, bar):
        c = self.config
        self.train_step()
        bar.update(1)
        if self.step % c.flush_every == 0 or self.step == total:
            last = self._flush()
            self._good = self._snapshot()
            bar.set_postfix_str(f"loss {last['loss']:.3g}, {last['pairs_per_s']:.0f} pairs/s")
            if self._live:
                self._live.update(self.history)
        if c.eval_every and self.step % c.eval_every == 0 and self.step < total:
            self.evaluate()
            self._tick = time.perf_counter()  # evaluation time is not training time
        if checkpoint and c.checkpoint_every and self.step % c.checkpoint_every == 0:
            self.save(checkpoint)

    def _snapshot(self):
        """The last good state, in memory, for loss-crash recovery (one process only). The history
        and evaluations only grow, so their lengths stand in for a copy of them."""
        self._flush()
        if world()[1] > 1:
            return None
        state = {k: v for k, v in self.state_dict().items() if k not in ("history", "evals", "tokenizer")}
        return {**copy.deepcopy(state), "history": len(self.history), "evals": len(self.evals)}

    def _recover(self, crash):
        """Back to the last good state with a lower learning rate, or stop after ``max_recoveries``."""
        c = self.config
        if len(self.recoveries) >= c.max_recoveries:
            raise FloatingPointError(give_up_message(crash, self.recoveries, c.recovery_lr_factor)) from None
        lr_scale, seconds = self.lr_scale * c.recovery_lr_factor, self.seconds_trained()  # older in the good state
        recoveries = self.recoveries + [{"step": crash.step, "loss": crash.loss, "kind": crash.kind,
                                         "resumed_from": self._good["step"], "lr_scale": lr_scale}]
        self._pending, self._lrs = [], []
        good = copy.deepcopy({k: v for k, v in self._good.items() if k not in ("history", "evals")})
        self._restore({**good, "history": self.history[:self._good["history"]], "evals": self.evals[:self._good["evals"]]})
        self.recoveries, self.lr_scale = recoveries, lr_scale
        self.train_seconds, self._fit_started = seconds, time.perf_counter()
        self._tick = time.perf_counter()
        print(f"recovery {len(recoveries)} of at most {c.max_recoveries}: the loss was {crash.loss:.4g} at step "
              f"{crash.step} ({crash.kind}); back to step {self.step}, learning rate x{c.recovery_lr_factor} "
              f"(now {self.lr():.3g})", flush=True)

    def _stop_interrupted(self, checkpoint, total):
        if checkpoint:
            self.save(checkpoint)
            where = f"saved to {checkpoint}; run the cell again to resume from it"
        else:
            self._flush()
            where = "kept in memory (no checkpoint path); call fit() again to resume"
        message = f"Interrupted at step {self.step} of {total}: the state is {where}."
        print(message, flush=True)
        raise KeyboardInterrupt(message) from None

    # ----- checkpoints -------------------------------------------------------------------
    def state_dict(self):
        return {"version": CHECKPOINT_VERSION, "step": self.step, "model": self.model.state_dict(),
                "model_config": asdict(self.model.config), "objective": self.objective.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "train_config": asdict(self.config), "history": self.history, "evals": self.evals,
                "tokenizer": self._tokenizer_state(), "recoveries": self.recoveries, "lr_scale": self.lr_scale,
                "final_step": self.final_step, "train_seconds": self.seconds_trained(), "rng": rng_state()}

    def seconds_trained(self):
        """Seconds in fit() over every call and resume, the one running now included."""
        return self.train_seconds + (time.perf_counter() - self._fit_started if self._fit_started else 0.0)

    def _tokenizer_state(self):
        tokenizer = getattr(self.batches, "tokenizer", None)
        return tokenizer.state_dict() if tokenizer is not None else None

    def save(self, path):
        """Write atomically and durably: a crash or power loss mid-write never leaves a half
        checkpoint at ``path`` (the file and its folder are fsynced around the rename). Rank 0 only."""
        self._flush()
        if not is_main():
            return
        weights = [t for m in (self.model, self.objective) for t in m.state_dict().values()
                   if t.is_floating_point()]
        if not bool(torch.stack([torch.isfinite(t).all() for t in weights]).all()):  # one host read a save
            raise LossCrash(self.step, math.nan, "weights")  # never written: the last good checkpoint stays
        state = self.state_dict()
        write_durably(path, lambda f: torch.save(state, f))

    def load(self, path):
        """Resume from ``path``: model, objective (heads, queue), optimiser, schedule, RNGs, step."""
        # weights_only: a checkpoint is tensors and plain data, never code to run
        fix = "delete it to retrain the run from the start"
        state = load_torch(path, fix, CHECKPOINT_VERSION, self.device, CHECKPOINT)
        if state["model_config"] != asdict(self.model.config):
            raise ValueError(f"Trainer.load: {path!r} was saved from a different model config")
        if state["tokenizer"] != self._tokenizer_state():  # same size, other word ids: silently wrong text
            raise ValueError(f"Trainer.load: {path!r} was trained with a different tokenizer vocabulary")
        try:
            self._restore(state)
        except (RuntimeError, ValueError, KeyError) as e:  # e.g. a CLIP checkpoint in a DeCLIP run
            raise ValueError(f"Trainer.load: {path!r} does not fit this run's model and "
                             f"{type(self.objective).__name__} objective: {str(e).splitlines()[0]}") from None
        return self

    def _restore(self, state):
        self.model.load_state_dict(state["model"])
        self.objective.load_state_dict(state["objective"])
        self.optimizer.load_state_dict(state["optimizer"])  # new state tensors: a captured step is stale
        for group in self.optimizer.param_groups:  # this device's lr (a tensor on CUDA) and AdamW, not the saver's
            group["lr"], group["capturable"] = (self.config.lr, False) if self._lr is None else (self._lr, True)
        self._graph = None
        self.step, self.history, self.evals = state["step"], state["history"], state["evals"]
        self.recoveries, self.lr_scale = state["recoveries"], state["lr_scale"]
        self.final_step, self.train_seconds = state["final_step"], state["train_seconds"]
        set_rng_state(state["rng"])

    def save_history(self, path):
        """Per-step records (every named term, logit scale, lr, pairs/s) and evaluations, as JSON."""
        self._flush()
        save_json({"history": self.history, "evals": self.evals, "recoveries": self.recoveries}, path)
