"""Every numbered notebook, executed by papermill in smoke mode. The executed copy (failing or not)
stays in runs/tests/ for inspection."""
import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "notebooks" / "run.py")
run_notebooks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_notebooks)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("notebook", run_notebooks.notebooks(), ids=lambda p: p.stem)
def test_notebook_runs_in_smoke_mode(notebook, tmp_path):
    params = {"SMOKE": True, "SEED": 0, "DEVICE": "cpu", "RUNS_DIR": str(tmp_path / "runs"),
              "FIG_DIR": str(tmp_path / "figures")}
    run_notebooks.execute(notebook, ROOT / "runs" / "tests", params, timeout=600)
