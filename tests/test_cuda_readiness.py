"""What CUDA would refuse or pay for, shown on a CPU: host syncs in batch making, a second GPU
(``cuda:1``) for capture and replay, and exercise checkers given an answer on another device."""
import contextlib

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from declip_lite import exercises
from declip_lite.train.step import GraphedUpdate
from declip_lite.data.loader import PairBatches, shapecaps_tokenizer
from declip_lite.data.shapecaps import ShapeCaps
from declip_lite.models.clip import model_config
from declip_lite.objectives import make_objective, objective_names
from solutions.answers import ANSWERS

aten = torch.ops.aten
# operators that read a device value on the host (CUDA waits for the GPU there), or check an
# inverse's result on it
SYNCS = {aten._local_scalar_dense.default, aten.item.default, aten.nonzero.default,
         aten.masked_select.default, aten.linalg_inv_ex.default, aten.is_nonzero.default, aten.equal.default}


class SyncCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in SYNCS:
            self.seen.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("method, augmentation", [(m, "clip") for m in objective_names()]
                         + [("clip", "safe"), ("clip", "moco")])
def test_batch_making_reads_nothing_on_the_host(method, augmentation):
    tokenizer = shapecaps_tokenizer()
    config = model_config("rn-tiny", vocab_size=tokenizer.vocab_size, image_size=32,
                          context_length=tokenizer.context_length, eot_id=tokenizer.eot_id)
    objective = make_objective(method, config, tokenizer.vocab_size)
    batches = PairBatches.for_objective(ShapeCaps(64, seed=0), tokenizer, 16, objective, augmentation, seed=0)
    batches.batch(0)  # the first call may set things up (the epoch's order, caches)
    with SyncCounter() as counter:
        for step in (1, 4, 5):  # 4 steps an epoch: across an epoch boundary
            batches.batch(step)
    assert counter.seen == [], counter.seen


class FakeCUDA:
    """torch.cuda's capture API, recording which device was current at each call."""

    def __init__(self):
        self.current, self.calls = 0, []

    @contextlib.contextmanager
    def device(self, device):
        before, self.current = self.current, (torch.device(device).index if device is not None
                                              else self.current)
        try:
            yield
        finally:
            self.current = before

    def _note(self, name):
        self.calls.append((name, self.current))

    def Stream(self, device=None):  # noqa: N802 - torch's name
        self._note("Stream")
        return self

    def wait_stream(self, other):
        pass

    def current_stream(self, device=None):
        self._note("current_stream")
        return self

    def stream(self, stream):
        return contextlib.nullcontext()

    def CUDAGraph(self):  # noqa: N802
        self._note("CUDAGraph")
        return self

    def graph(self, g):
        self._note("capture")
        return contextlib.nullcontext()

    def replay(self):
        self._note("replay")


def test_capture_and_replay_happen_on_the_runs_own_cuda_device(monkeypatch):
    fake = FakeCUDA()
    for name in ("device", "Stream", "current_stream", "stream", "CUDAGraph", "graph"):
        monkeypatch.setattr(torch.cuda, name, getattr(fake, name))
    weight = torch.zeros(3)

    def update(batch):
        weight.add_(batch["x"])
        return weight.sum()

    step = GraphedUpdate(update, {"x": torch.ones(3)}, [weight], device=torch.device("cuda:1"))
    step({"x": torch.ones(3)})
    assert fake.calls and all(current == 1 for _, current in fake.calls), fake.calls
    assert [name for name, _ in fake.calls][-1] == "replay" and fake.current == 0  # restored after
    assert torch.equal(weight, torch.zeros(3))  # the warm-up and capture undone


class OnGPU(torch.Tensor):
    """A tensor that behaves as if on another device: an operation with a (non-scalar) CPU tensor
    fails, as CUDA would; ``.cpu()`` brings it back."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func is torch.Tensor.cpu:
            return args[0].as_subclass(torch.Tensor)
        flat = [a for a in [*args, *(kwargs or {}).values()]
                for a in (a if isinstance(a, (list, tuple)) else [a])]
        if any(isinstance(a, OnGPU) for a in flat) and any(
                torch.is_tensor(a) and not isinstance(a, OnGPU) and a.dim() > 0 for a in flat):
            raise RuntimeError("Expected all tensors to be on the same device, but found cuda:0 and cpu")
        return super().__torch_function__(func, types, args, kwargs)


def on_gpu(fn):
    def answer(*args):
        out = fn(*args)
        return tuple(t.as_subclass(OnGPU) for t in out) if isinstance(out, tuple) else out.as_subclass(OnGPU)
    return answer


@pytest.mark.parametrize("name", ["01.clip_loss", "02.simsiam_loss", "03.mask_tokens", "04.multi_view_loss",
                                  "05.nn_lookup", "06.total_loss"])
def test_a_right_answer_on_the_notebooks_gpu_passes_its_checker(name):
    verdict = exercises.check(name, on_gpu(ANSWERS[name]))
    assert verdict.passed, verdict
