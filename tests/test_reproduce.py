"""The reproduction machinery of notebooks 07-08: views per objective, data filters, FILIP's
zero-shot scoring, linear probes, real digits, run naming and caching, and the report maths."""
import math
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from declip_lite import experiments, grids, report
from declip_lite.data import external
from declip_lite.data.external import sklearn_digits
from declip_lite.data.loader import PairBatches
from declip_lite.data.shapecaps import ShapeCaps
from declip_lite.evaluate import linear_probe, token_wise_scores, word_patch_similarity
from declip_lite.filtering import keep_matched, separation
from declip_lite.models.clip import CLIPModel, model_config
from declip_lite.objectives import FILIP
from declip_lite.train import Trainer

TINY = dict(pairs=96, batch_size=32, steps=2, warmup=1, eval_n=16)


def test_slip_gets_a_weak_view_and_two_strong_ones(tokenizer):
    run = experiments.build("slip", "smoke", 0, "cpu", **TINY)
    assert [a.p_jitter for a in run.trainer.batches.augs] == [0, 0.8, 0.8]  # "clip", "moco", "moco"
    with pytest.raises(ValueError, match="3 names"):
        PairBatches(ShapeCaps(64), tokenizer, 32, image_views=3, augmentation=["clip", "moco"])


def test_subset_renumbers_pairs_and_noise_is_known():
    data = ShapeCaps(400, wrong_attribute_rate=0.3, swap_rate=0.2)
    noisy = data.noisy(range(400))
    assert 0.4 < noisy.float().mean() < 0.6  # 0.2 swapped + 0.8 * 0.3 wrong
    sub = data.subset([7, 3])
    assert len(sub) == 2 and sub.captions([0, 1]) == data.captions([7, 3])
    assert torch.equal(sub.images([1]), data.images([3])) and torch.equal(sub.noisy([0]), noisy[[7]])
    clean = ShapeCaps(50)
    assert not clean.noisy(range(50)).any()


def test_an_uninformed_scorer_keeps_about_one_minus_the_quantile(tokenizer):
    model = CLIPModel(model_config(vocab_size=tokenizer.vocab_size))  # untrained: own ~ mismatched
    data = ShapeCaps(600, swap_rate=0.5)
    keep, rep = keep_matched(model, tokenizer, data, quantile=0.8)
    assert 0.1 < rep["kept"] < 0.3 and len(keep) == round(rep["kept"] * 600)
    assert math.isclose(rep["noise_before"], data.noisy(range(600)).float().mean().item())
    assert 0.4 < rep["separation"] < 0.6  # blind
    with pytest.raises(ValueError, match="quantile"):
        keep_matched(model, tokenizer, data, quantile=1.0)


def test_separation_is_the_share_of_clean_noisy_pairs_in_order():
    clean, noisy = torch.tensor([0.9, 0.5, 0.2]), torch.tensor([0.4, 0.5])
    # of the 6 (clean, noisy) pairs, 0.9 wins twice, 0.5 once and ties once (a half), 0.2 never
    assert separation(clean, noisy) == pytest.approx((3 + 0.5) / 6)
    assert separation(clean + 1, noisy) == 1.0 and separation(noisy, noisy + 1) == 0.0


def test_token_wise_zero_shot_equals_a_loop(tokenizer):
    config = model_config("vit-tiny", vocab_size=tokenizer.vocab_size, vit_layers=1, text_layers=1)
    model, filip = CLIPModel(config).eval(), FILIP(config.vit_width, config.text_width).eval()
    images, classes, templates = (torch.rand(3, 3, 32, 32), ["circle", "star"],
                                  ["a {}", "a red {} on the left"])
    scores = token_wise_scores(model, filip, tokenizer, images, classes, templates, batch_size=2)
    with torch.no_grad():
        x = F.normalize(filip.image_proj(model.encode_image(images)["tokens"]), dim=-1)
        expect = torch.zeros(3, 2)
        for c, name in enumerate(classes):
            for t in templates:
                tok = tokenizer.encode([t.format(name)])
                y = F.normalize(filip.text_proj(model.encode_text(tok)["tokens"]), dim=-1)[0][tok[0] != 0]
                for i in range(3):
                    expect[i, c] += (x[i] @ y.T).max(1).values.mean() / len(templates)
    torch.testing.assert_close(scores, expect, atol=1e-5, rtol=1e-5)
    words, sim = word_patch_similarity(model, filip, tokenizer, images[0], "a red circle")
    assert words == ["a", "red", "circle"] and sim.shape == (3, 64)


