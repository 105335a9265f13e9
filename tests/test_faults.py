"""Faults, injected: a training process killed between steps and in the checkpoint-write,
final-evaluation and JSON windows; NaN and a loss spike; checkpoints loaded with
``weights_only=True``; a second process on one run; and every bad input the reader must name or
count. Each case asserts the exact outcome. Longer soaks belong in bench/."""
import dataclasses
import io
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time

import numpy as np
import pytest
import torch
from PIL import Image

from declip_lite import experiments, notebook
from declip_lite.data.captioned import BadInput, CaptionedImages, read_csv, read_webdataset
from declip_lite.text.tokenizer import BPETokenizer
from declip_lite.checkpoint import RunLock, save_json
from declip_lite.runs import pool
from declip_lite.train import CHECKPOINT_VERSION
from processes import alive, descendants, default_sigint
from test_real_data import CAPTIONS, _csv, _png
from test_train import tiny_run

ROOT = pathlib.Path(__file__).resolve().parents[1]

def _train(runs_dir, fault, at):
    """Train the 12-step run into ``runs_dir``, SIGKILLed in the ``fault`` window at step ``at``."""
    from declip_lite import train
    from declip_lite.runs import cache

    T = train.Trainer
    die = lambda *args: os.kill(os.getpid(), signal.SIGKILL)  # noqa: E731
    if fault == "step":  # before step `at` is taken
        step = T.train_step
        T.train_step = lambda self: die() if self.step == at else step(self)
    elif fault == "save":  # the checkpoint's .tmp is written, the rename never happens
        save = T.save

        def save_then_die(self, path):
            if self.step == at:
                os.replace = die
            save(self, path)
        T.save = save_then_die
    elif fault == "final_eval":  # inside the last evaluation, after the last periodic checkpoint
        evaluate = T.evaluate
        T.evaluate = lambda self: die() if self.step == at else evaluate(self)
    elif fault == "json":  # after the checkpoint, history and per-task files, before the run's JSON
        save_json = cache.save_json
        cache.save_json = lambda obj, path: die() if ".zero_shot" not in path else save_json(obj, path)
    torch.set_num_threads(1)
    run = experiments.build("clip", "smoke", 0, device="cpu", pairs=64, batch_size=16, steps=12, warmup=2,
                            eval_n=16, eval_every=4)
    run.trainer.config = dataclasses.replace(run.trainer.config, checkpoint_every=4, flush_every=2)
    experiments.fit(run, str(runs_dir), progress=False)


def train_in_a_process(runs_dir, fault="none", at=0):
    """The exit code of a fresh process (forked from the pool's server, torch already imported) that
    trains the run; -9 when the fault killed it."""
    process = pool.worker_context().Process(target=_train, args=(runs_dir, fault, at))
    process.start()
    process.join(120)
    return process.exitcode


def outcome(runs_dir):
    """Everything a finished run leaves, minus wall-clock figures: record, history, per-task files,
    weights."""
    (json_path,) = [p for p in runs_dir.glob("*.json") if not p.name.endswith(".history.json")]
    stem = str(json_path)[:-len(".json")]
    record = json.loads(json_path.read_text())
    for timing in ("train_seconds", "total_seconds", "hardware"):
        record.pop(timing)
    history = json.loads(open(stem + ".history.json").read())
    for row in history["history"]:
        row.pop("pairs_per_s")
    tasks = {p.name: json.loads(p.read_text())
             for p in sorted((runs_dir / (json_path.stem + ".zero_shot")).iterdir())}
    weights = torch.load(stem + ".pt", weights_only=True)["model"]
    return record, history, tasks, weights


KILLS = [("step", 7), ("save", 8), ("step", 11), ("save", 12), ("final_eval", 12), ("json", 0)]


