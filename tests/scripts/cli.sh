# The warmpool CLI against a real local (bubblewrap) pool: exit codes, output, stats,
# check-config, and run's graceful shutdown on SIGTERM.
set -euo pipefail
bin="$WARMPOOL_BUILD_DIR/bin/warmpool"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cat >"$tmp/ok.yaml" <<'YAML'
log: {level: warn}
stats_interval: 200ms
pools:
  - name: main
    backend: local
    min_idle: 1
    max_size: 2
    health_check: {interval: 1s, command: "echo HEALTH_OK", expect: HEALTH_OK}
YAML

# exec: stdout, stderr and the command's exit code pass through.
set +e
out=$("$bin" exec --config "$tmp/ok.yaml" -- sh -c 'echo out; echo err >&2; exit 7' 2>"$tmp/err")
rc=$?
set -e
[ "$rc" -eq 7 ] || fail "exec exit code $rc, want 7"
[ "$out" = "out" ] || fail "exec stdout '$out'"
grep -qx err "$tmp/err" || fail "exec stderr: $(cat "$tmp/err")"

# exec: a timeout kills the command and exits 124.
set +e
"$bin" exec --config "$tmp/ok.yaml" --timeout 300ms -- sleep 30 2>"$tmp/err"
rc=$?
set -e
[ "$rc" -eq 124 ] || fail "timeout exit code $rc, want 124"
grep -q "timed out" "$tmp/err" || fail "timeout message missing"

# exec: output is printed as it arrives. The command cannot end before this script, having
# read its first line, creates `go` in a directory the sandbox mounts.
mkdir -p "$tmp/shared" && chmod 777 "$tmp/shared"
cat >"$tmp/stream.yaml" <<YAML
log: {level: warn}
pools:
  - name: main
    backend: local
    min_idle: 1
    max_size: 1
    mounts: [{source: $tmp/shared, target: /shared}]
YAML
mkfifo "$tmp/out"
"$bin" exec --config "$tmp/stream.yaml" --timeout 30s -- \
  sh -c 'echo first; while [ ! -e /shared/go ]; do sleep 0.02; done; echo second' >"$tmp/out" &
execpid=$!
exec 3<"$tmp/out"
read -r -t 60 line <&3 || fail "exec streamed nothing"
[ "$line" = "first" ] || fail "exec streamed '$line' first"
[ ! -e "$tmp/shared/go" ] || fail "go existed too early"
touch "$tmp/shared/go"
read -r -t 60 line <&3 || fail "exec did not stream the second line"
[ "$line" = "second" ] || fail "exec streamed '$line' second"
exec 3<&-
wait "$execpid" || fail "streamed exec exit code $?"

# exec: unknown pool is a usage error naming the pools.
set +e
"$bin" exec --config "$tmp/ok.yaml" --pool nope -- true 2>"$tmp/err"
rc=$?
set -e
[ "$rc" -eq 2 ] || fail "unknown pool exit code $rc, want 2"
grep -q 'no pool named "nope"' "$tmp/err" || fail "unknown pool message: $(cat "$tmp/err")"

# exec --python: code in the pool's warm interpreter, exit code and traceback as python3 -c.
cat >"$tmp/py.yaml" <<'YAML'
log: {level: warn}
pools:
  - name: py
    backend: local
    min_idle: 1
    max_size: 1
    interpreters: {python: {command: python3, preload: [json]}}
YAML
set +e
out=$("$bin" exec --config "$tmp/py.yaml" --python 'import sys; print(6*7); 1/0' 2>"$tmp/err")
rc=$?
set -e
[ "$rc" -eq 1 ] || fail "exec --python exit code $rc, want 1"
[ "$out" = "42" ] || fail "exec --python stdout '$out'"
grep -q '^ZeroDivisionError: division by zero$' "$tmp/err" || fail "exec --python stderr: $(cat "$tmp/err")"
out=$(echo 'import sys; print(sys.argv)' | "$bin" exec --config "$tmp/py.yaml" --python -)
[ "$out" = "['-c']" ] || fail "exec --python - stdout '$out'"
set +e
"$bin" exec --config "$tmp/ok.yaml" --python 'print(1)' 2>"$tmp/err"
rc=$?
set -e
[ "$rc" -ne 0 ] || fail "exec --python on a pool without interpreters.python succeeded"
grep -q 'pool main has no python interpreter' "$tmp/err" || fail "no-interpreter message: $(cat "$tmp/err")"

# check-config: ok, and every error with its key path (exit 2).
out=$("$bin" check-config "$tmp/ok.yaml")
grep -q "ok (1 pools: main\[local\])" <<<"$out" || fail "check-config ok: $out"
cat >"$tmp/bad.yaml" <<'YAML'
pools:
  - name: a
    max_size: 1
    min_idle: 2
    idle_timout: 5m
    on_exhausted: retry
YAML
set +e
"$bin" check-config "$tmp/bad.yaml" 2>"$tmp/err"
rc=$?
set -e
[ "$rc" -eq 2 ] || fail "check-config bad exit $rc, want 2"
grep -q 'pools\[0\].idle_timout: unknown key (did you mean idle_timeout?)' "$tmp/err" || fail "typo: $(cat "$tmp/err")"
grep -q 'pools\[0\].on_exhausted: must be one of wait, fresh, fail (got "retry")' "$tmp/err" || fail "enum: $(cat "$tmp/err")"
grep -q 'pools\[0\].max_size: must be >= min_idle (got 1 < 2)' "$tmp/err" || fail "range: $(cat "$tmp/err")"

# stats: JSON with the pool warm.
"$bin" stats --config "$tmp/ok.yaml" >"$tmp/stats.json"
python3 - "$tmp/stats.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
assert len(s) == 1 and s[0]["name"] == "main", s
assert s[0]["idle"] >= 1 and s[0]["available"] == s[0]["idle"], s
assert s[0]["containers"][0]["state"] == "idle", s
PY

# run: JSON logs, periodic stats, SIGTERM -> graceful shutdown, exit 0.
"$bin" run --config "$tmp/ok.yaml" --log-format json --log-level info 2>"$tmp/run.log" &
pid=$!
# Until it logged stats and its sandbox runs. Its sandboxes are its bwrap children: only
# these, as other tests may run sandboxes meanwhile.
for _ in $(seq 1 100); do
  kids=$(pgrep -P "$pid" || true)
  grep -q '"msg":"stats pool=main' "$tmp/run.log" && [ -n "$kids" ] && break
  sleep 0.1
done
[ -n "$kids" ] || fail "run has no sandbox running"
kill -TERM "$pid"
wait "$pid" || fail "run exited non-zero after SIGTERM"
python3 - "$tmp/run.log" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
msgs = [l["msg"] for l in lines]
assert all({"time", "level", "msg"} <= l.keys() for l in lines)
assert any(m.startswith("stats pool=main") for m in msgs), msgs
assert any("received SIGTERM" in m for m in msgs), msgs
assert any("every sandbox destroyed" in m for m in msgs), msgs
PY
# Nothing left behind: none of its sandboxes still running.
for k in $kids; do
  ! kill -0 "$k" 2>/dev/null || fail "sandbox process $k left running"
done
echo "cli: all checks passed"
