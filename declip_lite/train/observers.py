"""What watches a Trainer's loop, each a function of the trainer (never importing it): the progress
bar and live curves, loss-crash recovery, atomic checkpoints that resume exactly (the final
evaluation included, loaded with ``weights_only=True``) and a calm Ctrl-C."""
import copy
import math
import sys
import time
from dataclasses import asdict

import torch
from tqdm import tqdm as text_bar
from tqdm.auto import tqdm as auto_bar

from ..checkpoint import (ANY_NUMBER, COUNT, FINITE_TENSORS, LIST, NUMBER, OBJECT, POSITIVE, SECONDS, TENSOR,
                          Optional, load_torch, rng_state, save_json, set_rng_state, write_durably)
from ..distributed import is_main, world
from ..live import LiveCurves, enabled as live_enabled
from ..models.clip import same_model
from ..recovery import LossCrash, first_crash, give_up_message

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


# ----- progress ----------------------------------------------------------------------------
class Progress:
    """A tqdm bar (a widget and live curves when a person watches in Jupyter; a few log lines
    otherwise), on rank 0 only, closed before any error is printed."""

    def __init__(self, trainer, total, show=True, label=None):
        watched = show and is_main() and live_enabled()
        self.bar = (auto_bar if watched else text_bar)(
            total=total, initial=trainer.step, disable=not (show and is_main()), dynamic_ncols=True,
            desc=label or type(trainer.objective).__name__,
            mininterval=0.1 if watched or sys.stderr.isatty() else 10)  # a log: few lines
        self.live, self.trainer = LiveCurves(self.bar.desc) if watched else None, trainer

    def step(self, last=None):
        """One step taken; ``last``: the newest flushed row, shown with the curves."""
        self.bar.update(1)
        if last:
            self.bar.set_postfix_str(f"loss {last['loss']:.3g}, {last['pairs_per_s']:.0f} pairs/s")
            if self.live:
                self.live.update(self.trainer.history)

    def rewind(self):
        """The trainer went back (a recovery): the bar follows."""
        self.bar.n = self.trainer.step
        self.bar.refresh()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.bar.close()
        if self.live:
            self.live.update(self.trainer.history, final=True)


# ----- loss-crash recovery -----------------------------------------------------------------
def record(trainer, values, lrs, keys):
    """The logged ``values`` of the steps just taken (names ``keys``, learning rates ``lrs``) into
    the trainer's history, pairs/s over the window; a non-finite or spiking loss among them raises
    ``LossCrash``. Returns the last row."""
    now, first, trainer._keys = time.perf_counter(), trainer.step - len(values), keys
    rate = len(values) * trainer.batches.batch_size / max(now - trainer._tick, 1e-9)
    trainer._tick = now
    rows = [{"step": first + i + 1, **dict(zip(keys, row)), "lr": lr, "pairs_per_s": rate}
            for i, (row, lr) in enumerate(zip(values, lrs))]
    crash = first_crash(rows, trainer.history, trainer.config.spike_factor)
    if crash is not None:
        raise crash
    trainer.history += rows
    return rows[-1]


def save_history(trainer, path):
    """Per-step records (every named term, logit scale, lr, pairs/s) and evaluations, as JSON."""
    trainer.flush()
    save_json({"history": trainer.history, "evals": trainer.evals, "recoveries": trainer.recoveries}, path)


def snapshot(trainer):
    """The last good state, in memory, for loss-crash recovery (one process only). The history and
    evaluations only grow, so their lengths stand in for a copy of them."""
    trainer.flush()
    if world()[1] > 1:
        return None
    state = {k: v for k, v in state_dict(trainer).items() if k not in ("history", "evals", "tokenizer")}
    return {**copy.deepcopy(state), "history": len(trainer.history), "evals": len(trainer.evals)}


def rewind(trainer, good):
    """Back to the ``good`` snapshot: its state, the history and evaluations up to it."""
    trainer.discard_pending()
    state = copy.deepcopy({k: v for k, v in good.items() if k not in ("history", "evals")})
    restore(trainer, {**state, "history": trainer.history[:good["history"]],
                      "evals": trainer.evals[:good["evals"]]})


