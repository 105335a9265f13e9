"""What every notebook's setup cell calls: its parameters checked in one place, the device picked.

Papermill hands parameters over as typed by whoever ran it (``-p SMOKE false`` is the string
"false", which Python reads as true), so each one is checked here and a wrong one stops the
notebook with a message that names it, before any training starts.
"""
import ast
import inspect
import os

import torch

from .runs import shipped
from .runs.config import small_data  # noqa: F401  (the notebooks call notebook.small_data)
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


SCALES_LARGEST_FIRST = ("gpu", "cpu")
scale_of = shipped.scale_of  # the scale a ``source`` folder holds: "cpu" or "gpu"


def source(results, smoke, device, shipped_dir="../results", notebook=None, seed=0):
    """The shipped folder to read, or None to train here. A notebook's own runs (01-06,
    ``notebook=None``) train on a GPU and are read from a complete ``results/cpu`` on a CPU. The
    grids of notebook ``"07"`` or ``"08"`` are read from the largest scale shipped that holds every
    record and weight the notebook needs at ``seed`` (gpu, else cpu; on a GPU only gpu); where none
    holds all, from the smallest one shipped, and the runs it lacks train here (it says which).
    ``RESULTS="train"`` and smoke mode always train."""
    if results not in ("auto", "train"):
        raise ParameterError(f"parameter RESULTS must be 'auto' or 'train', got {results!r}")
    cuda = torch.device(device).type == "cuda"
    if results == "train" or smoke or (cuda and notebook is None):
        return None
    if notebook is None:
        folder = os.path.join(shipped_dir, "cpu")
        return _say(folder, shipped.complete(folder), "")
    found = [(folder, summary) for s in (("gpu",) if cuda else SCALES_LARGEST_FIRST)
             if (summary := shipped.summary(folder := os.path.join(shipped_dir, s)))]
    for folder, summary in found:
        records, weights = shipped.lacking(folder, notebook, seed)
        if not records and not weights:
            return _say(folder, summary, "")
    if not found:
        return None
    folder, summary = found[-1]
    records, weights = shipped.lacking(folder, notebook, seed)
    return _say(folder, summary, f"; it lacks {len(records)} of the records and {len(weights)} of the models "
                                 f"notebook {notebook} needs, which train here")


def _say(folder, summary, more):
    if summary:
        print(f"shipped results: {folder} ({summary['runs']} runs on {summary['hardware']}, commit "
              f"{summary['commit'][:10]}){more}; RESULTS='train' trains them on this machine instead")
        return folder
    return None


def show_source(*functions):
    """Display the library source of ``functions`` (read when the cell runs, so what a notebook
    shows is the code that trains, never a copy that drifts from it)."""
    from IPython.display import Code, display

    for fn in functions:
        display(Code(inspect.getsource(fn), language="python"))


ORDERED = {ast.Lt: 1, ast.LtE: 1, ast.Gt: -1, ast.GtE: -1}  # the sign that makes (right - left) a pass


def _number(value):
    """``value`` as a float when it is a real number (a one-element tensor too), else None."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def assertion_margins(source, namespace):
    """How far each ordering assertion of ``source`` (a notebook's check cell, already run) passes by,
    evaluated in ``namespace``: one {"assert", "left", "right", "margin"} per comparison ``a < b``,
    ``a >= b``, ... of the ``assert``s the cell's ``if``s reach (``and``s and chains split; loops and
    non-numbers skipped). ``margin`` > 0 passes, 0 is the edge, in the compared numbers' units."""
    value_of = lambda node: eval(compile(ast.Expression(node), "<check>", "eval"), namespace)  # noqa: E731
    found = []

    def walk(statements):
        for s in statements:
            if isinstance(s, ast.If):
                walk(s.body if value_of(s.test) else s.orelse)
            elif isinstance(s, ast.Assert):
                anded = s.test.values if isinstance(s.test, ast.BoolOp) and isinstance(s.test.op, ast.And) \
                    else [s.test]
                for t in (t for t in anded if isinstance(t, ast.Compare)):
                    operands = [t.left, *t.comparators]
                    for op, a, b in ((op, a, b) for op, a, b in zip(t.ops, operands, operands[1:])
                                     if type(op) in ORDERED):
                        left, right = _number(value_of(a)), _number(value_of(b))
                        if None not in (left, right):
                            found.append({"assert": ast.unparse(ast.Compare(a, [op], [b])), "left": left,
                                          "right": right, "margin": ORDERED[type(op)] * (right - left)})

    walk(ast.parse(source).body)
    return found
