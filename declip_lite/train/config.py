"""What a run's training is: its settings (``TrainConfig``), its optimiser groups and its schedule."""
import math
import os
import random
from dataclasses import dataclass, field

import numpy as np
import torch


def pick_device(device=None):
    """``device`` if given, else CUDA when available, else CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class TrainConfig:
    """How a run trains: its schedule, optimiser and loop. Frozen: ``dataclasses.replace`` gives another."""
    steps: int = 1000
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.1
    betas: tuple = (0.9, 0.98)
    eps: float = 1e-8
    grad_clip: float = None  # max gradient norm; None: no clipping, as the reference's configs
    logit_scale_clamp: tuple = (3.0, 6.0)  # the reference; open_clip uses (0, ln 100)
    warmup_start: float = 0.0              # the warm-up's first lr, a share of the peak (the reference: 0.1)
    decay_exempt: str = "ours"             # "ours": no decay on 1-D parameters; "reference": see decays()
    precision: str = "bf16"                # on CUDA: bf16 autocast, or "fp32" (the reference's); CPU: fp32
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

    def __post_init__(self):
        if self.fast not in ("auto", "eager", "graph"):
            raise ValueError(f"TrainConfig.fast={self.fast!r} (default: $DECLIP_LITE_FAST): expected 'auto', "
                             f"'eager' or 'graph'")
        for name, allowed in (("decay_exempt", ("ours", "reference")), ("precision", ("bf16", "fp32"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"TrainConfig.{name}={getattr(self, name)!r}: expected one of {allowed}")
        if not 0 <= self.warmup_start <= 1:
            raise ValueError(f"TrainConfig.warmup_start={self.warmup_start!r}: a share of the peak lr, 0-1")


REFERENCE_DECAYS = ("class_embedding", "attn.qkv.bias")  # 1-D, yet decayed by the reference


def decays(name, ndim, exempt="ours"):
    """AdamW decays weight matrices only: never biases, norms or the logit scale. ``ndim`` is the
    parameter's own (a group of runs stacks each parameter one dimension higher). ``exempt=
    "reference"``: the reference's exemptions, which also decay the ViT's class embedding and the
    attention's input-projection bias."""
    if exempt == "reference" and name.endswith(REFERENCE_DECAYS):
        return True
    return ndim >= 2 and "logit_scale" not in name


def parameter_groups(modules, weight_decay, exempt="ours"):
    """AdamW groups: decay on weight matrices only; none on biases, norms, embeddings' scale."""
    decay, no_decay = [], []
    for module in modules:
        for name, p in module.named_parameters():
            if p.requires_grad:
                (decay if decays(name, p.ndim, exempt) else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def adamw(groups, config, device):
    """(optimizer, lr tensor): one fused AdamW over ``groups``. On CUDA it is capturable and its lr
    is a device tensor (returned; the schedule writes it) that a captured step reads; else None."""
    lr = torch.tensor(config.lr, device=device) if device.type == "cuda" else None
    return torch.optim.AdamW(groups, lr=config.lr if lr is None else lr, betas=config.betas, eps=config.eps,
                             fused=True, capturable=lr is not None), lr  # one kernel, not a loop


def warmup_cosine(warmup, total, start=0.0):
    """The lr factor of each step: linear from ``start`` (a share of the peak) to 1 over ``warmup``
    steps, then a cosine to 0 at ``total``."""
    def factor(step):
        if step < warmup:
            return start + (1 - start) * (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
    return factor
