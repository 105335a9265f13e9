import os
import signal
from dataclasses import replace

import pytest
import torch

from declip_lite import experiments
from declip_lite.text.tokenizer import WordTokenizer
from declip_lite.recovery import StepBoundaryInterrupt
from declip_lite.train import TrainConfig, parameter_groups, warmup_cosine


def tiny_run(method="clip", steps=6, **kw):
    return experiments.build(method, "smoke", seed=0, device="cpu", pairs=64, batch_size=16, steps=steps,
                             warmup=2, eval_n=16, **kw)


def test_history_records_every_term_scale_lr_and_rate():
    run = tiny_run(steps=4)
    run.trainer.config = replace(run.trainer.config, flush_every=3)
    run.trainer.fit(progress=False)
    h = run.trainer.history
    assert [r["step"] for r in h] == [1, 2, 3, 4]
    assert {"loss", "clip", "logit_scale", "lr", "pairs_per_s", "grad_norm"} <= set(h[0])
    assert run.trainer.evals[-1]["step"] == 4 and 0 <= run.trainer.evals[-1]["mean"] <= 1


def test_logit_scale_clamp_holds_after_a_step():
    run = tiny_run(steps=1)
    run.trainer.train_step()
    assert 3.0 <= run.model.logit_scale.item() <= 6.0
    run.trainer.config = replace(run.trainer.config, logit_scale_clamp=(0.0, 1.0))
    run.trainer.train_step()
    assert run.model.logit_scale.item() <= 1.0


def test_no_weight_decay_on_scale_biases_norms():
    run = tiny_run()
    decay, no_decay = parameter_groups([run.model], 0.1)
    ids = {id(p) for p in decay["params"]}
    assert id(run.model.logit_scale) not in ids
    assert all(id(m.weight) not in ids for m in run.model.modules() if isinstance(m, torch.nn.LayerNorm))
    assert all(p.ndim >= 2 for p in decay["params"])


def test_warmup_then_cosine_to_zero():
    f = warmup_cosine(10, 110)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0) and f(110) == pytest.approx(0.0)
    assert f(60) == pytest.approx(0.5)


@pytest.mark.parametrize("method", ["clip", "declip"])
def test_resume_gives_the_same_next_step_loss(tmp_path, method):
    straight = tiny_run(method)
    straight.trainer.fit(steps=4, progress=False)
    expected = straight.trainer.train_step()["loss"].item()

    first = tiny_run(method)
    first.trainer.fit(steps=3, progress=False)
    path = str(tmp_path / "ckpt.pt")
    first.trainer.save(path)
    first.trainer.train_step()  # work after the checkpoint is lost with the process
    resumed = tiny_run(method)
    resumed.trainer.load(path)
    assert resumed.trainer.step == 3
    resumed.trainer.fit(steps=4, progress=False)
    assert resumed.trainer.train_step()["loss"].item() == pytest.approx(expected, rel=1e-5)
    assert not os.path.exists(path + ".tmp")


def test_load_names_the_bad_file(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="broken.pt"):
        tiny_run().trainer.load(str(bad))


def test_a_checkpoint_from_another_vocabulary_is_refused(tmp_path):
    path = str(tmp_path / "run.pt")
    tiny_run(steps=1).trainer.save(path)
    other = tiny_run(steps=1)
    words = other.trainer.batches.tokenizer.state_dict()["words"]
    other.trainer.batches.tokenizer = WordTokenizer(words[::-1])  # same size, other ids
    with pytest.raises(ValueError, match="run.pt.*vocabulary"):
        other.trainer.load(path)


def test_cached_run_is_loaded_not_retrained(tmp_path):
    kw = dict(pairs=64, batch_size=16, steps=3, warmup=1, eval_n=16, device="cpu")
    a = experiments.train("clip", "smoke", 0, runs_dir=str(tmp_path), progress=False, **kw)
    assert os.path.exists(tmp_path / f"{a.name}.json")
    import json
    history = json.load(open(tmp_path / f"{a.name}.history.json"))["history"]
    assert [h["step"] for h in history] == [1, 2, 3]
    colour = json.load(open(tmp_path / f"{a.name}.zero_shot" / "colour.json"))
    assert colour["task"] == "colour" and len(colour["confusion"]) == 8
    b = experiments.train("clip", "smoke", 0, runs_dir=str(tmp_path), progress=False, **kw)
    assert b.trainer.step == 3 and b.trainer.history == a.trainer.history
    assert torch.equal(a.model.logit_scale, b.model.logit_scale)


def test_unknown_preset_and_method_are_named():
    with pytest.raises(ValueError, match="huge"):
        experiments.build("clip", "huge")
    with pytest.raises(ValueError, match="clop"):
        experiments.build("clop", "smoke", pairs=64, batch_size=16, eval_n=8)


class InterruptAt:
    """Batches that send this process a Ctrl-C (SIGINT) while step ``at`` is being built."""

    def __init__(self, batches, at):
        self.batches, self.at = batches, at

    def __getattr__(self, name):
        return getattr(self.batches, name)

    def batch(self, step):
        if step == self.at:
            signal.raise_signal(signal.SIGINT)
        return self.batches.batch(step)


