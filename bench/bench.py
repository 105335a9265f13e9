"""Benchmarks: ShapeCaps images/s, training pairs/s, and the DeCLIP/CLIP step-time ratio.

    python bench/bench.py [--device cpu|cuda] [--out results/bench_cpu.json]

Speed targets live here, not in the tests: >= 5,000 images/s at 32 px on 2 CPU cores, and a
DeCLIP step <= 2x a CLIP step on CPU (<= 1.5x on GPU) for the same model and batch.
"""
import argparse
import json
import os
import sys
import time

import torch

from declip_lite import ShapeCaps, experiments, pick_device


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def images_per_second(size, device, n):
    data = ShapeCaps(1_000_000, image_size=size, device=device)
    index = torch.arange(n, device=device)
    data.images(index[:64])
    _sync(device)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        data.images(index)
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return n / best


def step_seconds(method, device, preset, steps):
    """Median seconds per full training step (batch making included) after warm-up."""
    run = experiments.build(method, preset, 0, device=device, eval_n=8)
    trainer = run.trainer
    for _ in range(3):
        trainer.train_step()
    times = []
    for _ in range(steps):
        _sync(device)
        start = time.perf_counter()
        trainer.train_step()
        _sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2], run.preset.batch_size


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    device = pick_device(args.device)
    preset = "gpu" if device.type == "cuda" else "cpu"
    n = 20_000 if device.type == "cuda" else 2_000
    result = {"hardware": experiments.hardware(device), "preset": preset, "torch": torch.__version__}
    for size in (32, 64, 128):
        result[f"images_per_s_{size}px"] = images_per_second(size, device, n if size < 128 else n // 4)
    for method in ("clip", "declip"):
        sec, batch = step_seconds(method, device, preset, args.steps)
        result[f"{method}_step_s"], result[f"{method}_pairs_per_s"] = sec, batch / sec
    result["declip_over_clip"] = result["declip_step_s"] / result["clip_step_s"]
    result["generator_over_training"] = result["images_per_s_32px"] / result["clip_pairs_per_s"]
    for k, v in result.items():
        print(f"{k:26s} {v:,.3f}" if isinstance(v, float) else f"{k:26s} {v}")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
