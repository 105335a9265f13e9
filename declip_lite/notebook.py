"""What every notebook's setup cell calls: its parameters checked in one place, the device picked.

Papermill hands parameters over as typed by whoever ran it (``-p SMOKE false`` is the string
"false", which Python reads as true), so each one is checked here and a wrong one stops the
notebook with a message that names it, before any training starts.
"""
import ast
import inspect
import os

import torch

from .runs.config import SMALL_DATA
from .train import pick_device


class ParameterError(ValueError):
    """A notebook parameter of the wrong type or value; the message names the parameter."""


def _flag(name, value):
    if not isinstance(value, bool):
        hint = f"the string {value!r}" if isinstance(value, str) else f"{value!r} ({type(value).__name__})"
        raise ParameterError(f"parameter {name} must be True or False, got {hint} "
                             f"(papermill: -p {name} True / -p {name} False, capitalised)")
    return value


def _count(name, value, minimum=0):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ParameterError(f"parameter {name} must be an integer >= {minimum}, got {value!r}")
    return value


def _device(name, value):
    if value in (None, "auto"):
        return pick_device(None)
    try:
        device = torch.device(value)
    except (RuntimeError, TypeError) as e:
        raise ParameterError(f"parameter {name} must be 'auto', 'cpu', 'cuda' or 'cuda:N', "
                             f"got {value!r}") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError(f"parameter {name}={value!r}, but this machine has no CUDA device; "
                             f"use 'auto' or 'cpu'")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ParameterError(f"parameter {name} must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {value!r}")
    return device


SHIPPED_SCALES = ("cpu", "gpu")  # the folders ``make reproduce`` writes into results/

CHECKS = {"SMOKE": _flag, "SEED": _count, "DEVICE": _device, "JOBS": lambda n, v: _count(n, v, 1),
          "LIVE_STEPS": _count}


def _shipped(parameters):
    """With ``RESULTS="auto"`` a full-mode notebook reads ``SHIPPED``: a missing folder would silently
    train instead (hours at the cpu scale)."""
    folder = parameters.get("SHIPPED")
    if folder is None or parameters.get("RESULTS") != "auto" or parameters.get("SMOKE"):
        return
    if not os.path.isdir(folder):
        raise ParameterError(f"parameter SHIPPED={folder!r} is not a folder (seen from {os.getcwd()}): with "
                             f"RESULTS='auto' the notebook reads the runs `make reproduce` shipped there; "
                             f"point it at the repository's results/ folder, or set RESULTS='train' to "
                             f"train them here")
    if not any(os.path.isfile(os.path.join(folder, scale, "summary.json")) for scale in SHIPPED_SCALES):
        raise ParameterError(f"parameter SHIPPED={folder!r} holds no shipped scale: it should contain "
                             f"{' or '.join(s + '/summary.json' for s in SHIPPED_SCALES)} (with records/ and "
                             f"weights/ beside it), as the repository's results/ folder does; point it "
                             f"there, or set RESULTS='train' to train here")


def _assigned(source, upper=True):
    """The names a cell assigns at its top level; ``upper``: only the upper-case ones (a
    notebook's parameters)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    return {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
            if isinstance(t, ast.Name) and (t.id.isupper() or not upper)}


def _edits(a, b):
    """Levenshtein distance: the fewest inserted, deleted or replaced characters from ``a`` to ``b``."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        row, previous = [i], row
        for j, y in enumerate(b, 1):
            row.append(min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (x != y)))
    return row[-1]


def _meant(name, declared):
    """The declared parameter ``name`` is a typo of: the same but for case, or at most 2 edits away."""
    close = [d for d in declared if d.lower() == name.lower() or _edits(name.upper(), d) <= 2]
    return f" (did you mean {close[0]}?)" if close else ""


def _unknown_parameters():
    """(unknown, declared): the names papermill injected (its "# Parameters" cell, any case) that no
    earlier cell assigns, which papermill only warns about, and the ones the notebook declares."""
    try:
        from IPython import get_ipython

        cells = list(get_ipython().user_ns.get("In", []))
    except (ImportError, AttributeError):  # not in IPython
        return [], []
    injected = [i for i, cell in enumerate(cells) if cell.lstrip().startswith("# Parameters")]
    if not injected:
        return [], []
    declared = set().union(*(_assigned(cell) for cell in cells[:injected[-1]]))
    return sorted(_assigned(cells[injected[-1]], upper=False) - declared), sorted(declared)


def setup(fig_dir=None, **parameters):
    """Check the notebook's parameters (``SMOKE``, ``SEED``, ``DEVICE``, ``JOBS``, ``LIVE_STEPS``,
    ``SHIPPED`` with ``RESULTS``) and return the device; refuse a parameter papermill was given
    that the notebook does not declare. Creates ``fig_dir`` when given. Raises
    :class:`ParameterError` naming the first bad parameter."""
    unknown, declared = _unknown_parameters()
    if unknown:
        names = ", ".join(name + _meant(name, declared) for name in unknown)
        raise ParameterError(f"unknown parameter{'s' * (len(unknown) > 1)} {names}: this notebook "
                             f"takes {', '.join(declared)}")
    checked = {name: CHECKS[name](name, value) for name, value in parameters.items() if name in CHECKS}
    _shipped(parameters)
    if fig_dir is not None:
        os.makedirs(fig_dir, exist_ok=True)
    return checked.get("DEVICE", pick_device(None))


def by_device(smoke, device, choice=None):
    """Notebooks 01, 07, 08: ``choice`` when given, else "smoke", "gpu" on CUDA, "cpu" otherwise
    (a preset of ``experiments.PRESETS`` or a scale of ``grids.SCALES``)."""
    return choice or ("smoke" if smoke else "gpu" if device.type == "cuda" else "cpu")


def small_data(smoke):
    """Notebooks 02-06: (preset, overrides) of the small-data regime where extra supervision pays,
    2,000 pairs x 1,200 steps of 128, the same on a CPU and a GPU; seconds of training when ``smoke``."""
    return ("smoke", dict(batch_size=32, steps=12)) if smoke else ("cpu", dict(SMALL_DATA))


def show_source(*functions):
    """Display the library source of ``functions`` (read when the cell runs, so what a notebook
    shows is the code that trains, never a copy that drifts from it)."""
    from IPython.display import Code, display

    for fn in functions:
        display(Code(inspect.getsource(fn), language="python"))
