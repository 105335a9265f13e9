#!/usr/bin/env bash
# The committed GPU results in one device call: experiment processes run side by side on one GPU
# (tiny models leave it mostly idle), then every finished run's JSON is merged into one file.
# Usage: OUT=results bash bench/gpu_results.sh [budget_seconds]
set -u
export PYTHONPATH=$PWD OMP_NUM_THREADS=2 PYTHONUNBUFFERED=1
budget=${1:-480}
runs=/tmp/declip-runs
small="--preset cpu --set pairs=5000 steps=1200 --device cuda --runs-dir $runs"
xp() { python3 -m declip_lite.experiments "$@" > /dev/null 2>>"$runs.log" & }
mkdir -p "$runs"
xp clip --preset gpu --seeds 0 1 2 --device cuda --runs-dir $runs
xp clip $small --seeds 0 1 2
xp declip $small --seeds 0 1 2
xp clip+mvs $small --seeds 0 1 2
xp clip+mvs+ss $small --seeds 0 1 2
xp clip+iss clip+tss clip+nns $small --seeds 0
xp declip $small --seeds 0 1 2 --augmentation moco
xp declip $small --seeds 0 1 2 --objective exclude_self=true
start=$SECONDS
while [ -n "$(jobs -r)" ] && [ $((SECONDS - start)) -lt "$budget" ]; do sleep 5; done
echo "waited $((SECONDS - start)) s; still running: $(jobs -r | wc -l)"
tail -5 "$runs.log"
python3 - "$runs" "$OUT/gpu_runs.json" <<'PY'
import glob, json, sys
rows = [json.load(open(f)) for f in sorted(glob.glob(f"{sys.argv[1]}/*.json"))]
json.dump(rows, open(sys.argv[2], "w"), indent=1)
for r in rows:
    p = r["preset"]
    print(f"{r['method']:12s} s{r['seed']} pairs={p['pairs']} steps={p['steps']} {r['train_seconds']:.0f}s "
          f"mean={r['zero_shot']['mean']:.3f} shape={r['zero_shot']['shape']:.3f} {r['name']}")
PY
