"""The run layer takes any registered objective: an instructor's own loss, defined in this file
alone, trains, caches and summarises through ``experiments.train``, the CLI and a grid; the
README's API example and "your own objective" section run as written."""
import json
import math
import pathlib
import re
import sys

import pytest
import torch
import torch.nn.functional as F

from declip_lite import Objective, experiments, grids, register
from declip_lite.objectives import objective_names

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = dict(pairs=64, batch_size=16, steps=3, warmup=1, eval_n=16)


@register("siglip")
class SigLIP(Objective):
    """The sigmoid loss (Zhai et al. 2023): one binary match / no-match term per image-text pair."""
    run_defaults = {"model.logit_scale_init": math.log(10), "train.logit_scale_clamp": (0.0, math.log(100))}

    def __init__(self, bias=-10.0):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.tensor(bias))

    @classmethod
    def build(cls, config, vocab_size, bias=-10.0):
        return cls(bias)

    def forward(self, enc):
        i, t = (F.normalize(e, dim=-1) for e in (enc["image"][0]["embed"], enc["text"]["caption"]["embed"]))
        logits = enc["scale"] * i @ t.T + self.bias
        labels = 2 * torch.eye(len(i), device=i.device) - 1
        loss = -F.logsigmoid(labels * logits).sum() / len(i)
        return {"loss": loss, "siglip": loss.detach()}


def test_an_objective_defined_in_a_test_file_trains_caches_and_summarises(tmp_path, capsys):
    assert "siglip" in objective_names()
    run = experiments.train("siglip", "smoke", 0, runs_dir=str(tmp_path), device="cpu", progress=False,
                            objective_options={"bias": -5.0}, **TINY)
    assert run.record.method == "siglip" and "siglip" in run.trainer.history[0]
    assert run.objective.bias.requires_grad and run.record.objective == {"bias": -5.0}
    cached = experiments.train("siglip", "smoke", 0, runs_dir=str(tmp_path), device="cpu", progress=False,
                               objective_options={"bias": -5.0}, **TINY)
    assert cached.record == run.record and cached.trainer.step == TINY["steps"]  # read, not retrained

    sets = [f"{k}={v}" for k, v in TINY.items()]
    experiments.main(["siglip", "--preset", "smoke", "--runs-dir", str(tmp_path), "--device", "cpu", "--set",
                      *sets])
    assert re.search(r"^siglip\s", capsys.readouterr().out, re.M)

    scale = grids.Scale("smoke", (0,), (64,), 64, TINY, benchmark_seeds=(0,))
    records = experiments.run_grid(grids.grid("benchmark", scale, methods=["siglip"]), str(tmp_path), "cpu",
                                   progress=False)
    rows = records.summarise()
    assert sorted((r.method, r.encoder) for r in rows) == [("siglip", "rn-tiny"), ("siglip", "vit-tiny")]
    for r in records:  # its own regime, no override: SigLIP's t' = log 10, below CLIP's clamp floor (e^3)
        assert r.options["model"]["logit_scale_init"] == math.log(10)
        history = json.loads((tmp_path / f"{r.name}.history.json").read_text())["history"]
        assert history[-1]["logit_scale"] < math.exp(3.0), history[-1]


def test_an_unknown_objective_option_is_named():
    with pytest.raises(ValueError,
                       match=r"objective\.bais: objective has no field 'bais'; its fields are \['bias'\]"):
        experiments.build("siglip", "smoke", 0, device="cpu", objective_options={"bais": 1.0}, **TINY)
    with pytest.raises(TypeError, match=r"make_objective\('siglip'\): unknown option\(s\) \['bais'\]; "
                                        r"SigLIP takes \['bias'\]"):
        experiments.make_objective("siglip", None, 10, bais=1.0)  # the library's own door names it too


def readme_block(heading):
    """The first python block after ``heading`` in the README."""
    text = (ROOT / "README.md").read_text()
    return re.search(r"```python\n(.*?)```", text[text.index(heading):], re.S).group(1)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("heading", ["## The library in ten lines", "### Runs and records",
                                     "## Your own objective"])
