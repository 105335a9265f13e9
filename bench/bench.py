"""Benchmarks: ShapeCaps images/s; for every registered objective the operators the host
dispatches per step and the step time, eager and (on CUDA) as one CUDA graph; a group of K runs
trained as one step (``train.group``): its operators per run-step, its time and memory; groups
stepped in sequence against each on its own CUDA stream; the DeCLIP/CLIP step-time ratio; our CLIP
step against open_clip's (CLIP + ClipLoss + AdamW at vit-tiny's architecture); the analysis of one
finished run. Every step is timed in turn, round after round, in one process (a shared machine
drifts). The reproduction's setting: 2,000 pairs, batch 128.

    python bench/bench.py [--device cpu|cuda] [--out results/bench/bench_cpu.json]
    python bench/bench.py --depth-only [--device cuda]   # notebook 08's text-depth step times alone

Speed targets live here, not in the tests: >= 5,000 images/s at 32 px on 2 CPU cores; a DeCLIP
step <= 1.8x a CLIP step on CPU (<= 1.5x on GPU); >= 1.6x open_clip's pairs/s; on an H200 a
CLIP step <= 3 ms; one run's analysis <= 1.5 s on 2 cores.
"""
import argparse
import json
import os
import sys
import time

import torch

from declip_lite import (ShapeCaps, experiments, grids, model_config, notebook, pick_device,
                         shapecaps_tokenizer)
from declip_lite.objectives import objective_names
from declip_lite.runs.build import commit


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def text_depth_seconds(device, steps, scale):
    """Notebook 08's probe: a CLIP step's seconds at each text depth of ``scale``, as the notebook
    times it (``step_seconds``: the update between CUDA events on a GPU, wall-clock on a CPU)."""
    scale = grids.SCALES[scale]
    return {d: experiments.step_seconds("clip", scale.preset, steps, min(5, steps), device,
                                        model_overrides=grids.text_layers(d),
                                        **{**scale.overrides, "pairs": scale.small, "eval_n": 8})
            for d in scale.text_depths}


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


SETTING = dict(pairs=2000)  # the reproduction's (the cpu preset's batch, 128)
QUICK = dict(pairs=64, batch_size=16)  # --quick: a check that it runs, at a few milliseconds a step


def trainer(method, device, fast=None, model="rn-tiny", setting=SETTING, seed=0):
    """A fresh run's Trainer at ``setting`` (default the reproduction's: 2,000 pairs, batch 128);
    ``fast``: its ``TrainConfig.fast`` (None: the default, $DECLIP_LITE_FAST or "auto")."""
    return experiments.build(method, "cpu", seed, device=device, eval_n=8, model=model,
                             train_overrides={"fast": fast} if fast else None, **setting).trainer


def ops_per_step(fn, steps=3):
    """Operators the host dispatches per call of ``fn`` (the profiler's count, nested ones included):
    on a GPU each costs host time, and most launch a kernel."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            fn()
    return sum(e.count for e in prof.key_averages()) / steps


def batch_ops(t):
    """What the graphed step dispatches besides the graph: making the batch, copying it into the
    captured one (one copy per tensor), the replay and the logged row's copy."""
    batch = t.batches.batch(0)
    tensors = len(batch["texts"]) + sum(torch.is_tensor(v) for v in batch.values())
    return ops_per_step(lambda: t.batches.batch(t.step)) + tensors + 2


VIEWS = {"view", "_unsafe_view", "reshape", "expand", "permute", "transpose", "t", "unsqueeze", "squeeze",
         "select", "slice", "as_strided", "unflatten", "flatten", "alias", "detach", "split",
         "split_with_sizes", "unbind", "chunk", "narrow", "diagonal", "view_as", "expand_as",
         "_reshape_alias", "lift_fresh", "unfold"}
SYNCS = {"_local_scalar_dense", "item", "nonzero", "is_nonzero", "equal", "masked_select"}


