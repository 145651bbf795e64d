# One logical pool over three REAL node processes on loopback (sim pools, CAF remoting):
# placement beyond one node's capacity, execs on remote leases, kill -9 of a node holding
# leases and a waiter (node_lost, re-placement, survivors keep serving), the node's
# restart and rejoin, and the refusal of a peer speaking another protocol version.
set -euo pipefail
: "${WARMPOOL_BUILD_DIR:?}"
bin="$WARMPOOL_BUILD_DIR/bin/warmpool"
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
now_ms() { date +%s%3N; }

read -r PH PA PB PC PD < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
for s in socks: s.close()
PY
)

for n in a b c d; do
  cat >"$tmp/$n.yaml" <<YAML
node: $n
log: {level: info}
stats_interval: 0
shutdown_grace: 1s
cluster: {heartbeat: 200ms, timeout: 1s}
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
  eval "pid_$n=$!"
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
idle_on() { # node -> idle sandboxes of py there ("" when the node is not in the stats)
  pools | jget "next((str(p['idle']) for p in d if p['node']=='$1'), '')"
}
warm() { for n in "$@"; do [ "$(idle_on "$n")" = 2 ] || return 1; done; }
acquire() { # -> "ID NODE" or fails
  local r; r=$(http POST /v1/leases '{"pool": "py", "timeout": "3s"}')
  [ "$(status_of "$r")" = 201 ] || fail "acquire: $r"
  body_of "$r" | jget "d['id'] + ' ' + d['node']"
}
exec_echo() { # id word -> the HTTP response
  http POST "/v1/leases/$1/exec" "{\"command\": [\"echo\", \"$2\"]}"
}
release() { local r; r=$(http DELETE "/v1/leases/$1"); [ "$(status_of "$r")" = 204 ] || fail "release $1: $r"; }

# -- three nodes form one pool --------------------------------------------------
start b run --listen "127.0.0.1:$PB"
start c run --listen "127.0.0.1:$PC"
start a serve --cluster-listen "127.0.0.1:$PA" --peer "127.0.0.1:$PB" --peer "127.0.0.1:$PC"
wait_for 30 "nodes a, b, c warm in A's stats" warm a b c
# B and C learned of each other from A's hello and linked directly.
wait_for 10 "b links to c" grep -q 'node b linked to node c' "$tmp/b.log"

# -- a pool every node has: the serving node's row, or the one ?node= names ---------
r=$(http GET /v1/pools/py)
[ "$(body_of "$r" | jget "d['node']")" = a ] || fail "GET /v1/pools/py is not a's own row: $r"
r=$(http GET "/v1/pools/py?node=b")
[ "$(status_of "$r")" = 200 ] && [ "$(body_of "$r" | jget "d['node']")" = b ] ||
  fail "GET /v1/pools/py?node=b: $r"
r=$(http GET "/v1/pools/py?node=nope")
[ "$(status_of "$r")" = 404 ] && grep -q 'on node \\"nope\\"' <<<"$r" ||
  fail "GET /v1/pools/py?node=nope: $r"

# -- acquires beyond one node's capacity land on the others ------------------------
declare -A node_of
for i in 1 2 3 4 5 6; do
  read -r id node < <(acquire)
  node_of[$id]=$node
done
counts=$(printf '%s\n' "${node_of[@]}" | sort | uniq -c | awk '{print $2"="$1}' | tr '\n' ' ')
[ "$counts" = "a=2 b=2 c=2 " ] || fail "6 acquires over 3 nodes of 2: got $counts"

# -- execs on remote leases return their output ----------------------------------
for id in "${!node_of[@]}"; do
  r=$(exec_echo "$id" "hi-$id")
  [ "$(status_of "$r")" = 200 ] || fail "exec on ${node_of[$id]}: $r"
  [ "$(body_of "$r" | jget "d['stdout']")" = "hi-$id" ] || fail "exec output on ${node_of[$id]}: $r"
done

# -- waiters spread over the full nodes --------------------------------------------
for w in 1 2 3; do
  http POST /v1/leases '{"pool": "py", "timeout": "25s"}' >"$tmp/waiter$w.out" &
  pids+=($!)
  sleep 0.3 # placement sees each earlier waiter
done
waiting_on_b() { [ "$(pools | jget "sum(p['waiting'] for p in d if p['node']=='b')")" -ge 1 ]; }
wait_for 5 "a waiter queued on b" waiting_on_b