def test_linear_probe_reads_what_the_features_hold():
    labels = torch.randint(0, 4, (400,), generator=torch.Generator().manual_seed(0))
    noise = torch.randn(400, 16, generator=torch.Generator().manual_seed(1)) * 0.1
    informative = noise + F.one_hot(labels, 16)  # the label, one-hot, plus noise
    assert linear_probe(informative[:300], labels[:300], informative[300:], labels[300:])["top1"] > 0.95
    assert linear_probe(noise[:300], labels[:300], noise[300:], labels[300:])["top1"] < 0.45


def sklearn_probe(x, y, x_test, y_test, cs=(0.1, 1.0, 10.0, 100.0)):
    """The probe as scikit-learn fits it: C picked on a held-out fifth, refitted on all."""
    from sklearn.linear_model import LogisticRegression

    x, y, x_test, y_test = (t.numpy() for t in (x, y, x_test, y_test))
    cut = len(x) * 4 // 5
    fit = lambda c, a, b: LogisticRegression(C=c, max_iter=2000).fit(a, b)  # noqa: E731
    best = max(cs, key=lambda c: fit(c, x[:cut], y[:cut]).score(x[cut:], y[cut:]))
    return fit(best, x, y).score(x_test, y_test)


def test_the_torch_probe_scores_as_scikit_learns_on_fixed_features():
    """Overlapping classes on the unit sphere, as image embeddings are: the accuracy is set by the
    fit, not by the data alone, and the two fits agree to 0.01."""
    g = torch.Generator().manual_seed(0)
    centres = F.normalize(torch.randn(10, 64, generator=g), dim=-1)
    for noise in (0.5, 0.8):
        labels = torch.randint(0, 10, (2000,), generator=g)
        x = F.normalize(centres[labels] + noise * torch.randn(2000, 64, generator=g), dim=-1)
        ours = linear_probe(x[:1000], labels[:1000], x[1000:], labels[1000:])["top1"]
        assert (0.3 < ours < 0.9
                and abs(ours - sklearn_probe(x[:1000], labels[:1000], x[1000:], labels[1000:])) <= 0.01)


def test_sklearn_digits_are_real_ten_class_images():
    task = sklearn_digits(32, n=200)
    assert task.images.shape == (200, 3, 32, 32) and 0 <= task.images.min() and task.images.max() <= 1
    assert set(task.labels.tolist()) == set(range(10)) and task.classnames[3] == "3"
    assert len(sklearn_digits(32)) == 1797
    from sklearn.datasets import load_digits  # read from scikit-learn's own file: the same digits

    images, target = external._handwritten()
    assert np.array_equal(images, load_digits().images) and np.array_equal(target, load_digits().target)


def test_a_run_is_named_once_by_its_config_and_a_grid_is_read_not_retrained(tmp_path, monkeypatch):
    configs = [experiments.RunConfig.of("clip", "smoke", 0, **TINY),
               experiments.RunConfig.of("clip", "smoke", 1, noise=(0.0, 0.5), filter_quantile=0.5, **TINY)]
    records = experiments.run_grid(configs, str(tmp_path), "cpu", progress=False)
    assert configs[0].name == experiments.build("clip", "smoke", 0, "cpu", **TINY).name == records[0].name
    assert records[1].options["filter"]["scorer"] == configs[1].scorer.name
    assert configs[1].scorer.seed != configs[1].seed and configs[1].scorer.data.filter_quantile is None
    assert 0 < records[1].filter_report["kept"] <= 1 and records[0].linear_probe and records[0].transfer
    assert (tmp_path / (configs[1].scorer.name + ".json")).exists()
    monkeypatch.setattr(experiments, "train", lambda *a, **k: pytest.fail("a cached run was retrained"))
    assert experiments.run_grid(configs, str(tmp_path), "cpu") == records
    with pytest.raises(ValueError, match="needs its trained scorer run clip-s1000-"):
        experiments.build(configs[1], device="cpu")


