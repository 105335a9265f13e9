#!/usr/bin/env bash
# The one prepared call for a machine with a GPU (`make gpu-check`); on a CPU it runs at smoke
# scale (a test does, so it cannot rot). In order, each step bounded, none stopping the next:
#   0. the notebooks in smoke mode, alone on the device, 04-09 first (they have never run on CUDA;
#      at most 5 minutes), then notebook 08's text-depth step times (bench.py --depth-only)
#   1. the captured step against eager (tests/test_graphed.py): if a graph disagrees, the rest trains
#      eagerly; a step that cannot be captured trains eagerly by itself (the Trainer's fallback)
#   2. bench/bench.py on the device (operators and step time per method, eager and graphed; the group
#      step of K runs: operators, ms per run-step and peak memory at the gpu scale's group sizes; four
#      groups of 3 stepped in sequence against each on its own CUDA stream, from one process)
#   3. reproduce --scale $SCALE with a budget (no run starts after it; on CUDA the runs of one step
#      signature as one vmapped step, --group auto), each run against its shipped record; notebooks in
#      default mode beside it
#   4. nvidia-smi and the CPU load sampled every 2 s throughout
# Everything lands in $OUT as 8 files: the log, the monitor CSV, the bench JSON, the parity log, the
# notebooks' outcomes in smoke and default mode (as far as time allows), and two tarballs
# (results/<scale>/, the executed notebooks).
#   OUT=dir SCALE=gpu JOBS=14 BUDGET=240 LIMIT=540 NOTEBOOKS="00 01 ..." RUNS_DIR=dir bash bench/gpu_check.sh
# (DECLIP_LITE_COMMIT names the commit where the tree has no .git)
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_check_out}
PY=${PYTHON:-python3}
if "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
  DEVICE=cuda; DEFAULTS=(gpu 14 240 540 "04 05 06 07 08 09 00 01 02 03" "--rounds 5 --steps 10" "04 05 06 07 09 00 01 02 03")
else  # the smoke check: one short run, one notebook, one round of two methods
  DEVICE=cpu; DEFAULTS=(smoke 1 1 600 "00" "--rounds 1 --steps 1 --methods clip declip --eval-n 64 --quick" none)
