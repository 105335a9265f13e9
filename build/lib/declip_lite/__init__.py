"""declip-lite: CLIP and DeCLIP, one supervision signal at a time, on data the package makes itself."""
from .data.captioned import CaptionedImages, read_csv, read_folder, read_webdataset
from .data.loader import PairBatches, shapecaps_tokenizer
from .data.shapecaps import TASKS, ShapeCaps, ZeroShotTask, make_task, make_tasks
from .evaluate import (evaluate_tasks, image_features, retrieval, text_features, zero_shot,
                       zero_shot_classifier)
from .models.clip import CLIPModel, ModelConfig, model_config
from .objectives import CLIP, DeCLIP, Objective, make_objective, objective_names, register
from .text.tokenizer import BPETokenizer, WordTokenizer
from .train import TrainConfig, Trainer, pick_device

__version__ = "0.1.0"
_FROM_EXPERIMENTS = ("PRESETS", "build", "make_trainer", "run_grid")


def __getattr__(name):
    """The experiment runner loads on first use, so ``python -m declip_lite.experiments`` runs it once."""
    if name in _FROM_EXPERIMENTS:
        from . import experiments
        return getattr(experiments, name)
    if name == "grids":  # the experiment grids live with the runs: ``declip_lite.runs.grids``
        from .runs import grids
        return grids
    raise AttributeError(f"module 'declip_lite' has no attribute {name!r}")


__all__ = [
    "BPETokenizer", "CLIP", "CLIPModel", "CaptionedImages", "DeCLIP", "ModelConfig", "Objective", "PRESETS",
    "PairBatches", "ShapeCaps", "TASKS", "TrainConfig", "Trainer", "WordTokenizer", "ZeroShotTask",
    "build", "evaluate_tasks", "grids", "image_features", "make_objective", "make_task", "make_tasks",
    "make_trainer", "model_config", "objective_names", "pick_device", "read_csv", "read_folder",
    "read_webdataset", "register", "retrieval", "run_grid", "shapecaps_tokenizer", "text_features",
    "zero_shot", "zero_shot_classifier",
]
