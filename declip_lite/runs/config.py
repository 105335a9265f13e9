"""What a run is: one frozen, nested :class:`RunConfig` (method, seed, ``data``, ``model``,
``objective``, ``train``), the presets as RunConfigs, :func:`configure` (the one way to override
anything, every key checked once) and the run's name, a hash of everything that decides its weights.
A filtered run's name includes its scorer's, so the cache never mixes them."""
import hashlib
import json
from dataclasses import dataclass, field, fields, replace

from ..models.clip import CONFIGS, ModelConfig
from ..objectives import objective_class
from ..train import TrainConfig


class SettingError(ValueError):
    """A run setting in the wrong section or of the wrong type; the message names it."""


@dataclass(frozen=True)
class DataConfig:
    """The pairs a run trains on, how they are batched and seen, and the size of its zero-shot tasks."""
    pairs: int = 2048               # distinct training pairs
    image_size: int = 32
    batch_size: int = 128
    eval_n: int = 256               # images per zero-shot task
    augmentation: str = "clip"      # the views' augmentation (``data.views.AUGMENTATIONS``)
    noise: tuple = (0.0, 0.0)       # caption noise: (wrong-attribute rate, swap rate)
    filter_quantile: float = None   # keep the pairs a CLIP scorer finds matched (``filtering``)

    def __post_init__(self):
        if len(self.noise) != 2:
            raise SettingError(f"noise={self.noise!r}: expected (wrong-attribute rate, swap rate)")
        object.__setattr__(self, "noise", tuple(float(x) for x in self.noise))  # 0 and 0.0 name one run


@dataclass(frozen=True)
class ModelChoice:
    """The towers: a base configuration (a key of ``models.clip.CONFIGS``) and ModelConfig overrides,
    as sorted (field, value) pairs."""
    tower: str = "rn-tiny"
    overrides: tuple = ()

    def __post_init__(self):
        if self.tower not in CONFIGS:
            raise SettingError(f"model.tower={self.tower!r}: choose from {sorted(CONFIGS)}")


SCORER_SEED = 1000  # the filter's scorer trains on this draw of the data, never on the filtered one


# bumped when the same settings train other weights (2: objectives follow the reference, 2026-12;
# 3: MLM masks and EDA edits are other draws at the same seed and step)
RUN_VERSION = 3

SCHEDULE = ("steps", "lr", "warmup", "eval_every")  # the train fields a bare key sets, as data's fields
UNNAMED = ("fast",)  # train fields that never change the weights (eager and graphed steps are tested equal)
TRAIN_DEFAULTS = TrainConfig()


