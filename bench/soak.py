"""Faults a reproduction meets in real use, at smoke scale, against one uninterrupted reproduction:

1. kill-and-restart: `reproduce` SIGKILLed at random moments, restarted at once each time, then
   left to finish. Checked: no worker outlives its killed parent by more than 10 s, every restart
   starts (no run refused), and no field of the final records differs from the uninterrupted ones.
2. two at once: two `reproduce` on the same folders started together (``--pairs`` rounds, fresh folders
   each). Checked: both exit 0 and no record field differs from the uninterrupted ones.

Records are compared without their wall-clock fields.

    python bench/soak.py --kills 5 --pairs 3 --out results/reliability/soak.json
"""
import argparse
import json
import os
import pathlib
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from declip_lite.runs.build import commit  # noqa: E402
from processes import alive, descendants  # noqa: E402

TIMINGS = ("train_seconds", "total_seconds", "hardware")


def reproduce(out, runs, jobs):
    return subprocess.Popen([sys.executable, "-m", "declip_lite.experiments", "reproduce", "--scale", "smoke",
                             "--jobs", str(jobs), "--out", str(out), "--runs-dir", str(runs)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def records(out):
    found = {}
    for path in sorted((pathlib.Path(out) / "smoke" / "records").glob("*.json")):
        data = json.loads(path.read_text())
        for key in TIMINGS:
            data.pop(key, None)
        for row in data.get("history", []):
            row.pop("pairs_per_s", None)
        found[path.stem] = data
    return found


def differences(got, expected):
    """'<run>: <field>' for every record field that differs from the uninterrupted reproduction's."""
    found = [f"{name}: missing" for name in expected if name not in got]
    for name, record in got.items():
        other = expected.get(name, {})
        found += [f"{name}: {key}" for key in sorted(set(record) | set(other))
                  if record.get(key) != other.get(key)]
    return found


def kill_and_restart(work, kills, jobs, rng):
    out, runs, events = work / "out", work / "runs", []
    for _ in range(kills):
        process = reproduce(out, runs, jobs)
        wait = rng.uniform(3, 25)
        time.sleep(wait)
        workers = descendants(process.pid)
        process.kill()
        process.wait()
        start = time.time()
        while any(alive(w) for w in workers) and time.time() - start < 10:
            time.sleep(0.1)
        events.append({"killed_after_s": round(wait, 1), "workers": len(workers),
                       "orphans_after_10_s": sum(alive(w) for w in workers),
                       "workers_gone_after_s": round(time.time() - start, 1)})
        for w in workers:  # whatever survived would spoil the next round's timing
            if alive(w):
                os.kill(w, signal.SIGKILL)
    final = reproduce(out, runs, jobs)
    log = final.communicate()[0]
    return events, final.returncode, log, records(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=3, help="rounds of two reproductions started together")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    code, rng, work = commit(), random.Random(args.seed), pathlib.Path(tempfile.mkdtemp(prefix="soak-"))
    try:
        start = time.time()
        reference = reproduce(work / "ref" / "out", work / "ref" / "runs", args.jobs)
        log = reference.communicate()[0]
        if reference.returncode:
            sys.exit(f"the uninterrupted reproduction failed:\n{log[-3000:]}")
        expected, reference_s = records(work / "ref" / "out"), time.time() - start

        events, rc, log, got = kill_and_restart(work / "kills", args.kills, args.jobs, rng)
        waits = log.count("being trained by")
        print(f"kill-and-restart: {len(events)} kills, final exit {rc}, {waits} waits, "
              f"records differing: {len(differences(got, expected))}", flush=True)

        pairs = []
        for i in range(args.pairs):
            where = work / f"pair{i}"
            pair = [reproduce(where / "out", where / "runs", args.jobs) for _ in range(2)]
            logs = [p.communicate()[0] for p in pair]
            pairs.append({"exits": [p.returncode for p in pair],
                          "failed_log_tails": [text[-2000:] for p, text in zip(pair, logs) if p.returncode],
                          "waits_for_a_held_run": [text.count("being trained by") for text in logs],
                          "differences": differences(records(where / "out"), expected)})
            print(f"two at once ({i + 1} of {args.pairs}): exits {pairs[-1]['exits']}, "
                  f"records differing: {len(pairs[-1]['differences'])}", flush=True)
        result = {
            "hardware": f"CPU ({platform.machine()}, {os.cpu_count()} cores)", "commit": code,
            "command": "python bench/soak.py " + " ".join(sys.argv[1:]), "runs": len(expected),
            "reference_seconds": round(reference_s, 1),
            "kill_and_restart": {"kills": events, "final_exit": rc, "waits_for_a_held_run": waits,
                                 "failed_log_tail": log[-2000:] if rc else None,
                                 "differences": differences(got, expected)},
            "two_at_once": pairs,
        }
        print(json.dumps(result, indent=1))
        if args.out:
            pathlib.Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
