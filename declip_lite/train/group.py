"""K runs of one *step signature* (method, objective options, model, batch size, schedule) trained
as ONE step: their parameters and buffers stacked, the step ``vmap``-ped over them
(``torch.func.functional_call``), one backward of the summed loss (the runs are independent, so
each run's gradient is its own loss's) and one fused AdamW over the stacked leaves (AdamW is
elementwise, so it is exact on them). A GPU launches each kernel once for K runs instead of K times.

Each run keeps everything else of its own: its batches (drawn from its own (seed, step)
generators), its logit-scale clamp, its history, evaluations, checkpoints and record. ``unstack``
puts the group's weights back into the runs' own Trainers. A run whose loss crashes leaves the
group at the last good state and recovers alone (``observers.recover``).
"""
import contextlib
import copy
import time
from dataclasses import asdict

import torch
from torch.func import functional_call, stack_module_state, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..data.loader import JoinedBatches
from ..recovery import LossCrash
from . import observers
from .config import adamw, decays
from .step import autocast, capture, init_adamw_state, set_lr

PAD_KEYS = {"caption": 0, "masked": 0, "eda": 0}  # text views padded to the group's widest (pad id 0)


def signature(trainer):
    """What a group's one compiled step depends on: runs that share it can be stacked. The
    logit-scale clamp is not in it (each run's bounds are tensors), nor the run's data or seed."""
    config = {k: v for k, v in asdict(trainer.config).items() if k != "logit_scale_clamp"}
    objective = {k: v for k, v in vars(trainer.objective).items()
                 if not k.startswith("_") and isinstance(v, (int, float, str, bool, tuple, type(None)))}
    return (type(trainer.objective).__name__, repr(sorted(objective.items())),
            repr(asdict(trainer.model.config)),
            trainer.batches.batch_size, trainer.batches.image_views, trainer.batches.text_views, repr(config),
            trainer.lr_scale, str(trainer.device))


def stacked_batches(batches, ignore=-100):
    """K runs' batch dicts as one, each tensor with a leading K dimension; captions padded to the
    widest run's (each run cuts its own to its training set's longest; pads are never attended)."""
    out = {}
    for key, first in batches[0].items():
        values = [b[key] for b in batches]
        if isinstance(first, dict):
            out[key] = stacked_batches(values, ignore)
            continue
        if key in PAD_KEYS or key == "mlm_targets":
            width, fill = max(v.shape[-1] for v in values), ignore if key == "mlm_targets" else PAD_KEYS[key]
            values = [torch.nn.functional.pad(v, (0, width - v.shape[-1]), value=fill) for v in values]
        out[key] = torch.stack(values)
    return out