@pytest.mark.timeout(300)
def test_a_run_killed_anywhere_is_finished_by_the_next_call_with_the_same_numbers(tmp_path):
    """One run killed six times in a row, each time in another window, each kill in the call that
    resumed the one before; the call after the last finishes it as an uninterrupted run does."""
    for fault, at in KILLS:  # in the order a run meets them: each resumed call reaches its window
        assert train_in_a_process(tmp_path / "killed", fault, at) == -9, (fault, at)  # it really died there
    assert train_in_a_process(tmp_path / "killed") == 0
    assert train_in_a_process(tmp_path / "uninterrupted") == 0
    record, history, tasks, weights = outcome(tmp_path / "killed")
    expected = outcome(tmp_path / "uninterrupted")
    assert record == expected[0] and history == expected[1] and tasks == expected[2]
    assert weights.keys() == expected[3].keys() and all(torch.equal(weights[k], expected[3][k])
                                                        for k in weights)
    assert record["zero_shot"]["mean"] is not None and record["evals"][-1]["step"] == 12


def _spiked_once_at_step_30():
    """A 40-step run whose loss is multiplied by 1e4 once, at step 30 (flushed every 5 steps)."""
    run = tiny_run(steps=40)
    run.trainer.config = dataclasses.replace(run.trainer.config, flush_every=5)
    forward, armed = run.objective.forward, [True]

    def spike_once_at_step_30(enc):
        out = forward(enc)
        if armed[0] and run.trainer.step == 29:
            armed[0] = False
            out = {**out, "loss": out["loss"] * 1e4}
        return out

    run.objective.forward = spike_once_at_step_30
    return run


def test_a_spike_is_undone_with_a_lower_learning_rate_and_logged():
    run = _spiked_once_at_step_30()
    run.trainer.fit(progress=False)
    (event,) = run.trainer.recoveries
    assert (event["kind"] == "spike" and event["step"] == 30 and event["resumed_from"] == 25
            and event["lr_scale"] == 0.5)
    assert [h["step"] for h in run.trainer.history] == list(range(1, 41))
    assert max(h["loss"] for h in run.trainer.history) < 50  # the spike is not in the history
    T, lr = run.trainer, run.trainer.config.lr
    assert [h["lr"] for h in T.history[24:26]] == pytest.approx([lr * T.schedule(24),
                                                                 0.5 * lr * T.schedule(25)])
    assert T.optimizer.param_groups[0]["lr"] == pytest.approx(0.5 * lr * T.schedule(39))


def test_a_nan_that_recovery_cannot_fix_stops_naming_the_first_bad_step():
    run = tiny_run(steps=5)
    with torch.no_grad():
        run.model.text.proj.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match=r"nan at step 1; 3 recoveries"):
        run.trainer.fit(progress=False)


def test_a_second_process_on_a_run_waits_for_the_holder_then_reads_its_record(tmp_path, capsys):
    import threading

    finished = experiments.fit(tiny_run(steps=2), str(tmp_path), progress=False)
    run = tiny_run(steps=2)
    record = json.loads((tmp_path / f"{run.name}.json").read_text())
    # what a second `reproduce` meets while the first trains
    lock = RunLock(str(tmp_path / run.name)).__enter__()
    threading.Timer(1.0, lock.__exit__).start()
    waited = experiments.fit(run, str(tmp_path), progress=False)  # blocks until the holder lets go
    assert f"this run is being trained by pid {os.getpid()}" in capsys.readouterr().out
    assert waited.record.to_json() == record == finished.record.to_json() and waited.trainer.step == 2


def test_special_token_text_in_a_caption_never_becomes_a_special_id():
    tok = BPETokenizer.train(CAPTIONS * 5 + ["a <b> c"], vocab_size=80, context_length=16)
    ids = tok.encode(["a red <eot> circle", "<pad> <mask> <sot> <unk>"])
    for row in ids.tolist():
        eot = row.index(tok.eot_id)
        assert row[0] == tok.sot_id and eot > 3, row  # the framing EOT, after the caption's own "<eot>"
        assert not {tok.pad_id, tok.sot_id, tok.mask_id} & set(row[1:eot]), row
        assert set(row[eot + 1:]) <= {tok.pad_id}