def recover(trainer, good, crash):
    """Back to the ``good`` snapshot with a lower learning rate, or stop after ``max_recoveries``."""
    c = trainer.config
    if len(trainer.recoveries) >= c.max_recoveries:
        raise FloatingPointError(give_up_message(crash, trainer.recoveries, c.recovery_lr_factor)) from None
    lr_scale = trainer.lr_scale * c.recovery_lr_factor
    seconds = trainer.seconds_trained()  # not the snapshot's: the steps undone took time too
    recoveries = trainer.recoveries + [{"step": crash.step, "loss": crash.loss, "kind": crash.kind,
                                        "resumed_from": good["step"], "lr_scale": lr_scale}]
    rewind(trainer, good)
    trainer.recoveries, trainer.lr_scale = recoveries, lr_scale
    trainer.restart_clock(seconds)
    print(f"recovery {len(recoveries)} of at most {c.max_recoveries}: the loss was {crash.loss:.4g} at step "
          f"{crash.step} ({crash.kind}); back to step {trainer.step}, learning rate x{c.recovery_lr_factor} "
          f"(now {trainer.lr():.3g})", flush=True)


# ----- checkpoints and Ctrl-C --------------------------------------------------------------
def state_dict(trainer):
    """Everything a resume needs: weights, optimiser, schedule position, history, RNGs."""
    t = trainer
    return {"version": CHECKPOINT_VERSION, "step": t.step, "model": t.model.state_dict(),
            "model_config": asdict(t.model.config), "objective": t.objective.state_dict(),
            "optimizer": t.optimizer.state_dict(), "train_config": asdict(t.config), "history": t.history,
            "evals": t.evals, "tokenizer": tokenizer_state(t),
            "recoveries": t.recoveries, "lr_scale": t.lr_scale, "final_step": t.final_step,
            "train_seconds": t.seconds_trained(), "rng": rng_state()}


def tokenizer_state(trainer):
    tokenizer = getattr(trainer.batches, "tokenizer", None)
    return tokenizer.state_dict() if tokenizer is not None else None


def restore(trainer, state):
    """Put ``state`` (a :func:`state_dict`) into ``trainer``; a captured step is dropped (its
    optimiser state tensors are new), and this device's lr and AdamW are kept, not the saver's."""
    t = trainer
    t.model.load_state_dict(state["model"])
    t.objective.load_state_dict(state["objective"])
    t.optimizer.load_state_dict(state["optimizer"])
    for group in t.optimizer.param_groups:
        cuda = t.lr_tensor is not None
        group["lr"], group["capturable"] = (t.lr_tensor, True) if cuda else (t.config.lr, False)
    t.graph = None
    t.step, t.history, t.evals = state["step"], state["history"], state["evals"]
    t.recoveries, t.lr_scale = state["recoveries"], state["lr_scale"]
    t.final_step, t.train_seconds = state["final_step"], state["train_seconds"]
    set_rng_state(state["rng"])


def save(trainer, path):
    """Write atomically and durably: a crash or power loss mid-write never leaves a half checkpoint
    at ``path`` (the file and its folder are fsynced around the rename). Rank 0 only. Non-finite
    weights are never written (``LossCrash``): the last good checkpoint stays."""
    trainer.flush()
    if not is_main():
        return
    weights = [t for m in (trainer.model, trainer.objective) for t in m.state_dict().values()
               if t.is_floating_point()]
    if not bool(torch.stack([torch.isfinite(t).all() for t in weights]).all()):  # one host read a save
        raise LossCrash(trainer.step, math.nan, "weights")
    state = state_dict(trainer)
    write_durably(path, lambda f: torch.save(state, f))


def load(trainer, path):
    """Resume ``trainer`` from ``path``: model, objective (heads, queue), optimiser, schedule, RNGs, step."""
    fix = "delete it to retrain the run from the start"  # weights_only: tensors and plain data, never code
    state = load_torch(path, fix, CHECKPOINT_VERSION, trainer.device, CHECKPOINT)
    if not same_model(state["model_config"], trainer.model.config):
        raise ValueError(f"Trainer.load: {path!r} was saved from a different model config")
    if state["tokenizer"] != tokenizer_state(trainer):  # the same size, other word ids: silently wrong text
        raise ValueError(f"Trainer.load: {path!r} was trained with a different tokenizer vocabulary")
    try:
        restore(trainer, state)
    except (RuntimeError, ValueError, KeyError) as e:  # e.g. a CLIP checkpoint in a DeCLIP run
        raise ValueError(f"Trainer.load: {path!r} does not fit this run's model and "
                         f"{type(trainer.objective).__name__} objective: {str(e).splitlines()[0]}") from None


def stop_interrupted(trainer, checkpoint, total):
    """Ctrl-C: save (or keep) the state, say where, and raise ``KeyboardInterrupt``."""
    if checkpoint:
        trainer.save(checkpoint)
        where = f"saved to {checkpoint}; run the cell again to resume from it"
    else:
        trainer.flush()
        where = "kept in memory (no checkpoint path); call fit() again to resume"
    message = f"Interrupted at step {trainer.step} of {total}: the state is {where}."
    print(message, flush=True)
    raise KeyboardInterrupt(message) from None
