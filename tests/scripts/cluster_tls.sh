# Node links over TLS (libcaf_openssl): two REAL nodes on loopback with cluster.tls set
# form one pool (placement beyond A's capacity, exec on a lease of B), a plain node
# peering with a TLS node is not linked, and neither is a node that trusts the cluster's
# CA but presents a certificate from another CA (the TLS is mutual).
set -euo pipefail
: "${WARMPOOL_BUILD_DIR:?}"
bin="$WARMPOOL_BUILD_DIR/bin/warmpool"
command -v openssl >/dev/null || { echo "cluster_tls.sh: openssl not found, skipping"; exit 0; }
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  for f in "$tmp"/*.log; do echo "--- $f" >&2; tail -n 30 "$f" >&2; done
  exit 1
}

# -- a CA and one node certificate signed by it ---------------------------------------
(
  cd "$tmp"
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=warmpool-test-ca \
    -keyout ca.key -out ca.pem
  openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout node.key -out node.csr
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >node.ext
  openssl x509 -req -in node.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
    -extfile node.ext -out node.pem
  # A rogue node: the same names, signed by a CA the cluster does not trust.
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=rogue-ca \
    -keyout rogue-ca.key -out rogue-ca.pem
  openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout rogue.key -out rogue.csr
  openssl x509 -req -in rogue.csr -CA rogue-ca.pem -CAkey rogue-ca.key -CAcreateserial -days 1 \
    -extfile node.ext -out rogue.pem
) >"$tmp/openssl.out" 2>&1 || { cat "$tmp/openssl.out" >&2; fail "certificate generation"; }

read -r PH PA PB PC PE < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
for s in socks: s.close()
PY
)

for n in a b c e; do
  tls="tls: {certificate: $tmp/node.pem, key: $tmp/node.key, ca: $tmp/ca.pem}"
  [ "$n" = c ] && tls=""  # c speaks plain TCP
  # e trusts the cluster's CA, but its own certificate comes from the rogue CA.
  [ "$n" = e ] && tls="tls: {certificate: $tmp/rogue.pem, key: $tmp/rogue.key, ca: $tmp/ca.pem}"
  cat >"$tmp/$n.yaml" <<YAML
node: $n
log: {level: info}
stats_interval: 0
shutdown_grace: 1s
cluster: {heartbeat: 200ms, timeout: 1s${tls:+, $tls}}
server: {listen: "127.0.0.1:$PH"}
pools:
  - name: py
    backend: sim
    min_idle: 2
    max_size: 2
    acquire_timeout: 20s
YAML
done

start() { # name, args...: a node in the background, its log in $tmp/NAME.log
  local n=$1; shift
  "$bin" "$@" --config "$tmp/$n.yaml" 2>"$tmp/$n.log" &
  pids+=($!)
}
http() { # method path [json]: prints the body, then the status on the last line
  curl -sS --max-time 30 -X "$1" "http://127.0.0.1:$PH$2" -H 'Content-Type: application/json' \
    ${3:+-d "$3"} -w '\n%{http_code}'
}
status_of() { tail -n 1 <<<"$1"; }
body_of() { sed '$d' <<<"$1"; }
jget() { python3 -c "import json,sys; d=json.loads(sys.stdin.read()); print(eval(sys.argv[1]))" "$1"; }
pools() { body_of "$(http GET /v1/pools 2>/dev/null)" | jget "json.dumps(d['pools'])" 2>/dev/null || echo '[]'; }
wait_for() { # seconds, description, command...
  local deadline=$(( $(date +%s) + $1 )) what=$2; shift 2
  until "$@"; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "timed out waiting for: $what"
    sleep 0.1
  done
}
idle_on() { pools | jget "next((str(p['idle']) for p in d if p['node']=='$1'), '')"; }
warm() { for n in "$@"; do [ "$(idle_on "$n")" = 2 ] || return 1; done; }

# -- two TLS nodes form one pool -------------------------------------------------------
start b run --listen "127.0.0.1:$PB"
start a serve --cluster-listen "127.0.0.1:$PA" --peer "127.0.0.1:$PB"
wait_for 30 "nodes a, b warm in A's stats" warm a b
grep -q "accepts peers on 127.0.0.1:$PA (TLS)" "$tmp/a.log" || fail "a does not listen with TLS"
grep -q "accepts peers on 127.0.0.1:$PB (TLS)" "$tmp/b.log" || fail "b does not listen with TLS"

# -- acquires beyond A's capacity land on B; an exec there returns its output -----------
on_b=""
for i in 1 2 3 4; do
  r=$(http POST /v1/leases '{"pool": "py", "timeout": "3s"}')
  [ "$(status_of "$r")" = 201 ] || fail "acquire $i: $r"
  read -r id node < <(body_of "$r" | jget "d['id'] + ' ' + d['node']")
  [ "$node" = b ] && on_b=$id
done
[ -n "$on_b" ] || fail "no acquire of 4 (A holds 2) landed on b"
r=$(http POST "/v1/leases/$on_b/exec" '{"command": ["echo", "hello-over-tls"]}')
[ "$(status_of "$r")" = 200 ] || fail "exec on b: $r"
[ "$(body_of "$r" | jget "d['stdout']")" = hello-over-tls ] || fail "exec output on b: $r"

# -- a plain node peering with the TLS node does not link, nor break the TLS links ------
# (libcaf_openssl left the failed handshake's error queued and closed a's healthy link to
# b on the next read: see the SSL_read/SSL_write wrappers in actors/cluster_actor.cpp.)
start c run --listen "127.0.0.1:$PC" --peer "127.0.0.1:$PA"
wait_for 20 "c logs the failed link to a" grep -q "cannot link to peer 127.0.0.1:$PA" "$tmp/c.log"
sleep 2 # c retries meanwhile (200ms, 400ms, 800ms...)
[ -z "$(idle_on c)" ] || fail "plain node c shows up in the TLS cluster's stats"
if grep -q 'linked to node c' "$tmp/a.log"; then fail "a linked to plain node c"; fi
if grep -q 'linked to node' "$tmp/c.log"; then fail "plain node c linked to the TLS cluster"; fi
if grep -q 'node b is unreachable' "$tmp/a.log"; then fail "c's plain attempts broke a's TLS link to b"; fi
r=$(http POST "/v1/leases/$on_b/exec" '{"command": ["echo", "still-linked"]}')
[ "$(body_of "$r" | jget "d['stdout']")" = still-linked ] || fail "exec on b after c's attempts: $r"

# -- a node with a certificate from another CA is refused: a checks the client's certificate
start e run --listen "127.0.0.1:$PE" --peer "127.0.0.1:$PA"
wait_for 20 "e logs the failed link to a" grep -q "cannot link to peer 127.0.0.1:$PA" "$tmp/e.log"
sleep 2 # e retries meanwhile
[ -z "$(idle_on e)" ] || fail "node e with a foreign certificate shows up in the cluster's stats"
if grep -q 'linked to node e' "$tmp/a.log"; then fail "a linked to node e (foreign certificate)"; fi
if grep -q 'linked to node' "$tmp/e.log"; then fail "node e (foreign certificate) linked to the cluster"; fi
r=$(http POST "/v1/leases/$on_b/exec" '{"command": ["echo", "still-linked"]}')
[ "$(body_of "$r" | jget "d['stdout']")" = still-linked ] || fail "exec on b after e's attempts: $r"
echo "cluster_tls.sh: ok"
