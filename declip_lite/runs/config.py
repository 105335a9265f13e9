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


SMALL_DATA = dict(pairs=2000, steps=1200)  # notebooks 02-06 in full mode: 77 epochs of few pairs, where DeCLIP helps


SCORER_SEED = 1000  # the filter's scorer trains on this draw of the data, never on the filtered one


def run_name(method, preset, seed, **options):
    key = json.dumps({"method": method, "preset": asdict(preset), "seed": seed, **options}, sort_keys=True, default=str)
    return f"{method}-s{seed}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"


SECTIONS = {"preset": Preset, "train": TrainConfig, "model": ModelConfig}  # and "objective": the method's options


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
    if (kind is int and number and isinstance(value, int)) or (kind not in (int, float) and isinstance(value, kind)):
        return value
    raise SettingError(f"{where}{key}={value!r}: {key} must be {kind.__name__}")


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
        if section == "train" and key in section_fields("preset"):  # the preset owns the schedule's length
            raise SettingError(f"{dotted}: set {key} in the preset ({key}=...), which names and ends the run")
        if key not in known:
            found = homes(key, method)
            hint = f"; it belongs to {', '.join(f'{s}.{key}' for s in found)}" if found else ""
            raise SettingError(f"{dotted}: {section} has no field {key!r}{hint}")
        out[section][key] = _check_type(f"{section}." if section != "preset" else "", key, value, known[key])
    return out


def _preset(preset, overrides, method="clip"):
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"build: unknown preset {preset!r}; choose from {sorted(PRESETS)}")
        preset = PRESETS[preset]
    return replace(preset, **sections(overrides, method)["preset"])


def _options(augmentation, noise, model_overrides, objective_options, filter_quantile, scorer_name,
             train_overrides=None):
    """The run options that name a run (with its preset and seed)."""
    # every method defaults to CLIP's crop-only views: the reference's MoCo views (and even the
    # milder "safe" ones) make ShapeCaps captions false and cost more than DeCLIP's signals add
    options = dict(augmentation=augmentation or "clip", noise=noise, model=model_overrides, objective=objective_options)
    if filter_quantile is not None:
        options["filter"] = dict(quantile=filter_quantile, scorer=scorer_name)
    if train_overrides:  # TrainConfig fields (grad_clip, weight_decay, sync_batchnorm, ...); absent: the defaults
        options["train"] = train_overrides
    return options


def spec_name(method="clip", preset="smoke", seed=0, device=None, augmentation=None, noise=(0.0, 0.0),
              model_overrides=None, objective_options=None, filter_quantile=None, train_overrides=None,
              **preset_overrides):
    """The name ``build`` gives the run of these ``train`` arguments, without building it."""
    scorer = None
    if filter_quantile is not None:
        scorer = spec_name(**scorer_spec(dict(preset=preset, noise=noise, augmentation=augmentation,
                                              model_overrides=model_overrides, train_overrides=train_overrides,
                                              **preset_overrides)))
    options = _options(augmentation, noise, model_overrides, objective_options, filter_quantile, scorer,
                       train_overrides)
    return run_name(method, _preset(preset, preset_overrides, method), seed, **options)


def scorer_spec(spec):
    """The CLIP run that scores (filters) the pairs of the filtered run ``spec``."""
    drop = {"method", "seed", "filter_quantile", "objective_options"}
    return {"method": "clip", "seed": SCORER_SEED, **{k: v for k, v in spec.items() if k not in drop}}
