"""Training, one room per concern: ``config`` (TrainConfig, optimiser groups, schedule), ``step``
(the update and its CUDA-graph capture), ``trainer`` (the loop), ``observers`` (progress, recovery,
checkpoints, Ctrl-C) and ``group`` (runs of one step signature trained as one vmapped step)."""
from .config import TrainConfig, parameter_groups, pick_device, seed_everything, warmup_cosine
from .observers import CHECKPOINT, CHECKPOINT_VERSION, EVAL, HISTORY, RECOVERY, ROW
from .step import GraphedUpdate, TrainStep
from .trainer import Trainer

__all__ = ["TrainConfig", "Trainer", "TrainStep", "GraphedUpdate", "parameter_groups", "pick_device",
           "seed_everything", "warmup_cosine", "CHECKPOINT", "CHECKPOINT_VERSION", "EVAL", "HISTORY",
           "RECOVERY", "ROW"]
