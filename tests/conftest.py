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


def pytest_collection_modifyitems(items):
    """Notebooks first, the later (heavier) ones first. With ``--dist worksteal`` (make test) an idle
    worker takes queued tests from a busy one, so the workers finish together."""
    def order(item):
        notebook = item.callspec.params.get("notebook") if hasattr(item, "callspec") else None
        return (0, -int(notebook.stem[:2])) if notebook is not None else (1, 0)
    items.sort(key=order)
