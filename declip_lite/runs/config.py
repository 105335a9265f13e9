"""What names a run: its preset (data size, steps, batch, evaluation), seed and options, and the
name computed from them. A filtered run's name includes its scorer's, so the cache never mixes them."""
import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace

from ..models.clip import ModelConfig
from ..objectives import objective_class
from ..train import TrainConfig


@dataclass(frozen=True)
class Preset:
    pairs: int        # distinct training pairs
    steps: int
    batch_size: int
    warmup: int
    eval_n: int       # images per zero-shot task
    eval_every: int
    lr: float = 1e-3
    image_size: int = 32
    model: str = "rn-tiny"


PRESETS = {
    "smoke": Preset(pairs=2048, steps=60, batch_size=128, warmup=10, eval_n=256, eval_every=0),
    "cpu": Preset(pairs=20_000, steps=2000, batch_size=128, warmup=100, eval_n=1000, eval_every=250),
    "gpu": Preset(pairs=100_000, steps=4000, batch_size=256, warmup=200, eval_n=2000, eval_every=500),
}


# notebooks 02-06 in full mode: 77 epochs of few pairs, where DeCLIP helps
SMALL_DATA = dict(pairs=2000, steps=1200)


def small_data(smoke):
    """Notebooks 02-06: (preset, overrides) of the small-data regime where extra supervision pays,
    2,000 pairs x 1,200 steps of 128, the same on a CPU and a GPU; seconds of training when ``smoke``."""
    return ("smoke", dict(batch_size=32, steps=12)) if smoke else ("cpu", dict(SMALL_DATA))


SCORER_SEED = 1000  # the filter's scorer trains on this draw of the data, never on the filtered one


# bumped when the same settings train other weights (2: objectives follow the reference, 2026-12)
RUN_VERSION = 2


def run_name(method, preset, seed, **options):
    """``method-sSEED-hash``: the hash of every setting, so two runs share a name only if they share
    weights."""
    key = json.dumps({"method": method, "preset": asdict(preset), "seed": seed, "version": RUN_VERSION,
                      **options}, sort_keys=True, default=str)
    return f"{method}-s{seed}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"


SECTIONS = {"preset": Preset, "train": TrainConfig,
            "model": ModelConfig}  # and "objective": the method's options


def section_fields(section, method="clip"):
    """{field: default or type} of a section of a run's settings."""
    if section == "objective":
        return objective_class(method).options()
    return {f.name: f.type for f in fields(SECTIONS[section])}


def homes(key, method="clip"):
    """The sections that have a field ``key``: where a misplaced setting belongs."""
    return [s for s in [*SECTIONS, "objective"] if key in section_fields(s, method)]


class SettingError(ValueError):
    """A run setting in the wrong section or of the wrong type; the message names it."""


def _check_type(where, key, value, kind):
    """``value`` as the field's type (a list becomes a tuple for a tuple field); else an error naming it."""
    if not isinstance(kind, type):
        kind = object if kind is None else type(kind)  # an objective option: the type of its default
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is tuple and isinstance(value, (list, tuple)):
        return tuple(value)
    if kind is float and number:
        return float(value)
    if ((kind is int and number and isinstance(value, int))
            or (kind not in (int, float) and isinstance(value, kind))):
        return value
    raise SettingError(f"{where}{key}={value!r}: {key} must be {kind.__name__}")


SCHEDULE = ("steps", "lr", "warmup", "eval_every")  # train.<these> set the preset's own fields


def sections(assignments, method="clip"):
    """Route settings to their sections: ``key`` is a preset field, ``section.key`` a field of
    ``preset``, ``train`` (TrainConfig), ``model`` (ModelConfig) or ``objective`` (the method's
    options). A key in the wrong section, or a value of the wrong type, is an error naming it."""
    out = {s: {} for s in [*SECTIONS, "objective"]}
    for dotted, value in assignments.items():
        section, _, key = dotted.rpartition(".")
        section = section or "preset"
        if section not in out:
            raise SettingError(f"{dotted}: no section {section!r}; sections are {sorted(out)}")
        known = section_fields(section, method)
        if section == "train" and key in SCHEDULE:  # the schedule is the preset's: it names and ends the run
            section, known = "preset", section_fields("preset")
        elif section == "train" and key in section_fields("preset"):
            raise SettingError(f"{dotted}: set {key} in the preset ({key}=...), which names the run")
        if key not in known:
            found = homes(key, method)
            hint = (f"; it belongs to {', '.join(f'{s}.{key}' for s in found)}" if found
                    else f"; its fields are {sorted(known)}")
            raise SettingError(f"{dotted}: {section} has no field {key!r}{hint}")
        out[section][key] = _check_type(f"{section}." if section != "preset" else "", key, value, known[key])
    return out


