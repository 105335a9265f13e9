"""The experiment grids of notebooks 07 (the DeCLIP reproduction) and 08 (the CLIP-benchmark).

A grid is a list of run configurations (:class:`RunConfig`) at one of three scales: "smoke"
(CI, seconds a run, numbers meaningless), "cpu" (the headline comparison with 5 seeds, every other
comparison a notebook makes with 3, the benchmark with 1) and "gpu" (the full grids, 3 seeds, on
one GPU; results/gpu comes from an H200). The cpu and gpu scales train in the
regime where the finding can be decided: 2,000 pairs for 1,200 steps of 128 (77 epochs), where
extra supervision pays. ``reproduce`` trains every grid of a scale, and the notebooks' own runs.
"""
import math
from dataclasses import dataclass, field, replace

from ..models.clip import CONFIGS
from .config import PRESETS, RUN_VERSION, RunConfig, small_data


ENCODERS = ("rn-tiny", "vit-tiny")


@dataclass(frozen=True)
class Scale:
    preset: str
    seeds: tuple
    sizes: tuple           # distinct training pairs, for the data-efficiency curve
    small: int             # the pairs every other grid trains on
    overrides: dict = field(default_factory=dict)
    benchmark_seeds: tuple = (0, 1, 2)  # seeds of notebook 08's benchmark
    benchmark_encoders: tuple = ENCODERS  # the image towers notebook 08's benchmark compares
    curve_seeds: tuple = (0, 1, 2)      # seeds of the data-efficiency curve and the equal-time runs
    quality_seeds: tuple = (0, 1, 2)    # seeds of notebook 08's noise grid and text depths
    notebook_seeds: tuple = (0,)        # seeds of notebooks 02-05's runs (their comparisons' intervals)
    noise_levels: tuple = (0.2, 0.4, 0.6)
    text_depths: tuple = (1, 2, 4, 8)
    version: int = RUN_VERSION          # the code version its shipped records were trained by


SCALES = {
    "smoke": Scale("smoke", (0,), (256, 512), 512, dict(batch_size=32, steps=6, eval_n=64, warmup=1),
                   benchmark_seeds=(0,), curve_seeds=(0,), quality_seeds=(0,), noise_levels=(0.5,),
                   text_depths=(1, 2)),
    "cpu": Scale("cpu", (0, 1, 2, 3, 4), (500, 2000, 8000), 2000, dict(batch_size=128, steps=1200, warmup=100,
                                                                       eval_n=1000, eval_every=250),
                 benchmark_seeds=(0,), notebook_seeds=(0, 1, 2), noise_levels=(0.5,), text_depths=(1, 2, 4),
                 benchmark_encoders=("rn-tiny",)),  # vit-tiny: about 28 min on one core; the gpu scale's
    "gpu": Scale("gpu", (0, 1, 2), (500, 1000, 2000, 4000, 8000, 16000), 2000,
                 dict(batch_size=128, steps=1200, warmup=100, eval_every=300),
                 version=2),  # results/gpu: f5a5947's records, until a GPU trains them again
}
LADDER = ["clip", "clip+mvs", "clip+mvs+ss", "declip"]  # the paper's ablation order (Table 6)
HEADLINE = ["clip", "declip", "clip+mvs"]               # the comparison the README leads with
SINGLES = ["clip+iss", "clip+tss", "clip+nns"]          # one signal each, on top of CLIP
BENCHMARK_METHODS = ["clip", "slip", "filip", "declip", "defilip"]
FILTER_QUANTILE = 0.9
TIME_MULTIPLE = 2  # CLIP also trains this many times longer: the equal-wall-clock comparison
TEXT_LAYERS = CONFIGS["rn-tiny"].text_layers  # that point of the depth sweep is the plain CLIP run


def spec(method, scale, seed, pairs=None, **options):
    """The :class:`RunConfig` of one run of a grid at ``scale`` (``options``: ``RunConfig.of``'s)."""
    return replace(RunConfig.of(method, scale.preset, seed,
                                **{**scale.overrides, "pairs": pairs or scale.small, **options}),
                   version=scale.version)


def grid(name, scale, methods=None):
    """The run configurations of grid ``name`` at ``scale`` (a key of ``SCALES`` or a :class:`Scale`).
    ``methods`` replaces the methods the grid compares: any registered objective, your own too."""
    if name not in GRIDS:
        raise ValueError(f"grid: unknown grid {name!r}; choose from {sorted(GRIDS)}")
    scale = SCALES[scale] if isinstance(scale, str) else scale
    return GRIDS[name](scale, methods)


def _ablation(s, methods):  # the headline methods first, seed by seed: a partial run already compares them
    methods = methods or (sorted(LADDER, key=lambda m: m not in HEADLINE)
                          + (SINGLES if s.preset == "gpu" else []))
    return [spec(m, s, seed) for seed in s.seeds for m in methods]


def _data_efficiency(s, methods):  # the ablation's seeds at ``small``, ``curve_seeds`` elsewhere
    return [spec(m, s, seed, n) for m in methods or ("clip", "declip") for n in s.sizes
            for seed in (s.seeds if n == s.small else s.curve_seeds)]


def _equal_time(s, methods):
    return [spec(m, s, seed, steps=s.overrides.get("steps", 0) * TIME_MULTIPLE) for m in methods or ["clip"]
            for seed in s.curve_seeds]


def _benchmark(s, methods):
    return [spec(m, s, seed, model=e) for e in s.benchmark_encoders for m in methods or BENCHMARK_METHODS
            for seed in s.benchmark_seeds]


