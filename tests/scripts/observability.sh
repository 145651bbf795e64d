# The observability kit (docs/grafana/warmpool.json, docs/prometheus/alerts.yaml) against real
# `warmpool serve` and `warmpool run` nodes on loopback: both files parse, have the fields
# Grafana and Prometheus need, and use only metric names a real /metrics scrape has; a killed
# peer shows as warmpool_node_up 0. Driven by tests/scripts/observability.py.
set -euo pipefail
: "${WARMPOOL_BUILD_DIR:?}" "${WARMPOOL_SOURCE_DIR:?}"
python3 -c 'import yaml' 2>/dev/null || {
  echo "FAIL: python3-yaml is missing (tools/install-deps installs it)" >&2
  exit 1
}
exec python3 "$WARMPOOL_SOURCE_DIR/tests/scripts/observability.py"
