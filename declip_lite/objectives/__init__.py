"""One module per supervision signal; each objective returns a dict of named loss terms.

``loss`` is what the trainer back-propagates; every other entry is a detached term or
diagnostic, logged and plotted under its own name.
"""
from .clip import CLIP, contrastive_loss, one_way_loss
from .declip import WEIGHTS, DeCLIP
from .mlm import MLMHead
from .mvs import multi_view_loss
from .nns import NNS, NNQueue
from .simsiam import SimSiam, simsiam_loss

__all__ = [
    "CLIP", "DeCLIP", "MLMHead", "NNQueue", "NNS", "SimSiam", "WEIGHTS", "contrastive_loss",
    "multi_view_loss", "one_way_loss", "simsiam_loss",
]