def _items(section):
    return tuple(sorted(section.items()))


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides a run's weights, in sections, frozen; its ``name`` is computed here
    and nowhere else. Build one with :meth:`of` (``train``'s keyword arguments) or :func:`configure`;
    the CLI's ``--set``, the grids and the objectives' ``run_defaults`` go through the same checks
    (``sections``). ``RunConfig()`` is the smoke preset's CLIP run."""
    method: str = "clip"
    seed: int = 0
    data: DataConfig = DataConfig()
    model: ModelChoice = ModelChoice()
    objective: tuple = ()            # the objective's options, as sorted (option, value) pairs
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=60, warmup=10))
    version: int = RUN_VERSION       # the code's: records of older code keep their names (``grids.Scale``)

    @classmethod
    def of(cls, method="clip", preset="smoke", seed=0, augmentation=None, noise=None, model_overrides=None,
           objective_options=None, filter_quantile=None, train_overrides=None, **settings):
        """``preset`` (a name of ``PRESETS``, or a RunConfig) for ``method`` and ``seed``, configured
        with the rest: ``settings`` are bare keys (data fields, the schedule's, ``model``: the tower) or
        dotted ones, as ``--set`` takes them. The objective's own ``run_defaults`` (its temperature,
        say) come first; what is given wins. A misplaced or mistyped one is a ``SettingError``."""
        if isinstance(preset, str):
            if preset not in PRESETS:
                raise SettingError(f"RunConfig.of: unknown preset {preset!r}; choose from {sorted(PRESETS)}")
            preset = PRESETS[preset]
        given = {"augmentation": augmentation, "noise": noise, "filter_quantile": filter_quantile}
        named = {**{k: v for k, v in given.items() if v is not None},
                 **{f"{section}.{k}": v for section, options in (("model", model_overrides),
                                                                  ("objective", objective_options),
                                                                  ("train", train_overrides))
                    for k, v in (options or {}).items()}}
        base = replace(preset, method=method, seed=seed,
                       objective=preset.objective if preset.method == method else ())
        return configure(base, {**objective_class(method).run_defaults, **settings, **named})

    @property
    def scorer(self):
        """The CLIP run that scores (filters) this run's pairs, on another draw of the same data; or None."""
        if self.data.filter_quantile is None:
            return None
        return replace(self, method="clip", seed=SCORER_SEED, objective=(),
                       data=replace(self.data, filter_quantile=None))

    @property
    def train_overrides(self):
        """{field: value} of the train section beyond its schedule that differ from TrainConfig's defaults."""
        return {f.name: getattr(self.train, f.name) for f in fields(TrainConfig)
                if f.name not in SCHEDULE + UNNAMED
                and getattr(self.train, f.name) != getattr(TRAIN_DEFAULTS, f.name)}

    def stored(self):
        """The flat settings a record stores as its "preset": data size, schedule, batch, tasks' size
        and tower (records' ``RecordPreset``)."""
        d, t = self.data, self.train
        return dict(pairs=d.pairs, steps=t.steps, batch_size=d.batch_size, warmup=t.warmup, eval_n=d.eval_n,
                    eval_every=t.eval_every, lr=t.lr, image_size=d.image_size, model=self.model.tower)

    @property
    def options(self):
        """The settings beyond ``stored`` that name the run with its method and seed (a section only
        when set)."""
        options = dict(augmentation=self.data.augmentation, noise=list(self.data.noise),
                       model=dict(self.model.overrides) or None, objective=dict(self.objective) or None)
        if self.scorer is not None:
            options["filter"] = dict(quantile=self.data.filter_quantile, scorer=self.scorer.name)
        if self.train_overrides:  # grad_clip, weight_decay, sync_batchnorm, ...; absent: the defaults
            options["train"] = self.train_overrides
        return options

    @property
    def name(self):
        """``method-sSEED-hash``: the hash of every setting, so two runs share a name only if they share
        weights. It hashes the flat shape records store (``stored``, ``options``): names outlive redesigns."""
        key = json.dumps({"method": self.method, "preset": self.stored(), "seed": self.seed,
                          "version": self.version, **self.options}, sort_keys=True, default=str)
        return f"{self.method}-s{self.seed}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"

    def __str__(self):
        """The whole run on one screen, a section a line: what ``print(config)`` shows."""
        d, line = self.data, lambda section, fields: f"  {section:10s}" + "  ".join(  # noqa: E731
            f"{k}={v}" for k, v in fields) if fields else f"  {section:10s}(defaults)"
        data = [(f.name, getattr(d, f.name)) for f in fields(DataConfig)
                if f.name != "filter_quantile" or d.filter_quantile is not None]
        schedule = [(k, getattr(self.train, k)) for k in SCHEDULE]
        return "\n".join([f"{self.name}: {self.method}, seed {self.seed}", line("data", data),
                          line("model", [("tower", self.model.tower), *self.model.overrides]),
                          line("objective", self.objective),
                          line("train", schedule + list(self.train_overrides.items()))])


PRESETS = {
    "smoke": RunConfig(),
    "cpu": RunConfig(data=DataConfig(pairs=20_000, eval_n=1000),
                     train=TrainConfig(steps=2000, warmup=100, eval_every=250)),
    "gpu": RunConfig(data=DataConfig(pairs=100_000, batch_size=256, eval_n=2000),
                     train=TrainConfig(steps=4000, warmup=200, eval_every=500)),
}


# notebooks 02-06 in full mode: 77 epochs of few pairs, where DeCLIP helps
SMALL_DATA = dict(pairs=2000, steps=1200)


def small_data(smoke):
    """Notebooks 02-06: (preset, settings) of the small-data regime where extra supervision pays,
    2,000 pairs x 1,200 steps of 128, the same on a CPU and a GPU; seconds of training when ``smoke``."""
    return ("smoke", dict(batch_size=32, steps=12)) if smoke else ("cpu", dict(SMALL_DATA))


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}  # and "objective": the method's
DERIVED = ("image_size", "vocab_size", "context_length", "eot_id")  # a model's, from the data and tokenizer


