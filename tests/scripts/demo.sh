# The demo (as tools/demo runs it) serves every scripted exec correctly and reads at a
# glance: a short table (warm-up, p50/p99 acquire and exec, hit rate, sandboxes by state);
# the pool's full stats as JSON only with --json.
set -euo pipefail
fail() { echo "FAIL: $*" >&2; exit 1; }
demo="$WARMPOOL_BUILD_DIR/bin/warmpool-demo"
out=$("$demo" --callers 4 --rounds 5 --min-idle 2 --max-size 4)
echo "$out"
grep -qx 'warmpool demo: 4 callers x 5 leases x 4 commands on a local pool' <<<"$out" || fail "title"
grep -qE '^  warm-up     2 sandboxes in [0-9.]+ ms$' <<<"$out" || fail "warm-up row"
grep -qE '^  acquire     p50 +[0-9.]+ ms   p99 +[0-9.]+ ms$' <<<"$out" || fail "acquire row"
grep -qE '^  exec        p50 +[0-9.]+ ms   p99 +[0-9.]+ ms$' <<<"$out" || fail "exec row"
grep -qE '^  hit rate    [0-9]+ %' <<<"$out" || fail "hit rate row"
grep -qE '^  sandboxes   [0-9]+ (idle|resetting)' <<<"$out" || fail "sandboxes by state row"
grep -qE '^  commands    80 ok, 0 wrong, 0 errors in ' <<<"$out" || fail "commands row"
grep -qx 'demo PASSED' <<<"$out" || fail "verdict"
# At a glance: a screen's worth of short lines, no JSON.
[ "$(wc -l <<<"$out")" -le 10 ] || fail "more than 10 lines"
! grep -q '[{}]' <<<"$out" || fail "JSON without --json"
[ "$(wc -L <<<"$out")" -le 100 ] || fail "a line wider than 100 columns"

# --json adds the full stats, as parseable JSON after the table.
out=$("$demo" --callers 2 --rounds 2 --min-idle 1 --max-size 2 --json)
python3 - <<PY || fail "--json: $out"
import json
text = """$out"""
doc = json.loads(text[text.index("{"):text.rindex("}") + 1])
assert doc["executions"] == 16, doc["executions"]
assert "containers" in doc
PY
