# A newcomer's first steps in a fresh clone: no config anywhere (no --config, no ./warmpool.yaml, no
# /etc/warmpool/warmpool.yaml, an empty HOME, no warmpool variables). `warmpool exec -- echo
# hi` prints exactly "hi" and exits 0, `warmpool serve` answers /readyz, `warmpool init`
# writes a config the next commands pick up, and a held warm-up shows progress on a
# terminal (and only there).
set -euo pipefail
bin="$WARMPOOL_BUILD_DIR/bin/warmpool"
tmp=$(mktemp -d)
pid=""
cleanup() {
  [ -z "$pid" ] || kill -TERM "$pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

[ ! -e /etc/warmpool/warmpool.yaml ] ||
  fail "/etc/warmpool/warmpool.yaml exists on this machine: this test needs a machine without one"
mkdir -p "$tmp/home"
# A fresh clone of this source, as a newcomer starts (committed files only).
git clone -q --depth 1 "file://$WARMPOOL_SOURCE_DIR" "$tmp/work" || fail "cannot clone $WARMPOOL_SOURCE_DIR"
cd "$tmp/work"
[ ! -e warmpool.yaml ] || fail "the clone has a warmpool.yaml"
# What a fresh login has: no WARMPOOL_*, POOL_* or other pool variables. Only the node name
# is set, so this run's sandboxes are told apart from other tests' (docker part below).
fresh_env=(env -i PATH="$PATH" HOME="$tmp/home" WARMPOOL_NODE="newcomer-$$")
wp() { "${fresh_env[@]}" "$bin" "$@"; }

# --version prints the project version.
version=$(sed -n 's/^project(warmpool VERSION \([0-9.]*\).*/\1/p' "$WARMPOOL_SOURCE_DIR/CMakeLists.txt")
[ "$(wp --version)" = "warmpool $version" ] || fail "--version: '$(wp --version)', want 'warmpool $version'"

# exec without any config: exactly the command's output, nothing on stderr, exit 0.
set +e
wp exec -- echo hi >"$tmp/out" 2>"$tmp/err"
rc=$?
set -e
[ "$rc" -eq 0 ] || fail "exec exit code $rc: $(cat "$tmp/err")"
[ "$(od -An -c "$tmp/out" | tr -s ' ')" = " h i \n" ] || fail "exec stdout: '$(cat "$tmp/out")'"
[ ! -s "$tmp/err" ] || fail "exec wrote to stderr: $(cat "$tmp/err")"

# --log-level info brings the engine's lines back, the built-in config's one line among them.
wp exec --log-level info -- echo hi >"$tmp/out" 2>"$tmp/err"
[ "$(cat "$tmp/out")" = hi ] || fail "exec --log-level info stdout: '$(cat "$tmp/out")'"
[ "$(grep -c 'no configuration file' "$tmp/err")" -eq 1 ] || fail "built-in config notice: $(cat "$tmp/err")"
grep -q 'using the built-in one, pool "default" on the local backend' "$tmp/err" ||
  fail "notice does not say what runs: $(cat "$tmp/err")"
grep -q 'engine started' "$tmp/err" || fail "info lines missing with --log-level info: $(cat "$tmp/err")"

# A warning still reaches stderr in quiet mode: an unknown pool is an error sentence.
set +e
wp exec --pool nope -- true >"$tmp/out" 2>"$tmp/err"
rc=$?
set -e
[ "$rc" -eq 2 ] || fail "unknown pool exit code $rc"
grep -q 'no pool named "nope"' "$tmp/err" || fail "unknown pool message: $(cat "$tmp/err")"

# check-config without a file says there is none.
wp check-config >"$tmp/out"
grep -q '^no configuration file' "$tmp/out" || fail "check-config without a file: $(cat "$tmp/out")"

# serve without any config answers /readyz (port 0: any free port, read from its log).
"${fresh_env[@]}" "$bin" serve --listen 127.0.0.1:0 2>"$tmp/serve.log" & # env execs warmpool: $! is it
pid=$!
port=""
for _ in $(seq 1 300); do
  port=$(sed -n 's/.*serving HTTP on 127.0.0.1:\([0-9]*\).*/\1/p' "$tmp/serve.log")
  [ -n "$port" ] && break
  kill -0 "$pid" 2>/dev/null || fail "serve exited: $(cat "$tmp/serve.log")"
  sleep 0.1
done
[ -n "$port" ] || fail "serve never listened: $(cat "$tmp/serve.log")"
ready=""
for _ in $(seq 1 300); do
  code=$(curl -s -o "$tmp/ready" -w '%{http_code}' "http://127.0.0.1:$port/readyz" || true)
  [ "$code" = 200 ] && ready=1 && break
  sleep 0.1
done
[ -n "$ready" ] || fail "/readyz never answered 200 (last $code: $(cat "$tmp/ready" 2>/dev/null))"
[ "$(grep -c 'no configuration file' "$tmp/serve.log")" -eq 1 ] || fail "serve notice: $(cat "$tmp/serve.log")"
kill -TERM "$pid"
wait "$pid" || fail "serve exited non-zero after SIGTERM: $(cat "$tmp/serve.log")"
pid=""

# init writes ./warmpool.yaml, which the next commands use; it never overwrites one.
wp init 2>"$tmp/err"
grep -q '^  - name: default$' warmpool.yaml || fail "init wrote: $(cat warmpool.yaml)"
grep -q '^    backend: local' warmpool.yaml || fail "init backend: $(cat warmpool.yaml)"
grep -q '^# ' warmpool.yaml || fail "init's config has no comments"
out=$(wp check-config)
[ "$out" = "warmpool.yaml: ok (1 pools: default[local])" ] || fail "check-config of ./warmpool.yaml: $out"
sed -i 's/name: default/name: mine/' warmpool.yaml
wp exec --log-level info -- echo hi >"$tmp/out" 2>"$tmp/err"
[ "$(cat "$tmp/out")" = hi ] || fail "exec with ./warmpool.yaml: '$(cat "$tmp/out")'"
grep -q 'configuration: warmpool.yaml' "$tmp/err" || fail "exec did not say it uses ./warmpool.yaml: $(cat "$tmp/err")"
grep -q 'pool mine' "$tmp/err" || fail "exec did not run ./warmpool.yaml's pool: $(cat "$tmp/err")"
set +e
wp init 2>"$tmp/err"
rc=$?
set -e
[ "$rc" -eq 2 ] || fail "init over an existing file: exit $rc, want 2"
grep -q 'exists; pass --force' "$tmp/err" || fail "init over an existing file: $(cat "$tmp/err")"
grep -q 'name: mine' warmpool.yaml || fail "init overwrote ./warmpool.yaml"
wp init --force 2>/dev/null
grep -q 'name: default' warmpool.yaml || fail "init --force did not replace the file"

# init --backend docker needs an image; with one, its config runs on the real dockerd.
set +e
wp init --backend docker -o "$tmp/docker.yaml" 2>"$tmp/err"
rc=$?
set -e
[ "$rc" -eq 2 ] || fail "init --backend docker without --image: exit $rc"
grep -q 'needs an image' "$tmp/err" || fail "init without image: $(cat "$tmp/err")"
wp init --backend docker --image warmpool-test-busybox -o "$tmp/docker.yaml" 2>/dev/null
out=$(wp check-config "$tmp/docker.yaml")
grep -q 'ok (1 pools: default\[docker\])' <<<"$out" || fail "docker config: $out"
out=$(wp exec --config "$tmp/docker.yaml" -- sh -c 'echo hi from $(id -u)')
[ "$out" = "hi from 1000" ] || fail "exec on init's docker config: '$out'"

# A warm-up held on a latch the test controls: on a terminal, stderr shows progress and
# erases it before the command's output; off a terminal (above) stderr stayed empty.
mkdir -p "$tmp/latch"
cat >"$tmp/held.yaml" <<YAML
pools:
  - name: held
    backend: local
    min_idle: 1
    max_size: 1
    mounts: [{source: $tmp/latch, target: /latch}]
    health_check:
      interval: 0s
      timeout: 5m
      command: "while [ ! -e /latch/go ]; do sleep 0.05; done; echo WARM"
      expect: WARM
YAML
python3 - "$bin" "$tmp" <<'PY'
import os, pty, select, subprocess, sys, time
bin, tmp = sys.argv[1], sys.argv[2]
master, slave = pty.openpty()
env = {"PATH": os.environ["PATH"], "HOME": tmp + "/home", "WARMPOOL_NODE": "newcomer-pty-%d" % os.getpid()}
p = subprocess.Popen([bin, "exec", "--config", tmp + "/held.yaml", "--", "echo", "hi"],
                     stdout=subprocess.PIPE, stderr=slave, env=env)
os.close(slave)
seen = b""
def read_until(pred, what):
    global seen
    end = time.monotonic() + 120  # a bound against hanging forever, not a timing assertion
    while not pred(seen):
        if time.monotonic() > end:
            sys.exit("FAIL: never saw %s on the terminal; got %r" % (what, seen))
        r, _, _ = select.select([master], [], [], 0.5)
        if r:
            try:
                seen += os.read(master, 4096)
            except OSError:
                break
read_until(lambda s: b"warming up: 0/1 sandboxes warm" in s, "the progress line")
open(tmp + "/latch/go", "w").close()
out, _ = p.communicate(timeout=120)
read_until(lambda s: b"\r\x1b[K" in s, "the progress line erased")
assert p.returncode == 0, (p.returncode, seen)
assert out == b"hi\n", out
tail = seen[seen.rindex(b"\r\x1b[K") + 4:]
assert b"warming up" not in tail, seen
print("progress on a terminal:", repr(seen[:80]))
PY
echo "newcomer: all checks passed"
