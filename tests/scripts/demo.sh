# The demo (as tools/demo runs it) serves every scripted exec correctly and prints stats.
set -euo pipefail
out=$("$WARMPOOL_BUILD_DIR/bin/warmpool-demo" --callers 4 --rounds 5 --min-idle 2 --max-size 4)
echo "$out"
grep -q '4 callers x 5 leases x 4 execs: 80 ok, 0 wrong, 0 errors' <<<"$out"
grep -q '^acquire latency ms: p50' <<<"$out"
grep -q '^exec    latency ms: p50' <<<"$out"
grep -q '"executions":80' <<<"$out"
grep -q '^demo PASSED$' <<<"$out"
