#!/usr/bin/env bash
# GPU results in one device call: each line of PLAN is the arguments of one
# `python -m declip_lite.experiments` process; the processes share one GPU (tiny models leave
# it mostly idle), then every finished run's JSON is merged into $OUT/gpu_runs.json.
# Usage: OUT=results bash bench/gpu_results.sh PLAN [budget_seconds]
set -u
export PYTHONPATH=$PWD OMP_NUM_THREADS=2 PYTHONUNBUFFERED=1
plan=$1 budget=${2:-480} runs=/tmp/declip-runs
mkdir -p "$runs"
while read -r line; do
  [ -z "$line" ] || [ "${line:0:1}" = "#" ] && continue
  python3 -m declip_lite.experiments $line --device cuda --runs-dir "$runs" > /dev/null 2>>"$runs.log" &
done < "$plan"
start=$SECONDS
while [ -n "$(jobs -r)" ] && [ $((SECONDS - start)) -lt "$budget" ]; do sleep 5; done
echo "waited $((SECONDS - start)) s; still running: $(jobs -r | wc -l)"
grep -i -E "error|Traceback" "$runs.log" | head -5
python3 - "$runs" "$OUT/gpu_runs.json" <<'PY'
import glob, json, sys
rows = [json.load(open(f)) for f in sorted(glob.glob(f"{sys.argv[1]}/*.json"))]
json.dump(rows, open(sys.argv[2], "w"), indent=1)
for r in rows:
    o, z = r["options"], r["zero_shot"]
    print(f"{r['method']:12s} s{r['seed']} {r['preset']['pairs']:>6} {o['augmentation']:5s} {json.dumps(o['objective']):30s} "
          + " ".join(f"{k[:5]}={v:.3f}" for k, v in z.items()))
PY