def test_a_truncated_tar_shard_is_an_error_or_a_counted_skip(tmp_path):
    shard = tmp_path / "shard.tar"
    with tarfile.open(shard, "w") as tar:
        for key in range(9):
            png = io.BytesIO()
            Image.new("RGB", (8, 8), (20 * key, 100, 100)).save(png, format="PNG")
            for name, payload in ((f"{key:03d}.png", png.getvalue()),
                                  (f"{key:03d}.txt", CAPTIONS[key % 4].encode())):
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    data = shard.read_bytes()
    shard.write_bytes(data[:int(0.6 * len(data))])  # a copy that stopped at 60 %
    records = read_webdataset(str(shard))
    with pytest.raises(BadInput, match=r"shard\.tar: truncated tar shard"):
        CaptionedImages(records, 8)
    loaded = CaptionedImages(records, 8, on_error="skip", max_skip_rate=0.5)
    assert loaded.report["skipped"] >= 1 and any("truncated" in p for p in loaded.report["problems"])
    assert len(loaded) == len(records) - loaded.report["skipped"] < 9


def test_every_checkpoint_loads_with_weights_only(tmp_path):
    path = str(tmp_path / "run.pt")
    run = tiny_run("declip", steps=2)
    run.trainer.fit(checkpoint=path, progress=False)
    state = torch.load(path, weights_only=True)  # no pickled code: numpy and Python RNG states are plain data
    assert state["step"] == 2 and state["version"] == CHECKPOINT_VERSION
    assert tiny_run("declip", steps=2).trainer.load(path).step == 2


def test_resume_restores_every_rng_exactly(tmp_path):
    import random

    import numpy as np

    from declip_lite.checkpoint import rng_state, set_rng_state
    saved = rng_state()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.rand(5), np.random.rand(5), random.random()
    path = tmp_path / "rng.pt"
    torch.save(saved, path)
    set_rng_state(torch.load(path, weights_only=True))
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1]) and got[2] == expected[2]


def test_a_checkpoint_of_another_objective_is_refused_naming_the_file(tmp_path):
    path = str(tmp_path / "clip.pt")
    tiny_run("clip", steps=1).trainer.fit(checkpoint=path, progress=False)
    with pytest.raises(ValueError, match=r"clip\.pt.*does not fit this run's model and DeCLIP objective"):
        tiny_run("declip", steps=1).trainer.load(path)


def test_the_nan_message_names_the_step_that_went_nan_not_the_next_flush():
    run = tiny_run(steps=5)
    run.trainer.config = dataclasses.replace(run.trainer.config, flush_every=25)
    with torch.no_grad():
        run.model.text.proj.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="at step 1;"):
        run.trainer.fit(progress=False)


def test_a_checkpoint_is_fsynced_with_its_folder(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync",
                        lambda fd: synced.append(os.path.realpath(f"/proc/self/fd/{fd}")) or real(fd))
    path = tmp_path / "run.pt"
    tiny_run(steps=1).trainer.save(str(path))
    assert str(tmp_path / "run.pt.tmp") in synced and str(tmp_path) in synced


def test_a_csv_with_a_byte_order_mark_reads_its_first_column(tmp_path):
    path = _csv(tmp_path, [(_png(str(tmp_path / "a.png")), "a red square")])
    with open(path, "rb") as f:
        body = f.read()
    with open(path, "wb") as f:
        f.write(b"\xef\xbb\xbf" + body)  # what Excel writes
    assert [r.caption for r in read_csv(path)] == ["a red square"]


