"""The README's results, written from ``results/`` between markers so they cannot drift:

    <!-- results: results/cpu -->          a ``reproduce`` folder: the ladder and its verdicts
    <!-- bench: results/bench/bench_cpu.json --> a ``bench/bench.py`` JSON: the speed table
    <!-- drift: results/checks/thread_drift.json --> ``bench/thread_drift.py``: results by thread count
    ...generated...
    <!-- end -->

``python -m declip_lite.experiments readme`` rewrites every such block; a test fails when one
differs from what its file gives."""
import glob
import json
import os
import re

from .. import report
from . import grids
from ..checkpoint import read_json
from .records import Record, Records
from .reproduce import SUMMARY, small_data_rows
from .shipped import FIX

BLOCK = re.compile(r"(<!-- (results|bench|drift): (\S+) -->\n)(.*?)(<!-- end -->)", re.S)
TASK_COLUMNS = ("shape", "colour", "count", "composition")


def load(folder):
    """(summary, Records) of a ``reproduce`` output folder."""
    paths = sorted(glob.glob(os.path.join(folder, "records", "*.json")))
    summary = read_json(os.path.join(folder, "summary.json"), FIX, SUMMARY)
    return summary, Records(Record.from_json(read_json(p, FIX), p, FIX) for p in paths)


def finished(summary, records):
    """The run count: "N runs", or "N of M planned runs" for a reproduction stopped by its budget."""
    planned = summary.get("planned", len(records))
    return f"{len(records)} runs" if len(records) >= planned else f"{len(records)} of {planned} planned runs"


def results_block(folder):
    """Markdown: the small-data ladder (mean ± std over seeds) and each rung against CLIP."""
    summary, records = load(folder)
    rows = small_data_rows(records, summary["scale"])
    scale = grids.SCALES[summary["scale"]]
    ladder = [rows.one(method=m) for m in grids.LADDER if rows.where(method=m)]
    clip = rows.one(method="clip")
    lines = [f"{summary['hardware']}, torch {summary['torch']}, commit `{summary['commit'][:10]}`: "
             f"`{summary['command']}`; {finished(summary, records)}, {summary['jobs']} at a time. "
             f"{scale.small:,} pairs × {scale.overrides['steps']:,} steps of "
             f"{scale.overrides['batch_size']}.", "",
             "| method | seeds | mean zero-shot | " + " | ".join(TASK_COLUMNS)
             + " | minus CLIP, 95 % interval | verdict |",
             "|---|---:|---:|" + "---:|" * len(TASK_COLUMNS) + "---|---|"]
    for r in ladder:
        c = report.compare(clip, r) if r is not clip else None
        interval = f"{c.difference:+.3f} [{c.low:+.3f}, {c.high:+.3f}] ({c.kind})" if c else ""
        lines.append(f"| {r.method} | {len(r.seeds)} | {r['mean'][0]:.3f} ± {r['mean'][1]:.3f} | "
                     + " | ".join(f"{r[t][0]:.3f}" for t in TASK_COLUMNS)
                     + f" | {interval} | {c.verdict if c else ''} |")
    return "\n".join(lines) + "\n"


