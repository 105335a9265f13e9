"""Benchmarks: ShapeCaps images/s, training pairs/s, the DeCLIP/CLIP step-time ratio, and our
CLIP step against open_clip's (CLIP + ClipLoss + AdamW at vit-tiny's architecture), all steps
timed in turn, round after round, in one process (a shared machine drifts).

    python bench/bench.py [--device cpu|cuda] [--out results/bench_cpu.json]

Speed targets live here, not in the tests: >= 5,000 images/s at 32 px on 2 CPU cores; a DeCLIP
step <= 1.8x a CLIP step on CPU (<= 1.5x on GPU); >= 1.6x open_clip's pairs/s.
"""
import argparse
import json
import os
import sys
import time

import torch

from declip_lite import ShapeCaps, experiments, model_config, pick_device, shapecaps_tokenizer
from declip_lite.runs.build import commit


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


def trainer_step(method, device, preset, model="rn-tiny"):
    """One training step of ours (batch making included), as a function."""
    return experiments.build(method, preset, 0, device=device, eval_n=8, model=model).trainer.train_step


def open_clip_step(device, preset, tokenizer):
    """One step of open_clip's CLIP + ClipLoss + AdamW at vit-tiny's architecture, on ready tensors
    (no batch making: this favours open_clip). None when open_clip is not installed."""
    try:
        import open_clip
    except ImportError:
        return None
    cfg, p = model_config("vit-tiny", vocab_size=tokenizer.vocab_size, context_length=tokenizer.context_length), \
        experiments.PRESETS[preset]
    vocab_size = tokenizer.vocab_size
    model = open_clip.model.CLIP(cfg.embed_dim, open_clip.model.CLIPVisionCfg(
        layers=cfg.vit_layers, width=cfg.vit_width, head_width=cfg.vit_width // cfg.vit_heads, patch_size=cfg.vit_patch,
        image_size=cfg.image_size), open_clip.model.CLIPTextCfg(
        context_length=cfg.context_length, vocab_size=vocab_size, width=cfg.text_width, heads=cfg.text_heads,
        layers=cfg.text_layers)).to(device)
    loss, opt = open_clip.loss.ClipLoss(), torch.optim.AdamW(model.parameters(), lr=p.lr, betas=(0.9, 0.98), eps=1e-8)
    images = torch.rand(p.batch_size, 3, cfg.image_size, cfg.image_size, device=device)
    tokens = torch.randint(1, vocab_size, (p.batch_size, cfg.context_length), device=device)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = loss(*model(images, tokens))
        opt.zero_grad(set_to_none=True)
        out.backward()
        opt.step()
    return step


def interleaved(steps, device, rounds, per_round):
    """Median seconds per step of each entry of ``steps`` ({name: step fn}), timed in turn
    (A B C A B C ...) for ``rounds`` rounds, and every round's ratios to the first entry."""
    for fn in steps.values():
        for _ in range(3):  # warm-up
            fn()
    seconds = {name: [] for name in steps}
    for _ in range(rounds):
        for name, fn in steps.items():
            _sync(device)
            start = time.perf_counter()
            for _ in range(per_round):
                fn()
            _sync(device)
            seconds[name].append((time.perf_counter() - start) / per_round)
    return seconds


def median(values):
    return sorted(values)[len(values) // 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None)
    parser.add_argument("--steps", type=int, default=10, help="steps per method per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of every method in turn (A B C A B C ...)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    device = pick_device(args.device)
    preset = "gpu" if device.type == "cuda" else "cpu"
    n = 20_000 if device.type == "cuda" else 2_000
    result = {"hardware": experiments.hardware(device), "preset": preset, "torch": torch.__version__,
              "commit": commit(), "command": " ".join(["python bench/bench.py", *sys.argv[1:]])}
    for size in (32, 64, 128):
        result[f"images_per_s_{size}px"] = images_per_second(size, device, n if size < 128 else n // 4)
    steps = {"clip": trainer_step("clip", device, preset), "declip": trainer_step("declip", device, preset),
             "clip_vit": trainer_step("clip", device, preset, "vit-tiny")}
    theirs = open_clip_step(device, preset, shapecaps_tokenizer())
    if theirs is not None:
        steps["open_clip_vit"] = theirs
    seconds = interleaved(steps, device, args.rounds, args.steps)
    batch = experiments.PRESETS[preset].batch_size
    for name, times in seconds.items():
        result[f"{name}_step_s"], result[f"{name}_pairs_per_s"] = median(times), batch / median(times)
    ratios = {"declip_over_clip": ("declip", "clip")}
    if theirs is not None:
        ratios["ours_over_open_clip_pairs_per_s"] = ("open_clip_vit", "clip_vit")  # their step time / ours
    for key, (a, b) in ratios.items():
        per_round = [x / y for x, y in zip(seconds[a], seconds[b])]
        result[key], result[key + "_range"] = median(per_round), [min(per_round), max(per_round)]
    result["generator_over_training"] = result["images_per_s_32px"] / result["clip_pairs_per_s"]
    result["rounds"], result["steps_per_round"], result["batch_size"] = args.rounds, args.steps, batch
    for k, v in result.items():
        print(f"{k:26s} {v:,.3f}" if isinstance(v, float) else f"{k:26s} {v}")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