def section_fields(section, method="clip"):
    """{field: default or type} of a section of a run's settings; no field is in two sections."""
    if section == "objective":
        return objective_class(method).options()
    known = {f.name: f.type for f in fields(SECTIONS[section])}
    if section == "model":
        return {"tower": str, **{k: v for k, v in known.items() if k not in DERIVED}}
    return known


def homes(key, method="clip"):
    """The sections that have a field ``key``: where a misplaced setting belongs."""
    return [s for s in [*SECTIONS, "objective"] if key in section_fields(s, method)]


def _check_type(key, value, kind):
    """``value`` as the field's type (a list becomes a tuple for a tuple field); else an error naming it."""
    if not isinstance(kind, type):
        kind = object if kind is None else type(kind)  # an objective option: the type of its default
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is tuple and isinstance(value, (list, tuple)):
        return tuple(value)
    if kind is float and (number or value is None):
        return None if value is None else float(value)
    if ((kind is int and number and isinstance(value, int))
            or (kind not in (int, float) and isinstance(value, kind))):
        return value
    raise SettingError(f"{key}={value!r}: {key.rpartition('.')[2]} must be {kind.__name__}")


def _bare(key):
    """The section of a key given without one: data's fields, the schedule's, ``model`` (the tower)."""
    if key == "model":
        return "model", "tower"
    return ("train" if key in SCHEDULE else "data"), key


def sections(assignments, method="clip"):
    """Route settings to their sections: ``section.key`` is a field of ``data``, ``model`` (the
    tower or a ModelConfig field), ``objective`` (the method's options) or ``train`` (TrainConfig);
    a bare ``key`` a field of data, of the schedule (steps, lr, warmup, eval_every) or ``model``, the
    tower. A key in the wrong section, or a value of the wrong type, is an error naming it."""
    out = {s: {} for s in [*SECTIONS, "objective"]}
    for dotted, value in assignments.items():
        section, _, key = dotted.rpartition(".")
        if not section:
            section, key = _bare(key)
        if section not in out:
            raise SettingError(f"{dotted}: no section {section!r}; sections are {sorted(out)}")
        known = section_fields(section, method)
        if key not in known:
            found = homes(key, method)
            hint = (f"; it belongs to {', '.join(f'{s}.{key}' for s in found)}" if found
                    else f"; its fields are {sorted(known)}")
            raise SettingError(f"{dotted}: {section} has no field {key!r}{hint}")
        out[section][key] = _check_type(dotted, value, known[key])
    return out


def configure(config, settings):
    """``config`` with ``settings`` applied ({"pairs": 500, "train.lr": 5e-4, "model.text_layers": 4,
    "objective.exclude_self": True}): what ``--set`` does to a method, a grid and ``reproduce``. Each
    key is checked once (``sections``); the run gets its own name, and so does a filtered run's scorer."""
    routed = sections(settings, config.method)
    tower = routed["model"].pop("tower", config.model.tower)
    return replace(config, data=replace(config.data, **routed["data"]),
                   model=ModelChoice(tower, _items({**dict(config.model.overrides), **routed["model"]})),
                   objective=_items({**dict(config.objective), **routed["objective"]}),
                   train=replace(config.train, **routed["train"]))


def configure_all(configs, settings):
    """:func:`configure` over a grid: an ``objective.*`` key goes to the runs whose objective has that
    option (a key none of them has is an error naming it); every other key to every run."""
    options = {k: k.partition(".")[2] for k in settings if k.startswith("objective.")}
    for key, option in options.items():
        if configs and not any(option in section_fields("objective", c.method) for c in configs):
            raise SettingError(f"{key}: none of these runs' objectives has {option!r}")
    return [configure(c, {k: v for k, v in settings.items()
                          if k not in options or options[k] in section_fields("objective", c.method)})
            for c in configs]


def run_config(method="clip", *args, **kwargs):
    """``method`` itself when it is a :class:`RunConfig`, else ``RunConfig.of(method, *args, **kwargs)``."""
    return method if isinstance(method, RunConfig) else RunConfig.of(method, *args, **kwargs)