fi
SCALE=${SCALE:-${DEFAULTS[0]}}; JOBS=${JOBS:-${DEFAULTS[1]}}; BUDGET=${BUDGET:-${DEFAULTS[2]}}
LIMIT=${LIMIT:-${DEFAULTS[3]}}; NOTEBOOKS=${NOTEBOOKS:-${DEFAULTS[4]}}; BENCH_ARGS=${BENCH_ARGS:-${DEFAULTS[5]}}
NOTEBOOKS_DEFAULT=${NOTEBOOKS_DEFAULT:-${DEFAULTS[6]}}  # 08 in default mode trains grids reproduce trains; none: skip
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
work=$(mktemp -d)
RUNS_DIR=${RUNS_DIR:-$work/runs}  # a fixed folder lets a second call on a warm machine resume the runs
export DECLIP_LITE_COMMIT=${DECLIP_LITE_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
start=$(date +%s)
left() { echo $(( LIMIT - ($(date +%s) - start) )); }
say() { echo "[gpu_check $(( $(date +%s) - start )) s] $*"; }
bounded() {  # bounded SECONDS CMD...: CMD killed after SECONDS; skipped when none are left (`timeout 0` never ends)
  local seconds=$1; shift
  if [ "$seconds" -le 0 ]; then say "no time left for: $*"; return 124; fi
  timeout -k 5 "$seconds" "$@"
}
exec > >(tee "$OUT/gpu_check.log") 2>&1

if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then  # what the offline GPU machine lacks (shared/GPU.md)
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$work/site" .whl/*.whl \
    && export PYTHONPATH="$work/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
say "device $DEVICE, scale $SCALE, jobs $JOBS, budget $BUDGET s, limit $LIMIT s"
( while :; do
    echo "$(date +%s),$(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits 2>/dev/null \
      | head -1 | tr -d ' '),$(cut -d' ' -f1-4 /proc/loadavg | tr ' ' ',')"
    sleep 2
  done ) > "$OUT/monitor.csv" &
monitor=$!
trap 'kill $monitor 2>/dev/null' EXIT

say "0. notebooks $NOTEBOOKS in smoke mode, alone on the device; then the text-depth step times"
bounded $(( $(left) / 2 < 300 ? $(left) / 2 : 300 )) "$PY" notebooks/run.py --smoke --out "$work/notebooks/smoke" \
  --keep-going "$OUT/notebooks_smoke.json" --only $NOTEBOOKS || say "some smoke notebook failed or timed out"
bounded $(( $(left) / 8 )) "$PY" bench/bench.py --device "$DEVICE" --depth-only $BENCH_ARGS || say "depth probe failed"

say "1. the captured step against eager"
bounded $(( $(left) / 6 )) "$PY" -m pytest -q -p no:cacheprovider tests/test_graphed.py -k captured 2>&1 \
  | tee "$OUT/parity.log"
if [ "${PIPESTATUS[0]}" != 0 ] && [ "$DEVICE" = cuda ]; then  # on a CPU they are skipped (exit 5)
  if grep -qiE '^E +(AssertionError|assert )' "$OUT/parity.log"; then  # a graph that gave other numbers
    export DECLIP_LITE_FAST=eager
    say "parity FAILED: a captured step disagreed with eager; everything below trains eagerly"
  else  # a step that could not be captured: the Trainer trains that objective eagerly, with a warning
    say "parity: some step could not be captured; those objectives train eagerly, the others graphed"
  fi
fi

say "2. bench"
bounded $(( $(left) / 4 )) "$PY" bench/bench.py --device "$DEVICE" --out "$OUT/bench_$DEVICE.json" $BENCH_ARGS \
  || say "bench failed or timed out"

say "3. reproduce --scale $SCALE (budget $BUDGET s), notebooks in default mode beside it"
notebooks=""
if [ "$NOTEBOOKS_DEFAULT" = none ]; then  # the CPU check: step 0 already ran a notebook through run.py
  echo '{"notebooks": {}, "skipped": "NOTEBOOKS_DEFAULT=none"}' > "$OUT/notebooks_default.json"
else
  bounded $(( $(left) - 30 )) "$PY" notebooks/run.py --out "$work/notebooks/default" \
    --keep-going "$OUT/notebooks_default.json" --only $NOTEBOOKS_DEFAULT > "$work/notebooks.log" 2>&1 &
  notebooks=$!
fi
bounded $(( $(left) - 15 )) "$PY" -m declip_lite.experiments reproduce --scale "$SCALE" --jobs "$JOBS" \
  --out "$work/results" --runs-dir "$RUNS_DIR" --device "$DEVICE" --budget "$BUDGET" || say "reproduce failed or timed out"
"$PY" - "$work/results/$SCALE" "results/$SCALE" <<'PYEOF' || say "no comparison with the shipped records"
import json, pathlib, statistics, sys  # each run trained here (grouped on CUDA) against the shipped record
new, old = (pathlib.Path(p) / "records" for p in sys.argv[1:])
d = {p.stem: json.loads(p.read_text())["zero_shot_own"]["mean"] - json.loads((old / p.name).read_text())["zero_shot_own"]["mean"]
     for p in new.glob("*.json") if (old / p.name).exists()}
groups = [json.loads(p.read_text()).get("group_size") for p in new.glob("*.json")]
print(f"against the shipped records: {len(d)} runs, mean zero-shot difference median {statistics.median(d.values()):+.4f}, "
      f"largest {max(d.values(), key=abs):+.4f}; group sizes {sorted(set(groups), key=str)}" if d else "no shipped twin")
PYEOF
tar -czf "$OUT/results.tgz" -C "$work/results" . 2>/dev/null  # packed at once: the notebooks may still run
[ -n "$notebooks" ] && wait $notebooks
say "notebooks:"; cat "$work/notebooks.log" 2>/dev/null

say "packing"
tar -czf "$OUT/notebooks.tgz" -C "$work" notebooks notebooks.log 2>/dev/null
say "done"
ls -la "$OUT"
