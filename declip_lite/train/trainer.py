"""One Trainer for every objective: AdamW, warm-up + cosine, bf16 on CUDA, a per-step history and
periodic zero-shot evaluation. The step is ``step.update`` (eager: the readable reference; on CUDA
captured once as a graph); what watches the loop (progress, recovery, checkpoints) is ``observers``."""
import time

import torch

from ..distributed import is_main, world
from ..recovery import LossCrash, StepBoundaryInterrupt
from . import observers
from .config import TrainConfig, adamw, parameter_groups, pick_device, warmup_cosine
from .step import TrainStep, capture, set_lr, unwrapped, update


class Trainer:
    """Trains ``model`` with ``objective`` on ``batches`` (a :class:`PairBatches`).

    Under torchrun (``distributed.init_from_env``), model and objective train as one DDP module;
    ``sync_batchnorm`` converts BatchNorm to SyncBatchNorm (GPUs only). Only rank 0 evaluates,
    shows progress and writes checkpoints."""

    def __init__(self, model, objective, batches, config=None, evaluator=None, device=None):
        c = self.config = config or TrainConfig()
        self.device, self.batches = pick_device(device), batches
        self.step_module = TrainStep.of(model, objective, self.device, c.sync_batchnorm)
        self.model, self.objective = unwrapped(self.step_module).model, unwrapped(self.step_module).objective
        self.evaluator = evaluator  # model -> dict of metrics, every eval_every steps and at the end
        self.optimizer, self.lr_tensor = adamw(parameter_groups([self.model, self.objective], c.weight_decay,
                                                                c.decay_exempt), c, self.device)
        cuda = self.device.type == "cuda"
        self.schedule = warmup_cosine(c.warmup, c.steps, c.warmup_start)
        self.graphed = (c.fast == "graph" or c.fast == "auto" and cuda) and world()[1] == 1
        if self.graphed and not cuda:
            raise ValueError(f"TrainConfig.fast='graph' needs a CUDA device, not {self.device}")
        self.step, self.history, self.evals, self.recoveries, self.graph = 0, [], [], [], None
        self.lr_scale, self.final_step, self.train_seconds, self._fit_started = 1.0, None, 0.0, None
        self._pending, self._lrs, self._keys, self._tick = [], [], None, time.perf_counter()

    def lr(self, step=None):
        """The learning rate of ``step`` (default: the next one): lr x recovery scale x warm-up/cosine."""
        return self.config.lr * self.lr_scale * self.schedule(self.step if step is None else step)

    def update(self, batch):
        """One eager step on ``batch`` (``step.update``); the logged values, named in ``_keys``."""
        self._keys, row = update(self.step_module, self.optimizer, self.config, batch, self.device)
        return row

    def apply(self, batch):
        """The update on ``batch``: a replay of the captured step when there is one (captured on the
        first call), else :meth:`update`, eagerly. Returns the logged values (see ``update``)."""
        if self.graphed and self.graph is None:
            self.graph = capture(self.update, batch, self.step_module.state_dict(keep_vars=True).values(),
                                 self.optimizer, self.device, strict=self.config.fast == "graph")
            self.graphed = self.graph is not None
        return self.update(batch) if self.graph is None else self.graph(batch).clone()

    def train_step(self):
        """Take one step; {name: logged value} (0-d tensors on the device)."""
        self.step_module.train()
        lr = self.lr()
        set_lr(self.optimizer, self.lr_tensor, lr)
        row = self.apply(self.batches.batch(self.step))
        self._pending.append(row)
        self._lrs.append(lr)
        self.step += 1
        return dict(zip(self._keys, row.unbind()))

    def flush(self):
        """Move pending step records to the history in one host sync (see ``record``)."""
        if not self._pending:
            return {}
        values, lrs = torch.stack(self._pending).tolist(), self._lrs  # one device-to-host copy
        self.discard_pending()
        return self.record(values, lrs, self._keys)

    def record(self, values, lrs, keys):  # the steps just taken into the history (``observers.record``)
        return observers.record(self, values, lrs, keys)

    def discard_pending(self):  # steps taken but not flushed: a recovery drops them
        self._pending, self._lrs = [], []

    def evaluate(self):
        """The evaluator's metrics now (rank 0), recorded in ``evals``; None without an evaluator."""
        if self.evaluator is None or not is_main():
            return None
        self.model.eval()
        seen = self.step * self.batches.batch_size
        result = {"step": self.step, "pairs_seen": seen, **self.evaluator(self.model)}
        self.evals.append(result)
        return result

    def fit(self, steps=None, checkpoint=None, progress=True, label=None):
        """Train until ``steps`` (default config.steps) have been taken in total, then evaluate.

        ``label`` names the progress bar (default: the objective's class). Ctrl-C stops after the
        current step, writes ``checkpoint`` and raises ``KeyboardInterrupt``; calling ``fit``
        again (or re-running the cell) resumes there."""
        total, c = steps or self.config.steps, self.config
        if self.step < total:  # a finished run, loaded, adds no time
            self.restart_clock(self.train_seconds)
        good = observers.snapshot(self)
        with StepBoundaryInterrupt() as interrupt, observers.Progress(self, total, progress, label) as bar:
            while self.step < total and not interrupt.requested:
                try:
                    self.train_step()
                    flushed = self.step % c.flush_every == 0 or self.step == total
                    bar.step(self.flush() if flushed else None)
                    if flushed:
                        good = observers.snapshot(self)
                    if c.eval_every and self.step % c.eval_every == 0 and self.step < total:
                        self.evaluate()
                        self._tick = time.perf_counter()  # evaluation time is not training time
                    if checkpoint and c.checkpoint_every and self.step % c.checkpoint_every == 0:
                        self.save(checkpoint)
                except LossCrash as crash:  # one process recovers; under torchrun all ranks must agree
                    if world()[1] > 1:
                        raise FloatingPointError(f"{crash}; resume from the last checkpoint") from None
                    observers.recover(self, good, crash)
                    bar.rewind()
        self.train_seconds, self._fit_started = self.seconds_trained(), None
        if interrupt.requested:
            observers.stop_interrupted(self, checkpoint, total)
        if self.final_step != total:  # a resumed run that died during its final evaluation redoes it
            self.evaluate()
            self.final_step = total
            if checkpoint:
                self.save(checkpoint)
        return self.evals[-1] if self.evals else None

    def restart_clock(self, seconds):  # training time so far is ``seconds``; the clock runs from now
        self.train_seconds, self._fit_started, self._tick = seconds, time.perf_counter(), time.perf_counter()

    def seconds_trained(self):  # seconds in fit() over every call and resume, the one running now included
        return self.train_seconds + (time.perf_counter() - self._fit_started if self._fit_started else 0.0)

    def state_dict(self):  # everything a resume needs (``observers.state_dict``)
        return observers.state_dict(self)

    def restore(self, state):  # put a state_dict (or a loaded checkpoint) into this trainer
        observers.restore(self, state)

    def save(self, path):  # an atomic, durable checkpoint (``observers.save``)
        observers.save(self, path)

    def load(self, path):  # resume from the checkpoint at ``path`` (``observers.load``)
        observers.load(self, path)
        return self

    def save_history(self, path):  # per-step records and evaluations, as JSON (``observers.save_history``)
        observers.save_history(self, path)
