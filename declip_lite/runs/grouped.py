"""``--group``: the runs of a grid that share a *step signature* train as one vmapped step
(``train.group.GroupTrainer``), each with its own batches, checkpoints and record.

The plan: runs are grouped by :func:`step_signature`; options equal to their defaults count as the
defaults; the seed, the data (pairs, noise, filter), the augmentation (made batch-side) and the
logit-scale clamp (a tensor per run) do not count. Filtered runs come in a later wave, after their
scorers (``pool.run_grid``). A group of one trains as today, alone. ``auto`` groups on CUDA only: on a
CPU a vmapped step costs more per run than the eager one (CLIP: 0.186 s against 0.104 s per run-step
at K = 16, ``../shared/design/group``)."""
import contextlib
import os
from collections import defaultdict

from ..checkpoint import RunLock
from ..models.clip import CONFIGS
from ..objectives.registry import OBJECTIVES, objective_class
from ..train.group import GroupTrainer
from .build import build
from .cache import finished_record, fit, run_threads, train

MODES = ("auto", "on", "off")


def grouping(mode, device):
    """Whether ``mode`` ("auto", "on", "off") groups runs on ``device``."""
    if mode not in MODES:
        raise ValueError(f"--group must be one of {MODES}, got {mode!r}")
    return mode == "on" or mode == "auto" and str(device).startswith("cuda")


def step_signature(config):
    """What one compiled step of ``config``'s run depends on: method, the objective's options (its
    defaults filled in), the model (overrides equal to the default dropped), batch size, schedule and
    evaluation cadence, and the other TrainConfig fields but the clamp."""
    method = config.method
    options = {**objective_class(method).options(), **OBJECTIVES[method][1], **dict(config.objective)}
    base = CONFIGS[config.model.tower]
    model = {k: v for k, v in config.model.overrides if getattr(base, k) != v}
    train = {k: v for k, v in config.train_overrides.items() if k != "logit_scale_clamp"}
    setting = {**config.stored(), "pairs": 0, "eval_n": 0}  # data size and task size are the run's own
    return repr((method, sorted(options.items()), sorted(model.items()), setting, sorted(train.items())))


def plan(configs):
    """``configs`` as groups (lists) of one step signature each, largest first."""
    groups = defaultdict(list)
    for c in configs:
        groups[step_signature(c)].append(c)
    return sorted(groups.values(), key=len, reverse=True)


def describe(groups):
    """The plan as a short table: groups, sizes, run-steps."""
    steps = sum(len(g) * g[0].train.steps for g in groups)
    lines = [f"{len(groups)} groups of {sum(map(len, groups))} runs, {steps} run-steps:"]
    lines += [f"  {len(g):3d} x {g[0].method:12s} {g[0].model.tower:8s} {g[0].train.steps:5d} steps"
              for g in groups]
    return "\n".join(lines)


def train_group(configs, runs_dir, device=None, progress=False):
    """Train ``configs`` (one step signature; a filtered run's scorer first) as groups of the runs at
    the same step: each run's lock held, finished runs read, killed ones resumed from their
    checkpoints. Then each run's record, as ``cache.fit`` writes it. Returns the runs, in order."""
    scorers = {c.scorer: train(c.scorer, runs_dir=runs_dir, progress=progress, device=device)
               for c in configs if c.scorer is not None}
    runs = [build(c, device=device, scorer=scorers.get(c.scorer)) for c in configs]
    paths = {run.name: os.path.join(runs_dir, run.name) for run in runs}
    with run_threads(), contextlib.ExitStack() as held:
        for name in sorted(paths):  # one order in every process: no two wait for each other
            held.enter_context(RunLock(paths[name]))
        todo = [run for run in runs if finished_record(paths[run.name]) is None]  # read under the locks
        by_step = defaultdict(list)
        for run in todo:
            if os.path.exists(paths[run.name] + ".pt"):
                run.trainer.load(paths[run.name] + ".pt")
            by_step[run.trainer.step].append(run)
        for same in by_step.values():
            if len(same) > 1 and same[0].trainer.step < same[0].config.train.steps:
                GroupTrainer([r.trainer for r in same]).fit(checkpoints=[paths[r.name] + ".pt" for r in same],
                                                            progress=progress)
                for r in same:
                    r.group_size = len(same)
    return [fit(run, runs_dir, progress) for run in runs]
