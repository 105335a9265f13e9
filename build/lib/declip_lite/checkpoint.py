"""Files that must survive faults. Checkpoints and JSON are written durably (a crash, a power loss
or a full disk leaves the old file or the new one, never half of one) and read safely: RNG states
are plain data, so ``torch.load(weights_only=True)`` reads every checkpoint, and a damaged file, or
one from another version, stops with an error that names it, says what is wrong and how to fix it.
And a lock that keeps a second process off a run.
"""
import errno
import fcntl
import json
import math
import os
import pickle
import random
import zipfile

import numpy as np
import torch


def rng_state():
    """torch, numpy and Python RNG states as tensors and plain lists
    (``torch.load(weights_only=True)`` reads them)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {"torch": torch.get_rng_state(),
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
            "python": [version, list(internal), gauss_next]}


def set_rng_state(state):
    torch.set_rng_state(state["torch"].cpu())
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


class DamagedFile(RuntimeError):
    """A file the package reads is truncated, corrupt or from another version; the message names
    the file, what is wrong and the fix."""


def _locked_tmp(tmp, mode):
    """``tmp`` opened empty for writing under an OS lock, so two processes writing one file (two
    reproductions at once) take turns; the holder renames it before letting go, so a waiter whose
    file was renamed away opens a new one."""
    while True:
        f = os.fdopen(os.open(tmp, os.O_RDWR | os.O_CREAT, 0o666), "r+b" if "b" in mode else "r+")
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            if os.fstat(f.fileno()).st_ino == os.stat(tmp).st_ino:
                f.truncate(0)
                return f
        except FileNotFoundError:
            pass
        f.close()


def write_durably(path, write, mode="wb"):
    """``write(f)`` into ``path.tmp``, fsync, rename, fsync the folder: a crash or power loss leaves
    the old file or the new one. A failed write (a full disk) removes the tmp file and names ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp"
    with _locked_tmp(tmp, mode) as f:
        try:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        except (OSError, RuntimeError) as e:  # torch.save reports a failed write as a RuntimeError
            stat = os.statvfs(folder)
            full = getattr(e, "errno", None) == errno.ENOSPC or stat.f_bavail * stat.f_frsize < 2**20
            os.remove(tmp)
            error = OSError(f"{'no space left writing' if full else 'cannot write'} "
                            f"{path}{'' if full else f': {e}'} "
                            f"(the previous file, if any, is intact)")
            error.errno = errno.ENOSPC if full else getattr(e, "errno", None) or errno.EIO
            raise error from None
        os.replace(tmp, path)
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def save_json(data, path):
    """``data`` as indented JSON at ``path``, written durably (``write_durably``)."""
    write_durably(path, lambda f: json.dump(data, f, indent=1), mode="w")