def test_the_sections_share_no_field_and_the_presets_are_run_configs():
    from declip_lite.runs.config import SettingError, section_fields

    data, model, train = (set(section_fields(s)) for s in ("data", "model", "train"))
    assert not (data & model or data & train or model & train)  # one home for every setting
    assert {"steps", "lr", "warmup", "eval_every"} <= train and {"pairs", "batch_size", "eval_n"} <= data
    cpu = experiments.PRESETS["cpu"]
    assert isinstance(cpu, experiments.RunConfig) and (cpu.data.pairs, cpu.train.steps) == (20_000, 2000)
    assert experiments.configure(cpu, {"lr": 5e-4}) == experiments.configure(cpu, {"train.lr": 5e-4})
    assert experiments.configure(cpu, {"model": "vit-tiny"}).model.tower == "vit-tiny"
    with pytest.raises(SettingError, match=r"model\.tower='vit-huge': choose from \['rn-tiny', 'rn50', "):
        experiments.configure(cpu, {"model.tower": "vit-huge"})
    with pytest.raises(SettingError, match=r"model\.image_size: model has no field 'image_size'; "
                                           r"it belongs to data\.image_size"):
        experiments.configure(cpu, {"model.image_size": 64})
    with pytest.raises(SettingError, match=r"noise=\(0\.1,\): expected \(wrong-attribute rate, swap rate\)"):
        experiments.configure(cpu, {"noise": [0.1]})
    assert experiments.configure(cpu, {"noise": [0, 0.5]}).data.noise == (0.0, 0.5)  # one name for 0 and 0.0
    with pytest.raises(SettingError, match=r"RunConfig\.of: unknown preset 'tiny'; "
                                           r"choose from \['cpu', 'gpu', 'smoke'\]"):
        experiments.RunConfig.of("clip", "tiny")


def test_a_config_is_frozen_and_checks_its_sections():
    config = experiments.RunConfig.of("declip", "smoke", 0, objective_options={"queue_size": 64}, pairs=100)
    with pytest.raises(AttributeError):
        config.seed = 1
    assert config.data.pairs == 100 and dict(config.objective) == {"queue_size": 64}
    assert config == experiments.RunConfig.of("declip", "smoke", 0, objective_options={"queue_size": 64},
                                              pairs=100)
    with pytest.raises(ValueError, match=r"steps='abc': steps must be int"):
        experiments.RunConfig.of("clip", steps="abc")
    with pytest.raises(ValueError,
                       match=r"model\.queue_size: model has no field 'queue_size'; it belongs to objective"):
        experiments.RunConfig.of("declip", model_overrides={"queue_size": 5})


def record(seed, mean, noise, method="clip"):
    return {"name": f"{method}-{seed}-{noise}", "method": method, "seed": seed, "options": {"noise": noise},
            "preset": experiments.PRESETS["smoke"].stored(), "zero_shot": {"mean": mean}}


def test_summarise_groups_seeds_of_one_setting():
    records = experiments.Records.load([record(0, 0.5, [0, 0]), record(1, 0.7, [0, 0]),
                                        record(0, 0.1, [0.5, 0])])
    rows = records.summarise()
    row = rows.one(noise=(0, 0))  # a record read from JSON matches Python's tuples
    assert row.seeds == (0, 1) and row.values["mean"] == (0.5, 0.7)
    assert math.isclose(row["mean"][0], 0.6) and math.isclose(row["mean"][1], 0.02 ** 0.5)  # sample std
    assert rows.one(noise=[0.5, 0])["mean"] == (0.1, 0.0)
    with pytest.raises(LookupError, match="2 rows match"):
        rows.one(method="clip")
    with pytest.raises(KeyError, match="no field \\['colour'\\]"):
        records.where(colour="red")
    assert len(records.where(seed=0)) == 2 and records.where(method="declip") == ()
    assert experiments.Records.load({"runs": [r.to_json() for r in records]}) == records  # a --summary file


