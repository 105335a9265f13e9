"""One module per supervision signal; each objective returns a dict of named loss terms.

``loss`` is what the trainer back-propagates; every other entry is a detached term or
diagnostic, logged and plotted under its own name.
"""
from .clip import CLIP, contrastive_loss, one_way_loss
from .declip import WEIGHTS, DeCLIP, DeFILIP
from .filip import FILIP, token_wise_logits
from .mlm import MLMHead
from .mvs import multi_view_loss
from .nns import NNS, NNQueue
from .simsiam import SimSiam, simsiam_loss
from .slip import SLIP, nt_xent

__all__ = [
    "CLIP", "DeCLIP", "DeFILIP", "FILIP", "SLIP", "nt_xent", "token_wise_logits", "MLMHead", "NNQueue", "NNS", "SimSiam", "WEIGHTS", "contrastive_loss",
    "multi_view_loss", "one_way_loss", "simsiam_loss",
]
