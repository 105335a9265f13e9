"""The training step as one CUDA graph: captured once, replayed every step.

A tiny model's step is launch-bound: thousands of small kernels, each dispatched by Python and
the framework on the host. A CUDA graph records the kernels of one step (forward, named terms,
backward, AdamW, clamp, logged values) and replays them with one launch. What it needs from the
step, which :meth:`Trainer.update <declip_lite.train.Trainer.update>` keeps:

- fixed shapes and no host sync (captions cut once to the training set's longest; no ``.item()``);
- inputs at fixed addresses: each batch is copied into the captured one;
- a learning rate that is a tensor (the schedule writes it) and a capturable AdamW.

The batch itself (indices, views, masks, EDA) is made eagerly before each replay: it draws from a
generator seeded by (seed, step), so batch ``step`` stays a pure function of (seed, step) and
resume stays exact.
"""
import torch


def _tree_map(fn, x):
    if isinstance(x, dict):
        return {k: _tree_map(fn, v) for k, v in x.items()}
    return fn(x) if torch.is_tensor(x) else x


def _tree_copy(into, x):
    if isinstance(x, dict):
        for k, v in x.items():
            _tree_copy(into[k], v)
    elif torch.is_tensor(x):
        into.copy_(x, non_blocking=True)


class GraphedUpdate:
    """``update(batch) -> logged tensor`` captured as a CUDA graph. ``state``: every tensor the
    update writes (weights, buffers, optimiser state, all existing before the call); the warm-up
    step taken before capture is undone on them in place, so the first replay is the run's next step."""

    def __init__(self, update, batch, state, device=None, capture=True):
        self.batch = _tree_map(torch.clone, batch)
        self.device = device  # cuda:N: capture and replay with it current (streams and graphs are made there)
        before = [t.detach().clone() for t in state]
        self.graph, self.update = None, None
        try:
            if capture:
                with torch.cuda.device(device):
                    side = torch.cuda.Stream(device)
                    side.wait_stream(torch.cuda.current_stream(device))
                    with torch.cuda.stream(side):  # warm-up: cuBLAS handles, autotuning, autograd's buffers
                        update(self.batch)
                    torch.cuda.current_stream(device).wait_stream(side)
                    self.graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(self.graph):
                        self.row = update(self.batch)
            else:  # everything but the graph (CPU tests): the same warm-up, replays run ``update`` eagerly
                update(self.batch)
                self.update = update
        finally:  # a capture that fails leaves the run where it was, too
            with torch.no_grad():
                for t, old in zip(state, before):
                    t.copy_(old)

    def __call__(self, batch):
        _tree_copy(self.batch, batch)
        if self.graph is None:
            return self.update(self.batch)
        with torch.cuda.device(self.device):
            self.graph.replay()
        return self.row
