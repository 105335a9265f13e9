"""One GPU call: CLIP cpu-preset variants (accuracy vs steps) and one gpu-preset timing. Writes JSON to $OUT."""
import json
import os
import sys
import time

import torch

from declip_lite import experiments

out = os.environ.get("OUT", "/tmp")
budget = float(sys.argv[1]) if len(sys.argv) > 1 else 400
start, rows = time.perf_counter(), []
variants = [("clip", dict()), ("clip", dict(pairs=20000)), ("clip", dict(lr=2e-3)), ("clip", dict(pairs=20000, lr=2e-3)),
            ("clip", dict(pairs=20000, steps=3000)), ("declip", dict()), ("clip", dict(pairs=20000, batch_size=256, lr=2e-3))]
for method, kw in variants:
    if time.perf_counter() - start > budget:
        break
    t = time.perf_counter()
    run = experiments.train(method, "cpu", 0, runs_dir=None, progress=False, device="cuda", **kw)
    rows.append({"method": method, **kw, "seconds": time.perf_counter() - t, "evals": run.trainer.evals})
    print(method, kw, f"{rows[-1]['seconds']:.0f}s", {k: round(v, 3) for k, v in run.trainer.evals[-1].items()}, flush=True)
    with open(f"{out}/probe.json", "w") as f:
        json.dump(rows, f)
