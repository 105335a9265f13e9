"""The fast path (the step as one CUDA graph) held to the eager reference.

On CPU: the graph's plumbing without the graph (static batch, warm-up undone, AdamW's state made
up front, logged row) replays the eager steps, and every objective's forward traces as ONE graph
(no host read, no shape that changes). On CUDA (``bench/gpu_check.sh`` runs these): the captured
step against eager over 50 steps."""
import contextlib

import pytest
import torch

from declip_lite import experiments
from declip_lite.train import step as train_step
from declip_lite.train.step import GraphedUpdate
from declip_lite.objectives import objective_names

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def run_of(method, device="cpu", steps=12, fast="eager", **kw):
    return experiments.build(method, "smoke", seed=0, device=device, pairs=64, batch_size=16, steps=steps,
                             warmup=2, eval_n=16, train_overrides={"fast": fast}, **kw)


def losses(trainer, steps):
    return [{k: v.item() for k, v in trainer.train_step().items()} for _ in range(steps)]


@pytest.mark.parametrize("method", ["clip", "declip", "defilip"])
def test_the_graphs_plumbing_replays_the_eager_steps_on_cpu(method):
    eager, fast = run_of(method).trainer, run_of(method).trainer
    state = [*fast.step_module.state_dict(keep_vars=True).values(),
             *train_step.optimizer_tensors(fast.optimizer)]
    fast.graph = GraphedUpdate(fast.update, fast.batches.batch(0), state, capture=False)
    expected, got = losses(eager, 12), losses(fast, 12)
    for e, g in zip(expected, got):
        assert g == pytest.approx(e, rel=1e-4, abs=1e-5)
    for (name, a), b in zip(eager.model.state_dict().items(), fast.model.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), name


@pytest.mark.parametrize("method", ["declip", "defilip", "slip"])
def test_every_objectives_forward_is_one_graph_with_no_host_read(method):
    """torch.compile(fullgraph=True) refuses a host read (``.item()``, a boolean mask's shape)."""
    trainer = run_of(method).trainer
    batch = trainer.batches.batch(0)
    traced = torch.compile(trainer.step_module, backend="eager", fullgraph=True)
    terms = traced(batch)
    assert set(terms) == set(trainer.step_module(batch))


def test_a_capture_that_fails_warns_once_and_trains_the_eager_steps(monkeypatch):
    """Capture breaking after the warm-up step (as SLIP's did on the H200): the warm-up is undone."""
    class Stream:
        wait_stream = staticmethod(lambda other: None)

    def broken_capture(graph):
        raise RuntimeError("operation not permitted when stream is capturing")

    for name, fake in {"Stream": Stream, "current_stream": Stream,
                       "stream": lambda s: contextlib.nullcontext(),
                       "CUDAGraph": lambda: None, "graph": broken_capture}.items():
        monkeypatch.setattr(torch.cuda, name, fake)
    eager, fast = run_of("declip").trainer, run_of("declip").trainer
    fast.graphed = True  # as on CUDA with fast="auto"
    with pytest.warns(UserWarning, match="CUDA graph capture failed .*; training eagerly"):
        got = losses(fast, 4)
    assert not fast.graphed and got == losses(eager, 4)


def test_fast_graph_needs_cuda():
    with pytest.raises(ValueError, match="needs a CUDA device"):
        run_of("clip", fast="graph")


@cuda
@pytest.mark.parametrize("method", objective_names())
def test_the_captured_step_follows_eager_for_50_steps(method):
    eager = run_of(method, "cuda", 50, "eager").trainer
    fast = run_of(method, "cuda", 50, "graph").trainer
    expected, got = losses(eager, 50), losses(fast, 50)
    assert fast.graph is not None
    for step, (e, g) in enumerate(zip(expected, got)):  # bf16: the same kernels, so near-identical
        assert g["loss"] == pytest.approx(e["loss"], rel=0.02, abs=0.02), f"step {step}"
