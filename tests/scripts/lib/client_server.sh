# Sourced by the client tests (python_client.sh, typescript_client.sh): starts a real
# `warmpool serve` with three bubblewrap pools ("shell": 2 sandboxes, "single": 1, and
# "python": 1 with a warm Python interpreter, json preloaded) on a free
# loopback port, with a bearer token and a 3 MiB body limit (so a 2 MiB stdin write reaches
# its endpoint, which refuses it with 413 too_large, and a 4 MiB body gets the transport's
# 413 payload_too_large). Needs $bin, $tmp, fail() and a cleanup trap that kills $server;
# sets token, server, port and url.
# start_client_server NAME
start_client_server() {
  token="$1-$RANDOM$RANDOM"
  cat >"$tmp/serve.yaml" <<YAML
node: $1-$$
log: {level: info}
shutdown_grace: 2s
server: {listen: "127.0.0.1:0", token: "$token", max_body: 3m}
pools:
  - name: shell
    backend: local
    min_idle: 1
    max_size: 2
  - name: single
    backend: local
    min_idle: 1
    max_size: 1
  - name: python
    backend: local
    min_idle: 1
    max_size: 1
    interpreters: {python: {command: python3, preload: [json]}}
YAML
  "$bin" serve --config "$tmp/serve.yaml" >"$tmp/serve.log" 2>&1 &
  server=$!
  port=""
  for _ in $(seq 600); do
    port=$(sed -n 's/.*serving HTTP on [^ ]*:\([0-9][0-9]*\) .*/\1/p' "$tmp/serve.log" | head -n 1)
    [ -z "$port" ] || break
    kill -0 "$server" 2>/dev/null || fail "warmpool serve exited before listening"
    sleep 0.1
  done
  [ -n "$port" ] || fail "warmpool serve did not report its port within 60s"
  url="http://127.0.0.1:$port"
}
