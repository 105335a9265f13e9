"""declip-lite: CLIP and DeCLIP, one supervision signal at a time, on data the package makes itself."""
from .data.loader import PairBatches, shapecaps_tokenizer
from .data.shapecaps import TASKS, ShapeCaps, ZeroShotTask, make_task, make_tasks
from .evaluate import evaluate_tasks, image_features, retrieval, text_features, zero_shot, zero_shot_classifier
from .experiments import PRESETS, build, train
from .models.clip import CLIPModel, ModelConfig, model_config
from .objectives import CLIP, DeCLIP
from .text.tokenizer import WordTokenizer
from .train import TrainConfig, Trainer, pick_device

__version__ = "0.1.0"
__all__ = [
    "CLIP", "CLIPModel", "DeCLIP", "ModelConfig", "PRESETS", "PairBatches", "ShapeCaps",
    "TASKS", "TrainConfig", "Trainer", "WordTokenizer", "ZeroShotTask", "build",
    "evaluate_tasks", "image_features", "make_task", "make_tasks", "model_config",
    "pick_device", "retrieval", "shapecaps_tokenizer", "text_features", "train", "zero_shot",
    "zero_shot_classifier",
]