def dispatched(fn):
    """(non-view operators, host syncs) that ``fn()`` dispatches below autograd and vmap: what would
    launch a kernel on a GPU (views launch none)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        ops, syncs = 0, 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            Count.ops += name not in VIEWS
            Count.syncs += name in SYNCS
            return func(*args, **(kwargs or {}))

    with Count():
        fn()
    return Count.ops, Count.syncs


def group_ops(methods=("clip", "declip", "slip", "filip", "clip_vit"), sizes=(1, 4, 16)):
    """``{method: {K: {update, batch, per_run_step, syncs}}}``: the operators of one group step of K
    runs (``train.group``), the vmapped update and the batches made as one, at smoke size (the
    counts do not depend on it). ``clip_vit``: CLIP on vit-tiny."""
    from declip_lite.train.group import GroupTrainer

    out = {}
    for name in methods:
        method, model = ("clip", "vit-tiny") if name == "clip_vit" else (name, "rn-tiny")
        for k in sizes:
            group = GroupTrainer([experiments.build(method, "smoke", s, device="cpu", pairs=64, batch_size=16,
                                                    eval_n=8, model=model).trainer for s in range(k)])
            group.train_step()  # AdamW's state is made on the first step
            batch_ops, batch_syncs = dispatched(lambda: group.batches.batch(group.step))
            batch = group.batches.batch(group.step)
            update_ops, update_syncs = dispatched(lambda: group.update(batch))
            out.setdefault(name, {})[k] = {"update": update_ops, "batch": batch_ops,
                                           "per_run_step": (update_ops + batch_ops) / k,
                                           "syncs": update_syncs + batch_syncs}
            print(f"group ops {name:8s} K={k:2d}: {out[name][k]}", flush=True)
    return out


# the gpu scale's largest groups: 43, 19
GROUP_SIZES = {"clip": (1, 3, 16, 43), "declip": (3, 19), "slip": (3,)}


def group_of(method, seeds, device, setting):
    """A GroupTrainer (``train.group``) of fresh ``method`` runs of ``seeds`` at ``setting``."""
    from declip_lite.train.group import GroupTrainer

    return GroupTrainer([trainer(method, device, setting=setting, seed=s) for s in seeds])


def group_step(device, sizes, steps, setting=SETTING):
    """``{method: {K: {ms_per_run_step, peak_mib}}}``: the group step of K runs (``train.group``: batches
    made as one, the vmapped update; bf16 autocast on CUDA) at ``setting`` (default the reproduction's:
    2,000 pairs, batch 128), timed over ``steps`` steps after two; on a GPU between CUDA events."""
    out = {}
    for method, ks in sizes.items():
        for k in ks:
            group = group_of(method, range(k), device, setting)
            for _ in range(2):
                group.train_step()
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            _sync(device)
            start = time.perf_counter()
            for _ in range(steps):
                group.train_step()
            _sync(device)
            seconds = (time.perf_counter() - start) / steps
            peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
            out.setdefault(method, {})[k] = {"ms_per_run_step": 1e3 * seconds / k, "peak_mib": peak}
            print(f"group step {method:8s} K={k:2d}: {out[method][k]}", flush=True)
            del group
    return out


def group_streams(device, groups, k, steps, rounds, setting=SETTING):
    """Do groups overlap on one GPU from one process? ``groups`` groups of ``k`` CLIP runs each
    (``train.group``; on CUDA each group step one captured graph), stepped one group after another
    on one stream, and each group on its own CUDA stream, timed in turn (``interleaved``):
    ``{sequence_ms, streams_ms}`` per step of all the groups, and each round's streams/sequence
    ratio. On a CPU there are no streams: both are the sequence (a check that it runs)."""
    trainers = [group_of("clip", range(g * k, (g + 1) * k), device, setting) for g in range(groups)]
    streams = [torch.cuda.Stream(device) if device.type == "cuda" else None for _ in trainers]

    def in_sequence():
        for group in trainers:
            group.train_step()

    def on_streams():
        here = torch.cuda.current_stream(device) if device.type == "cuda" else None
        for group, stream in zip(trainers, streams):
            if stream is not None:
                stream.wait_stream(here)  # each group's step after the last round's, as in sequence
            with torch.cuda.stream(stream):  # None: no-op
                group.train_step()
        for stream in streams:
            if stream is not None:
                here.wait_stream(stream)

    seconds = interleaved({"sequence": in_sequence, "streams": on_streams}, device, rounds, steps)
    ratios = [b / a for a, b in zip(seconds["sequence"], seconds["streams"])]
    return {"groups": groups, "k": k, "sequence_ms": 1e3 * median(seconds["sequence"]),
            "streams_ms": 1e3 * median(seconds["streams"]), "streams_over_sequence": median(ratios),
            "streams_over_sequence_range": [min(ratios), max(ratios)]}


def analysis_seconds(device, eval_n=2000, rounds=3, setting=SETTING):
    """Seconds to evaluate and analyse one finished run at the gpu scale's ``eval_n``: the final
    zero-shot evaluation, one-prompt zero-shot, linear probes (their training draws rendered),
    transfer, as ``reproduce`` does after every run (best of ``rounds``)."""
    from declip_lite.runs.analysis import result

    run = experiments.build("clip", "cpu", 0, device=device, eval_n=eval_n, **setting)
    best = float("inf")
    for _ in range(rounds):
        _sync(device)
        start = time.perf_counter()
        run.trainer.evaluate()
        result(run)
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def open_clip_step(device, batch_size, tokenizer):
    """One step of ``batch_size`` pairs of open_clip's CLIP + ClipLoss + AdamW at vit-tiny's
    architecture, on ready tensors (no batch making: this favours open_clip). None when open_clip is
    not installed."""
    try:
        import open_clip
    except ImportError:
        return None
    cfg = model_config("vit-tiny", vocab_size=tokenizer.vocab_size, context_length=tokenizer.context_length)
    vocab_size = tokenizer.vocab_size
    model = open_clip.model.CLIP(cfg.embed_dim, open_clip.model.CLIPVisionCfg(
        layers=cfg.vit_layers, width=cfg.vit_width, head_width=cfg.vit_width // cfg.vit_heads,
        patch_size=cfg.vit_patch, image_size=cfg.image_size), open_clip.model.CLIPTextCfg(
        context_length=cfg.context_length, vocab_size=vocab_size, width=cfg.text_width, heads=cfg.text_heads,
        layers=cfg.text_layers)).to(device)
    loss = open_clip.loss.ClipLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=experiments.PRESETS["cpu"].train.lr, betas=(0.9, 0.98),
                            eps=1e-8)
    images = torch.rand(batch_size, 3, cfg.image_size, cfg.image_size, device=device)
    tokens = torch.randint(1, vocab_size, (batch_size, cfg.context_length), device=device)

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
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None)
    parser.add_argument("--steps", type=int, default=10, help="steps per method per round")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds of every method in turn (A B C A B C ...)")
    parser.add_argument("--methods", nargs="+", default=None, help="default: every registered objective")
    parser.add_argument("--eval-n", type=int, default=2000, help="images per task in the analysis of one run")
    parser.add_argument("--out", default=None)
    parser.add_argument("--depth-only", action="store_true", help="only notebook 08's text-depth step times")
    parser.add_argument("--quick", action="store_true",
                        help="a check that it runs, not a measurement: 200 images a size, one analysis, "
                             "one step, at batch 16 on 64 pairs")
    args = parser.parse_args()
    device = pick_device(args.device)
    if args.depth_only:
        scale = "smoke" if args.quick else notebook.by_device(False, device)
        print(json.dumps({"hardware": experiments.hardware(device),
                          "text_depth_step_s": text_depth_seconds(device, args.steps, scale)}))
        return
    cuda = device.type == "cuda"
    n = 200 if args.quick else 20_000 if cuda else 2_000
    result = {"hardware": experiments.hardware(device), "torch": torch.__version__,
              "commit": commit(), "command": " ".join(["python bench/bench.py", *sys.argv[1:]])}
    for size in (32, 64, 128):
        result[f"images_per_s_{size}px"] = images_per_second(size, device, n if size < 128 else n // 4)
    result["group_ops"] = group_ops(("clip",), (1, 2)) if args.quick else group_ops()
    setting = QUICK if args.quick else SETTING
    batch = setting.get("batch_size", experiments.PRESETS["cpu"].data.batch_size)
    result["group_step"] = group_step(device, {"clip": (1, 2)} if args.quick else GROUP_SIZES if cuda
                                      else {"clip": (1, 4)}, 1 if args.quick else args.steps, setting)
    overlap = (4, 3, args.steps, args.rounds) if cuda and not args.quick else (2, 2, 1, 1)  # CPU: no streams
    try:  # a failure here is a finding for the one GPU call, not a lost bench
        result["group_streams"] = group_streams(device, *overlap, setting)
    except Exception as e:
        result["group_streams"] = {"error": f"{type(e).__name__}: {e}"}
    result["analysis_s"] = analysis_seconds(device, args.eval_n, 1 if args.quick else 3, setting)
    result["analysis_eval_n"] = args.eval_n
    # the CUDA graph needs CUDA; built as fast="auto", so a capture that fails trains eagerly (graphed: false)
    paths = {"eager": "eager", "graph": "auto"} if cuda else {"eager": "eager"}
    fast = list(paths)[-1]
    methods = args.methods or objective_names()
    trainers = {(m, p): trainer(m, device, mode, setting=setting)
                for m in methods for p, mode in paths.items()}
    trainers.update({("clip_vit", p): trainer("clip", device, mode, "vit-tiny", setting)
                     for p, mode in paths.items()})
    per_method = {}
    for (m, p), t in trainers.items():
        per_method.setdefault(m, {})[f"{p}_ops"] = ops_per_step(t.train_step, 1 if args.quick else 3)
        per_method[m][f"{p}_graphed"] = t.graphed
    for m in per_method:
        per_method[m]["graph_host_ops_projected"] = batch_ops(trainers[(m, fast)])
    steps = {f"{m}/{p}": t.train_step for (m, p), t in trainers.items()}
    theirs = open_clip_step(device, batch, shapecaps_tokenizer())
    if theirs is not None:
        steps["open_clip_vit"] = theirs
    seconds = interleaved(steps, device, args.rounds, args.steps)
    for key, times in seconds.items():
        m, _, p = key.partition("/")
        per_method.setdefault(m, {})[f"{p or 'eager'}_s"] = median(times)
    result["methods"] = per_method
    result["fast_path"] = fast
    result["clip_pairs_per_s"] = batch / per_method["clip"][f"{fast}_s"]
    result["declip_pairs_per_s"] = batch / per_method["declip"][f"{fast}_s"]
    ratios = {"declip_over_clip": (f"declip/{fast}", f"clip/{fast}")}
    if theirs is not None:
        # their step time / ours
        ratios["ours_over_open_clip_pairs_per_s"] = ("open_clip_vit", f"clip_vit/{fast}")
    for key, (a, b) in ratios.items():
        per_round = [x / y for x, y in zip(seconds[a], seconds[b])]
        result[key], result[key + "_range"] = median(per_round), [min(per_round), max(per_round)]
    result["generator_over_training"] = result["images_per_s_32px"] / result["clip_pairs_per_s"]
    result["rounds"], result["steps_per_round"], result["batch_size"] = args.rounds, args.steps, batch
    print(json.dumps(result, indent=1))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