# -- kill -9 B while it holds two leases and a waiter -------------------------------
killed_at=$(now_ms)
kill -9 "$pid_b"
for id in "${!node_of[@]}"; do
  [ "${node_of[$id]}" = b ] || continue
  t0=$(now_ms)
  r=$(exec_echo "$id" x) || fail "exec on a lease of the dead node hung"
  [ "$(status_of "$r")" = 502 ] || fail "exec on dead b: want 502, got $r"
  [ "$(body_of "$r" | jget "d['error']['code']")" = node_lost ] || fail "exec on dead b: $r"
  echo "exec on a lease of killed b failed with node_lost after $(( $(now_ms) - t0 ))ms"
done
gone_b() { [ -z "$(idle_on b)" ]; }
wait_for 5 "b dropped from the cluster stats" gone_b
gone_ms=$(( $(now_ms) - killed_at ))
echo "b left A's view ${gone_ms}ms after kill -9"
# Free the survivors' sandboxes: the three waiters (b's placed again) are served, and a
# new acquire succeeds on a survivor.
for id in "${!node_of[@]}"; do
  [ "${node_of[$id]}" = b ] || release "$id"
done
for w in 1 2 3; do wait_for 10 "waiter $w answered" test -n "$(tail -n 1 "$tmp/waiter$w.out" 2>/dev/null)"; done
for w in 1 2 3; do
  [ "$(tail -n 1 "$tmp/waiter$w.out")" = 201 ] || fail "waiter $w lost: $(cat "$tmp/waiter$w.out")"
  wnode=$(sed '$d' "$tmp/waiter$w.out" | jget "d['node']")
  [ "$wnode" != b ] || fail "waiter $w served by dead b"
  release "$(sed '$d' "$tmp/waiter$w.out" | jget "d['id']")"
done
t0=$(now_ms)
read -r id node < <(acquire)
[ "$node" != b ] || fail "acquire after the kill landed on b"
# Recovery time = until the cluster dropped b + what a new acquire then takes. The
# script's own bookkeeping in between (releases, waiter checks: dozens of curl and python
# starts, seconds on a loaded 2-core machine) is not the cluster's and is left out.
elapsed=$(( gone_ms + $(now_ms) - t0 ))
# A bound that catches a hang, not a speed check: ctest runs other suites beside this one.
[ "$elapsed" -lt 60000 ] || fail "survivors served only ${elapsed}ms after the kill"
echo "kill -9 of b -> waiters re-placed and a new acquire served by $node in ${elapsed}ms"
release "$id"
grep -q 'node b is unreachable' "$tmp/a.log" || fail "a did not log the loss of b"

# -- B restarts and rejoins; its capacity is used again ------------------------------
start b run --listen "127.0.0.1:$PB"
wait_for 30 "b rejoins warm" warm a b c
got=()
for i in 1 2 3; do read -r id node < <(acquire); got+=("$id $node"); done
grep -q ' b$' < <(printf '%s\n' "${got[@]}") || fail "no acquire landed on restarted b: ${got[*]}"
for g in "${got[@]}"; do release "${g% *}"; done

# -- a peer speaking another protocol version is refused, clearly, on both sides -----
WARMPOOL_CLUSTER_PROTOCOL=99 start d run --listen "127.0.0.1:$PD" --peer "127.0.0.1:$PA"
msg='peer "d" speaks warmpool cluster protocol 99, this node ("a") speaks 3: run the same warmpool version on every node'
wait_for 15 "a logs the refusal" grep -qF "$msg" "$tmp/a.log"
wait_for 15 "d logs the refusal" grep -qF "$msg" "$tmp/d.log"
[ -z "$(idle_on d)" ] || fail "refused d shows up in the cluster stats"

# -- graceful stop of the whole cluster ----------------------------------------------
kill -TERM "$pid_d" "$pid_a" "$pid_b" "$pid_c"
for n in a b c d; do
  p=$(eval echo "\$pid_$n")
  for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$p" 2>/dev/null && fail "node $n did not stop within 10s of SIGTERM"
  rc=0; wait "$p" || rc=$?
  [ "$rc" = 0 ] || fail "node $n exited with $rc after SIGTERM"
done
echo "cluster.sh: ok"