def test_an_empty_csv_says_it_is_empty(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(BadInput, match=r"empty\.csv: the file is empty"):
        read_csv(str(tmp_path / "empty.csv"))
    with pytest.raises(BadInput, match="no records to load"):
        CaptionedImages([], 16)


def test_a_non_utf8_caption_in_a_csv_fails_its_own_row(tmp_path):
    names = [_png(str(tmp_path / f"{i}.png")) for i in range(10)]
    path = tmp_path / "data.csv"
    rows = [b"filepath,title"] + [f"{n},a red square".encode() for n in names]
    rows[4] = f"{names[3]},caf".encode() + b"\xe9 au lait"  # row 5: Latin-1, not UTF-8
    path.write_bytes(b"\n".join(rows) + b"\n")
    records = read_csv(str(path))
    with pytest.raises(BadInput, match=r"data\.csv row 5: caption is not UTF-8"):
        CaptionedImages(records, 16)
    data = CaptionedImages(records, 16, on_error="skip", max_skip_rate=0.2)
    assert len(data) == 9 and data.report["skipped"] == 1 and "row 5" in data.report["problems"][0]


def test_16_bit_images_are_scaled_by_their_bit_depth_not_their_maximum(tmp_path):
    Image.fromarray(np.full((12, 12), 32768, dtype=np.uint16)).save(tmp_path / "grey.png")  # mid-grey
    data = CaptionedImages(read_csv(_csv(tmp_path, [("grey.png", "a grey square")])), 8)
    assert 126 <= data.pixels.float().mean() <= 129


def test_a_spike_is_ten_times_the_median_and_a_nat_above_it():
    from declip_lite.recovery import first_crash
    rows = lambda losses, start=0: [{"step": start + i, "loss": v} for i, v in enumerate(losses)]  # noqa: E731
    memorising = rows([0.003] * 50)
    assert first_crash(rows([0.039], 50), memorising, 10.0) is None  # 13x the median, but 0.04 nats
    assert first_crash(rows([0.039, 1.2], 50), memorising, 10.0).step == 51
    learning = rows([2.0] * 50)
    assert first_crash(rows([2.9, 19.0], 50), learning, 10.0) is None  # 9.5x: not yet
    assert first_crash(rows([21.0], 50), learning, 10.0).kind == "spike"
    assert first_crash(rows([float("nan")], 50), memorising, 0).kind == "nan"  # spike_factor 0: NaN only


# ----- what a fault leaves behind: damaged files, orphans, neighbours, recoveries, parameters -----

def _truncate(path, keep=0.5):
    data = pathlib.Path(path).read_bytes()
    pathlib.Path(path).write_bytes(data[:int(keep * len(data))])


def test_damaged_shipped_results_name_the_file_and_the_fix(tmp_path):
    from declip_lite import grids
    from declip_lite.checkpoint import DamagedFile
    from declip_lite.runs import readme, shipped

    shipped_dir, config = tmp_path / "results", grids.model_runs("cpu")[0]
    shutil.copytree(ROOT / "results" / "cpu", shipped_dir / "cpu",
                    ignore=shutil.ignore_patterns("figures", "notebooks"))
    record, weights = (shipped_dir / "cpu" / "records" / f"{config.name}.json",
                       shipped_dir / "cpu" / "weights" / f"{config.name}.pt")
    for damaged in (record, weights, shipped_dir / "cpu" / "summary.json"):
        _truncate(damaged)
    fix = r"`git checkout results/` restores.*`make reproduce SCALE=cpu`"
    with pytest.raises(DamagedFile, match=rf"summary\.json: damaged JSON \(.*\); {fix}"):
        notebook.source("auto", False, "cpu", str(shipped_dir))
    with pytest.raises(DamagedFile, match=r"summary\.json: damaged JSON"):
        readme.results_block(str(shipped_dir / "cpu"))
    with pytest.raises(DamagedFile, match=rf"{config.name}\.json: damaged JSON \(.*\); {fix}"):
        shipped.records([config], str(shipped_dir / "cpu"), None)
    (record.parent / "ok.json").write_bytes((ROOT / "results" / "cpu" / "records"
                                             / f"{config.name}.json").read_bytes())
    record.unlink()
    (record.parent / "ok.json").rename(record)
    with pytest.raises(DamagedFile,
                       match=rf"{config.name}\.pt: damaged file, truncated or corrupt .*; {fix}") as e:
        shipped.fit(experiments.build(config, device="cpu"), None, str(shipped_dir / "cpu"))
    assert "weights_only" not in str(e.value)


def test_a_damaged_local_record_is_rebuilt_from_the_checkpoint(tmp_path, capsys, monkeypatch):
    from declip_lite.runs.pool import run_grid
    from declip_lite.train import Trainer

    config = tiny_run(steps=3).config
    (first,) = run_grid([config], str(tmp_path), "cpu")
    path = tmp_path / f"{config.name}.json"
    monkeypatch.setattr(Trainer, "train_step", lambda self: pytest.fail("a finished run was trained again"))
    for damage in (lambda: _truncate(path), lambda: path.write_text("")):
        damage()
        (rebuilt,) = run_grid([config], str(tmp_path), "cpu")
        out = capsys.readouterr().out
        assert f"{config.name}.json: damaged JSON" in out and "rebuilding it from the run's checkpoint" in out
        same = lambda r: {k: v for k, v in r.to_json().items() if not k.endswith("_seconds")}  # noqa: E731
        assert same(rebuilt) == same(first) and json.loads(path.read_text())["name"] == config.name
        assert rebuilt.train_seconds == first.train_seconds  # the checkpoint's


def test_every_json_the_package_writes_is_fsynced_with_its_folder(tmp_path, monkeypatch):
    from declip_lite.checkpoint import save_json

    synced, real = [], os.fsync
    monkeypatch.setattr(os, "fsync",
                        lambda fd: synced.append(os.path.realpath(f"/proc/self/fd/{fd}")) or real(fd))
    save_json({"a": 1}, str(tmp_path / "r.json"))
    assert (synced == [str(tmp_path / "r.json.tmp"), str(tmp_path)]
            and json.loads((tmp_path / "r.json").read_text()))



def _write_80_times(path, writer):
    for _ in range(80):
        save_json({"writer": writer, "rows": list(range(2000))}, path)


def test_two_processes_writing_one_json_take_turns(tmp_path):
    """Two reproductions at once write the same records and summary (the soak found one failing)."""
    path = str(tmp_path / "summary.json")
    writers = [pool.worker_context().Process(target=_write_80_times, args=(path, name)) for name in "ab"]
    for w in writers:
        w.start()
    for w in writers:
        w.join(60)
    assert [w.exitcode for w in writers] == [0, 0]  # a failed write's traceback is on stderr
    assert json.loads(pathlib.Path(path).read_text())["rows"] == list(range(2000))
    assert not (tmp_path / "summary.json.tmp").exists()

ORPHANS = """
import sys, time
from declip_lite import experiments
from declip_lite.runs.pool import run_grid
configs = [experiments.RunConfig.of("clip", "smoke", s, pairs=64, batch_size=16, steps=100000, eval_n=16)
           for s in (0, 1)]
run_grid(configs, sys.argv[1], "cpu", jobs=2)
"""


@pytest.mark.timeout(120)
def test_workers_die_with_their_killed_parent(tmp_path):
    parent = subprocess.Popen([sys.executable, "-c", ORPHANS, str(tmp_path)],
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 60
    while len(list(tmp_path.glob("*.lock"))) < 2 and time.time() < deadline:  # both workers training
        time.sleep(0.2)
    workers = descendants(parent.pid)
    assert len(workers) >= 2, "the workers never started"
    parent.kill()
    parent.wait()
    deadline = time.time() + 10
    while any(alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(alive(w) for w in workers), "a worker outlived its parent"


NEIGHBOUR = """
import os, sys, time
from declip_lite import experiments, train
from declip_lite.runs.pool import run_grid
if len(sys.argv) > 2:  # the first process: hold run 0 at step 20 until the second says that it waits
    step, go = train.Trainer.train_step, sys.argv[2]
    def held(self):
        deadline = time.time() + 60
        while self.step == 20 and not os.path.exists(go) and time.time() < deadline:
            time.sleep(0.1)
        return step(self)
    train.Trainer.train_step = held
configs = [experiments.RunConfig.of("clip", "smoke", s, pairs=64, batch_size=16, steps=40, eval_n=16)
           for s in (0, 1)]
for r in run_grid(configs, sys.argv[1], "cpu"):
    print("RESULT", r.name, r.zero_shot["mean"], flush=True)
"""


@pytest.mark.timeout(300)
def test_two_grids_at_once_on_one_folder_both_finish_and_train_each_run_once(tmp_path):
    env, go = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}, tmp_path / "go"
    runs = tmp_path / "runs"
    first = subprocess.Popen([sys.executable, "-c", NEIGHBOUR, str(runs), str(go)], env=env,
                             stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not list(runs.glob("*.lock")) and time.time() < deadline:  # the first holds its first run
        time.sleep(0.1)
    second = subprocess.Popen([sys.executable, "-c", NEIGHBOUR, str(runs)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    said = []
    for line in second.stdout:  # the first goes on once the second says it waits for the first's run
        said.append(line)
        if "this run is being trained by pid" in line:
            go.touch()
    second.wait()
    out = first.communicate()[0]
    assert first.returncode == 0 and second.returncode == 0, second.stderr.read()[-2000:]
    assert any("this run is being trained by pid" in line for line in said)  # it waited instead of failing
    second_out = "".join(said)
    results = lambda text: sorted(line for line in text.splitlines() if line.startswith("RESULT"))  # noqa: E731
    assert results(out) == results(second_out) and len(results(out)) == 2


def test_a_recovery_prints_one_line_and_is_counted_in_records_and_tables(capsys):
    from declip_lite import report
    from declip_lite.runs.records import Records
    from declip_lite.runs.reproduce import recovered

    run = _spiked_once_at_step_30()
    experiments.fit(run, None, progress=False)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("recovery")]
    lr = run.trainer.config.lr * 0.5 * run.trainer.schedule(25)
    assert lines == [f"recovery 1 of at most 3: the loss was {run.trainer.recoveries[0]['loss']:.4g} "
                     f"at step 30 (spike); back to step 25, learning rate x0.5 (now {lr:.3g})"]
    assert recovered(run.record) == "  1 recovery"
    twice = dataclasses.replace(run.record, name="twice", seed=1, recoveries=run.record.recoveries * 2)
    assert recovered(twice) == "  ! 2 recoveries"
    (row,) = Records([run.record, twice]).summarise()
    assert row.recoveries == (1, 2) and row.flagged == (1,)
    assert report.format_table([row], ["mean"]).endswith("! seed 1: more than one recovery")


@pytest.mark.parametrize("parameters, named", [
    ({"LIVE_STEPS": -5}, "LIVE_STEPS"),
    ({"RESULTS": "auto", "SHIPPED": "/nonexistent/results"},
     r"SHIPPED='/nonexistent/results' is not a folder"),
    ({"RESULTS": "auto", "SHIPPED": str(ROOT / "results" / "cpu")},
     r"SHIPPED='.*/results/cpu' holds no shipped scale: it should contain cpu/summary.json or "
     r"gpu/summary.json"),
])
def test_notebook_parameters_are_checked_where_they_are_declared(parameters, named):
    from declip_lite import notebook

    with pytest.raises(notebook.ParameterError, match=f"parameter {named}"):
        notebook.setup(SMOKE=False, SEED=0, DEVICE="cpu", **parameters)
    # smoke never reads it
    notebook.setup(SMOKE=True, SEED=0, DEVICE="cpu", RESULTS="auto", SHIPPED="/nonexistent")


@pytest.mark.timeout(300)
def test_an_unknown_notebook_parameter_is_refused_by_setup(tmp_path):
    import papermill

    with pytest.raises(papermill.PapermillExecutionError, match=r"unknown parameters DEVIC \(did you mean "
                       r"DEVICE\?\), seed \(did you mean SEED\?\), zzz: this notebook takes"):
        papermill.execute_notebook(str(ROOT / "notebooks" / "00_the_data.ipynb"), str(tmp_path / "out.ipynb"),
                                   parameters={"SMOKE": True, "DEVIC": "cpu", "seed": 1, "zzz": 0,
                                               "FIG_DIR": str(tmp_path)},
                                   cwd=str(ROOT / "notebooks"), progress_bar=False, kernel_name="python3")


def test_a_full_disk_names_the_file_and_leaves_no_tmp_behind(tmp_path):
    import errno

    from declip_lite.checkpoint import write_durably

    path = tmp_path / "run.pt"
    path.write_bytes(b"the previous checkpoint")

    def fill_the_disk(f):
        f.write(b"x" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError,
                       match=rf"no space left writing {path} \(the previous file, if any, is intact\)"):
        write_durably(str(path), fill_the_disk)
    assert path.read_bytes() == b"the previous checkpoint" and not (tmp_path / "run.pt.tmp").exists()


FILE_TOO_LARGE = """
import resource, signal, sys
from test_train import tiny_run
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a real failed write (EFBIG), as a full disk fails it
trainer = tiny_run(steps=1).trainer
resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
try:
    trainer.save(sys.argv[1])
except OSError as e:
    print("ERROR", e)
"""


def test_a_checkpoint_write_the_os_refuses_names_the_file(tmp_path):
    path = tmp_path / "run.pt"
    done = subprocess.run([sys.executable, "-c", FILE_TOO_LARGE, str(path)], capture_output=True, text=True,
                          cwd=ROOT / "tests", env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert f"ERROR cannot write {path}:" in done.stdout, done.stdout + done.stderr[-2000:]
    assert not path.exists() and not (tmp_path / "run.pt.tmp").exists()


def test_train_seconds_add_up_across_a_crash_and_a_resume(tmp_path):
    path = str(tmp_path / "run.pt")
    run = tiny_run(steps=12)
    run.trainer.config = dataclasses.replace(run.trainer.config, checkpoint_every=4)
    forward = run.objective.forward

    def slow_then_crash(enc):
        if run.trainer.step == 10:
            raise SystemExit("killed")  # not a loss crash: the process dies here
        time.sleep(0.05)
        return forward(enc)

    run.objective.forward = slow_then_crash
    with pytest.raises(SystemExit):
        run.trainer.fit(checkpoint=path, progress=False)
    resumed = tiny_run(steps=12).trainer.load(path)
    # the time before the last checkpoint counts
    assert resumed.step == 8 and resumed.train_seconds >= 8 * 0.05
    before = resumed.train_seconds
    resumed.fit(checkpoint=path, progress=False)
    assert resumed.train_seconds > before


def test_a_corrupt_or_older_checkpoint_names_itself_and_never_advises_an_unsafe_load(tmp_path):
    from declip_lite.checkpoint import DamagedFile

    path = str(tmp_path / "run.pt")
    run = tiny_run(steps=1)
    run.trainer.fit(checkpoint=path, progress=False)
    _truncate(path, 0.9)
    with pytest.raises(DamagedFile,
                       match=r"run\.pt: damaged file, truncated or corrupt .*delete it to retrain") as e:
        tiny_run(steps=1).trainer.load(path)
    older = {**run.trainer.state_dict(), "version": CHECKPOINT_VERSION - 1, "rng": np.random.get_state()}
    # an older version kept numpy's RNG state as an array: a weights-only load refuses it
    torch.save(older, path)
    with pytest.raises(DamagedFile, match=rf"checkpoint version {CHECKPOINT_VERSION - 1}, expected "
                                          rf"{CHECKPOINT_VERSION} .*delete it to retrain") as old:
        tiny_run(steps=1).trainer.load(path)
    torch.save({"version": CHECKPOINT_VERSION, "payload": np.random.get_state()}, path)
    with pytest.raises(DamagedFile, match=r"not a file declip-lite wrote") as foreign:
        tiny_run(steps=1).trainer.load(path)
    assert not any("weights_only" in str(x.value) for x in (e, old, foreign))


@pytest.mark.timeout(120)
def test_ctrl_c_in_the_cli_ends_with_one_line_and_status_130_even_when_the_suite_runs_in_the_background(
        tmp_path):
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as `make test &` or nohup starts the suite
    try:
        cli = subprocess.Popen([sys.executable, "-m", "declip_lite.experiments", "clip", "--preset", "smoke",
                                "--set", "steps=100000", "pairs=64", "eval_n=16", "--runs-dir",
                                str(tmp_path)], cwd=ROOT,
                               env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    finally:
        signal.signal(signal.SIGINT, previous)
    deadline = time.time() + 60
    while not list(tmp_path.glob("*.lock")) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    cli.send_signal(signal.SIGINT)
    out, err = cli.communicate(timeout=60)
    assert cli.returncode == 130, err[-2000:]
    assert "Traceback" not in err and (out + err).count("Interrupted at step") == 1


def test_a_runaway_learning_rate_stops_the_cli_with_one_line_and_no_non_finite_checkpoint(tmp_path):
    cli = subprocess.run([sys.executable, "-m", "declip_lite.experiments", "clip", "--preset", "smoke",
                          "--set", "lr=1e6", "steps=60", "pairs=64", "batch_size=16", "eval_n=16",
                          "train.flush_every=5", "train.checkpoint_every=5", "--runs-dir", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=240)
    assert cli.returncode == 1 and "Traceback" not in cli.stderr, cli.stderr[-2000:]
    (line,) = [line for line in re.split(r"[\r\n]", cli.stderr) if "loss" in line]  # beside the progress bar
    assert re.search(r"the loss became \S+ at step \d+; 3 recoveries .* lower the learning rate", line), line
    for path in tmp_path.glob("*.pt"):  # the last good checkpoint, never a non-finite one
        state = torch.load(path, weights_only=True)
        assert all(torch.isfinite(v).all() for m in ("model", "objective") for v in state[m].values()
                   if v.is_floating_point())


def test_a_non_finite_checkpoint_is_never_written(tmp_path):
    from declip_lite.recovery import LossCrash

    run = tiny_run(steps=2)
    run.trainer.fit(progress=False)
    path = tmp_path / "run.pt"
    run.trainer.save(path)
    good = path.read_bytes()
    with torch.no_grad():
        next(run.model.parameters()).fill_(float("inf"))
    with pytest.raises(LossCrash, match="the weights became non-finite by step 2"):
        run.trainer.save(path)
    assert path.read_bytes() == good


def test_a_zero_budget_starts_no_run_and_a_negative_one_is_refused(tmp_path, capsys):
    from declip_lite.runs import cli

    cli.main(["reproduce", "--scale", "smoke", "--budget", "0", "--out", str(tmp_path), "--runs-dir",
              str(tmp_path)])
    summary = json.loads((tmp_path / "smoke" / "summary.json").read_text())
    assert summary["runs"] == 0 and summary["planned"] > 0
    assert f"0 of {summary['planned']} runs finished: the budget (0 s) ran out" in capsys.readouterr().out
    with pytest.raises(SystemExit) as refused:
        cli.main(["reproduce", "--scale", "smoke", "--budget", "-5", "--out", str(tmp_path)])
    assert (refused.value.code == 2
            and "--budget must be seconds >= 0 (0: start no run), got -5" in capsys.readouterr().err)


def test_make_trainer_seeds_the_initial_weights():
    from declip_lite.data.loader import shapecaps_tokenizer
    from declip_lite.data.shapecaps import ShapeCaps

    data, tokenizer = ShapeCaps(64, seed=0), shapecaps_tokenizer()
    first = experiments.make_trainer(data, tokenizer, experiments.RunConfig.of("declip"), device="cpu")
    torch.rand(100)  # other draws between the calls
    second = experiments.make_trainer(data, tokenizer, experiments.RunConfig.of("declip"), device="cpu")
    for a, b in ((first.model, second.model), (first.objective, second.objective)):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
