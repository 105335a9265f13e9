"""Typed run records and queries over them: ``records.where(method="declip", pairs=2000)``.

A :class:`Record` is what a finished run's JSON holds; :class:`Summary` is one setting's scores
over its seeds (mean, std and every seed's value, for confidence intervals). Both are queried by
the same names: ``method``, ``seed``, ``pairs``, ``steps``, ``encoder``, ``augmentation``,
``noise``, ``model`` (ModelConfig overrides), ``objective`` (options), ``train`` (TrainConfig
overrides) and ``filtered``."""
import json
import math
from dataclasses import asdict, dataclass, fields

from ..checkpoint import COUNT, NUMBER, OBJECT, POSITIVE, SCORE, SECONDS, TEXT, MapOf, Optional, checked
from ..train import EVAL, RECOVERY, ROW


@dataclass(frozen=True)
class RecordPreset:
    """What a record stores as its "preset": its run's data size, schedule, batch, tasks' size and
    tower in one flat row (``RunConfig.stored``), as records have stored them from the first."""
    pairs: int
    steps: int
    batch_size: int
    warmup: int
    eval_n: int
    eval_every: int
    lr: float = 1e-3
    image_size: int = 32
    model: str = "rn-tiny"


SCORES = ("zero_shot", "zero_shot_own", "zero_shot_filip", "single_prompt", "linear_probe", "transfer")
PRESET = {"pairs": POSITIVE, "steps": COUNT, "batch_size": POSITIVE, "warmup": COUNT, "eval_n": POSITIVE,
          "eval_every": COUNT, "lr": Optional(NUMBER), "image_size": Optional(POSITIVE),
          "model": Optional(TEXT)}
RECORD = {"name": TEXT, "method": TEXT, "seed": COUNT, "preset": PRESET, "options": OBJECT,
          "zero_shot": MapOf(SCORE), **{s: Optional(MapOf(SCORE)) for s in SCORES[1:]},
          "train_seconds": Optional(SECONDS), "total_seconds": Optional(SECONDS),
          "threads": Optional(POSITIVE), "group_size": Optional(POSITIVE),
          "recoveries": Optional([RECOVERY]), "evals": Optional([EVAL]), "history": Optional([ROW])}


def _plain(value):
    """Lists as tuples, all the way down: a record read from JSON compares equal to Python values."""
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class Rows(tuple):
    """Records or summaries, queried by their fields."""

    def where(self, **match):
        """The rows whose every named field equals its value (lists and tuples alike)."""
        if self:
            unknown = [k for k in match if not hasattr(self[0], k)]
            if unknown:
                raise KeyError(f"where: no field {unknown}; query by {sorted(QUERY_FIELDS)}")
        return type(self)(r for r in self
                          if all(_plain(getattr(r, k)) == _plain(v) for k, v in match.items()))

    def one(self, **match):
        """The single row that matches; a ``LookupError`` saying how many did otherwise."""
        found = self.where(**match)
        if len(found) != 1:
            raise LookupError(f"one: {len(found)} rows match {match}, expected exactly 1")
        return found[0]


class _Setting:
    """The query fields every record and summary derives from its method, preset and options."""
    pairs = property(lambda self: self.preset.pairs)
    steps = property(lambda self: self.preset.steps)
    encoder = property(lambda self: self.preset.model)
    augmentation = property(lambda self: self.options.get("augmentation", "clip"))
    noise = property(lambda self: _plain(self.options.get("noise", (0.0, 0.0))))
    model = property(lambda self: self.options.get("model"))
    objective = property(lambda self: self.options.get("objective"))
    filtered = property(lambda self: self.options.get("filter") is not None)
    train = property(lambda self: self.options.get("train"))  # TrainConfig overrides; None: the defaults


