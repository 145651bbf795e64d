# The TypeScript client (clients/typescript) against a real `warmpool serve`: two bubblewrap
# pools on a free loopback port, with a bearer token. Installs the dev tooling with `npm ci`
# (from npm's cache when it has the packages), compiles with tsc, and runs Node's own test
# runner on the compiled tests. Node and npm are required: without them this test fails.
set -euo pipefail
: "${WARMPOOL_BUILD_DIR:?}" "${WARMPOOL_SOURCE_DIR:?}"
bin="$WARMPOOL_BUILD_DIR/bin/warmpool"
src="$WARMPOOL_SOURCE_DIR/clients/typescript"
work="$WARMPOOL_BUILD_DIR/clients/typescript" # npm and tsc write here, not into the sources
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

for tool in node npm; do
  command -v "$tool" >/dev/null || fail "$tool is missing (tools/install-deps installs nodejs and npm)"
done
# fetch and Symbol.asyncDispose (`await using`): Node 18.18 (Debian 12 has 18.20).
node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 18 || (a === 18 && b >= 18) ? 0 : 1)' ||
  fail "node $(node --version) is too old: the client needs Node 18.18 or later"

# -- build the client and its tests ------------------------------------------------
mkdir -p "$work"
rm -rf "$work/src" "$work/test" "$work/dist" "$work/dist-test"
cp -r "$src/src" "$src/test" "$src/package.json" "$src/package-lock.json" "$src/tsconfig.json" "$work/"
cd "$work"
npm ci --prefer-offline --no-audit --no-fund --loglevel=error >"$tmp/npm.log" 2>&1 ||
  { cat "$tmp/npm.log" >&2; fail "npm ci could not install the client's dev tooling"; }
npx --no-install tsc -p tsconfig.json || fail "the client does not compile"
npx --no-install tsc -p test/tsconfig.json || fail "the client's tests do not compile"
[ -f dist/index.js ] && [ -f dist/index.d.ts ] || fail "tsc wrote no dist/index.js and dist/index.d.ts"

# -- a real server -----------------------------------------------------------------
# shellcheck source=tests/scripts/lib/client_server.sh
. "$WARMPOOL_SOURCE_DIR/tests/scripts/lib/client_server.sh"
start_client_server ts-client
for _ in $(seq 600); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "$url/readyz")" = 200 ] && break
  sleep 0.1
done
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "$url/readyz")" = 200 ] ||
  fail "the pools did not warm within 60s"

# -- the client's tests -------------------------------------------------------------
# One file at a time (node may run files in parallel, and they share two small pools), with
# one sticky session for the suite (each session holds a `shell` sandbox).
for t in dist-test/*.test.js; do
  WARMPOOL_URL="$url" WARMPOOL_TOKEN="$token" WARMPOOL_SESSION="ts-session-$$" \
    node --test --test-reporter=spec "$t" || fail "the TypeScript client's tests failed ($t)"
done

# Everything the tests leased went back (withLease and `await using` included); `shell` may
# still hold the sticky session's sandbox (held for server.session_ttl).
leased=$(curl -sS -H "Authorization: Bearer $token" "$url/v1/pools" |
  python3 -c 'import json,sys; print(" ".join("%s=%d" % (p["name"], p["leased"]) for p in sorted(json.load(sys.stdin)["pools"], key=lambda p: p["name"])))')
case "$leased" in
  "python=0 shell=0 single=0" | "python=0 shell=1 single=0") ;;
  *) fail "sandboxes still leased after the client's tests: $leased" ;;
esac
kill -TERM "$server"
wait "$server" || fail "warmpool serve exited with $? on SIGTERM"
server=""
echo "typescript client: PASSED"
