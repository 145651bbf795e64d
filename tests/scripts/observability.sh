# The observability kit (docs/grafana/warmpool.json, docs/prometheus/alerts.yaml) against real
# `warmpool serve` and `warmpool run` nodes on loopback: both files parse, have the fields
# Grafana and Prometheus need, and use only metric names a real /metrics scrape has; a killed
# peer shows as warmpool_node_up 0. Driven by tests/scripts/observability.py; every PromQL
# expression is parsed with the Prometheus project's grammar (tests/scripts/promql, npm).
set -euo pipefail
: "${WARMPOOL_BUILD_DIR:?}" "${WARMPOOL_SOURCE_DIR:?}"
python3 -c 'import yaml' 2>/dev/null || {
  echo "FAIL: python3-yaml is missing (tools/install-deps installs it)" >&2
  exit 1
}
for tool in node npm; do
  command -v "$tool" >/dev/null || {
    echo "FAIL: $tool is missing (tools/install-deps installs nodejs and npm)" >&2
    exit 1
  }
done
# The PromQL parser's packages go to the build tree, not into the sources.
export PROMQL_CHECK="$WARMPOOL_BUILD_DIR/promql-check"
mkdir -p "$PROMQL_CHECK"
cp "$WARMPOOL_SOURCE_DIR"/tests/scripts/promql/{package.json,package-lock.json,check.mjs} "$PROMQL_CHECK/"
(cd "$PROMQL_CHECK" && npm ci --prefer-offline --no-audit --no-fund --loglevel=error) || {
  echo "FAIL: npm ci could not install the PromQL parser (tests/scripts/promql)" >&2
  exit 1
}
exec python3 "$WARMPOOL_SOURCE_DIR/tests/scripts/observability.py"
