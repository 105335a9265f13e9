"""Execute every numbered notebook in order with papermill (used by `make run` and the tests).

`--record results/bench/notebook_costs.json` also writes each notebook's measured wall time (with the
machine, commit and command); `--write-costs` puts those times into each notebook's first cell.
`--margins results/checks/notebook_margins.json` adds how far each final assertion passed by to that
file's reruns (``notebook.assertion_margins``), and the smallest over them.
"""
import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

NOTEBOOKS = pathlib.Path(__file__).resolve().parent
COSTS = NOTEBOOKS.parent / "results" / "bench" / "notebook_costs.json"
COST_MARK = "**What it costs.**"
SHIPPED_RUNS = "on a CPU it loads the runs shipped in `results/cpu/` and trains `LIVE_STEPS` steps live"
MARGINS_MARK = "assertion margins: "
FULL_SOURCE = {**{f"0{i}": SHIPPED_RUNS for i in range(1, 7)}, "07": "reading the shipped `results/cpu/`",
               "08": "reading the shipped `results/cpu/`"}


def notebooks():
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def check_cell(nb):
    """The source of the notebook's last code cell that asserts: what its prose promised."""
    return next("".join(c["source"]) for c in reversed(nb["cells"])
                if c["cell_type"] == "code" and "assert" in "".join(c["source"]))


def execute(path, out_dir, parameters, timeout=None, margins=False):
    """Run one notebook into ``out_dir`` (the executed copy stays there, failing or not). ``margins``:
    a last cell measures its check cell's margins, returned (``notebook.assertion_margins``)."""
    import nbformat
    import papermill as pm

    out = pathlib.Path(out_dir) / path.name
    out.parent.mkdir(parents=True, exist_ok=True)
    os.environ["DECLIP_LIVE"] = "0"  # headless: no live training curves (the kernel inherits it)
    nb = nbformat.read(path, as_version=4)
    if margins:
        nb.cells.append(nbformat.v4.new_code_cell(
            "import json\nfrom declip_lite.notebook import assertion_margins\n"
            f"print({MARGINS_MARK!r} + json.dumps(assertion_margins({check_cell(nb)!r}, globals())))"))
    done = pm.execute_notebook(nb, str(out), parameters=parameters, cwd=str(NOTEBOOKS), kernel_name="python3",
                               progress_bar=False, execution_timeout=timeout,
                               # not the kernel's TCP warning each time
                               extra_arguments=["--IPKernelApp.log_level=ERROR"])
    if margins:
        text = "".join(o.get("text", "") for o in done.cells[-1].outputs)
        return json.loads(text.split(MARGINS_MARK, 1)[1])
    return out


def minutes(seconds):
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def gpu_cost(costs, name):
    """What ``make gpu-check`` measured of notebook ``name`` on a GPU (``costs["gpu_seconds"]``)."""
    gpu = costs.get("gpu_seconds", {})
    modes = [f"{mode} {minutes(gpu[mode][name])}" for mode in ("smoke", "full") if name in gpu.get(mode, {})]
    return f"{', '.join(modes)} on {gpu['hardware']}" if modes else costs["gpu"]


def cost_paragraph(costs, name):
    """The first cell's cost line for notebook ``name``, from the measured times in ``costs``."""
    def measured(entry):
        return f"{minutes(entry['seconds'])} on {entry['hardware']}" if entry else "not measured"
    smoke, full, train = (costs[k].get(name) for k in ("smoke_seconds", "full_seconds", "train_seconds"))
    smoke = smoke and {"seconds": smoke, "hardware": costs["hardware"]}
    full_text = measured(full) + (f" ({full['source']})" if full and full.get("source") else "")
    train_text = (f"; training its runs here instead (`RESULTS = \"train\"`): {measured(train)} "
                  f"({train['source']})" if train else "")
    return (f"{COST_MARK} Smoke mode (`SMOKE = True`): {measured(smoke)}. Full mode (`SMOKE = False`, "
            f"the default): {full_text}{train_text}; on a GPU: {gpu_cost(costs, name)}. Switch in the "
            f"parameters cell below, or run `papermill -p SMOKE True`; `make run SMOKE=1` runs every "
            f"notebook in smoke mode. Times: `results/bench/notebook_costs.json`.")


