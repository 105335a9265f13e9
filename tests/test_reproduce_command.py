"""``make reproduce SCALE=smoke``: every run of the scale trained once, in parallel, into
results/smoke/ (records with thinned histories, a summary with verdicts); rerun, nothing trains."""
import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from declip_lite import evaluate_tasks, experiments, grids
from declip_lite import notebook
from declip_lite.notebook import ParameterError
from declip_lite.runs import grouped, pool, reproduce, shipped
from test_runs import TINY

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.timeout(600)
def test_the_gpu_check_runs_at_smoke_scale_on_a_cpu_and_brings_back_eight_files(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path / "out"), "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": "",
           "BUDGET": "0"}  # reproduce's plumbing and summary without training (make reproduce's test trains)
    done = subprocess.run(["bash", "bench/gpu_check.sh"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["bench_cpu.json", "gpu_check.log", "monitor.csv", "notebooks.tgz",
                     "notebooks_default.json", "notebooks_smoke.json", "parity.log", "results.tgz"]
    bench = json.loads((tmp_path / "out" / "bench_cpu.json").read_text())
    assert bench["methods"]["clip"]["eager_ops"] > bench["methods"]["clip"]["graph_host_ops_projected"] > 0
    assert bench["group_streams"]["sequence_ms"] > 0 and bench["group_streams"]["streams_ms"] > 0  # no error
    # the suite's one smoke run of notebook 00 (test_notebooks.IN_GPU_CHECK)
    assert (json.loads((tmp_path / "out" / "notebooks_smoke.json").read_text())
            ["notebooks"]["00_the_data"]["outcome"] == "ok")
    listing = subprocess.run(["tar", "-tzf", str(tmp_path / "out" / "results.tgz")], capture_output=True,
                             text=True)
    assert "./smoke/summary.json" in listing.stdout.split()
    assert "reproduce --scale smoke" in (tmp_path / "out" / "gpu_check.log").read_text()


@pytest.mark.timeout(600)
def test_make_reproduce_smoke_writes_every_record_and_resumes_without_training(tmp_path, monkeypatch,
                                                                                shared_runs):
    out, runs = tmp_path / "results", shared_runs  # the notebooks' smoke tests train many of these runs too
    # runs of one signature: one step
    done = subprocess.run(["make", "-s", "reproduce", "SCALE=smoke", "JOBS=2",
                           f"REPRODUCE_ARGS=--out {out} --runs-dir {runs} --group on"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "groups of" in done.stdout.splitlines()[0]  # the plan, printed before training
    configs = reproduce.plan("smoke")
    total = len(set(configs) | {c.scorer for c in configs if c.scorer is not None})
    lines = [line for line in done.stdout.splitlines() if line.startswith("[")]
    assert len(lines) == total and lines[-1].startswith(f"[{total:3d}/{total}]")  # one line per finished run
    records = sorted((out / "smoke" / "records").glob("*.json"))
    assert {p.stem for p in records} >= {c.name for c in configs} and len(records) == total
    assert all(len(json.loads(p.read_text())["history"]) <= reproduce.HISTORY_POINTS for p in records)
    check_groups_train_as_runs_alone({p.stem: json.loads(p.read_text()) for p in records}, configs, tmp_path)
    summary = json.loads((out / "smoke" / "summary.json").read_text())
    assert (summary["runs"] == summary["planned"] == total and summary["commit"]
            and "1 threads" in summary["hardware"])
    assert summary["total_seconds"] > summary["train_seconds"] > 0  # the work around the runs is visible
    assert set(summary["headline"]) == {"declip", "clip+mvs"}
    # 1 seed
    assert all(h["verdict"] == "inconclusive" and h["low"] is None for h in summary["headline"].values())
    # a finished reproduction is one the notebooks read
    assert shipped.complete(str(out / "smoke")) == summary
    monkeypatch.setattr(pool, "train", lambda *a, **k: pytest.fail("a finished run was trained again"))
    assert len(reproduce.reproduce("smoke", str(out), str(runs))) == len(configs)
    check_shipped_results_give_what_training_gave(out, runs)


def check_groups_train_as_runs_alone(records, configs, tmp_path):
    """Every record says its group's size. Two runs of one step signature, trained as a group in a
    folder of their own (the shared one may hold them already, trained alone by a notebook's test),
    score as each trained alone, within float32's drift."""
    assert all(r["group_size"] >= 1 for r in records.values())
    pair = next(g for g in grouped.plan(configs) if len(g) > 1)[:2]
    together = pool.run_grid(pair, str(tmp_path / "together"), "cpu", group="on", progress=False)
    alone = pool.run_grid(pair, str(tmp_path / "alone"), "cpu", group="off", progress=False)
    assert [r.group_size for r in together] == [2, 2] and [r.group_size for r in alone] == [1, 1]
    for a, b in zip(together, alone):
        assert abs(a.zero_shot_own["mean"] - b.zero_shot_own["mean"]) <= 0.05, a.name


def check_shipped_results_give_what_training_gave(out, runs):
    """What a notebook reads with RESULTS="auto": the same records, and models that score as trained."""
    folder = str(out / "smoke")
    ablation = grids.grid("ablation", "smoke")
    assert shipped.records(ablation, folder, None) == pool.run_grid(ablation, str(runs), "cpu")
    one_each = {c.method: c for c in reversed(grids.model_runs("smoke"))}  # one shipped run per objective
    for config in one_each.values():
        run = shipped.train(config, runs_dir=None, device="cpu", shipped_from=folder)
        scores = evaluate_tasks(run.model, run.tokenizer, run.tasks)
        assert abs(scores["mean"] - run.record.zero_shot["mean"]) < 0.05, config.name  # bf16 weights
        assert run.trainer.evals == run.record.evals and run.trainer.step == config.train.steps
        assert run.trainer.history == json.loads((out / "smoke" / "records"
                                                  / f"{config.name}.json").read_text())["history"]
    live = shipped.train(grids.model_runs("smoke")[0], runs_dir=None, device="cpu", shipped_from=folder,
                         live_steps=3)
    assert [r["step"] for r in live.live_history] == [1, 2, 3] and live.trainer.history[-1]["step"] > 3
    unshipped = grids.spec("clip", grids.SCALES["smoke"], 7)  # what the folder lacks trains here, and says so
    trained = shipped.train(unshipped, runs_dir=str(runs), device="cpu", shipped_from=folder)
    assert trained.trainer.step == unshipped.train.steps and trained.record.name == unshipped.name
    (record,) = shipped.records([unshipped], folder, str(runs))  # read from the cache the line above filled
    assert record == trained.record


def test_the_committed_checkpoints_stay_under_20_mb_and_cover_every_run_a_notebook_draws():
    weights = list((ROOT / "results").glob("*/weights/*.pt"))
    assert sum(p.stat().st_size for p in weights) < 20e6
    assert {p.stem for p in weights} >= {c.name for c in grids.model_runs("cpu")}


def ship(folder, runs=3, planned=3, records=(), weights=()):
    """A shipped reproduction in ``folder``: a valid summary, and empty files named as the runs'."""
    for kind, configs, ext in (("records", records, ".json"), ("weights", weights, ".pt")):
        (folder / kind).mkdir(parents=True, exist_ok=True)
        for c in configs:
            (folder / kind / (c.name + ext)).touch()
    (folder / "summary.json").write_text(json.dumps({
        "scale": folder.name, "runs": runs, "planned": planned, "hardware": "CPU (x86_64, 1 threads)",
        "commit": "abcdef1234567", "seconds": 1.0, "headline": {}, "summaries": []}))


def test_a_notebook_reads_shipped_results_only_on_a_cpu_in_full_mode_when_asked(tmp_path, capsys):
    ship(tmp_path / "cpu")
    assert notebook.source("auto", False, "cpu", str(tmp_path)) == str(tmp_path / "cpu")
    assert "shipped results: " in capsys.readouterr().out
    assert notebook.source("train", False, "cpu", str(tmp_path)) is None
    assert notebook.source("auto", True, "cpu", str(tmp_path)) is None  # smoke mode always trains
    assert notebook.source("auto", False, "cpu", str(tmp_path / "nothing")) is None
    with pytest.raises(ParameterError, match="parameter RESULTS must be 'auto' or 'train'"):
        notebook.source("yes", False, "cpu", str(tmp_path))


def test_each_notebook_reads_the_largest_scale_that_holds_what_it_needs_and_trains_only_what_is_missing(
        tmp_path, capsys):
    needs = {s: grids.notebook_needs("07", s) for s in ("cpu", "gpu")}
    ship(tmp_path / "cpu", records=needs["cpu"][0], weights=needs["cpu"][1])
    ship(tmp_path / "gpu", 122, 144, records=needs["gpu"][0])  # every record notebook 07 reads, no weights
    assert notebook.source("auto", False, "cpu", str(tmp_path), notebook="07") == str(tmp_path / "cpu")
    assert notebook.source("auto", False, "cuda", str(tmp_path), notebook="07") == str(tmp_path / "gpu")
    assert ("it lacks 0 of the records and 3 of the models notebook 07 needs, which train here"
            in capsys.readouterr().out)
    assert shipped.lacking(str(tmp_path / "gpu"), "07") == ([], needs["gpu"][1])
    assert shipped.lacking(str(tmp_path / "gpu"), "08")[0]  # notebook 08's grids are not all there
    ship(tmp_path / "gpu", 122, 144, records=needs["gpu"][0], weights=needs["gpu"][1])
    assert notebook.source("auto", False, "cpu", str(tmp_path), notebook="07") == str(tmp_path / "gpu")
    assert notebook.source("auto", False, "cpu", str(tmp_path), notebook="08") == str(tmp_path / "cpu")
    assert notebook.source("auto", False, "cpu", str(tmp_path)) == str(tmp_path / "cpu")  # 01-06: cpu runs
    assert notebook.source("auto", False, "cuda", str(tmp_path)) is None  # 01-06 on a GPU: trained live
    shutil.rmtree(tmp_path / "gpu")
    # nothing to read: train
    assert notebook.source("auto", False, "cuda", str(tmp_path), notebook="07") is None


def test_a_thinned_history_keeps_its_ends_and_at_most_the_points_asked():
    history = [{"step": i} for i in range(1, 1001)]
    kept = reproduce.thinned(history, 200)
    assert len(kept) == 200 and kept[0]["step"] == 1 and kept[-1]["step"] == 1000
    assert reproduce.thinned(history[:50], 200) == history[:50]


def test_the_shipped_gpu_headline_compares_the_ablation_grids_runs_alone():
    """At the gpu scale notebook 01's CLIP run has the grid's pairs and steps but another
    evaluation: it must not count as a fourth seed (it made ``headline`` raise)."""
    from declip_lite.runs import readme

    summary, records = readme.load(str(ROOT / "results" / "gpu"))
    rows = reproduce.small_data_rows(records, "gpu")
    assert ({r.method: r.seeds for r in rows if r.method in grids.LADDER}
            == {m: (0, 1, 2) for m in grids.LADDER})
    assert {m: vars(c) for m, c in reproduce.headline(records, "gpu").items()} == summary["headline"]


def test_the_shipped_records_are_named_by_the_configs_their_scale_plans():
    """The run name hashes the flat settings records have always stored, rebuilt from the sections:
    every shipped record is found under the name its configuration computes today."""
    for scale in ("cpu", "gpu"):
        configs = reproduce.plan(scale)
        names = {c.name for c in configs} | {c.scorer.name for c in configs if c.scorer is not None}
        records = (ROOT / "results" / scale / "records").glob("*.json")
        stored = {json.loads(p.read_text())["name"] for p in records}
        assert stored and stored <= names, scale


def test_reproduce_resumes_from_its_output_folder_where_its_runs_are_gone(tmp_path, monkeypatch, capsys):
    configs = grids.grid("ablation", "smoke")[:2]
    monkeypatch.setattr(reproduce, "plan", lambda scale: configs)
    monkeypatch.setattr(grids, "model_runs", lambda scale: configs[:1])
    out, runs = tmp_path / "out", tmp_path / "runs"
    first = reproduce.reproduce("smoke", str(out), str(runs))
    shutil.rmtree(runs)  # another machine, with only the committed output folder
    (out / "smoke" / "records" / f"{configs[1].name}.json").write_text('{"name": 3}')  # damaged: made again
    capsys.readouterr()
    again = reproduce.reproduce("smoke", str(out), str(runs))
    said = capsys.readouterr().out
    assert "1 of 2 runs already in" in said and f"{configs[1].name}.json: " in said
    assert sorted(p.name for p in runs.glob("*.pt")) == [f"{configs[1].name}.pt"]  # the damaged one only
    drop = lambda r: {k: v for k, v in r.to_json().items() if not k.endswith("_seconds")}  # noqa: E731
    assert [drop(r) for r in again] == [drop(r) for r in first]
    assert json.loads((out / "smoke" / "summary.json").read_text())["runs"] == 2


def test_a_notebook_reads_its_run_at_every_seed_shipped_and_trains_none(tmp_path, monkeypatch):
    cpu = dataclasses.replace(grids.SCALES["cpu"], notebook_seeds=(0, 1, 2))
    monkeypatch.setitem(grids.SCALES, "cpu", cpu)
    config = experiments.RunConfig.of("clip", "smoke", 0, **TINY)
    run = experiments.train(config, runs_dir=str(tmp_path / "runs"), progress=False)
    ship(tmp_path / "cpu")
    seed_1 = dataclasses.replace(config, seed=1)  # seed 2 is not shipped
    (tmp_path / "cpu" / "records" / f"{seed_1.name}.json").write_text(
        json.dumps({**run.record.to_json(), "name": seed_1.name, "seed": 1}))
    monkeypatch.setattr(pool, "train", lambda *a, **k: pytest.fail("a notebook trained a seed it only reads"))
    row = shipped.over_seeds(run, str(tmp_path / "cpu")).summarise().one()
    assert row.seeds == (0, 1) and row.values["mean"] == (run.record.zero_shot["mean"],) * 2
    assert shipped.over_seeds(run, None).summarise().one().seeds == (0,)  # smoke mode: its own run only