def test_ctrl_c_saves_the_current_step_and_a_rerun_resumes_to_the_same_weights(tmp_path, capsys):
    straight = tiny_run(steps=6)
    straight.trainer.fit(progress=False)

    path = str(tmp_path / "run.pt")
    run = tiny_run(steps=6)
    run.trainer.batches = InterruptAt(run.trainer.batches, at=3)
    # as in Jupyter (a pytest-xdist worker ignores it)
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    with pytest.raises(KeyboardInterrupt, match="step 4 of 6"):
        run.trainer.fit(checkpoint=path, progress=False)
    assert f"saved to {path}" in capsys.readouterr().out
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back
    signal.signal(signal.SIGINT, handler)
    resumed = tiny_run(steps=6)
    resumed.trainer.load(path)
    assert resumed.trainer.step == 4 and len(resumed.trainer.history) == 4
    resumed.trainer.fit(progress=False)
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


def test_a_second_ctrl_c_interrupts_at_once():
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    with StepBoundaryInterrupt() as interrupt:
        signal.raise_signal(signal.SIGINT)
        assert interrupt.requested
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    signal.signal(signal.SIGINT, handler)


def test_the_progress_bar_names_the_run_and_its_options():
    runs = [tiny_run("clip+nns", objective_options={"exclude_self": ex}) for ex in (False, True)]
    labels = [experiments.run_label(r) for r in runs]
    assert labels == ["clip+nns s0 exclude_self=False", "clip+nns s0 exclude_self=True"]


def test_live_curves_redraw_one_picture_in_jupyter_and_draw_nothing_headless(monkeypatch):
    import IPython.display
    import matplotlib.pyplot as plt

    from declip_lite import live

    shown, updated = [], []

    class Handle:
        def update(self, obj):
            updated.append(obj)

    monkeypatch.setattr(IPython.display, "display",
                        lambda obj, display_id=False: shown.append(obj) or Handle())
    monkeypatch.setattr(live.LiveCurves, "every", 0.0)  # redraw at every flush
    trainer = experiments.build("clip", "smoke", 0, device="cpu", eval_n=8).trainer
    trainer.config = replace(trainer.config, flush_every=5)
    monkeypatch.setenv("DECLIP_LIVE", "1")
    plt.close("all")
    trainer.fit(steps=20, progress=True)
    assert len(shown) == 1 and len(updated) == 4  # one picture, replaced at steps 10, 15, 20 and at the end
    assert all('class="declip-live"' in p.data and "base64," in p.data for p in shown + updated)
    assert plt.get_fignums() == []  # drawn outside pyplot: nothing to leak
    shown.clear()
    monkeypatch.setenv("DECLIP_LIVE", "0")
    trainer.fit(steps=30, progress=True)
    monkeypatch.delenv("DECLIP_LIVE")
    assert shown == [] and not live.enabled()  # switched off; and a plain Python process is headless
    monkeypatch.setenv("CI", "true")
    assert not live.enabled()


def test_the_warmup_can_start_from_a_share_of_the_peak_as_the_reference():
    f = warmup_cosine(10, 110, start=0.1)
    by_hand = [0.1 + 0.9 * (s + 1) / 10 for s in range(10)]
    assert [f(s) for s in range(10)] == pytest.approx(by_hand) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.5) and warmup_cosine(10, 110)(0) == pytest.approx(0.1)  # start 0: before
    with pytest.raises(ValueError, match="warmup_start"):
        TrainConfig(warmup_start=2.0)


def test_the_references_weight_decay_exemptions_also_decay_the_class_embedding_and_qkv_bias():
    model = experiments.build("clip", "smoke", 0, device="cpu", model="vit-tiny", pairs=64).model
    for exempt in ("ours", "reference"):
        decay, _ = parameter_groups([model], 0.1, exempt)
        by_hand = {n for n, p in model.named_parameters() if p.requires_grad and (
            p.ndim >= 2 and "logit_scale" not in n
            or exempt == "reference" and (n.endswith("class_embedding") or n.endswith("attn.qkv.bias")))}
        names = {n for n, p in model.named_parameters() if any(p is q for q in decay["params"])}
        assert names == by_hand
    ours, reference = (parameter_groups([model], 0.1, e)[0]["params"] for e in ("ours", "reference"))
    assert len(reference) - len(ours) == 1 + model.config.vit_layers + model.config.text_layers


def test_fp32_precision_turns_cuda_autocast_off(monkeypatch):
    from declip_lite.train.step import autocast

    asked = []
    monkeypatch.setattr(torch, "autocast", lambda kind, **kw: asked.append((kind, kw["enabled"])))
    autocast(torch.device("cuda")), autocast(torch.device("cuda"), "fp32"), autocast(torch.device("cpu"))
    assert asked == [("cuda", True), ("cuda", False), ("cuda", False)]  # bf16 on CUDA only, unless fp32
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp16")