def write_costs(costs):
    """Replace (or append) the cost paragraph of every notebook's first markdown cell."""
    for path in notebooks():
        nb = json.loads(path.read_text())
        cell = nb["cells"][0]
        text = "".join(cell["source"]).split(f"\n\n{COST_MARK}")[0]
        lines = f"{text}\n\n{cost_paragraph(costs, path.stem)}".split("\n")
        cell["source"] = [line + "\n" for line in lines[:-1]] + lines[-1:]
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def record(seconds, path, smoke):
    """Merge measured times (smoke or full mode) into ``path`` with the machine, commit and command."""
    costs = json.loads(path.read_text())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    where = {"hardware": f"{platform.machine()}, {os.cpu_count()} CPU cores", "commit": commit,
             "command": "python " + " ".join(sys.argv)}
    if smoke:
        costs.update(smoke_seconds={k: round(v, 1) for k, v in seconds.items()}, **where)
    else:
        costs["full_seconds"] = {k: {"seconds": round(v), **where, "source": FULL_SOURCE.get(k[:2])}
                                 for k, v in seconds.items()}
    path.write_text(json.dumps(costs, indent=1) + "\n")


def ran_where():
    """The hardware, commit and command of this call, for the JSON it writes."""
    import torch

    from declip_lite.runs.build import commit, hardware

    return {"hardware": hardware("cuda" if torch.cuda.is_available() else "cpu"), "commit": commit(),
            "command": " ".join(["python notebooks/run.py", *sys.argv[1:]])}


def write_outcomes(path, seconds, outcomes, smoke):
    """Each notebook's wall time and outcome ("ok" or the error's last line), with where it ran."""
    path.write_text(json.dumps({
        **ran_where(), "smoke": smoke,
        "notebooks": {k: {"seconds": round(v, 1), "outcome": outcomes.get(k, "ok")}
                      for k, v in seconds.items()}},
        indent=1) + "\n")


def add_margins(path, margins, smoke):
    """Append one rerun's margins (``{notebook: [...]}``) to ``path``; keep each assertion's smallest."""
    data = json.loads(path.read_text()) if path.exists() else {
        "what": "how far each notebook's final assertions passed by (> 0 passes), rerun by rerun, and the "
                "smallest over the reruns: notebook.assertion_margins", "reruns": []}
    data["reruns"].append({**ran_where(), "smoke": smoke, "margins": margins})
    smallest = {}
    for rerun in (r for r in data["reruns"] if r["smoke"] == smoke):
        for name, found in rerun["margins"].items():
            for m in found:
                kept = smallest.setdefault(name, {}).get(m["assert"])
                smallest[name][m["assert"]] = m["margin"] if kept is None else min(kept, m["margin"])
    data["smoke" if smoke else "full"] = {"reruns": sum(r["smoke"] == smoke for r in data["reruns"]),
                                           "smallest": smallest}
    path.write_text(json.dumps(data, indent=1) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs")
    parser.add_argument("--smoke", action="store_true", help="quick presets (what the tests run)")
    parser.add_argument("--record", type=pathlib.Path, help="write each notebook's wall time into this JSON")
    parser.add_argument("--write-costs", action="store_true",
                        help=f"only write {COSTS.name} into the notebooks")
    parser.add_argument("--only", nargs="+", default=None, metavar="NN",
                        help="these notebooks (by number), in this order")
    parser.add_argument("--keep-going", type=pathlib.Path, default=None, metavar="JSON",
                        help="run every notebook even when one fails; write each one's seconds and outcome "
                             "here")
    parser.add_argument("--margins", type=pathlib.Path, metavar="JSON",
                        help="add how far each notebook's final assertions passed by to this file's reruns")
    args = parser.parse_args()
    if args.write_costs:
        return write_costs(json.loads(COSTS.read_text()))
    out = pathlib.Path(args.out).resolve()
    seconds, outcomes, margins = {}, {}, {}
    chosen = [nb for n in args.only for nb in notebooks() if nb.name[:2] == n] if args.only else notebooks()
    for nb in chosen:  # in the order --only names them
        start = time.perf_counter()
        print(f"running {nb.name} ...", flush=True)
        try:
            measured = execute(nb, out, {"SMOKE": args.smoke}, margins=bool(args.margins))
            if args.margins:
                margins[nb.stem] = measured
        except Exception as e:  # noqa: BLE001 - with --keep-going, the next notebook still runs
            if not args.keep_going:
                raise
            outcomes[nb.stem] = f"{type(e).__name__}: {str(e).strip().splitlines()[-1][:300]}"
        seconds[nb.stem] = time.perf_counter() - start
        print(f"  {'failed' if nb.stem in outcomes else 'done'} in {seconds[nb.stem]:.0f} s "
              f"-> {out / nb.name}", flush=True)
        if args.keep_going:
            write_outcomes(args.keep_going, seconds, outcomes, args.smoke)
    if args.record:
        record(seconds, args.record, args.smoke)
    if args.margins:
        add_margins(args.margins, margins, args.smoke)
    print(f"\nExecuted notebooks: {out}/\nFigures: {out}/figures/\nRun results (JSON, checkpoints): "
          f"{NOTEBOOKS.parent / 'data' / 'runs'}/")


if __name__ == "__main__":
    sys.exit(main())