def _data_quality(s, methods):
    methods = methods or ["clip"]
    clean = [spec(m, s, seed) for m in methods for seed in s.quality_seeds]
    noisy = [(p, 0.0) for p in s.noise_levels] + [(0.0, p) for p in s.noise_levels]
    return clean + [spec(m, s, seed, noise=n, filter_quantile=q) for m in methods for n in noisy
                    for q in (None, FILTER_QUANTILE) for seed in s.quality_seeds]


def text_layers(depth):
    """The model overrides of a text tower ``depth`` layers deep (None: the config's own depth)."""
    return None if depth == TEXT_LAYERS else {"text_layers": depth}


def _text_depth(s, methods):
    return [spec(m, s, seed, model_overrides=text_layers(d)) for m in methods or ["clip"]
            for d in s.text_depths for seed in s.quality_seeds]


def notebook_needs(notebook, scale, seed=0):
    """(records, models): the runs whose records notebook ``"07"`` or ``"08"`` reads at ``scale``
    (its grids), and those whose trained models it draws at ``seed`` (07's embedding maps and
    retrieval, 08's word-patch map)."""
    s = SCALES[scale]
    drawn = {"07": [spec(m, s, seed) for m in ("clip", "declip", "clip+mvs")],
             "08": [spec("filip", s, seed, model="vit-tiny")]}[notebook]
    return [c for name in NOTEBOOK_GRIDS[notebook] for c in grid(name, s)], drawn


def model_runs(scale):
    """The runs whose trained models the notebooks use (07-08's drawn models, and every run of
    01-06 at seed 0): ``reproduce`` ships their weights."""
    drawn = notebook_needs("07", scale)[1] + notebook_needs("08", scale)[1]
    return list(dict.fromkeys(drawn + notebook_runs(scale)))


def notebook_runs(scale, seed=0):
    """The runs notebooks 01-06 train when they run at ``scale`` with ``seed``: 01 on its preset
    (seed 0 only), 02-06 in the small-data regime (``notebook.small_data``), shared runs listed once."""
    preset, setting = small_data(scale == "smoke")
    at = lambda config: replace(config, version=SCALES[scale].version)  # noqa: E731

    def small(method, **options):
        return at(RunConfig.of(method, preset, seed, **setting, **options))

    first = [at(RunConfig.of("clip", scale, 0))] if seed == 0 else []                          # 01
    return [*first,
            *(small("clip+iss", objective_options={"stop_gradient": sg}) for sg in (True, False)),  # 02
            small("clip"), small("clip+tss"),                                                   # 02, 03, 06
            *(small("clip+mvs", augmentation=views) for views in ("clip", "safe", "moco")),    # 04
            *(small("clip+nns", objective_options={"exclude_self": ex}) for ex in (False, True)),  # 05
            small("declip")]                                                                    # 06


BATCH_FACTORS = (0.25, 1, 4)  # notebook 01's batch sizes, relative to the small-data regime's
# temperatures held fixed instead of learned
FIXED_SCALES = {"τ = 1 (s = 1)": 1.0, "τ = 0.07 (s = 14.3)": 1 / 0.07}


def batch_temperature(scale):
    """Notebook 01's lesson on negatives and temperature (CLIP, seed 0, small-data regime): three
    batch sizes at the same pairs seen (steps and warm-up scaled inversely), then the temperature
    held fixed (the logit-scale clamp closed at one value) against learned. ``{label: RunConfig}``."""
    preset, setting = small_data(scale == "smoke")
    if scale == "smoke":  # CI's check that the lesson runs, in a few seconds: half the steps, smaller tasks
        setting = {**setting, "steps": setting["steps"] // 2, "eval_n": 64}
    base = PRESETS[preset]
    batch, steps = setting.get("batch_size", base.data.batch_size), setting["steps"]
    runs = {f"batch {round(batch * f)}": RunConfig.of(
        "clip", preset, 0, **{**setting, "batch_size": round(batch * f), "steps": round(steps / f),
                              "warmup": round(base.train.warmup / f)}) for f in BATCH_FACTORS}
    runs.update({label: RunConfig.of("clip", preset, 0, **setting, train_overrides={
        "logit_scale_clamp": (math.log(s), math.log(s))}) for label, s in FIXED_SCALES.items()})
    return {label: replace(config, version=SCALES[scale].version) for label, config in runs.items()}


GRIDS = {"ablation": _ablation, "data-efficiency": _data_efficiency, "equal-time": _equal_time,
         "benchmark": _benchmark, "data-quality": _data_quality, "text-depth": _text_depth}
NOTEBOOK_GRIDS = {"07": ["ablation", "data-efficiency", "equal-time"],
                  "08": ["benchmark", "data-quality", "text-depth"]}
# what the grids are compared with (METHOD.md section 6): ImageNet zero-shot top-1, %
PUBLISHED_ABLATION = {"clip": 20.6, "clip+mvs": 24.8, "clip+mvs+ss": 25.4, "declip": 27.2}  # RN50, CC3M
PUBLISHED_BENCHMARK = {  # YFCC15M-V2, 32 epochs: {method: (ViT-B/32, ResNet50)}
    "clip": (32.8, 37.2), "slip": (34.3, 28.5), "filip": (39.5, 21.3), "declip": (43.2, 44.4),
    "defilip": (45.0, None)}
PUBLISHED_DATA_MULTIPLE = 7.1  # DeCLIP-RN50 on 56 M pairs vs CLIP-RN50 on 400 M
