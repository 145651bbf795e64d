#!/usr/bin/env bash
# llm-runtime's table through the load harness: N file reads in a row (N = 1, 3, 10, 50) on
# the docker backend, with pooling off (ENABLE_CONTAINER_POOL=false: a fresh container per
# read, as llm-runtime's benchmark script does with sed) and on (size 5, startup_containers 2),
# each timed from the engine's start ("including startup"). Runs every cell REPS times
# (default 3) and prints one JSON line per cell with the medians, then a table on stderr.
#
#   bench/llm_runtime_table.sh [REPS] [N ...]        needs dockerd (tools/setup-docker)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${WARMPOOL_BIN:-build/bin/warmpool}
reps=${1:-3}
shift || true
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(1 3 10 50)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
engine=$PWD/loadtest/scenarios/llm-runtime-table.engine.yaml
for n in "${counts[@]}"; do
  sed -e "s|count: 10|count: $n|" -e "s|engine: llm-runtime-table.engine.yaml|engine: $engine|" \
    loadtest/scenarios/llm-runtime-table.yaml >"$out/n$n.yaml"
  for rep in $(seq 1 "$reps"); do
    for pool in false true; do
      ENABLE_CONTAINER_POOL=$pool "$bin" load "$out/n$n.yaml" --json "$out/n$n-$pool-$rep.json" --quiet
    done
  done
done
python3 - "$out" "$reps" "${counts[@]}" <<'PY'
import json, statistics, sys
out, reps, counts = sys.argv[1], int(sys.argv[2]), [int(n) for n in sys.argv[3:]]
rows = []
for n in counts:
    cell = {"bench": "llm_runtime_table", "ops": n, "runs": reps}
    for pool, key in (("false", "no_pool"), ("true", "warmpool")):
        runs = [json.load(open(f"{out}/n{n}-{pool}-{r}.json")) for r in range(1, reps + 1)]
        for r in runs:
            t = r["total"]
            if t["successes"] != n:
                sys.exit(f"llm_runtime_table: {key} N={n}: {t['successes']}/{n} reads succeeded: {t['errors']}")
        med = lambda f: statistics.median(f(r) for r in runs)
        cell[key + "_wall_s"] = med(lambda r: r["wall_s"])
        cell[key + "_startup_s"] = med(lambda r: r["startup_s"])
        cell[key + "_reads_s"] = med(lambda r: r["phases"][0]["span_s"])
        cell[key + "_read_p50_ms"] = med(lambda r: r["phases"][0]["latency_ms"]["p50"])
        cell[key + "_shutdown_s"] = med(lambda r: r["shutdown_s"])
    cell["speedup"] = cell["no_pool_wall_s"] / cell["warmpool_wall_s"]
    rows.append(cell)
    print(json.dumps(cell), flush=True)
print(f"\nllm-runtime's table through `warmpool load` (docker; medians of {reps} runs; wall = start-up + reads)",
      file=sys.stderr)
print(f"{'ops':>4} | {'no pool wall':>12} {'per read':>9} | {'warmpool wall':>13} {'start-up':>9} {'per read':>9} | {'speed-up':>8}",
      file=sys.stderr)
for c in rows:
    print(f"{c['ops']:>4} | {c['no_pool_wall_s']:>11.2f}s {c['no_pool_read_p50_ms']:>7.0f}ms | "
          f"{c['warmpool_wall_s']:>12.2f}s {c['warmpool_startup_s']:>8.2f}s {c['warmpool_read_p50_ms']:>7.1f}ms | "
          f"{c['speedup']:>7.1f}x", file=sys.stderr)
PY
