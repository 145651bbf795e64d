# Tenant isolation and session-held leases of `warmpool serve`, end to end: real HTTP on
# loopback, real bubblewrap sandboxes (tests/scripts/http_tenants.py).
set -euo pipefail
: "${WARMPOOL_BUILD_DIR:?}" "${WARMPOOL_SOURCE_DIR:?}"
python3 -c 'import yaml' 2>/dev/null || {
  echo "FAIL: python3-yaml is missing (tools/install-deps installs it)" >&2
  exit 1
}
exec python3 "$WARMPOOL_SOURCE_DIR/tests/scripts/http_tenants.py"