def _preset(preset, overrides, method="clip"):
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"build: unknown preset {preset!r}; choose from {sorted(PRESETS)}")
        preset = PRESETS[preset]
    return replace(preset, **sections(overrides, method)["preset"])


def _items(section):
    return tuple(sorted(section.items()))


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides a run's weights, in sections, frozen; its ``name`` is computed here
    and nowhere else. Build one with :meth:`of` (``train``'s keyword arguments); the CLI's ``--set``
    and the grids fill the same sections through the same checks (``sections``)."""
    method: str = "clip"
    preset: Preset = PRESETS["smoke"]
    seed: int = 0
    augmentation: str = "clip"       # the views' augmentation (``data.views.AUGMENTATIONS``)
    noise: tuple = (0.0, 0.0)        # caption noise: (wrong-attribute rate, swap rate)
    model: tuple = ()                # ModelConfig overrides, as sorted (field, value) pairs
    objective: tuple = ()            # the objective's options, likewise
    train: tuple = ()                # other TrainConfig fields, likewise
    filter_quantile: float = None    # keep the pairs a CLIP scorer finds matched (``filtering``)

    @classmethod
    def of(cls, method="clip", preset="smoke", seed=0, augmentation=None, noise=(0.0, 0.0),
           model_overrides=None, objective_options=None, filter_quantile=None, train_overrides=None,
           **preset_overrides):
        """The configuration of ``train``'s arguments; a misplaced or mistyped one is a ``SettingError``.
        The objective's own ``run_defaults`` (its temperature, say) come first; what is given wins."""
        routed = sections({**objective_class(method).run_defaults, **preset_overrides,
                           **{f"{section}.{k}": v for section, given in (("model", model_overrides),
                                                                         ("objective", objective_options),
                                                                         ("train", train_overrides))
                              for k, v in (given or {}).items()}},
                          method)
        return cls(method, _preset(preset, routed["preset"], method), seed, augmentation or "clip",
                   tuple(float(x) for x in noise), _items(routed["model"]), _items(routed["objective"]),
                   _items(routed["train"]), filter_quantile)

    @property
    def scorer(self):
        """The CLIP run that scores (filters) this run's pairs, on another draw of the same data; or None."""
        if self.filter_quantile is None:
            return None
        return replace(self, method="clip", seed=SCORER_SEED, objective=(), filter_quantile=None)

    @property
    def options(self):
        """The options that name the run with its method, preset and seed (a section only when set)."""
        options = dict(augmentation=self.augmentation, noise=list(self.noise), model=dict(self.model) or None,
                       objective=dict(self.objective) or None)
        if self.scorer is not None:
            options["filter"] = dict(quantile=self.filter_quantile, scorer=self.scorer.name)
        # TrainConfig fields (grad_clip, weight_decay, sync_batchnorm, ...); absent: the defaults
        if self.train:
            options["train"] = dict(self.train)
        return options

    @property
    def name(self):
        return run_name(self.method, self.preset, self.seed, **self.options)

    def __str__(self):
        """The whole run on one screen, a section a line: what ``print(config)`` shows."""
        p, line = self.preset, lambda section, fields: f"  {section:10s}" + "  ".join(  # noqa: E731
            f"{k}={v}" for k, v in fields) if fields else f"  {section:10s}(defaults)"
        data = [("pairs", p.pairs), ("image_size", p.image_size), ("batch_size", p.batch_size),
                ("eval_n", p.eval_n), ("augmentation", self.augmentation), ("noise", self.noise)]
        data += [("filter_quantile", self.filter_quantile)] if self.filter_quantile is not None else []
        schedule = [("steps", p.steps), ("lr", p.lr), ("warmup", p.warmup), ("eval_every", p.eval_every)]
        return "\n".join([f"{self.name}: {self.method}, seed {self.seed}", line("data", data),
                          line("model", [("tower", p.model), *self.model]), line("objective", self.objective),
                          line("train", schedule + list(self.train))])


def configure(config, settings):
    """``config`` with ``settings`` applied ({"pairs": 500, "train.lr": 5e-4, "model.text_layers": 4,
    "objective.exclude_self": True}): what ``--set`` does to a method, a grid and ``reproduce``. Each
    key is checked once (``sections``); the run gets its own name, and so does a filtered run's scorer."""
    routed = sections(settings, config.method)
    merged = {s: _items({**dict(getattr(config, s)), **routed[s]}) for s in ("model", "objective", "train")}
    return replace(config, preset=replace(config.preset, **routed["preset"]), **merged)


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