def read_json(path, fix, schema=None):
    """The JSON at ``path``, checked against ``schema`` when given; a :class:`DamagedFile` naming it,
    the fault and ``fix`` when it cannot be parsed or does not match."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DamagedFile(f"{path}: damaged JSON ({e}); {fix}") from None
    return data if schema is None else checked(data, schema, path, fix)


# ----- schemas: what each kind of file must hold, checked where it is read ------------------------
# A schema is a leaf (a name and a test), a dict of required keys, ``[schema]`` (a list of them),
# ``Optional(schema)`` (the key may be missing or None) or ``MapOf(schema)`` (any keys, each one's value).

class Optional:
    def __init__(self, schema):
        self.schema = schema


class MapOf:
    def __init__(self, schema):
        self.schema = schema


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _tensors(finite):
    def test(v):
        if not isinstance(v, dict) or not all(torch.is_tensor(t) for t in v.values()):
            return False
        floats = [t for t in v.values() if t.is_floating_point()]
        return not finite or not floats or bool(torch.stack([torch.isfinite(t).all() for t in floats]).all())
    return test


TEXT = ("a string", lambda v: isinstance(v, str))
COUNT = ("an integer >= 0", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0)
POSITIVE = ("an integer > 0", lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0)
NUMBER = ("a finite number", lambda v: _number(v) and math.isfinite(v))
SECONDS = ("a finite number >= 0", lambda v: _number(v) and math.isfinite(v) and v >= 0)
ANY_NUMBER = ("a number", _number)  # NaN allowed: the loss a crash saw
SCORE = ("an accuracy in [0, 1]", lambda v: _number(v) and 0 <= v <= 1)  # NaN fails both
OBJECT = ("an object", lambda v: isinstance(v, dict))
LIST = ("a list", lambda v: isinstance(v, list))
TENSOR = ("a tensor", torch.is_tensor)
TENSORS = ("tensors by name", _tensors(finite=False))
FINITE_TENSORS = ("tensors by name, all finite", _tensors(finite=True))


def _fault(value, schema, at):
    """What is wrong with ``value`` against ``schema`` (``at``: where it sits), or None."""
    if isinstance(schema, Optional):
        return None if value is None else _fault(value, schema.schema, at)
    if isinstance(schema, (dict, MapOf)):
        if not isinstance(value, dict):
            return f"{at or 'the file'} should be an object, got {type(value).__name__}"
        items = schema.items() if isinstance(schema, dict) else ((k, schema.schema) for k in value)
        for key, inner in items:
            if key not in value:
                if isinstance(inner, Optional):
                    continue
                return f"missing key {at}{key}"
            fault = _fault(value[key], inner, f"{at}{key}.")
            if fault:
                return fault
        return None
    if isinstance(schema, list):
        if not isinstance(value, list):
            return f"{at.rstrip('.') or 'the file'} should be a list, got {type(value).__name__}"
        faults = (_fault(v, schema[0], f"{at.rstrip('.')}[{i}].") for i, v in enumerate(value))
        return next((f for f in faults if f), None)
    name, test = schema
    plain = isinstance(value, (str, int, float, type(None)))
    shown = repr(value)[:40] if plain else f"a {type(value).__name__}"
    return None if test(value) else f"{at.rstrip('.')} should be {name}, got {shown}"


def checked(data, schema, path, fix):
    """``data`` when it matches ``schema``; else a :class:`DamagedFile` naming ``path``, the fault
    and ``fix``."""
    fault = _fault(data, schema, "")
    if fault:
        raise DamagedFile(f"{path}: {fault}; {fix}")
    return data


class _Stub(dict):
    """Whatever a pickle names becomes this harmless object, which takes any items it is given:
    reading a version runs no code from the file."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def __setstate__(self, state):
        pass

    def append(self, item):
        pass

    def extend(self, items):
        pass


class _PeekUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        return _Stub

    def persistent_load(self, pid):  # tensor storages: not needed to read plain fields
        return None


def _peek(path):
    """The top-level plain fields of a ``torch.save`` file, read without running its pickle's code."""
    with zipfile.ZipFile(path) as archive:
        bad = archive.testzip()  # every entry's CRC: a truncated or flipped file fails here
        if bad is not None:
            raise zipfile.BadZipFile(f"entry {bad} is corrupt")
        (data,) = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        with archive.open(data) as f:
            state = _PeekUnpickler(f).load()
    return state if isinstance(state, dict) else {}


def load_torch(path, fix, version=None, map_location="cpu", schema=None):
    """``torch.load(path, weights_only=True)`` after checking the file's integrity and, when
    ``version`` is given, its ``"version"`` field, then its contents against ``schema``: a damaged
    or foreign file is a :class:`DamagedFile` naming it and ``fix``, never torch's advice to load
    it unsafely."""
    try:
        found = _peek(path).get("version")
    except (zipfile.BadZipFile, EOFError, pickle.UnpicklingError, ValueError, KeyError, OSError) as e:
        raise DamagedFile(f"{path}: damaged file, truncated or corrupt ({type(e).__name__}: {e}); "
                          f"{fix}") from None
    if version is not None and found != version:
        raise DamagedFile(f"{path}: checkpoint version {found}, expected {version} "
                          f"(another declip-lite wrote it); {fix}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # objects a weights-only load refuses: a file this package did not write
        raise DamagedFile(f"{path}: not a file declip-lite wrote (torch.load: {type(e).__name__}); "
                          f"{fix}") from None
    return state if schema is None else checked(state, schema, path, fix)


class RunLock:
    """An exclusive lock on ``path + ".lock"`` while a run trains. A second process on the same run
    says who holds it and waits, then finds the run finished and reads its record: two
    reproductions at once both finish, and each run trains once. The OS drops the lock when its
    process dies, so a killed run never leaves a stale one."""

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
            print(f"{self.path}: this run is being trained by {holder}; waiting for it", flush=True)
            fcntl.flock(self.file, fcntl.LOCK_EX)
        self.file.truncate(0)
        self.file.write(f"pid {os.getpid()} on {os.uname().nodename}")
        self.file.flush()
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()
