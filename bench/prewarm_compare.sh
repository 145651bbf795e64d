#!/usr/bin/env bash
# Adaptive vs. static pre-warming on the same step scenario (loadtest/scenarios/prewarm-step*.yaml):
# prints, per run, the step phase's pool hit rate (overall and after 2 s of adaptation),
# its p99, and the idle-sandbox-seconds spent over the whole run.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${WARMPOOL_BIN:-build/bin/warmpool}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$bin" load loadtest/scenarios/prewarm-step.yaml --json "$out/adaptive.json" --quiet
"$bin" load loadtest/scenarios/prewarm-step-static.yaml --json "$out/static.json" --quiet
python3 bench/prewarm_report.py "$out/adaptive.json" "$out/static.json"
