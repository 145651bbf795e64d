# `warmpool tool` (seed 001's tool mode) against a real repository in a temp dir: <open>,
# <write>, <exec>, escapes rejected, exit codes, a seed-001 config file, and docker if usable.
set -euo pipefail
bin="$WARMPOOL_BUILD_DIR/bin/warmpool"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

repo="$tmp/repo"
mkdir -p "$repo"
printf '# Demo repo\nline two\n' >"$repo/README.md"

# tool ARGS... <<< input: sets $out, $err and $rc.
tool() {
  set +e
  out=$("$bin" tool --repo "$repo" "$@" 2>"$tmp/err")
  rc=$?
  set -e
  err=$(cat "$tmp/err")
}

tool <<<'Let me look: <open README.md> <write out/new.txt>hello</write> <exec ls out && cat out/new.txt> <open ../etc/passwd>'
[ "$rc" -eq 1 ] || fail "exit code $rc with an escape attempt, want 1 (stderr: $err)"
grep -qx '=== open README.md ===' <<<"$out" || fail "no open block: $out"
grep -qx '# Demo repo' <<<"$out" || fail "README content missing: $out"
grep -qx 'line two' <<<"$out" || fail "README content incomplete: $out"
grep -qx '=== write out/new.txt (5 bytes) ===' <<<"$out" || fail "no write block: $out"
[ "$(cat "$repo/out/new.txt")" = "hello" ] || fail "host file out/new.txt: '$(cat "$repo/out/new.txt" 2>&1)'"
grep -qx '=== exec ls out && cat out/new.txt (exit 0) ===' <<<"$out" || fail "no exec block: $out"
[ "$(sed -n '/^=== exec/,/^===.*passwd/p' <<<"$out" | sed '1d;$d')" = "$(printf 'new.txt\nhello')" ] ||
  fail "exec output: $out"
grep -qx '=== open ../etc/passwd (error) ===' <<<"$out" || fail "escape not reported: $out"
grep -q 'leaves the repository' <<<"$out" || fail "escape reason missing: $out"
grep -q 'root:' <<<"$out" && fail "/etc/passwd content leaked: $out"

# Absolute paths are rejected too; a failing command makes the run fail but later ones run.
tool <<<'<open /etc/passwd> <exec exit 3> <write ok.txt>fine</write>'
[ "$rc" -eq 1 ] || fail "exit code $rc, want 1"
grep -q 'is absolute' <<<"$out" || fail "absolute path accepted: $out"
grep -qx '=== exec exit 3 (exit 3) ===' <<<"$out" || fail "exec exit code not shown: $out"
[ "$(cat "$repo/ok.txt")" = "fine" ] || fail "commands after a failure did not run"

# A clean run exits 0; '>' inside an <exec> works, and the repo survives sandbox resets.
tool <<<'<exec echo redirected > out/r.txt> <open out/r.txt> <open out/new.txt>'
[ "$rc" -eq 0 ] || fail "clean run exit code $rc, want 0: $out $err"
[ "$(cat "$repo/out/r.txt")" = "redirected" ] || fail "redirect in <exec> failed: $out"
grep -qx 'hello' <<<"$out" || fail "file from the first run is gone: $out"

# llm-runtime's own llm-runtime.config.yaml: its container_pool block is the pools' template.
cat >"$tmp/llm-runtime.config.yaml" <<'YAML'
container_pool:
  enabled: true                    # Enable the pool
  size: 3                          # Maximum containers in pool
  max_uses_per_container: 50       # Recycle after this many uses
  idle_timeout: 2m                 # Remove idle containers after 2 minutes
  health_check_interval: 60s       # Check health every 60 seconds
  startup_containers: 1            # Pre-create 1 container on startup
YAML
tool --config "$tmp/llm-runtime.config.yaml" <<<'<open go.mod> <write go.mod>module demo</write> <open go.mod>'
[ "$rc" -eq 1 ] || fail "open of a missing file should fail: rc $rc"
grep -qx 'module demo' <<<"$out" || fail "seed-001 config run: $out $err"
sed -i 's/enabled: true /enabled: false/' "$tmp/llm-runtime.config.yaml"  # seed 001's "testing" setting
tool --config "$tmp/llm-runtime.config.yaml" <<<'<open go.mod>'
[ "$rc" -eq 0 ] || fail "disabled pool run: rc $rc: $out $err"

# Usage errors exit 2.
set +e
"$bin" tool --repo "$tmp/nope" </dev/null 2>/dev/null; rc=$?
set -e
[ "$rc" -eq 2 ] || fail "missing repo: exit $rc, want 2"

# The docker backend, when a daemon and the test image are there (tools/setup-docker).
if docker image inspect warmpool-test-busybox >/dev/null 2>&1; then
  chown -R 1000:1000 "$repo"   # docker commands run as the repo's owner, never as root
  tool --backend docker --image warmpool-test-busybox \
    <<<'<open README.md> <write out/docker.txt>from docker</write> <exec cat out/docker.txt>'
  [ "$rc" -eq 0 ] || fail "docker run: rc $rc: $out $err"
  [ "$(cat "$repo/out/docker.txt")" = "from docker" ] || fail "docker write not on the host"
  grep -qx 'from docker' <<<"$out" || fail "docker exec output: $out"
  [ "$(stat -c %u "$repo/out/docker.txt")" = 1000 ] || fail "docker file not owned by the repo owner"
else
  echo "docker part skipped: no daemon or no warmpool-test-busybox image"
fi
echo "tool_mode: ok"