def test_report_maths_by_hand():
    assert math.isclose(report.pairs_to_reach([100, 1000], [0.2, 0.4], 0.3), 100 * 10 ** 0.5)
    assert report.pairs_to_reach([100, 1000], [0.2, 0.4], 0.5) is None
    assert report.at_equal_time([10, 20], [0.5, 0.7], 15) == pytest.approx(0.6)
    assert report.recovered(clean=0.8, noisy=0.4, filtered=0.7) == pytest.approx(0.75)
    # batch k of a 3-step epoch is trained by steps 3e + k + 1; the first epoch is left out
    history = [{"step": s, "rate": 10 * ((s - 1) % 3) + s / 100} for s in range(1, 13)]
    assert report.epoch_phase_means(history, "rate", 3) == pytest.approx({0: 0.07, 1: 10.08, 2: 20.09})
    assert report.epoch_phase_means(history[:3], "rate", 3) == {}  # shorter than an epoch


def test_every_grid_is_well_formed_at_every_scale():
    for scale in grids.SCALES:
        for name in grids.GRIDS:
            configs = grids.grid(name, scale)
            names = [c.name for c in configs]
            assert configs and len(set(names)) == len(names), (scale, name)  # no run listed twice
    config = grids.grid("ablation", "gpu")[0]
    assert pickle.loads(pickle.dumps(config)) == config  # configs travel to worker processes


def test_step_seconds_times_the_steps_it_is_asked_to_even_with_a_preset_steps_override(monkeypatch):
    calls = []
    monkeypatch.setattr(Trainer, "train_step", lambda self: calls.append(1))
    assert experiments.step_seconds("clip", "smoke", timed_steps=3, warmup_steps=2, device="cpu", **TINY) >= 0
    assert len(calls) == 5  # TINY's steps=2 is the run's length, not the timing's


