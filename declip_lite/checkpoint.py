"""Checkpoint plumbing: RNG states as plain data (so ``torch.load(weights_only=True)`` reads every
checkpoint), a durable atomic write, and a lock that keeps a second process off a run."""
import fcntl
import os
import random

import numpy as np
import torch


def rng_state():
    """torch, numpy and Python RNG states as tensors and plain lists (``torch.load(weights_only=True)`` reads them)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {"torch": torch.get_rng_state(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
            "python": [version, list(internal), gauss_next]}


def set_rng_state(state):
    torch.set_rng_state(state["torch"].cpu())
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def write_durably(state, path):
    """``torch.save`` to ``path.tmp``, fsync, rename, fsync the folder: a crash or power loss
    leaves the old file or the new one, never a half or empty one."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class RunLock:
    """An exclusive lock on ``path + ".lock"`` while a run trains: a second process on the same run
    is refused with the holder's pid instead of racing on the checkpoint. The OS drops the lock
    when its process dies, so a killed run never leaves a stale one."""

    def __init__(self, path):
        self.path = f"{path}.lock"

    def __enter__(self):
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip() or "another process"
            self.file.close()
            raise RuntimeError(f"{self.path}: this run is being trained by {holder}; wait for it to finish, "
                               f"or stop it and start again (it resumes from its checkpoint)") from None
        self.file.truncate(0)
        self.file.write(f"pid {os.getpid()} on {os.uname().nodename}")
        self.file.flush()
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()
