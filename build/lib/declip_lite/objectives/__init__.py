"""One module per supervision signal; each objective returns a dict of named loss terms.

``loss`` is what the trainer back-propagates; every other entry is a detached term or
diagnostic, logged and plotted under its own name (``contract.py`` says it all). Importing this
package registers every objective (``registry.py``).
"""
from .clip import CLIP, contrastive_loss, one_way_loss
from .contract import Objective, encode
from .declip import WEIGHTS, DeCLIP, DeFILIP
from .filip import FILIP, token_wise_logits
from .mlm import MLMHead
from .mvs import multi_view_loss
from .nns import NNS, NNQueue
from .registry import make_objective, objective_class, objective_names, register
from .simsiam import SimSiam, simsiam_loss
from .slip import SLIP, nt_xent

__all__ = [
    "CLIP", "DeCLIP", "DeFILIP", "FILIP", "MLMHead", "NNQueue", "NNS", "Objective", "SLIP", "SimSiam",
    "WEIGHTS", "contrastive_loss", "encode", "make_objective", "multi_view_loss", "nt_xent",
    "objective_class", "objective_names", "one_way_loss", "register", "simsiam_loss", "token_wise_logits",
]
