# The HTTP API end to end: `warmpool serve` on loopback ports (sim pools plus one local
# bubblewrap pool), driven by tests/scripts/http_api.py with real HTTP requests. Every
# response is validated against docs/openapi.yaml.
set -euo pipefail
: "${WARMPOOL_BUILD_DIR:?}" "${WARMPOOL_SOURCE_DIR:?}"
python3 -c 'import yaml' 2>/dev/null || {
  echo "FAIL: python3-yaml is missing (tools/install-deps installs it)" >&2
  exit 1
}
exec python3 "$WARMPOOL_SOURCE_DIR/tests/scripts/http_api.py"
