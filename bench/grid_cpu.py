"""Eight smoke runs (notebook 07's ablation ladder and four of 08's benchmark grid), trained eagerly
on one thread into a fresh folder, by the library of the checkout given: the whole process is the
measurement, so two commits compare A B A B (git worktree add /tmp/old <commit>), e.g.

    python bench/grid_cpu.py /tmp/old        # against: python bench/grid_cpu.py .
"""
import pathlib
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(sys.argv[1]).resolve()))
import torch  # noqa: E402

from declip_lite.runs import grids, pool  # noqa: E402

torch.set_num_threads(1)
configs = grids.grid("ablation", "smoke") + grids.grid("benchmark", "smoke")[:4]
with tempfile.TemporaryDirectory() as runs:
    pool.run_grid(configs, runs, "cpu", progress=False, group="off")
