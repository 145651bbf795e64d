# The Python client (clients/python) against a real `warmpool serve`: two bubblewrap pools
# on a free loopback port, with a bearer token. Installs the package with pip, offline, from
# a copy of its sources into a venv under the build tree (pip builds in the source tree, so
# not in the checkout), then runs its unittest suite with the venv's python, and the
# example (examples/python_client.py) from the checkout without installing anything.
# Needs python3 with venv, setuptools and wheel (Debian 12: python3-venv, python3-pip, which
# brings python3-setuptools and python3-wheel) and mypy: without them this test fails.
set -euo pipefail
: "${WARMPOOL_BUILD_DIR:?}" "${WARMPOOL_SOURCE_DIR:?}"
bin="$WARMPOOL_BUILD_DIR/bin/warmpool"
src="$WARMPOOL_SOURCE_DIR/clients/python"
work="$WARMPOOL_BUILD_DIR/clients/python"
tmp=$(mktemp -d)
server=""
cleanup() {
  [ -z "$server" ] || kill -9 "$server" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  [ ! -f "$tmp/serve.log" ] || { echo "--- warmpool serve log" >&2; tail -n 40 "$tmp/serve.log" >&2; }
  exit 1
}

# -- install the package, offline ----------------------------------------------------
# An interpreter that can build it without the network: setuptools and wheel visible to a
# venv made with --system-site-packages (Debian's python3 has both with python3-pip; a
# python3 earlier on PATH, e.g. pyenv's, may lack wheel).
py=""
for cand in python3 /usr/bin/python3; do
  command -v "$cand" >/dev/null || continue
  if "$cand" -c 'import sys, venv, ensurepip, setuptools, wheel; sys.exit(sys.version_info < (3, 8))' 2>/dev/null; then
    py=$cand
    break
  fi
done
[ -n "$py" ] || fail "no python3 (3.8+) with venv, setuptools and wheel (tools/install-deps installs python3-venv and python3-pip)"

rm -rf "$work"
mkdir -p "$work"
cp -r "$src" "$work/src"
rm -rf "$work/src/build" "$work/src"/*.egg-info
"$py" -m venv --system-site-packages "$work/venv" || fail "$py -m venv failed (python3-venv missing?)"
vpy="$work/venv/bin/python"
"$vpy" -m pip install --no-index --no-build-isolation --no-cache-dir --disable-pip-version-check \
  "$work/src" >"$tmp/pip.log" 2>&1 || { cat "$tmp/pip.log" >&2; fail "pip could not install clients/python"; }
installed=$("$vpy" -c 'import os, warmpool; print(os.path.dirname(warmpool.__file__))' 2>&1 </dev/null) ||
  fail "the installed package does not import: $installed"
case "$installed" in
  "$work/venv/"*) ;;
  *) fail "warmpool imports from $installed, not from the venv" ;;
esac
[ -f "$installed/py.typed" ] || fail "the installed package has no py.typed"

# The type hints hold (strict, down to the oldest Python the package claims), and a user's
# code type-checks against them: the tests and the example.
command -v mypy >/dev/null || fail "mypy is missing (tools/install-deps installs it)"
(cd "$work/src" && mypy --strict --python-version 3.8 --cache-dir "$work/mypy-cache" warmpool &&
  MYPYPATH="$work/src" mypy --cache-dir "$work/mypy-cache" tests "$WARMPOOL_SOURCE_DIR/examples/python_client.py") \
  >"$tmp/mypy.log" 2>&1 </dev/null || { cat "$tmp/mypy.log" >&2; fail "mypy finds errors in clients/python"; }

# -- a real server -----------------------------------------------------------------
# shellcheck source=tests/scripts/lib/client_server.sh
. "$WARMPOOL_SOURCE_DIR/tests/scripts/lib/client_server.sh"
start_client_server py-client
# Readiness through the package itself (wait_ready polls /readyz).
WARMPOOL_URL="$url" WARMPOOL_TOKEN="$token" "$vpy" -c 'import warmpool; warmpool.Client().wait_ready(60)' \
  </dev/null || fail "the pools did not warm within 60s"

# -- the package's tests, from outside the sources (so `import warmpool` is the venv's) --
cd "$tmp"
WARMPOOL_URL="$url" WARMPOOL_TOKEN="$token" WARMPOOL_PY_EXPECT_UNDER="$work/venv" WARMPOOL_SOURCE_DIR="$WARMPOOL_SOURCE_DIR" \
  "$vpy" -m unittest discover -s "$work/src/tests" -t "$work/src/tests" -v </dev/null ||
  fail "the Python client's tests failed"

# -- the example, from the checkout, with no package installed ------------------------
"$py" -c 'import warmpool' 2>/dev/null </dev/null &&
  echo "note: $py imports an installed warmpool; the example may use it instead of the checkout's"
"$py" "$WARMPOOL_SOURCE_DIR/examples/python_client.py" --url "$url" --token "$token" --pool shell \
  </dev/null >"$tmp/example.log" 2>&1 || { cat "$tmp/example.log" >&2; fail "examples/python_client.py failed"; }
cat "$tmp/example.log"
grep -q '^all checks passed$' "$tmp/example.log" || fail "the example did not pass all its checks"

# Everything the tests leased went back (the with blocks included); `shell` may still hold
# the sticky sessions' sandboxes (held for server.session_ttl), `single` holds nothing.
leased=$(curl -sS -H "Authorization: Bearer $token" "$url/v1/pools" |
  "$py" -c 'import json,sys; print(" ".join("%s=%d" % (p["name"], p["leased"]) for p in sorted(json.load(sys.stdin)["pools"], key=lambda p: p["name"])))')
case "$leased" in
  "python=0 shell=0 single=0" | "python=0 shell=1 single=0" | "python=0 shell=2 single=0") ;;
  *) fail "sandboxes still leased after the client's tests: $leased" ;;
esac
kill -TERM "$server"
wait "$server" || fail "warmpool serve exited with $? on SIGTERM"
server=""
echo "python client: PASSED"
