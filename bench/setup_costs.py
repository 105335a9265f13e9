"""What bytecode costs at setup: a venv installed as `make setup` does, compiled at install (uv
--compile-bytecode) or not, then the first import of what every test process imports, which writes
the bytecode of the imported modules only. Both sides interleaved (A B A B), CPU seconds of the
install and of the first and second import; a warm uv cache, so the download is not timed.

    python bench/setup_costs.py --rounds 2 --out results/checks/setup_costs.json
"""
import argparse
import json
import os
import pathlib
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
IMPORTS = "import torch._dynamo, declip_lite.experiments, papermill, matplotlib.pyplot"  # Makefile's WARM_*


def cpu_seconds(cmd, env=None):
    """CPU seconds (user + system) of one command and its children; it must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def indexes():
    urls = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.extra-index-url"],
                          capture_output=True, text=True).stdout.split()
    return [arg for url in urls for arg in ("--extra-index-url", url)]


def side(compiled, where):
    """One fresh venv: install, first import, second import; CPU seconds of each."""
    venv = pathlib.Path(where) / ("compiled" if compiled else "lazy")
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", "uv"], check=True)
    install = [str(venv / "bin" / "uv"), "pip", "install", "-q", "--python", python,
               *(["--compile-bytecode"] if compiled else []), "--index-strategy", "unsafe-best-match",
               *indexes(), "torch==2.14.1", "torchvision==0.29.1", "-e", ".[notebooks,test,real]"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # as the Makefile runs
    out = {name: cpu_seconds(cmd, env) for name, cmd in
           [("install", install), ("first_import", [python, "-c", IMPORTS]),
            ("second_import", [python, "-c", IMPORTS])]}
    shutil.rmtree(venv)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default="results/checks/setup_costs.json")
    args = parser.parse_args()
    rows = {"compiled": [], "lazy": []}
    with tempfile.TemporaryDirectory() as where:
        for _ in range(args.rounds):
            for name in rows:
                rows[name].append(side(name == "compiled", where))
                print(name, {k: round(v, 1) for k, v in rows[name][-1].items()}, flush=True)
    median = {name: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
              for name, runs in rows.items()}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    result = {"what": "CPU seconds: install (warm uv cache), then the first and second import of "
                      f"`{IMPORTS}`, in a fresh venv compiled at install or not; sides interleaved",
              "hardware": f"{platform.machine()}, {os.cpu_count()} cores", "commit": commit,
              "command": "python bench/setup_costs.py " + " ".join(sys.argv[1:]),
              "median_cpu_seconds": median, "runs": rows}
    pathlib.Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(median, indent=1))


if __name__ == "__main__":
    main()