def test_the_cli_imports_its_module_once():
    """``import declip_lite`` must not load ``experiments``, or ``python -m`` warns and runs it twice."""
    command = [sys.executable, "-W", "error::RuntimeWarning", "-m", "declip_lite.experiments", "--help"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--preset" in done.stdout, done.stderr



def summary(values, seeds=(0, 1, 2)):
    return experiments.Records.load([record(s, v, [0, 0]) for s, v in zip(seeds, values)]).summarise()[0]


ISSUE_13 = {"clip": (0.624, 0.624, 0.587), "declip": (0.684, 0.679, 0.605), "clip+mvs": (0.679, 0.686, 0.642)}


@pytest.mark.parametrize("method, paired, welch", [("declip", (-0.013, 0.101), (-0.048, 0.136)),
                                                   ("clip+mvs", (0.049, 0.066), (0.007, 0.108))])
def test_a_comparison_is_paired_over_shared_seeds_and_welch_otherwise_as_scipy_computes(method, paired,
                                                                                         welch):
    from scipy import stats
    clip, other = ISSUE_13["clip"], ISSUE_13[method]
    same = report.compare(summary(clip), summary(other))
    ref = stats.ttest_rel(other, clip).confidence_interval(0.95)
    assert (same.kind == "paired" and same.low == pytest.approx(ref.low)
            and same.high == pytest.approx(ref.high))
    assert (same.low, same.high) == pytest.approx(paired, abs=0.005)  # the issue's, from unrounded accuracies
    # other seeds: other data and tasks
    apart = report.compare(summary(clip), summary(other, seeds=(3, 4, 5)))
    ref = stats.ttest_ind(other, clip, equal_var=False).confidence_interval(0.95)
    assert (apart.kind == "Welch" and apart.low == pytest.approx(ref.low)
            and apart.high == pytest.approx(ref.high))
    assert (apart.low, apart.high) == pytest.approx(welch, abs=0.005)
    assert same.difference == pytest.approx(sum(other) / 3 - sum(clip) / 3)


def test_the_verdict_follows_the_interval_and_the_papers_direction():
    clip, mvs, declip = (summary(ISSUE_13[m]) for m in ("clip", "clip+mvs", "declip"))
    assert report.compare(clip, mvs).verdict == "reproduced"
    assert report.compare(clip, declip).verdict == "inconclusive"
    assert report.compare(mvs, clip).verdict == "opposite"
    assert report.compare(mvs, clip, expect=-1).verdict == "reproduced"  # the paper says worse, and it is
    one_seed = report.compare(summary([0.5], seeds=(0,)), summary([0.9], seeds=(0,)))
    assert one_seed.verdict == "inconclusive" and one_seed.low == -math.inf  # one seed decides nothing
    assert ("reproduced" in str(report.compare(clip, mvs))
            and "paired, 3 seeds" in str(report.compare(clip, mvs)))


def test_a_record_reports_its_training_time(tmp_path):
    run = experiments.train("clip", "smoke", 0, runs_dir=str(tmp_path), device="cpu", progress=False, **TINY)
    assert run.record.train_seconds > 0 and run.record.train_seconds == run.trainer.train_seconds


def test_step_cost_counts_every_parameter_and_the_adamw_state_they_keep():
    clip, declip = (experiments.step_cost(m, "smoke", timed_steps=1, warmup_steps=0, device="cpu", **TINY)
                    for m in ("clip", "declip"))
    run = experiments.build("declip", "smoke", 0, device="cpu", **TINY)
    assert declip["parameters"] == sum(p.numel() for m in (run.model, run.objective) for p in m.parameters())
    assert declip["parameters"] > clip["parameters"] and declip["peak_mb"] is None  # heads; no CUDA here
    # weights, gradients, two moments in float32
    assert declip["state_mb"] == declip["parameters"] * 16 / 2**20


def test_a_record_is_the_same_whatever_jobs_and_the_callers_threads(tmp_path, monkeypatch):
    from declip_lite.runs import reproduce

    configs = [experiments.RunConfig.of(m, "smoke", 0, **{**TINY, "steps": 8}) for m in ("clip", "declip")]
    monkeypatch.setattr(reproduce, "plan", lambda scale: configs)
    monkeypatch.setattr(grids, "model_runs", lambda scale: [])
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # a caller's threads, as a shell or `make run` gives them; the workers have one
    try:
        alone = reproduce.reproduce("smoke", str(tmp_path / "out1"), str(tmp_path / "runs1"), jobs=1)
    finally:
        torch.set_num_threads(before)
    pooled = reproduce.reproduce("smoke", str(tmp_path / "out2"), str(tmp_path / "runs2"), jobs=2)
    same = lambda r: {k: v for k, v in r.to_json().items() if not k.endswith("_seconds")}  # noqa: E731
    assert [same(r) for r in alone] == [same(r) for r in pooled]
    assert {r.threads for r in alone + pooled} == {1}


def test_the_analysis_reuses_the_final_evaluation_only_while_the_weights_are_those_it_saw():
    from declip_lite.runs import analysis

    run = experiments.build("declip", "smoke", 0, device="cpu", **TINY)
    run.trainer.fit(progress=False)
    evaluator = run.trainer.evaluator
    assert evaluator.last(run.model) is not None
    reused, reused_metrics = analysis.analyse(run), run.task_metrics
    run.trainer.evaluator = None  # the analysis encodes the tasks itself
    assert analysis.analyse(run) == reused and run.task_metrics == reused_metrics
    run.trainer.evaluator = evaluator
    run.trainer.train_step()
    assert evaluator.last(run.model) is None  # a step later, nothing is reused
    with torch.no_grad():  # nor after weights change outside the Trainer (a lesson's own loop)
        run.trainer.evaluate()
        next(run.model.parameters()).add_(1e-3)
    assert evaluator.last(run.model) is None