def test_the_readme_examples_run_as_written(heading, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # they write data/runs/ where they run
    exec(compile(readme_block(heading), f"README.md {heading}", "exec"), {})
    assert (tmp_path / "data" / "runs").is_dir()


def test_every_train_config_field_is_reachable_and_names_the_run():
    plain = experiments.build("clip", "smoke", 0, device="cpu", **TINY)
    clipped = experiments.build("clip", "smoke", 0, device="cpu", train_overrides={"grad_clip": 0.5}, **TINY)
    # the reference: none
    assert clipped.trainer.config.grad_clip == 0.5 and plain.trainer.config.grad_clip is None
    assert clipped.name != plain.name and "train" not in plain.options  # older runs keep their names


@pytest.mark.parametrize("setting, message", [
    (["steps=abc"], r"--set steps='abc': steps must be int"),
    (["queue_size=10"],
     r"--set queue_size: data has no field 'queue_size'; it belongs to objective\.queue_size"),
    (["train.pairs=10"], r"--set train\.pairs: train has no field 'pairs'; it belongs to data\.pairs"),
    (["objective.exclude_self=1"], r"--set objective\.exclude_self=1: exclude_self must be bool"),
    (["gpu.x=1"], r"--set gpu\.x: no section 'gpu'"),
])
def test_a_misplaced_or_mistyped_setting_is_named(setting, message):
    with pytest.raises(SystemExit, match=message):
        experiments.main(["declip", "--preset", "smoke", "--device", "cpu", "--set", *setting])


def test_cli_settings_reach_their_sections():
    from declip_lite.runs.cli import configured

    settings = {"pairs": 500, "train.grad_clip": 0.25, "train.lr": 5e-4, "model.text_layers": 1,
                "objective.exclude_self": True, "objective.queue_size": 64}
    (config,) = configured([experiments.RunConfig.of("declip", "smoke", 0)], settings)
    assert config.data.pairs == 500 and config.train.lr == 5e-4
    assert config.train_overrides == {"grad_clip": 0.25}
    assert dict(config.model.overrides) == {"text_layers": 1}
    assert dict(config.objective) == {"exclude_self": True, "queue_size": 64}
    assert config == experiments.RunConfig.of("declip", "smoke", 0, pairs=500, lr=5e-4, train_overrides={
        "grad_clip": 0.25}, model_overrides={"text_layers": 1}, objective_options={"exclude_self": True,
                                                                                    "queue_size": 64})
    with pytest.raises(ValueError, match=r"it belongs to objective\.queue_size"):
        experiments.build("declip", "smoke", 0, device="cpu", queue_size=5)  # the Python API names it too


def test_set_reaches_every_run_of_a_grid_and_reproduce_and_renames_them(tmp_path, monkeypatch, capsys):
    from declip_lite.runs import reproduce
    from declip_lite.runs.records import Records

    tiny = ["pairs=64", "batch_size=16", "steps=2", "eval_n=16", "train.lr=0.0005", "objective.queue_size=64"]
    plain = grids.grid("ablation", "smoke")
    experiments.main(["ablation", "--runs-dir", str(tmp_path / "grid"), "--device", "cpu", "--set", *tiny])
    records = Records.load([json.loads(p.read_text()) for p in (tmp_path / "grid").glob("*-*.json")
                            if not p.name.endswith(".history.json")])
    assert len(records) == len(plain) and {r.preset.lr for r in records} == {5e-4}  # read back from records
    assert {r.name for r in records}.isdisjoint(c.name for c in plain)  # never a record trained without it
    assert [r.options.get("objective") for r in records if r.method == "declip"] == [{"queue_size": 64}]
    assert all(r.options.get("objective") is None for r in records if r.method == "clip")  # CLIP has no queue

    monkeypatch.setattr(reproduce, "plan", lambda scale: plain[:2])
    monkeypatch.setattr(grids, "model_runs", lambda scale: [])
    experiments.main(["reproduce", "--scale", "smoke", "--out", str(tmp_path / "out"), "--runs-dir",
                      str(tmp_path / "grid"), "--set", *tiny])  # the grid's runs: read, not trained again
    summary = json.loads((tmp_path / "out" / "smoke" / "summary.json").read_text())
    assert summary["settings"]["train.lr"] == 5e-4 and summary["runs"] == 2
    assert "[  2/2]" in capsys.readouterr().out
    for argv in (["ablation", "--set", "train.nope=1"], ["reproduce", "--set", "objective.nope=1"],
                 ["ablation", "--seeds", "1"]):
        with pytest.raises(SystemExit, match=r"nope|--seeds is for methods") as refused:
            experiments.main(argv)
        assert "Traceback" not in str(refused.value)


def test_the_readmes_generated_results_are_what_their_json_gives():
    from declip_lite.runs import readme
    text = (ROOT / "README.md").read_text()
    kinds = [m.group(2) for m in readme.BLOCK.finditer(text)]
    assert {"results", "bench", "drift"} <= set(kinds)
    assert readme.update(str(ROOT / "README.md"), str(ROOT)) == text, \
        "README.md differs from results/: run `python -m declip_lite.experiments readme`"


def test_the_readmes_h200_paragraph_quotes_its_jsons():
    import json

    text = " ".join((ROOT / "README.md").read_text().split())
    check = json.loads((ROOT / "results" / "checks" / "gpu_check_h200.json").read_text())
    steps = json.loads((ROOT / "results" / "bench" / "bench_gpu.json").read_text())["methods"]
    r, ms = check["reproduce"], lambda m, p: f"{1e3 * steps[m][p + '_s']:.1f} ms"  # noqa: E731
    assert f"{check['parity']['passed']} of the 10 objectives" in text
    assert f"{r['runs_finished']} of {r['planned']} runs in {r['seconds']} s**" in text
    assert f"takes {ms('clip', 'graph')} as a graph, against {ms('clip', 'eager')} eager" in text
    assert (f"({steps['clip']['eager_ops']:,.0f} operators dispatched per eager step, "
            f"{steps['clip']['graph_ops']:,.0f}" in text)
    assert f"DeCLIP takes {ms('declip', 'graph')} against {ms('declip', 'eager')}" in text
    recheck = json.loads((ROOT / "results" / "bench" / "bench_gpu_recheck.json").read_text())
    recheck = recheck["methods"]["slip"]
    assert (f"{1e3 * recheck['graph_s']:.1f} ms as a graph against {1e3 * recheck['eager_s']:.1f} ms eager"
            in text)
    clip = [x["train_seconds"] for x in r["runs"] if x["method"] == "clip" and x["pairs"] == 2000]
    assert f"CLIP's {len(clip)} runs on 2,000 pairs trained in {min(clip):.0f}–{max(clip):.0f} s" in text



def test_the_readmes_cpu_paragraph_quotes_its_records_and_notebook_jsons():
    import json

    from declip_lite import report
    from declip_lite.runs import readme

    text = " ".join((ROOT / "README.md").read_text().split())
    cpu = ROOT / "results" / "cpu"
    signed = lambda x: f"{x:+.3f}".replace("-", "−")  # noqa: E731
    rows = readme.load(str(cpu))[1].summarise()
    ss, declip = (rows.one(method=m, pairs=2000, steps=1200, encoder="rn-tiny")
                  for m in ("clip+mvs+ss", "declip"))
    nns = report.compare(ss, declip)
    assert f"minus CLIP + MVS + SS, {signed(nns.difference)} [{signed(nns.low)}, {signed(nns.high)}]" in text
    found = json.loads((cpu / "notebooks" / "07_cpu.json").read_text())
    assert f"CLIP needs about {found['data_multiple']:.1f}× DeCLIP's pairs" in text
    time, long = found["equal_time"], found["declip_minus_clip_at_long"]
    assert (f"CLIP given {time['ratio']:.1f}× the steps ({long['seeds']} seeds) reaches {time['clip']:.3f} "
            f"against DeCLIP's {time['declip']:.3f}; DeCLIP minus CLIP at twice the steps is "
            f"{long['verdict']}") in text
    ends = found["curve_ends"]
    assert all(c["verdict"] == "inconclusive" for c in ends.values()) == (
        "At either end of the curve DeCLIP minus CLIP is inconclusive" in text)
    quality = json.loads((cpu / "notebooks" / "08_cpu.json").read_text())["data_quality"]
    cost = {k: quality[k]["mean"][0] - quality[k]["mean"][-1] for k in ("swapped", "wrong attribute")}
    assert (f"swapped costs CLIP {cost['swapped']:.2f}, half with a wrong attribute "
            f"{cost['wrong attribute']:.2f}") in text


def test_the_make_run_time_the_readme_quotes_is_the_fresh_clone_run_in_its_json():
    import json

    run = json.loads((ROOT / "results" / "bench" / "notebook_costs.json").read_text())["make_run_fresh_clone"]
    text = " ".join((ROOT / "README.md").read_text().split())
    assert f"`make run` took {run['seconds'] // 60} min {run['seconds'] % 60} s, setup included" in text


def test_every_ci_time_the_readme_quotes_is_a_fresh_clone_run_in_its_json():
    import json

    text = " ".join((ROOT / "README.md").read_text().split())
    runs = json.loads((ROOT / "results" / "checks" / "ci_fresh_clone.json").read_text())["runs"]
    minutes = lambda seconds: f"{seconds // 60} min {seconds % 60} s"  # noqa: E731
    quoted = [r for r in runs if f"`{r['commit']}`" in text]
    assert len(quoted) >= 4  # the Tests paragraph names the commits it times
    for run in quoted:
        assert minutes(run["seconds"]) in text, (run["commit"], minutes(run["seconds"]))
    newest = max(quoted, key=runs.index)
    assert f"passed its {newest['passed']} tests" in text and minutes(newest["test_seconds"]) in text

@register("broken")
class Broken(Objective):
    """An objective whose loss cannot be computed: a run that fails mid-grid."""

    def forward(self, enc):
        raise FloatingPointError("the broken objective always fails")


def test_a_failing_run_does_not_stop_the_others_and_is_named_at_the_end(tmp_path):
    configs = [experiments.RunConfig.of("broken", "smoke", 0, **TINY),
               experiments.RunConfig.of("clip", "smoke", 0, **TINY)]
    finished = []
    with pytest.raises(RuntimeError,
                       match=r"(?s)1 of 2 runs failed .*broken-s0-\w+: FloatingPointError: the broken"):
        experiments.run_grid(configs, str(tmp_path), "cpu", progress=False,
                             on_record=lambda c, r: finished.append(c))
    # the good run is kept
    assert finished == configs[1:] and (tmp_path / (configs[1].name + ".json")).exists()


def test_import_takes_one_module_per_flag_and_leaves_the_names_alone(tmp_path, monkeypatch):
    from declip_lite.runs import cli

    for name in ("plugin_one", "plugin_two"):
        (tmp_path / f"{name}.py").write_text("LOADED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cli.import_plugins(["--import", "plugin_one", "clip", "--import", "plugin_two", "declip"])  # clip: a name
    assert sys.modules["plugin_one"].LOADED and sys.modules["plugin_two"].LOADED


def test_every_results_path_the_readmes_and_notebooks_name_exists_and_results_holds_only_its_folders():
    named = set()
    for path in [ROOT / "README.md", ROOT / "results" / "README.md", *(ROOT / "notebooks").glob("*.ipynb")]:
        named |= set(re.findall(r"results/[\w./-]*\w", path.read_text()))
    # a scale on the command line; smoke is not shipped; next: where results/cpu was trained (its command)
    templates = {"results/SCALE", "results/smoke", "results/next"}
    missing = sorted(p for p in named - templates if not (ROOT / p).exists())
    assert not missing, f"named but not in the repository: {missing}"
    assert len(named) > 20  # the scan finds what it should
    loose = sorted(p.name for p in (ROOT / "results").iterdir() if p.is_file() and p.name != "README.md")
    assert not loose and {p.name for p in (ROOT / "results").iterdir()} == {
        "README.md", "bench", "checks", "cpu", "earlier", "gpu", "reliability"}


def test_every_library_module_fits_in_280_lines():
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "declip_lite").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 280}
    assert not long, f"split these modules (a reader sees a module's idea in a few screens): {long}"
    trainer = len((ROOT / "declip_lite" / "train" / "trainer.py").read_text().splitlines())
    assert trainer <= 150, f"the Trainer is a short loop: {trainer} lines (observers take the rest)"


def test_the_readme_stays_within_30_kb():  # the rest lives in docs/ and results/*/README.md
    assert len((ROOT / "README.md").read_bytes()) <= 30_000


def test_print_shows_a_run_a_section_a_line():
    from declip_lite.runs.config import configure

    settings = {"train.lr": 5e-4, "model.text_layers": 4, "objective.exclude_self": True,
                "train.grad_clip": 0.5}
    config = configure(experiments.RunConfig.of("declip", "cpu", 1), settings)
    lines = str(config).splitlines()
    assert lines[0] == f"{config.name}: declip, seed 1" and [line.split()[0] for line in lines[1:]] == [
        "data", "model", "objective", "train"]
    assert "lr=0.0005" in lines[4] and "text_layers=4" in lines[2] and "exclude_self=True" in lines[3]
    assert str(config) in (ROOT / "README.md").read_text()  # the README shows this very run
