"""Faults, injected: a training process killed at random steps and in the checkpoint-write,
final-evaluation and JSON windows; NaN and a loss spike; checkpoints loaded with
``weights_only=True``; a second process on one run; and every bad input the reader must name or
count. Each case asserts the exact outcome. Longer soaks belong in bench/."""
import io
import json
import os
import random
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from declip_lite import experiments
from declip_lite.data.captioned import BadInput, CaptionedImages, read_csv, read_webdataset
from declip_lite.text.tokenizer import BPETokenizer
from declip_lite.checkpoint import RunLock
from declip_lite.train import CHECKPOINT_VERSION
from test_real_data import CAPTIONS, _csv, _png
from test_train import tiny_run

RUN = """
import os, signal, sys
from declip_lite import experiments, train
from declip_lite.runs import cache
runs_dir, fault, at = sys.argv[1], sys.argv[2], int(sys.argv[3])
T = train.Trainer

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if fault == "step":  # before step `at` is taken
    step = T.train_step
    T.train_step = lambda self: die() if self.step == at else step(self)
elif fault == "save":  # the checkpoint's .tmp is written, the rename never happens
    save = T.save
    def save_then_die(self, path):
        if self.step == at:
            os.replace = lambda src, dst: die()
        save(self, path)
    T.save = save_then_die
elif fault == "final_eval":  # inside the last evaluation, after the last periodic checkpoint
    evaluate = T.evaluate
    T.evaluate = lambda self: die() if self.step == at else evaluate(self)
elif fault == "json":  # after the checkpoint, history and per-task files, before the run's JSON
    save_json = cache.save_json
    cache.save_json = lambda obj, path: die() if ".zero_shot" not in path else save_json(obj, path)
run = experiments.build("clip", "smoke", 0, device="cpu", pairs=64, batch_size=16, steps=12, warmup=2, eval_n=16,
                        eval_every=4)
run.trainer.config.checkpoint_every, run.trainer.config.flush_every = 4, 2
experiments.fit(run, runs_dir, progress=False)
"""


def train_in_a_process(runs_dir, fault="none", at=0):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", RUN, str(runs_dir), fault, str(at)], env=env,
                          capture_output=True, text=True, timeout=120)


def outcome(runs_dir):
    """Everything a finished run leaves, minus wall-clock figures: record, history, per-task files, weights."""
    (json_path,) = [p for p in runs_dir.glob("*.json") if not p.name.endswith(".history.json")]
    stem = str(json_path)[:-len(".json")]
    record = json.loads(json_path.read_text())
    for timing in ("train_seconds", "total_seconds", "hardware"):
        record.pop(timing)
    history = json.loads(open(stem + ".history.json").read())
    for row in history["history"]:
        row.pop("pairs_per_s")
    tasks = {p.name: json.loads(p.read_text()) for p in sorted((runs_dir / (json_path.stem + ".zero_shot")).iterdir())}
    weights = torch.load(stem + ".pt", weights_only=True)["model"]
    return record, history, tasks, weights


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    runs_dir = tmp_path_factory.mktemp("uninterrupted")
    assert train_in_a_process(runs_dir).returncode == 0
    return outcome(runs_dir)


KILLS = [("step", at) for at in random.Random(0).sample(range(1, 12), 2)] + [
    ("save", 8), ("save", 12), ("final_eval", 12), ("json", 0)]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("fault, at", KILLS, ids=[f"{f}-{a}" for f, a in KILLS])
def test_a_run_killed_anywhere_is_finished_by_the_next_call_with_the_same_numbers(tmp_path, uninterrupted, fault, at):
    killed = train_in_a_process(tmp_path, fault, at)
    assert killed.returncode == -9, killed.stderr[-2000:]  # it really died there
    resumed = train_in_a_process(tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    record, history, tasks, weights = outcome(tmp_path)
    expected = uninterrupted
    assert record == expected[0] and history == expected[1] and tasks == expected[2]
    assert weights.keys() == expected[3].keys() and all(torch.equal(weights[k], expected[3][k]) for k in weights)
    assert record["zero_shot"]["mean"] is not None and record["evals"][-1]["step"] == 12


def test_a_spike_is_undone_with_a_lower_learning_rate_and_logged():
    run = tiny_run(steps=40)
    run.trainer.config.flush_every = 5
    forward, armed = run.objective.forward, [True]

    def spike_once_at_step_30(enc):
        out = forward(enc)
        if armed[0] and run.trainer.step == 29:
            armed[0] = False
            out = {**out, "loss": out["loss"] * 1e4}
        return out

    run.objective.forward = spike_once_at_step_30
    run.trainer.fit(progress=False)
    (event,) = run.trainer.recoveries
    assert event["kind"] == "spike" and event["step"] == 30 and event["resumed_from"] == 25 and event["lr_scale"] == 0.5
    assert [h["step"] for h in run.trainer.history] == list(range(1, 41))
    assert max(h["loss"] for h in run.trainer.history) < 50  # the spike is not in the history
    T, lr = run.trainer, run.trainer.config.lr
    assert [h["lr"] for h in T.history[24:26]] == pytest.approx([lr * T.schedule(24), 0.5 * lr * T.schedule(25)])
    assert T.optimizer.param_groups[0]["lr"] == pytest.approx(0.5 * lr * T.schedule(39))


def test_a_nan_that_recovery_cannot_fix_stops_naming_the_first_bad_step():
    run = tiny_run(steps=5)
    with torch.no_grad():
        run.model.text.proj.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match=r"nan at step 1; 3 recoveries"):
        run.trainer.fit(progress=False)


def test_a_second_process_on_the_same_run_is_refused_naming_the_holder(tmp_path):
    with RunLock(str(tmp_path / "run")):
        with pytest.raises(RuntimeError, match=rf"run\.lock: this run is being trained by pid {os.getpid()}"):
            with RunLock(str(tmp_path / "run")):
                pass
    with RunLock(str(tmp_path / "run")):  # released with its holder
        pass
    run = tiny_run(steps=2)
    with RunLock(str(tmp_path / run.name)):  # what a second `make run` meets while the first trains
        with pytest.raises(RuntimeError, match="this run is being trained by pid"):
            experiments.fit(run, str(tmp_path), progress=False)
    assert not (tmp_path / f"{run.name}.pt").exists()


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
            for name, payload in ((f"{key:03d}.png", png.getvalue()), (f"{key:03d}.txt", CAPTIONS[key % 4].encode())):
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
    run.trainer.config.flush_every = 25
    with torch.no_grad():
        run.model.text.proj.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="at step 1;"):
        run.trainer.fit(progress=False)


def test_a_checkpoint_is_fsynced_with_its_folder(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.path.realpath(f"/proc/self/fd/{fd}")) or real(fd))
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
