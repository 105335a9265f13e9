"""How far a run's result moves with the CPU thread count, which the run's cache name ignores.

Trains the small-data CLIP run (2,000 pairs x 1,200 steps of 128, rn-tiny) at each thread count,
seed after seed, threads interleaved (1 2 1 2 ...), uncached, and compares each result with the
same seed at 1 thread, and with the spread over seeds that every comparison already has to beat.

    python bench/thread_drift.py --seeds 0 1 2 --threads 1 2 --out results/checks/thread_drift.json
"""
import argparse
import json
import os
import platform
import statistics
import sys

import torch

from declip_lite import experiments, notebook
from declip_lite.runs.build import commit


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    # the code that trains, before anything can change
    preset, setting, code = *notebook.small_data(False), commit()
    scores = {}
    for seed in args.seeds:
        for threads in args.threads:
            torch.set_num_threads(threads)
            run = experiments.train("clip", preset, seed, runs_dir=None, progress=False, device="cpu",
                                    **setting)
            scores[f"{threads}/{seed}"] = run.record.zero_shot
            print(f"seed {seed}, {threads} threads: mean zero-shot {run.record.zero_shot['mean']:.4f}",
                  flush=True)
    base = args.threads[0]
    drift = {f"{t}_minus_{base}": [scores[f"{t}/{s}"]["mean"] - scores[f"{base}/{s}"]["mean"]
                                   for s in args.seeds]
             for t in args.threads[1:]}
    spread = statistics.stdev(scores[f"{base}/{s}"]["mean"] for s in args.seeds)
    result = {"hardware": f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
              "torch": torch.__version__, "commit": code,
              "command": " ".join(["python bench/thread_drift.py", *sys.argv[1:]]),
              "run": "clip", "preset": preset,
              **setting, "scores": scores, "drift_of_mean": drift, "seed_std_of_mean": spread}
    print(json.dumps({"drift_of_mean": drift, "seed_std_of_mean": spread}, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
