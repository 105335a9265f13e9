"""``python -m declip_lite.experiments``: methods or whole grids, cached, summarised over seeds;
``... reproduce --scale cpu``: everything the notebooks need at a scale."""
import argparse
import importlib
import json
import sys

from . import grids
from ..distributed import init_from_env
from ..checkpoint import save_json
from ..objectives import objective_names
from .config import PRESETS, RunConfig, SettingError, configure_all, sections
from .pipelines import train_csv
from .grouped import MODES
from .pool import RunsFailed, run_grid
from . import readme
from .reproduce import reproduce


def _assignments(pairs):
    """["k=v", ...] -> {k: v} with v parsed as JSON when it can be (numbers, booleans, lists)."""
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"expected KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def configured(configs, settings):
    """``configs`` with ``--set``'s ``settings`` (``configure_all``); a misplaced key stops here."""
    try:
        return configure_all(configs, settings)
    except SettingError as e:
        raise SystemExit(f"--set {e}") from None


def import_plugins(argv):
    """Import the modules named by ``--import`` first, so the objectives they register are choices."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--import", dest="imports", action="append", default=[])
    for module in pre.parse_known_args(argv)[0].imports:
        importlib.import_module(module)


def reproduce_main(argv):
    parser = argparse.ArgumentParser(prog="python -m declip_lite.experiments reproduce",
                                     description="Train every run the notebooks' full mode needs at a scale "
                                                 "(resumable) and write results/<scale>/.")
    parser.add_argument("--scale", default="smoke", choices=sorted(grids.SCALES))
    parser.add_argument("--jobs", type=int, default=1, help="parallel training processes")
    parser.add_argument("--out", default="results")
    parser.add_argument("--runs-dir", default="data/runs")
    parser.add_argument("--device", default=None)
    parser.add_argument("--budget", type=float, default=None, help="seconds after which no run starts")
    parser.add_argument("--group", default="auto", choices=MODES,
                        help="runs of one step signature as one vmapped step (auto: on CUDA only)")
    parser.add_argument("--set", nargs="*", default=[], metavar="[SECTION.]FIELD=VALUE",
                        help="applied to every run (their names change with it): train.lr=5e-4, "
                             "model.text_layers=4, objective.queue_size=1024")
    args = parser.parse_args(argv)
    if args.budget is not None and not args.budget >= 0:  # NaN too
        parser.error(f"--budget must be seconds >= 0 (0: start no run), got {args.budget:g}")
    try:
        reproduce(args.scale, args.out, args.runs_dir, args.jobs, args.device, budget=args.budget,
                  command=" ".join(["python -m declip_lite.experiments reproduce", *argv]),
                  group=args.group, settings=_assignments(args.set))
    except SettingError as e:
        raise SystemExit(f"--set {e}") from None


def main(argv=None):
    """The CLI. Ctrl-C ends it with one line (the Trainer's: where it stopped and saved) and exit status 130;
    runs that failed (a loss that recovery could not save) end it with one line each and status 1."""
    try:
        run_command(sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt as e:
        if not e.args:  # outside training: nothing has said so yet
            print("Interrupted.", file=sys.stderr, flush=True)
        sys.exit(130)
    except RunsFailed as e:
        print(e, file=sys.stderr, flush=True)
        sys.exit(1)


def run_command(argv):
    if argv[:1] == ["reproduce"]:
        return reproduce_main(argv[1:])
    if argv[:1] == ["readme"]:  # rewrite the README's results blocks from results/
        text = readme.update("README.md")
        with open("README.md", "w") as f:
            f.write(text)
        return
    import_plugins(argv)
    parser = argparse.ArgumentParser(description="Train declip-lite runs or grids (cached) and summarise "
                                                 "zero-shot accuracy.")
    parser.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                        help="a module that registers objectives of your own (declip_lite.register); "
                             "repeat the flag for more")
    parser.add_argument("names", nargs="+", choices=objective_names() + sorted(grids.GRIDS),
                        help="methods (with --preset/--seeds/--set) or whole grids (with --preset as their "
                             "scale)")
    parser.add_argument("--preset", default="smoke", choices=sorted(PRESETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--set", nargs="*", default=[], metavar="[SECTION.]FIELD=VALUE",
                        help="pairs=5000 (preset), train.lr=5e-4, train.grad_clip=0.5, model.text_layers=1, "
                             "objective.exclude_self=true: for methods and grids alike (new run names)")
    parser.add_argument("--objective", nargs="*", default=[], metavar="OPTION=VALUE",
                        help="e.g. exclude_self=true")
    parser.add_argument("--augmentation", default=None)
    parser.add_argument("--methods", nargs="+", default=None,
                        help="the methods a grid compares (default: its own)")
    parser.add_argument("--jobs", type=int, default=1, help="parallel training processes")
    parser.add_argument("--group", default="auto", choices=MODES,
                        help="runs of one step signature as one vmapped step (auto: on CUDA only)")
    parser.add_argument("--runs-dir", default="data/runs")
    parser.add_argument("--device", default=None)
    parser.add_argument("--summary", default=None,
                        help="write the mean/std table and run records here (JSON)")
    parser.add_argument("--csv", default=None,
                        help="train the (one) method on this CSV of image files instead")
    parser.add_argument("--csv-keys", nargs=2, default=["filepath", "title"], metavar=("IMAGE", "CAPTION"))
    args = parser.parse_args(argv)
    device = args.device or init_from_env()  # joins the process group under torchrun
    if args.csv:  # --set: bare keys (data, schedule), train.* fields and train_csv's own (vocab_size, ...)
        settings = _assignments(args.set)
        train = {k: v for k, v in settings.items() if k.startswith("train.")}
        train_csv(args.csv, args.names[0], args.preset, args.seeds[0], args.runs_dir, device, *args.csv_keys,
                  train_overrides=sections(train, args.names[0])["train"] or None,
                  **{k: v for k, v in settings.items() if k not in train})
        return
    settings = {**_assignments(args.set),
                **{f"objective.{k}": v for k, v in _assignments(args.objective).items()}}
    specs = []
    for name in args.names:
        if name in grids.GRIDS:
            for flag, value, default in (("--seeds", args.seeds, [0]),
                                         ("--augmentation", args.augmentation, None)):
                if value != default:
                    raise SystemExit(f"{flag} is for methods; grid {name!r} has its own (--set: the rest)")
            specs += configured(grids.grid(name, args.preset, args.methods), settings)
        else:
            specs += configured([RunConfig.of(name, args.preset, s, augmentation=args.augmentation)
                                 for s in args.seeds], settings)
    records = run_grid(specs, args.runs_dir, device, args.jobs, group=args.group)
    for row in records.summarise():
        print(f"{row.method:12s} {row.pairs:6d} {json.dumps(row.options)[:60]:60s} "
              + "  ".join(f"{k} {row[k][0]:.3f}±{row[k][1]:.3f}" for k in ["shape", "mean"]))
    if args.summary:
        save_json({"hardware": records[0].hardware, "runs": [r.to_json() for r in records]}, args.summary)
