"""Execute every numbered notebook in order with papermill (used by `make run` and the tests)."""
import argparse
import pathlib
import sys
import time

NOTEBOOKS = pathlib.Path(__file__).resolve().parent


def notebooks():
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def execute(path, out_dir, parameters, timeout=None):
    """Run one notebook into ``out_dir`` (the executed copy stays there, failing or not)."""
    import papermill as pm

    out = pathlib.Path(out_dir) / path.name
    out.parent.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(str(path), str(out), parameters=parameters, cwd=str(NOTEBOOKS), kernel_name="python3",
                        progress_bar=False, execution_timeout=timeout)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs")
    parser.add_argument("--smoke", action="store_true", help="quick presets (what the tests run)")
    args = parser.parse_args()
    out = pathlib.Path(args.out).resolve()
    for nb in notebooks():
        start = time.perf_counter()
        print(f"running {nb.name} ...", flush=True)
        execute(nb, out, {"SMOKE": args.smoke})
        print(f"  done in {time.perf_counter() - start:.0f} s -> {out / nb.name}", flush=True)
    print(f"\nExecuted notebooks: {out}/\nFigures: {out}/figures/\nRun results (JSON, checkpoints): "
          f"{NOTEBOOKS.parent / 'data' / 'runs'}/")


if __name__ == "__main__":
    sys.exit(main())
