"""``make reproduce SCALE=smoke``: every run of the scale trained once, in parallel, into
results/smoke/ (records with thinned histories, a summary with verdicts); rerun, nothing trains."""
import json
import pathlib
import subprocess

import pytest

from declip_lite.runs import pool, reproduce

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.timeout(600)
def test_make_reproduce_smoke_writes_every_record_and_resumes_without_training(tmp_path, monkeypatch):
    out, runs = tmp_path / "results", tmp_path / "runs"
    done = subprocess.run(["make", "-s", "reproduce", "SCALE=smoke", "JOBS=2",
                           f"REPRODUCE_ARGS=--out {out} --runs-dir {runs}"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    configs = reproduce.plan("smoke")
    total = len(set(configs) | {c.scorer for c in configs if c.scorer is not None})
    lines = [line for line in done.stdout.splitlines() if line.startswith("[")]
    assert len(lines) == total and lines[-1].startswith(f"[{total:3d}/{total}]")  # one line per finished run
    records = sorted((out / "smoke" / "records").glob("*.json"))
    assert {p.stem for p in records} >= {c.name for c in configs} and len(records) == total
    assert all(len(json.loads(p.read_text())["history"]) <= reproduce.HISTORY_POINTS for p in records)
    summary = json.loads((out / "smoke" / "summary.json").read_text())
    assert summary["runs"] == len(configs) and summary["commit"] and "1 threads" in summary["hardware"]
    assert set(summary["headline"]) == {"declip", "clip+mvs"}
    assert all(h["verdict"] == "inconclusive" and h["low"] is None for h in summary["headline"].values())  # 1 seed
    monkeypatch.setattr(pool, "train", lambda *a, **k: pytest.fail("a finished run was trained again"))
    assert len(reproduce.reproduce("smoke", str(out), str(runs))) == len(configs)


def test_a_thinned_history_keeps_its_ends_and_at_most_the_points_asked():
    history = [{"step": i} for i in range(1, 1001)]
    kept = reproduce.thinned(history, 200)
    assert len(kept) == 200 and kept[0]["step"] == 1 and kept[-1]["step"] == 1000
    assert reproduce.thinned(history[:50], 200) == history[:50]
