"""Damaged files that still parse: every kind of file the package reads (record, history,
checkpoint, summary, weights), local and shipped, given a wrong type, a missing key or an
impossible value, then read through every path that reads it (``reproduce``, ``experiments.train``,
the results API, a notebook's setup). Each is rebuilt, or named with its file, the fault and a fix
that works when applied."""
import json
import math
import pathlib
import shutil

import pytest
import torch

from declip_lite import experiments, grids, notebook
from declip_lite.checkpoint import DamagedFile
from declip_lite.runs import readme, reproduce, shipped
from test_runs import TINY

ROOT = pathlib.Path(__file__).resolve().parents[1]
DAMAGES = ("wrong type", "missing key", "impossible value")

# per kind of file: the key damaged, a value of the wrong type, an impossible value
JSON_DAMAGE = {
    "record": ("zero_shot", [0.5], {"mean": math.nan}),
    "history": ("history", "none", [{"step": -3, "loss": 1.0}]),
    "summary": ("runs", "12", -1),
}
TORCH_DAMAGE = {
    "checkpoint": ("step", "3", -1),
    "weights": ("model", [1.0], None),  # None: a NaN in the first floating tensor
}


def _damage(data, kind, damage):
    key, wrong, impossible = {**JSON_DAMAGE, **TORCH_DAMAGE}[kind]
    if damage == "missing key":
        del data[key]
    elif damage == "wrong type":
        data[key] = wrong
    elif impossible is None:
        name = next(k for k, v in data[key].items() if v.is_floating_point())
        data[key][name] = torch.full_like(data[key][name], math.nan)
    else:
        data[key] = impossible
    return data


def damage_file(path, kind, damage):
    """Write ``damage`` into the file at ``path``, still a valid JSON or ``.pt`` file."""
    if kind in JSON_DAMAGE:
        path.write_text(json.dumps(_damage(json.loads(path.read_text()), kind, damage)))
    else:
        torch.save(_damage(torch.load(path, weights_only=True), kind, damage), path)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny run's files, and its record."""
    folder = tmp_path_factory.mktemp("finished")
    config = experiments.RunConfig.of("clip", "smoke", 0, **TINY)
    (record,) = experiments.run_grid([config], str(folder), "cpu", progress=False)
    return folder, config, record


def _same(record):
    return {k: v for k, v in record.to_json().items() if not k.endswith("_seconds")}


@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize("kind", ["record", "history"])
def test_a_damaged_local_record_or_history_is_rebuilt_by_train_and_reproduce(tmp_path, finished, kind, damage,
                                                                             monkeypatch, capsys):
    folder, config, first = finished
    shutil.copytree(folder, tmp_path, dirs_exist_ok=True)
    path = tmp_path / f"{config.name}{'.json' if kind == 'record' else '.history.json'}"
    damage_file(path, kind, damage)
    rebuilt = experiments.train(config, runs_dir=str(tmp_path), progress=False).record
    out = capsys.readouterr().out
    assert f"{path.name}: " in out and "rebuilding it from the run's checkpoint" in out
    assert _same(rebuilt) == _same(first)
    damage_file(path, kind, damage)  # and through reproduce (a one-run plan)
    monkeypatch.setattr(reproduce, "plan", lambda scale: [config])
    monkeypatch.setattr(grids, "model_runs", lambda scale: [config])
    (again,) = reproduce.reproduce("smoke", str(tmp_path / "out"), str(tmp_path))
    assert _same(again) == _same(first) and "rebuilding it" in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "smoke" / "summary.json").read_text())["runs"] == 1


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_local_checkpoint_is_named_with_a_fix_that_works(tmp_path, finished, damage, monkeypatch):
    folder, config, first = finished
    shutil.copytree(folder, tmp_path, dirs_exist_ok=True)
    path = tmp_path / f"{config.name}.pt"
    damage_file(path, "checkpoint", damage)
    for read in (lambda: experiments.train(config, runs_dir=str(tmp_path), progress=False),
                 lambda: reproduce.export_weights(str(path), str(tmp_path / "w.pt"))):
        with pytest.raises(DamagedFile, match=rf"{path.name}: .*(step|missing key).*; delete it to retrain"):
            read()
    path.unlink()  # the fix
    assert _same(experiments.train(config, runs_dir=str(tmp_path), progress=False).record) == _same(first)


@pytest.fixture(scope="module")
def shipped_copy(tmp_path_factory):
    """results/cpu reduced to one drawn run (record and weights) and the summary; that run, built."""
    config = grids.model_runs("cpu")[0]
    source, folder = ROOT / "results" / "cpu", tmp_path_factory.mktemp("shipped") / "cpu"
    for part in (f"records/{config.name}.json", f"weights/{config.name}.pt", "summary.json"):
        (folder / part).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / part, folder / part)
    return folder, config, experiments.build(config, device="cpu")


@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize("kind", ["record", "summary", "weights"])
def test_a_damaged_shipped_file_stops_every_reader_naming_it_and_the_fix(shipped_copy, kind, damage):
    folder, config, run = shipped_copy
    path = folder / {"record": f"records/{config.name}.json", "summary": "summary.json",
                     "weights": f"weights/{config.name}.pt"}[kind]
    original = path.read_bytes()
    readers = {  # every path that reads the file: a notebook's setup, the results API, the notebooks' fits
        "summary": [lambda: notebook.source("auto", False, "cpu", str(folder.parent)),
                    lambda: readme.load(str(folder))],
        "record": [lambda: shipped.records([config], str(folder), None), lambda: readme.load(str(folder)),
                   lambda: experiments.Records.load([json.loads(path.read_text())], str(path))],
        "weights": [lambda: shipped.fit(run, None, str(folder))],
    }[kind]
    damage_file(path, kind, damage)
    try:
        for read in readers:
            with pytest.raises(DamagedFile, match=rf"{path.name}.*: (missing key|.* should be) .*"
                                                  rf"(`git checkout results/` restores|rerun the command)"):
                read()
    finally:
        path.write_bytes(original)  # the fix: `git checkout results/`
    assert notebook.source("auto", False, "cpu", str(folder.parent)) == str(folder)
    assert shipped.records([config], str(folder), None)[0].name == config.name
