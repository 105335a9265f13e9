"""The training step (:func:`update`: forward, named terms, backward, AdamW, clamp, logged values,
no host sync), and the same step as one CUDA graph: captured once, replayed every step.

A tiny model's step is launch-bound: thousands of small kernels, each dispatched by Python and
the framework on the host. A CUDA graph records the kernels of one step (forward, named terms,
backward, AdamW, clamp, logged values) and replays them with one launch. What it needs from the
step, which :func:`update` keeps:

- fixed shapes and no host sync (captions cut once to the training set's longest; no ``.item()``);
- inputs at fixed addresses: each batch is copied into the captured one;
- a learning rate that is a tensor (the schedule writes it) and a capturable AdamW.

The batch itself (indices, views, masks, EDA) is made eagerly before each replay: it draws from a
generator seeded by (seed, step), so batch ``step`` stays a pure function of (seed, step) and
resume stays exact.
"""
import warnings

import torch

from ..distributed import world
from ..objectives.contract import encode


class TrainStep(torch.nn.Module):
    """Model and objective as one module, so DDP can wrap (and synchronise) both."""

    def __init__(self, model, objective):
        super().__init__()
        self.model, self.objective = model, objective

    def forward(self, batch):
        return self.objective(encode(self.model, batch, self.objective.scale_cap))

    @classmethod
    def of(cls, model, objective, device, sync_batchnorm=False):
        """The step module on ``device``; under torchrun a DDP module around it (its ``.module``),
        BatchNorms synchronised over the global batch if asked."""
        if sync_batchnorm:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
            objective = torch.nn.SyncBatchNorm.convert_sync_batchnorm(objective)
        step = cls(model.to(device), objective.to(device))
        if world()[1] == 1:
            return step
        ids = [device.index] if device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(step, device_ids=ids, find_unused_parameters=True)


def unwrapped(module):
    """The :class:`TrainStep` inside a DDP module (or the module itself)."""
    return getattr(module, "module", module)


def autocast(device, precision="bf16"):
    """bf16 on CUDA unless ``precision`` is "fp32", nothing elsewhere; no weight-cast cache: a captured
    step must cast inside the graph."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda" and precision == "bf16",
                          cache_enabled=False)


def update(module, optimizer, config, batch, device):
    """One step of ``module`` (a :class:`TrainStep`, DDP-wrapped or not) on ``batch``: forward,
    named terms, backward, AdamW, logit-scale clamp. Returns the logged names and values, the values
    as one tensor (the terms, then grad_norm and logit_scale). No host sync, so it can be captured."""
    with autocast(device, config.precision):
        terms = module(batch)
    optimizer.zero_grad(set_to_none=True)
    terms["loss"].backward()
    params = [p for g in optimizer.param_groups for p in g["params"]]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, config.grad_clip or float("inf"), foreach=True)
    optimizer.step()
    model = unwrapped(module).model
    model.clamp_logit_scale(*config.logit_scale_clamp)
    scale = model.logit_scale.detach().exp()
    logged = [*(v.detach().float() for v in terms.values()), grad_norm.float(), scale.float()]
    return [*terms, "grad_norm", "logit_scale"], torch.stack(logged)


def set_lr(optimizer, lr_tensor, lr):
    """The schedule's ``lr`` for the next step: into the param groups, or (on CUDA) into the tensor
    that a captured step reads, by a kernel, with no sync."""
    if lr_tensor is None:
        for group in optimizer.param_groups:
            group["lr"] = lr
    else:
        lr_tensor.fill_(lr)


def init_adamw_state(optimizer):
    """AdamW's state as its first step would create it (zero moments, step 0 on the device), made
    now, so that the warm-up before capture can be undone on it."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            if not optimizer.state[p]:
                optimizer.state[p] = {"step": torch.zeros((), dtype=torch.float32, device=p.device),
                                      "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}


def optimizer_tensors(optimizer):
    """AdamW's state tensors (made now, as its first step would make them): a step writes them too."""
    init_adamw_state(optimizer)
    return [v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)]


def capture(step, batch, tensors, optimizer, device, strict=False):
    """``step(batch)`` as a :class:`GraphedUpdate` whose warm-up is undone on ``tensors`` (weights,
    buffers: BatchNorm statistics, queues) and AdamW's state; None, with one warning, if capture
    fails on this GPU (the eager step is always right), unless ``strict``."""
    try:
        return GraphedUpdate(step, batch, [*tensors, *optimizer_tensors(optimizer)], device)
    except Exception as e:  # noqa: BLE001 - any capture failure
        if strict:
            raise
        warnings.warn(f"CUDA graph capture failed ({type(e).__name__}: {str(e).splitlines()[0]}); "
                      f"training eagerly", stacklevel=4)
        return None


def _tree_map(fn, x):
    if isinstance(x, dict):
        return {k: _tree_map(fn, v) for k, v in x.items()}
    return fn(x) if torch.is_tensor(x) else x


def _tree_copy(into, x):
    if isinstance(x, dict):
        for k, v in x.items():
            _tree_copy(into[k], v)
    elif torch.is_tensor(x):
        into.copy_(x, non_blocking=True)


class GraphedUpdate:
    """``update(batch) -> logged tensor`` captured as a CUDA graph. ``state``: every tensor the
    update writes (weights, buffers, optimiser state, all existing before the call); the warm-up
    step taken before capture is undone on them in place, so the first replay is the run's next step."""

    def __init__(self, update, batch, state, device=None, capture=True):
        self.batch = _tree_map(torch.clone, batch)
        self.device = device  # cuda:N: capture and replay with it current (streams and graphs are made there)
        before = [t.detach().clone() for t in state]
        self.graph, self.update = None, None
        try:
            if capture:
                with torch.cuda.device(device):
                    side = torch.cuda.Stream(device)
                    side.wait_stream(torch.cuda.current_stream(device))
                    with torch.cuda.stream(side):  # warm-up: cuBLAS handles, autotuning, autograd's buffers
                        update(self.batch)
                    torch.cuda.current_stream(device).wait_stream(side)
                    self.graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(self.graph):
                        self.row = update(self.batch)
            else:  # everything but the graph (CPU tests): the same warm-up, replays run ``update`` eagerly
                update(self.batch)
                self.update = update
        finally:  # a capture that fails leaves the run where it was, too
            with torch.no_grad():
                for t, old in zip(state, before):
                    t.copy_(old)

    def __call__(self, batch):
        _tree_copy(self.batch, batch)
        if self.graph is None:
            return self.update(self.batch)
        with torch.cuda.device(self.device):
            self.graph.replay()
        return self.row
