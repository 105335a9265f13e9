"""Group training held to the eager reference: K runs of one step signature trained as one vmapped
step give each run's own Trainer's weights (float64, so no rounding hides a difference), with no
host sync in the update and no vmap fallback (a "performance drop" warning is an error here)."""
import warnings
from dataclasses import replace

import pytest
import torch

from declip_lite import experiments
from declip_lite.data.loader import JoinedBatches
from declip_lite.objectives import objective_class, objective_names
from declip_lite.train.group import GroupTrainer, signature
from declip_lite.train.step import GraphedUpdate, optimizer_tensors
from test_cuda_readiness import SyncCounter

STEPS = 10


class DoubleBatches:
    """A run's batches with every float tensor in float64."""

    def __init__(self, batches):
        self.inner = batches

    def batch(self, step):
        cast = lambda x: {k: cast(v) for k, v in x.items()} if isinstance(x, dict) else (  # noqa: E731
            x.double() if torch.is_tensor(x) and x.is_floating_point() else x)
        return cast(self.inner.batch(step))

    def __getattr__(self, name):
        return getattr(self.inner, name)


SMALL = dict(embed_dim=32, rn_width=8, vit_width=32, vit_layers=1, vit_patch=8, text_width=32, text_layers=1)


def trainer(method, seed, model="rn-tiny", pairs=48, double=True, **options):
    """A smoke run, its towers narrowed (SMALL): the same code, a fraction of the arithmetic."""
    t = experiments.build(method, "smoke", seed, device="cpu", pairs=pairs, batch_size=8, steps=STEPS,
                          warmup=2, eval_n=16, model=model, model_overrides=SMALL, **options).trainer
    if double:  # the zero-shot tasks stay float32: no evaluator
        t.step_module.double()
        t.batches, t.evaluator = DoubleBatches(t.batches), None
    return t


def weights(t):
    return {k: v.detach().clone() for k, v in t.step_module.state_dict().items()}


LIBRARY_OBJECTIVES = [m for m in objective_names()
                      if objective_class(m).__module__.startswith("declip_lite.")]


@pytest.mark.parametrize("model", ["rn-tiny", "vit-tiny"])
@pytest.mark.parametrize("method", LIBRARY_OBJECTIVES)
def test_a_group_trains_each_run_as_its_own_trainer_would(method, model):
    seeds = (0, 1)
    eager = [trainer(method, s, model) for s in seeds]
    for t in eager:
        for _ in range(STEPS):
            t.train_step()
    group = GroupTrainer([trainer(method, s, model) for s in seeds])
    group.batches = DoubleBatches(JoinedBatches([t.batches.inner for t in group.trainers]))  # made as one
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*performance drop.*")
        for _ in range(STEPS):
            group.train_step()
    for reference, grouped in zip(eager, group.unstack()):
        expected, got = weights(reference), weights(grouped)
        worst = max((expected[k].double() - got[k].double()).abs().max().item() for k in expected)
        assert worst <= 1e-9, f"{method} {model}: weights differ by {worst:.2e}"


def test_every_objective_trains_grouped_under_bf16_autocast_its_batchnorm_heads_included():
    """What CUDA's bf16 does to the vmapped step, on the CPU's autocast: a Linear -> BatchNorm1d head
    (SimSiam's, SLIP's) gets a bf16 input inside vmap; every run's loss stays finite."""
    with_batchnorm = []
    for method in LIBRARY_OBJECTIVES:
        group = GroupTrainer([trainer(method, s, double=False) for s in (0, 1)])
        if any(isinstance(m, torch.nn.BatchNorm1d) for m in group.template.modules()):
            with_batchnorm.append(method)
        with torch.autocast("cpu", dtype=torch.bfloat16), warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*performance drop.*")
            for _ in range(2):
                group.train_step()
        rows = torch.stack([rows for rows, lr in group._pending])
        assert torch.isfinite(rows).all(), f"{method}: a non-finite logged value under bf16"
    assert {"declip", "slip"} <= set(with_batchnorm), with_batchnorm  # the heads this test is for


@pytest.mark.parametrize("method, augmentation", [("clip", "clip"), ("declip", "moco"), ("declip", "safe")])
def test_batches_made_as_one_are_each_runs_own_bit_for_bit(method, augmentation):
    """Mixed pair counts and caption noise; at step 0, across an epoch boundary and mid-run."""
    runs = [trainer(method, seed, pairs=pairs, double=False, noise=noise, augmentation=augmentation)
            for seed, pairs, noise in [(0, 48, (0.0, 0.0)), (1, 64, (0.3, 0.0)), (2, 40, (0.0, 0.5))]]
    joined = JoinedBatches([t.batches for t in runs])
    for step in (0, 4, 5, 11):  # 40 pairs in batches of 8: step 5 starts run 2's second epoch
        got = joined.batch(step)
        for k, t in enumerate(runs):
            own = t.batches.batch(step)
            assert torch.equal(got["images"][k], own["images"]), (step, k)
            assert torch.equal(got["ids"][k], own["ids"]) and torch.equal(got["content"][k], own["content"])
            for name, tokens in own["texts"].items():
                width = tokens.shape[1]
                assert torch.equal(got["texts"][name][k, :, :width], tokens), (step, k, name)
                assert (got["texts"][name][k, :, width:] == 0).all()  # the wider runs' columns: padding
            if "mlm_targets" in own:
                width = own["mlm_targets"].shape[1]
                assert torch.equal(got["mlm_targets"][k, :, :width], own["mlm_targets"])