def bench_block(path):
    """Markdown: the speed table of one ``bench/bench.py`` JSON, and its per-method table."""
    with open(path) as f:
        b = json.load(f)
    fast = b.get("fast_path", "eager")
    lines = [f"{b['hardware']}, torch {b['torch']}, commit `{b['commit'][:10]}`: `{b['command']}`; "
             f"every step timed in turn, {b['rounds']} rounds of {b['steps_per_round']} steps; "
             f"median (range over rounds).", "",
             "| | |", "|---|---:|",
             "| ShapeCaps images/s, 32 / 64 / 128 px | " + " / ".join(f"{b[f'images_per_s_{s}px']:,.0f}"
                                                            for s in (32, 64, 128)) + " |",
             f"| CLIP training pairs/s (rn-tiny, batch {b['batch_size']}, {fast}) | "
             f"{b['clip_pairs_per_s']:,.0f} |",
             f"| DeCLIP training pairs/s ({fast}) | {b['declip_pairs_per_s']:,.0f} |",
             f"| DeCLIP / CLIP step time ({fast}) | {b['declip_over_clip']:.2f}× "
             f"({b['declip_over_clip_range'][0]:.2f}–{b['declip_over_clip_range'][1]:.2f}) |"]
    if "ours_over_open_clip_pairs_per_s" in b:
        r = b["ours_over_open_clip_pairs_per_s_range"]
        lines.append(f"| our CLIP pairs/s over open_clip's (vit-tiny, CLIP + ClipLoss + AdamW; "
                     f"ours {fast}) | {b['ours_over_open_clip_pairs_per_s']:.2f}× "
                     f"({r[0]:.2f}–{r[1]:.2f}) |")
    if "analysis_s" in b:
        lines.append(f"| one finished run's evaluation and analysis ({b['analysis_eval_n']:,} images "
                     f"a task) | {b['analysis_s']:.2f} s |")
    if "methods" in b:
        graph = fast == "graph"
        lines += ["", "| step | eager ms | eager operators | "
                  + ("graph ms | graph operators | " if graph else "") + "operators outside the graph |",
                  "|---|---:|---:|" + ("---:|---:|" if graph else "") + "---:|"]
        for m, r in b["methods"].items():
            if "eager_ops" not in r:
                continue
            cells = [f"{1e3 * r['eager_s']:.1f}", f"{r['eager_ops']:,.0f}"]
            if graph:
                cells += [f"{1e3 * r['graph_s']:.1f}" + ("" if r["graph_graphed"] else " (not captured)"),
                          f"{r['graph_ops']:,.0f}"]
            lines.append(f"| {m} | " + " | ".join(cells) + f" | {r['graph_host_ops_projected']:,.0f} |")
    return "\n".join(lines + group_lines(b)) + "\n"


def group_lines(b):
    """The group step's rows (``train.group``): non-view operators per update and per batch made as one,
    per run-step, at each K; and its measured time per run-step where there is one."""
    if "group_ops" not in b:
        return []
    sizes = sorted({int(k) for per in b["group_ops"].values() for k in per})
    lines = ["", "Group step (K runs of one step signature as one vmapped step): non-view operators, "
             "update + batch = per run-step.", "",
             "| method | " + " | ".join(f"K = {k}" for k in sizes) + " |", "|---|" + "---:|" * len(sizes)]
    for m, per in b["group_ops"].items():
        cells = [per.get(str(k), per.get(k)) for k in sizes]
        lines.append(f"| {m} | " + " | ".join(f"{r['update']:,} + {r['batch']:,} = {r['per_run_step']:.1f}"
                                             if r else "" for r in cells) + " |")
    times = [f"{m} K = {k}: {r['ms_per_run_step']:.1f} ms"
             + (f", {r['peak_mib']:,.0f} MiB" if r["peak_mib"] else "")
             for m, per in b.get("group_step", {}).items() for k, r in per.items()]
    return lines + (["", "Time per run-step: " + "; ".join(times) + "."] if times else [])


def drift_block(path):
    """Markdown: one run's mean zero-shot at each thread count, seed by seed (``bench/thread_drift.py``)."""
    with open(path) as f:
        d = json.load(f)
    threads = sorted({int(k.split("/")[0]) for k in d["scores"]})
    seeds = sorted({int(k.split("/")[1]) for k in d["scores"]})
    score = lambda t, s: d["scores"][f"{t}/{s}"]["mean"]  # noqa: E731
    lines = [f"{d['hardware']}, torch {d['torch']}, commit `{d['commit'][:10]}`: `{d['command']}`. CLIP, "
             f"{d['pairs']:,} pairs × {d['steps']:,} steps of 128; mean zero-shot top-1.", "",
             "| seed | " + " | ".join(f"{t} thread{'s' * (t > 1)}" for t in threads) + " | "
             + " | ".join(f"{t} − {threads[0]}" for t in threads[1:]) + " |",
             "|---:|" + "---:|" * (2 * len(threads) - 1)]
    for s in seeds:
        lines.append(f"| {s} | " + " | ".join(f"{score(t, s):.4f}" for t in threads) + " | "
                     + " | ".join(f"{score(t, s) - score(threads[0], s):+.4f}" for t in threads[1:]) + " |")
    lines += ["", f"The spread over these seeds at {threads[0]} thread (std): {d['seed_std_of_mean']:.4f}."]
    return "\n".join(lines) + "\n"


def update(readme="README.md", root="."):
    """The README's text with every generated block rewritten from its file."""
    with open(readme) as f:
        text = f.read()
    make = {"results": results_block, "bench": bench_block, "drift": drift_block}
    return BLOCK.sub(lambda m: m.group(1) + make[m.group(2)](os.path.join(root, m.group(3))) + m.group(5),
                     text)