@dataclass(frozen=True)
class Record(_Setting):
    """One finished run: its setting, where it ran, and its scores ({task: top-1, "mean": ...})."""
    name: str
    method: str
    seed: int
    preset: RecordPreset
    options: dict
    hardware: str = None
    commit: str = None           # the code that trained it ("+dirty": with uncommitted changes)
    torch: str = None
    train_seconds: float = None  # the Trainer's steps, resumes added up
    total_seconds: float = None  # building, training, evaluating and writing the run, in this process
    pairs_seen: int = None
    threads: int = None          # the CPU's intra-op threads it trained with (``cache.RUN_THREADS``)
    group_size: int = None       # runs trained together as one vmapped step (``runs.grouped``); 1: alone
    recoveries: list = None       # each loss-crash recovery: step, loss, kind, resumed_from, lr_scale
    filter_report: dict = None   # what the data filter kept (``filtering.keep_matched``)
    scorer: str = None           # how the objective scores zero-shot ("global" or "token-wise")
    zero_shot: dict = None       # the global cosine's, with the prompt ensemble
    zero_shot_own: dict = None   # the objective's own scorer's
    zero_shot_filip: dict = None  # token-wise (FILIP heads only)
    single_prompt: dict = None
    linear_probe: dict = None
    transfer: dict = None        # zero-shot on real digits
    evals: list = None           # the evaluations during training

    @classmethod
    def from_json(cls, data, source="a record", fix="rerun the command that wrote it"):
        """The record in JSON ``data``, checked first: a :class:`DamagedFile` naming ``source`` (its
        file), the fault and ``fix`` when a key is missing or a value has the wrong type or is impossible."""
        checked(data, RECORD, source, fix)
        known, preset = {f.name for f in fields(cls)}, {f.name for f in fields(RecordPreset)}
        return cls(**{**{k: v for k, v in data.items() if k in known},
                      "preset": RecordPreset(**{k: v for k, v in data["preset"].items() if k in preset})})

    def to_json(self):
        return json.loads(json.dumps(asdict(self)))


@dataclass(frozen=True)
class Summary(_Setting):
    """One setting's scores over its seeds: ``summary[task]`` is (mean, sample std), ``values[task]``
    every seed's, in the order of ``seeds``; ``flagged`` the seeds whose run needed over one recovery."""
    method: str
    preset: RecordPreset
    options: dict
    seeds: tuple
    values: dict
    recoveries: tuple = ()  # each seed's count of loss-crash recoveries, in the order of ``seeds``

    def __getitem__(self, task):
        if task not in self.values:
            raise KeyError(f"no score {task!r}; scores are {sorted(self.values)} "
                           f"(settings are attributes: row.method)")
        v = self.values[task]
        mean = sum(v) / len(v)
        std = math.sqrt(sum((x - mean) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
        return mean, std

    @property
    def flagged(self):
        return tuple(seed for seed, n in zip(self.seeds, self.recoveries) if n > 1)

    def __contains__(self, task):
        return task in self.values

    def __iter__(self):  # the score names, as a mapping's keys
        return iter(self.values)


QUERY_FIELDS = {"method", "seed", "seeds", *(n for n in vars(_Setting) if not n.startswith("_"))}


class Records(Rows):
    """Run records (``Records.load``, ``run_grid``), queried with ``where``/``one``."""

    @classmethod
    def load(cls, data, source="records"):
        """From JSON data (a list of record dicts, or a ``--summary`` file's {"runs": [...]}) or Records;
        ``source`` (their file) names a damaged one."""
        data = checked(data, {"runs": [OBJECT]}, source, "rerun the command that wrote it")["runs"] \
            if isinstance(data, dict) else data
        return cls(r if isinstance(r, Record) else Record.from_json(r, f"{source}[{i}]")
                   for i, r in enumerate(data))

    def summarise(self, field="zero_shot"):
        """One :class:`Summary` per setting (everything but the seed) of the records that have
        ``field`` (any of ``SCORES``); a run listed twice (by two grids) counts once."""
        if field not in SCORES:
            raise ValueError(f"summarise: no score {field!r}; choose from {SCORES}")
        groups, seen = {}, set()
        for r in self:
            if getattr(r, field) and r.name not in seen:
                seen.add(r.name)
                key = json.dumps([r.method, asdict(r.preset), r.options], sort_keys=True)
                groups.setdefault(key, []).append(r)
        rows = []
        for group in groups.values():
            first = group[0]
            values = {k: tuple(getattr(r, field)[k] for r in group) for k in getattr(first, field)}
            rows.append(Summary(first.method, first.preset, first.options, tuple(r.seed for r in group),
                                values, tuple(len(r.recoveries or ()) for r in group)))
        return Summaries(rows)


class Summaries(Rows):
    """Summary rows, queried with ``where``/``one``."""
