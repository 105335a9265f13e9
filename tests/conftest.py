import itertools
import os

import pytest
import torch

from declip_lite.data.loader import shapecaps_tokenizer


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))  # make test: 1 per pytest worker
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tokenizer():
    return shapecaps_tokenizer()


@pytest.fixture(scope="session")
def shared_runs(tmp_path_factory, worker_id):
    """One runs folder for the whole suite, every pytest-xdist worker included: the notebooks' smoke
    runs and ``reproduce --scale smoke`` train the same configurations, so each trains once (a run
    another process holds is waited for and read: ``RunLock``)."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if worker_id != "master" else base) / "shared-runs"


# seconds of the slowest tests in `make test` on 2 cores, 2 workers (--durations, `6465027`), the browser
# tests together (they share one JupyterLab): only a scheduling hint, a test missing here counts as quick
SLOW = {"test_make_reproduce_smoke": 249, "test_browser": 174, "test_the_gpu_check_runs": 73,
        "test_two_grids_at_once": 25, "test_a_run_killed_anywhere": 24,
        "test_a_record_is_the_same_whatever": 22, "[08_clip_benchmark]": 22, "[06_declip]": 21,
        "[04_multi_view]": 20, "[02_image_self_supervision]": 19}


def _seconds(item):
    return next((s for key, s in SLOW.items() if key in item.nodeid), 0)


def pytest_collection_modifyitems(items):
    """Under ``--dist worksteal`` (make test) each of the W workers is first sent a contiguous
    share of the collection (n // W, then the rest split alike) and an idle worker then takes the
    tail of a busy one's queue. So the slow tests are dealt out longest first, each to the share
    with the least work so far, and lead their shares: each worker starts on its own slow tests
    instead of one worker holding them all. The browser tests stay in one share (one JupyterLab)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    blocks = {}
    for item in items:
        key = "test_browser" if item.module.__name__.endswith("test_browser") else item.nodeid
        blocks.setdefault(key, []).append(item)
    slow = sorted((b for b in blocks.values() if _seconds(b[0])), key=lambda b: -_seconds(b[0]))
    shares, work = [[] for _ in range(workers)], [0] * workers
    for block in slow:
        i = work.index(min(work))
        shares[i] += block
        work[i] += _seconds(block[0])
    quick = iter(item for block in blocks.values() if not _seconds(block[0]) for item in block)
    left = len(items)
    for i, share in enumerate(shares):  # fill each share to the size the scheduler will send it
        size = left // (workers - i)
        share += itertools.islice(quick, max(0, size - len(share)))
        left -= len(share)
    shares[-1] += list(quick)
    items[:] = [item for share in shares for item in share]
