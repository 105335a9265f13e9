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


LONGEST = ("test_make_reproduce_smoke", "test_the_gpu_check_runs",  # a minute or more each, in subprocesses
           "test_a_run_killed_anywhere")


def pytest_collection_modifyitems(items):
    """The browser test and the three longest first, then the notebooks, the later (heavier) ones
    first: longest first, so that with ``--dist worksteal`` (make test), where an idle worker takes
    queued tests from a busy one, the workers finish together."""
    def order(item):
        if item.module.__name__.endswith("test_browser") or item.name.startswith(LONGEST):
            return (0, 0)
        notebook = item.callspec.params.get("notebook") if hasattr(item, "callspec") else None
        return (1, -int(notebook.stem[:2])) if notebook is not None else (2, 0)
    items.sort(key=order)
