"""Several processes (torchrun): setup, an all-gather that keeps gradients, rank-0 helpers.

With one process every function is the identity, so the objectives read the same either way.
Each rank scores its local rows against the gathered batch, so every rank's loss uses every
rank's features; ``gather``'s backward therefore sums the gradient from all ranks (all-reduce)
and keeps its own slice. With DDP averaging parameter gradients, the result equals one process
on the concatenated batch (``tests/test_distributed.py`` checks this with gloo).
"""
import os

import torch
import torch.distributed as dist


def world():
    """(rank, world size); (0, 1) when torch.distributed is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main():
    return world()[0] == 0


def init_from_env():
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK); NCCL on GPUs,
    gloo on CPUs. Returns the device this rank should use. A no-op without torchrun."""
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) == 1 or dist.is_initialized():
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
        dist.init_process_group("nccl")
        return device
    dist.init_process_group("gloo")
    return torch.device("cpu")


def from_main(obj):
    """Rank 0's ``obj`` (any picklable value) on every rank; the identity with one process."""
    if world()[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        rank, size = world()
        parts = [torch.empty_like(x) for _ in range(size)]
        dist.all_gather(parts, x.contiguous())
        ctx.rank, ctx.n = rank, len(x)
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        dist.all_reduce(grad)  # every rank's loss used this slice: sum their gradients
        return grad[ctx.rank * ctx.n:(ctx.rank + 1) * ctx.n]


def gather(x):
    """Concatenate ``x`` from every rank along dim 0 (equal sizes), differentiably."""
    rank, size = world()
    if size == 1:
        return x
    if not x.is_floating_point():  # masks and ids: no gradient, and gloo sends no bools
        parts = [torch.empty_like(x, dtype=torch.uint8 if x.dtype == torch.bool else x.dtype)
                 for _ in range(size)]
        dist.all_gather(parts, x.to(parts[0].dtype).contiguous())
        return torch.cat(parts).to(x.dtype)
    return _GatherWithGrad.apply(x)