class GroupTrainer:
    """Trains K :class:`Trainer` s of one :func:`signature`, all at the same step, as one vmapped step.
    ``train_step`` advances every run by one step; ``unstack`` writes the weights back into them."""

    def __init__(self, trainers):
        first = trainers[0]
        if len({signature(t) for t in trainers}) > 1:
            raise ValueError("GroupTrainer: the runs must share one step signature (train.group.signature)")
        if len({t.step for t in trainers}) > 1:
            steps = sorted({t.step for t in trainers})
            raise ValueError(f"GroupTrainer: the runs must be at one step, not at {steps}")
        self.trainers = list(trainers)
        self.K, self.config, self.device = len(trainers), first.config, first.device
        self.template = copy.deepcopy(first.step_module)  # its structure: functional_call swaps its tensors
        modules = [t.step_module for t in trainers]
        self.params, self.buffers = stack_module_state(modules)
        self.params = {k: v.detach().requires_grad_() for k, v in self.params.items()}
        exempt = first.config.decay_exempt
        decay = [v for k, v in self.params.items() if decays(k, v.ndim - 1, exempt)]  # each run's own ndim
        rest = [v for k, v in self.params.items() if not decays(k, v.ndim - 1, exempt)]
        groups = [{"params": decay, "weight_decay": first.config.weight_decay},
                  {"params": rest, "weight_decay": 0.0}]
        self.optimizer, self.lr_tensor = adamw(groups, self.config, self.device)
        self._stack_optimizer_state(modules)
        bounds = torch.tensor([t.config.logit_scale_clamp for t in trainers], device=self.device)
        self.low, self.high = bounds[:, 0], bounds[:, 1]
        makers = [t.batches for t in trainers]  # made as one where they can be; else each alone, then stacked
        self.batches = JoinedBatches(makers) if JoinedBatches.can_join(makers) else None
        self.forward = vmap(lambda p, b, batch: functional_call(self.template, (p, b), (batch,)),
                            randomness="error")
        self.graphed, self.graph, self._pending = first.graphed, None, []  # on CUDA: one captured group step

    def _stack_optimizer_state(self, modules):
        """Each run's AdamW moments (a run resumed mid-way has them) as the group's state."""
        named = [dict(m.named_parameters()) for m in modules]
        states = [t.optimizer.state for t in self.trainers]
        if not any(states):
            return
        init_adamw_state(self.optimizer)
        for name, stacked in self.params.items():
            state = self.optimizer.state[stacked]
            for key in ("exp_avg", "exp_avg_sq"):
                state[key].copy_(torch.stack([s[n[name]][key] for s, n in zip(states, named)]))
            state["step"].copy_(states[0][named[0][name]]["step"])

    @property
    def step(self):
        return self.trainers[0].step

    def update(self, batch):
        """The vmapped ``step.update``: forward, named terms, backward, AdamW (each run's gradient norm
        and clipping its own), each run's clamp. Returns the logged values as one (K, terms) tensor."""
        cpu = self.device.type == "cpu"  # the CPU's flash attention has no batching rule: the math kernel has
        kernel = sdpa_kernel(SDPBackend.MATH) if cpu else contextlib.nullcontext()
        with autocast(self.device, self.config.precision), kernel:
            terms = self.forward(self.params, self.buffers, batch)
        self.optimizer.zero_grad(set_to_none=True)
        terms["loss"].sum().backward()
        grads = [p.grad.reshape(self.K, -1) for p in self.params.values() if p.grad is not None]
        grad_norm = torch.cat(grads, 1).norm(dim=1)  # each run's own norm, never one over the stack
        if self.config.grad_clip:
            scale = (self.config.grad_clip / (grad_norm + 1e-6)).clamp(max=1.0)
            for p in self.params.values():
                if p.grad is not None:
                    p.grad.mul_(scale.view(-1, *[1] * (p.ndim - 1)))
        self.optimizer.step()
        scale = self.params["model.logit_scale"]
        with torch.no_grad():
            scale.copy_(torch.minimum(torch.maximum(scale, self.low), self.high))
        self._keys = [*terms, "grad_norm", "logit_scale"]
        return torch.stack([*(v.detach().float() for v in terms.values()), grad_norm.float(),
                            scale.detach().exp().float()], 1)

    def train_step(self):
        """One step of every run, on each run's own batch ``step``."""
        self.template.train()
        lr = self.trainers[0].lr()
        set_lr(self.optimizer, self.lr_tensor, lr)
        batch = self.batches.batch(self.step) if self.batches else stacked_batches(
            [t.batches.batch(t.step) for t in self.trainers])
        if self.graphed and self.graph is None:  # captured on the first step; eager where capture fails
            self.graph = capture(self.update, batch, [*self.params.values(), *self.buffers.values()],
                                 self.optimizer, self.device, strict=self.config.fast == "graph")
            self.graphed = self.graph is not None
        rows = self.update(batch) if self.graph is None else self.graph(batch).clone()
        self._pending.append((rows, lr))
        for t in self.trainers:
            t.step += 1
        return rows

    def flush(self):
        """Every run's pending rows into its history, with one host copy for the group. A run whose
        loss crashed is returned (index, LossCrash); the others' rows are kept."""
        if not self._pending:
            return []
        values = torch.stack([rows for rows, _ in self._pending]).tolist()  # (steps, K, terms): one copy
        lrs = [lr for _, lr in self._pending]
        self._pending = []
        crashed = []
        for k, t in enumerate(self.trainers):
            try:
                t.record([row[k] for row in values], lrs, self._keys)
            except LossCrash as crash:
                crashed.append((k, crash))
        return crashed

    def unstack(self):
        """Each run's weights, buffers and AdamW moments back into its own Trainer."""
        for k, t in enumerate(self.trainers):
            own = dict(t.step_module.named_parameters())
            with torch.no_grad():
                t.step_module.load_state_dict({**{n: v[k] for n, v in self.params.items()},
                                               **{n: v[k] for n, v in self.buffers.items()}}, strict=False)
            init_adamw_state(t.optimizer)
            for name, stacked in self.params.items():
                state, mine = self.optimizer.state.get(stacked), t.optimizer.state[own[name]]
                if state:
                    for key in ("exp_avg", "exp_avg_sq"):
                        mine[key].copy_(state[key][k])
                    mine["step"].copy_(state["step"])
        return self.trainers

    def fit(self, steps=None, checkpoints=None, progress=False):
        """Train every run to ``steps`` (default: the config's), as each run's ``Trainer.fit`` would:
        its evaluations, its checkpoint (``checkpoints``: one path per run) every ``checkpoint_every``
        steps, its recoveries. A run whose loss crashes leaves the group at the last good state and
        finishes alone with its recovery; the others go on as a group. Returns the trainers."""
        total, c = steps or self.config.steps, self.config
        paths = dict(zip(map(id, self.trainers), checkpoints or [None] * self.K))
        due = lambda every, step: every and step % every == 0  # noqa: E731
        group = self
        while group is not None and group.step < total:
            good, started = [observers.snapshot(t) for t in group.unstack()], time.perf_counter()
            group.train_step()
            while group.step < total and not any(due(n, group.step) for n in (c.flush_every, c.eval_every,
                                                                                c.checkpoint_every)):
                group.train_step()
            crashed = dict(group.flush())
            for t in group.unstack():
                t.train_seconds += (time.perf_counter() - started) / group.K
            if crashed:
                for k, t in enumerate(group.trainers):
                    if k in crashed:
                        observers.recover(t, good[k], crashed[k])
                    else:
                        observers.rewind(t, good[k])
                rest = [t for k, t in enumerate(group.trainers) if k not in crashed]
                group = GroupTrainer(rest) if len(rest) > 1 else None
                continue
            for t in group.trainers:
                if due(c.eval_every, t.step) and t.step < total:
                    t.evaluate()
                if paths[id(t)] and due(c.checkpoint_every, t.step):
                    t.save(paths[id(t)])
        for t in self.trainers:  # the final evaluation (and a crashed run's remaining steps), each alone
            t.fit(total, checkpoint=paths[id(t)], progress=progress)
        return self.trainers
