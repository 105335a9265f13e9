"""Grids of runs, trained in parallel processes when asked (tiny models leave a GPU mostly idle).

Each worker process trains run after run (imports, the CUDA context and the data caches paid
once) with one BLAS/OpenMP thread, and there are never more workers than cores. Workers are forked
from a server that imported torch once (``forkserver``; ``spawn`` where there is none): a worker
starts in a fraction of a second instead of the ~7 s of CPU that importing torch and
``torch._dynamo`` (which ``torch.optim`` imports on first use) costs each fresh process."""
import contextlib
import importlib
import multiprocessing
import multiprocessing.connection
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

import torch

from ..objectives import objective_class
from .cache import finished_record, train
from .config import RunConfig
from .grouped import describe, grouping, plan, train_group
from .records import Records


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class RunsFailed(RuntimeError):
    """Runs of a grid that failed, one line each (the others finished and are cached)."""


def _record(config, runs_dir, device, progress, plugin=None, deadline=None):
    """The record of ``config``'s run: read when ``runs_dir`` has it, else trained; None when the
    ``deadline`` (``time.time()``) passed before it could start. ``plugin``: the module that
    registers the objective, imported first in a fresh worker process."""
    if plugin:
        importlib.import_module(plugin)
    record = runs_dir and finished_record(os.path.join(runs_dir, config.name))
    if record:  # a damaged one is rebuilt by ``train``, which says so
        return record
    if deadline is not None and time.time() > deadline:
        return None
    return train(config, runs_dir=runs_dir, device=device, progress=progress).record


PRELOAD = ["torch._dynamo", __name__]  # what the fork server imports once, for every worker


def start_method():
    """``forkserver`` where the platform has it (Linux, macOS), else ``spawn``; never ``fork``,
    which copies the caller's threads' locks."""
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def worker_context():
    """The multiprocessing context workers start from (the fork server preloads :data:`PRELOAD`)."""
    context = multiprocessing.get_context(start_method())
    if start_method() == "forkserver":
        context.set_forkserver_preload(PRELOAD)
    return context


def _worker_start():
    """A worker's initialiser: one thread for torch's pool and any BLAS/OpenMP pool already started,
    and a watchdog that ends the worker when the process that started the pool dies, so a killed
    ``reproduce`` leaves no orphans training on (its checkpoints are durable; the next call resumes
    them)."""
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1)
    threading.Thread(target=_exit_with_parent, daemon=True).start()


def _exit_with_parent():
    """Wait for the pool's owner to end (its sentinel: a pipe only it writes), then end this worker."""
    multiprocessing.connection.wait([multiprocessing.parent_process().sentinel])
    os._exit(1)


@contextlib.contextmanager
def _single_threaded_children():
    """Workers started inside inherit one-thread pools from their first import on."""
    saved = {k: os.environ.get(k) for k in THREAD_VARIABLES}
    os.environ.update({k: "1" for k in THREAD_VARIABLES})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                del os.environ[k]
            else:
                os.environ[k] = v


def _groups(wave, runs_dir, device, group):
    """The runs of ``wave`` that ``runs_dir`` lacks, grouped by step signature when ``group`` asks
    (``runs.grouped``): the groups of two or more (their plan printed); the rest train alone."""
    if not (grouping(group, device) and runs_dir):
        return []
    pending = [c for c in wave if finished_record(os.path.join(runs_dir, c.name)) is None]
    groups = [g for g in plan(pending) if len(g) > 1]
    if groups:
        print(describe(groups), flush=True)
    return groups


def _train_group(configs, runs_dir, device, plugins=(), deadline=None):
    """Train one group (its records land in ``runs_dir``) unless the ``deadline`` has passed."""
    for plugin in plugins:
        importlib.import_module(plugin)
    if deadline is None or time.time() < deadline:
        train_group(configs, runs_dir, device)


def run_grid(configs, runs_dir="data/runs", device=None, jobs=1, progress=True, on_record=None, deadline=None,
             group="auto"):
    """Train the runs in ``configs`` (:class:`RunConfig`, or dicts of ``train`` arguments) that
    ``runs_dir`` lacks; return every run's :class:`Record`, in order. ``jobs`` > 1 trains in
    parallel processes (tiny models leave a GPU mostly idle). Filtered runs wait for the rest, so
    each scorer trains once. ``on_record(config, record)`` is called as each run finishes. A run
    that fails does not stop the others: all failures are raised together at the end. ``jobs`` is
    capped at the machine's cores. ``deadline`` (a ``time.time()``): no run starts after it; the
    runs it left untrained are missing from the returned Records (rerun to finish them). ``group``
    ("auto", "on", "off"): runs of one step signature train as one vmapped step (``runs.grouped``),
    each group one job beside the runs trained alone."""
    on_record = on_record or (lambda config, record: None)
    configs = [c if isinstance(c, RunConfig) else RunConfig.of(**c) for c in configs]
    filtered = [c for c in configs if c.scorer is not None]
    waves = [[c for c in configs if c.scorer is None] + [c.scorer for c in filtered], filtered]
    records, failed = {}, {}

    def finished(config, outcome):
        try:
            record = outcome()
        except Exception as e:  # the other runs go on; every failure is named at the end
            failed[config.name] = e
        else:
            if record is not None:
                records[config] = record
                on_record(config, record)

    jobs = min(jobs, os.cpu_count() or 1)
    plugin = lambda c: objective_class(c.method).__module__  # noqa: E731  (imported first in a fresh worker)

    def group_done(configs, outcome):  # a group's failure is each of its runs'; its records are read
        try:
            outcome()
        except Exception as e:
            failed.update({c.name: e for c in configs})
        else:
            for c in configs:
                finished(c, lambda: _record(c, runs_dir, device, False, deadline=deadline))

    with contextlib.ExitStack() as stack:
        pool = None  # one pool for every wave: its workers import torch once
        for wave in (list(dict.fromkeys(w)) for w in waves):  # a run listed twice trains once
            groups = _groups(wave, runs_dir, device, group)
            grouped = {c for g in groups for c in g}
            alone = [c for c in wave if c not in grouped]
            if jobs > 1 and len(groups) + len(alone) > 1:
                if pool is None:
                    stack.enter_context(_single_threaded_children())
                    pool = stack.enter_context(ProcessPoolExecutor(jobs, mp_context=worker_context(),
                                                                   initializer=_worker_start))
                futures = {pool.submit(_train_group, g, runs_dir, device, sorted({plugin(c) for c in g}),
                                       deadline): g for g in groups}  # the largest first
                futures.update({pool.submit(_record, c, runs_dir, device, False, plugin(c), deadline): c
                                for c in alone})
                for future in as_completed(futures):
                    done = futures[future]
                    (group_done if isinstance(done, list) else finished)(done, future.result)
            else:
                for g in groups:
                    group_done(g, lambda: _train_group(g, runs_dir, device, deadline=deadline))
                for c in alone:
                    finished(c, lambda: _record(c, runs_dir, device, progress, deadline=deadline))
    if failed:
        lines = [f"{name}: {type(e).__name__}: {(str(e).splitlines() or [''])[0]}"
                 for name, e in failed.items()]
        head = f"{len(failed)} of {len(records) + len(failed)} runs failed (the others are cached):"
        raise RunsFailed("\n".join([head, *lines]) if len(records) + len(failed) > 1 else lines[0])
    return Records(records[c] for c in configs if c in records)