@pytest.mark.parametrize("method", ["clip", "declip"])
def test_the_group_step_reads_nothing_on_the_host(method):
    group = GroupTrainer([trainer(method, s, double=False) for s in (0, 1, 2)])
    group.train_step()  # AdamW's state is made on the first step
    with SyncCounter() as counter:
        group.update(group.batches.batch(group.step))
    assert counter.seen == [], counter.seen


def test_runs_of_other_signatures_or_steps_are_refused_and_the_clamp_is_each_runs_own():
    with pytest.raises(ValueError, match="step signature"):
        GroupTrainer([trainer("clip", 0, double=False), trainer("declip", 0, double=False)])
    late = trainer("clip", 1, double=False)
    late.train_step()
    with pytest.raises(ValueError, match=r"at one step, not at \[0, 1\]"):
        GroupTrainer([trainer("clip", 0, double=False), late])
    fixed = trainer("clip", 1, double=False, train_overrides={"logit_scale_clamp": (1.0, 1.0)})
    assert signature(fixed) == signature(trainer("clip", 0, double=False))
    group = GroupTrainer([trainer("clip", 0, double=False), fixed])
    for _ in range(3):
        rows = group.train_step()
    assert rows[1, -1].item() == pytest.approx(torch.e)  # exp(1): held at its own bound
    assert rows[0, -1].item() > 10


def poisoned(t, at=5):
    """Run ``t`` whose batch ``at`` has NaN pixels the first time it is drawn: its loss goes NaN there."""
    batch, armed = t.batches.batch, [True]

    def maybe_poisoned(step):
        out = batch(step)
        if step == at and armed[0]:
            armed[0] = False
            out = {**out, "images": out["images"] * float("nan")}
        return out

    t.batches.batch = maybe_poisoned
    return t


def test_a_run_whose_loss_crashes_leaves_the_group_recovers_alone_and_the_others_go_on():
    def runs():
        out = [trainer("clip", s) for s in (0, 1, 2)]
        for t in out:
            t.config = replace(t.config, flush_every=2)
        poisoned(out[1])
        return out

    eager = runs()
    for t in eager:
        t.fit(STEPS, progress=False)
    grouped = GroupTrainer(runs()).fit(STEPS)
    for reference, t in zip(eager, grouped):
        assert t.step == STEPS and [h["step"] for h in t.history] == list(range(1, STEPS + 1))
        assert [r["step"] for r in t.recoveries] == [r["step"] for r in reference.recoveries]
        expected, got = weights(reference), weights(t)
        assert max((expected[k] - got[k]).abs().max().item() for k in expected) <= 1e-9
    assert [len(t.recoveries) for t in grouped] == [0, 1, 0]


def test_the_group_steps_graph_plumbing_replays_the_eager_group_steps_on_cpu():
    """On CUDA the group step is captured once and replayed; here its plumbing without the graph."""
    eager, fast = (GroupTrainer([trainer("declip", s, double=False) for s in (0, 1)]) for _ in range(2))
    state = [*fast.params.values(), *fast.buffers.values(), *optimizer_tensors(fast.optimizer)]
    fast.graph = GraphedUpdate(fast.update, fast.batches.batch(0), state, capture=False)
    for _ in range(6):
        assert torch.allclose(fast.train_step(), eager.train_step(), rtol=1e-4, atol=1e-5)


class Killed(Exception):
    pass


def test_a_group_resumed_from_its_checkpoints_ends_as_an_uninterrupted_group(tmp_path):
    def runs():
        out = [trainer("clip", s, double=False) for s in (0, 1)]
        for t in out:
            t.config = replace(t.config, checkpoint_every=4, flush_every=2)
        return out

    whole = GroupTrainer(runs()).fit(STEPS)
    paths = [str(tmp_path / f"run{k}.pt") for k in (0, 1)]
    group = GroupTrainer(runs())
    step = group.train_step
    # dies before step 7
    group.train_step = lambda: step() if group.step < 6 else (_ for _ in ()).throw(Killed())
    with pytest.raises(Killed):
        group.fit(STEPS, checkpoints=paths)
    resumed = [t.load(p) for t, p in zip(runs(), paths)]
    assert [t.step for t in resumed] == [4, 4]  # the last checkpoint
    GroupTrainer(resumed).fit(STEPS, checkpoints=paths)
    for a, b in zip(whole, resumed):
        assert all(torch.equal(x, y) for x, y in zip(weights(a).values(), weights(b).values()))
        assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history] and a.evals[-1] == b.evals[-1]
