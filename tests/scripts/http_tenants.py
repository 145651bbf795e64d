#!/usr/bin/env python3
"""Tenants and session-held leases of `warmpool serve`, end to end: a real server on a
loopback port with real bubblewrap sandboxes, driven with real HTTP requests.

- Two tenants (alice, bob) and the admin: a tenant's lease is 404 to the other tenant for
  every lease operation (and stays intact), /v1/pools shows a tenant only its own lease ids,
  the admin sees and uses them all, sessions are per tenant, a body cannot claim another
  tenant, tokens are required even on loopback and never appear in the logs.
- A lease acquired with a `session` is that session's sandbox, and goes back to the session
  when released.

Run by http_tenants.sh (needs WARMPOOL_BUILD_DIR and WARMPOOL_SOURCE_DIR). Every response is
validated against docs/openapi.yaml by http_api.py's helpers.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import http_api as api  # noqa: E402  (shares the server, client and OpenAPI helpers)
from http_api import call, expect, want  # noqa: E402

ADMIN, ALICE, BOB = "admin-7f3a9c", "alice-1b2c3d", "bob-from-env-4e5f"
NODE = f"tenants-test-{os.getpid()}"  # our own sandboxes only, whatever else runs here

POOLS = """
pools:
  - name: local         # real commands in bubblewrap
    backend: local
    min_idle: 2
    max_size: 6
"""

TENANTS_CONFIG = f"""
node: {NODE}
log: {{level: info}}
server:
  listen: 127.0.0.1:0
  token: {ADMIN}
  lease_ttl: 60s
  session_ttl: 60s
  audit: {{file: {api.TMP}/tenants-audit.jsonl}}
  tenants:
    - {{name: alice, token: {ALICE}}}
    - {{name: bob, token_env: WARMPOOL_TEST_BOB_TOKEN}}
""" + POOLS

SINGLE_TENANT_CONFIG = f"""
node: {NODE}-single
log: {{level: info}}
server:
  listen: 127.0.0.1:0
  lease_ttl: 60s
  session_ttl: 60s
""" + POOLS


def execute(port, token, body, status=200):
    return want(call(port, "POST", "/v1/execute", body, token=token), status)


def lease_ids_in(pools):
    return {c["lease_id"] for p in pools for c in p["containers"] if c.get("lease_id")}


def start(name, config, env=None):
    srv = api.Server(name, config, env=env)
    api.SERVERS.append(srv)
    port = srv.wait_listening().port
    api.wait_until("/readyz 200", lambda: call(port, "GET", "/readyz", token=ADMIN).status == 200,
                   60, 0.1)
    return srv, port


def test_tokens_required_even_on_loopback(port):
    want(call(port, "GET", "/healthz"), 200)
    for path in ("/v1/pools", "/readyz", "/metrics"):
        want(call(port, "GET", path), 401, "unauthorized", "missing Authorization")
        want(call(port, "GET", path, token="wrong"), 401, "unauthorized", "invalid bearer token")
        want(call(port, "GET", path, token=ALICE[:-1]), 401, "unauthorized")
    want(call(port, "POST", "/v1/execute", {"command": ["true"]}), 401, "unauthorized")
    want(call(port, "POST", "/v1/leases", {}, token=ALICE + "x"), 401, "unauthorized")
    for token in (ADMIN, ALICE, BOB):  # BOB's token came from the environment (token_env)
        want(call(port, "GET", "/v1/pools", token=token), 200)


def test_other_tenants_lease_is_unknown(port):
    lease = want(call(port, "POST", "/v1/leases", {"pool": "local"}, token=ALICE), 201).json()
    lid = lease["id"]
    expect(lease["tenant"] == "alice", lease)
    want(call(port, "PUT", f"/v1/leases/{lid}/files", raw=b"alice's secret\n",
              query={"path": "secret.txt"}, token=ALICE), 204)

    # Bob gets exactly what a lease that never existed gets: 404 unknown_lease.
    none = want(call(port, "GET", "/v1/leases/l-none", token=BOB), 404, "unknown_lease").error()
    attempts = [
        call(port, "GET", f"/v1/leases/{lid}", token=BOB),
        call(port, "POST", f"/v1/leases/{lid}/exec", {"command": ["cat", "secret.txt"]}, token=BOB),
        call(port, "GET", f"/v1/leases/{lid}/files", query={"path": "secret.txt"}, token=BOB),
        call(port, "PUT", f"/v1/leases/{lid}/files", raw=b"bob was here",
             query={"path": "secret.txt"}, token=BOB),
        call(port, "DELETE", f"/v1/leases/{lid}", token=BOB),
        call(port, "DELETE", f"/v1/leases/{lid}", query={"dirty": "true"}, token=BOB),
    ]
    for r in attempts:
        want(r, 404, "unknown_lease")
        expect(r.error()["message"] == none["message"].replace("l-none", lid),
               f"another tenant's lease answers differently from a missing one: {r.error()}")
        expect(b"alice" not in r.body and b"secret" not in r.body, r.body)

    # Alice's lease is untouched: still held, same sandbox, her file as she wrote it.
    r = want(call(port, "POST", f"/v1/leases/{lid}/exec", {"command": ["cat", "secret.txt"]},
                  token=ALICE), 200).json()
    expect(r["stdout"] == "alice's secret\n" and r["container"] == lease["container"], r)

    # Bob's own lease, and what /v1/pools shows each of them.
    bob_lease = want(call(port, "POST", "/v1/leases", {"pool": "local", "tenant": "bob"},
                          token=BOB), 201).json()
    expect(bob_lease["tenant"] == "bob", bob_lease)
    bob_pools = want(call(port, "GET", "/v1/pools", token=BOB), 200).json()["pools"]
    expect(lease_ids_in(bob_pools) == {bob_lease["id"]},
           f"bob sees lease ids {lease_ids_in(bob_pools)}, want only his {bob_lease['id']}")
    expect(sum(p["leased"] for p in bob_pools) >= 2, f"aggregate counts hidden: {bob_pools}")
    one = want(call(port, "GET", "/v1/pools/local", token=BOB), 200).json()
    expect(lid not in lease_ids_in([one]), f"bob sees alice's lease in /v1/pools/local: {one}")
    alice_pools = want(call(port, "GET", "/v1/pools", token=ALICE), 200).json()["pools"]
    expect(lease_ids_in(alice_pools) == {lid}, f"alice sees {lease_ids_in(alice_pools)}")
    admin_pools = want(call(port, "GET", "/v1/pools", token=ADMIN), 200).json()["pools"]
    expect({lid, bob_lease["id"]} <= lease_ids_in(admin_pools),
           f"admin sees {lease_ids_in(admin_pools)}, want both tenants' leases")

    # The admin sees and uses every tenant's lease.
    got = want(call(port, "GET", f"/v1/leases/{lid}", token=ADMIN), 200).json()
    expect(got["tenant"] == "alice", got)
    want(call(port, "GET", f"/v1/leases/{lid}/files", query={"path": "secret.txt"},
              token=ADMIN), 200)
    want(call(port, "DELETE", f"/v1/leases/{bob_lease['id']}", token=ADMIN), 204)
    want(call(port, "GET", f"/v1/leases/{bob_lease['id']}", token=BOB), 404, "unknown_lease")
    want(call(port, "DELETE", f"/v1/leases/{lid}", token=ALICE), 204)


def test_body_cannot_claim_another_tenant(port):
    want(call(port, "POST", "/v1/leases", {"pool": "local", "tenant": "alice"}, token=BOB), 400,
         "invalid_request", "tenant: this token belongs to tenant \"bob\"")
    want(call(port, "POST", "/v1/execute", {"command": ["true"], "tenant": "alice"}, token=BOB),
         400, "invalid_request", "tenant:")
    want(call(port, "POST", "/v1/leases", {"tenant": "carol"}, token=ADMIN), 400,
         "invalid_request", "no tenant named \"carol\"")
    # The admin may act for a tenant: the lease is then that tenant's.
    lease = want(call(port, "POST", "/v1/leases", {"pool": "local", "tenant": "alice"},
                      token=ADMIN), 201).json()
    expect(lease["tenant"] == "alice", lease)
    want(call(port, "GET", f"/v1/leases/{lease['id']}", token=ALICE), 200)
    want(call(port, "GET", f"/v1/leases/{lease['id']}", token=BOB), 404, "unknown_lease")
    want(call(port, "DELETE", f"/v1/leases/{lease['id']}", token=ALICE), 204)


def test_sessions_are_per_tenant(port):
    a = execute(port, ALICE, {"pool": "local", "session": "s1",
                              "command": "echo alice-state > state.txt"}).json()
    b = execute(port, BOB, {"pool": "local", "session": "s1",
                            "command": "cat state.txt 2>/dev/null || echo none"}).json()
    expect(b["container"] != a["container"], f"bob's session s1 got alice's sandbox: {a} {b}")
    expect(b["stdout"] == "none\n", f"bob read alice's session state: {b}")
    again = execute(port, ALICE, {"pool": "local", "session": "s1", "command": "cat state.txt"})
    expect(again.json()["stdout"] == "alice-state\n" and again.json()["container"] == a["container"],
           again.body)
    # Nor does a lease acquired with bob's session s1 reach alice's sandbox.
    lease = want(call(port, "POST", "/v1/leases", {"session": "s1"}, token=BOB), 201).json()
    expect(lease["container"] == b["container"], (lease, b))
    want(call(port, "DELETE", f"/v1/leases/{lease['id']}", token=BOB), 204)


def test_audit_names_tenants_and_no_token_is_logged(srv):
    with open(os.path.join(api.TMP, "tenants-audit.jsonl")) as f:
        audit = f.read()
    records = [json.loads(line) for line in audit.splitlines()]
    tenants = {r["tenant"] for r in records}
    expect({"alice", "bob"} <= tenants, f"audit tenants {tenants}")
    for token in (ADMIN, ALICE, BOB):
        expect(token not in audit, "a token is in the audit log")
        expect(token not in srv.output(), "a token is in the server log")


def test_session_lease_is_the_sessions_sandbox(port, token):
    """POST /v1/leases with a session holds that session's sandbox; DELETE gives it back."""
    first = execute(port, token, {"pool": "local", "session": "work",
                                  "command": "echo from-execute > state.txt"}).json()
    lease = want(call(port, "POST", "/v1/leases", {"session": "work"}, token=token), 201).json()
    lid = lease["id"]
    expect(lease["session"] == "work" and lease["pool"] == "local", lease)
    expect(lease["container"] == first["container"],
           f"a lease with session 'work' got sandbox {lease['container']}, "
           f"the session's is {first['container']}")
    got = want(call(port, "GET", f"/v1/leases/{lid}/files", query={"path": "state.txt"},
                    token=token), 200)
    expect(got.body == b"from-execute\n", got.body)
    # While the lease holds it, the session's own requests are refused, not queued forever.
    want(call(port, "POST", "/v1/execute", {"session": "work", "command": ["true"]},
              token=token), 400, "invalid_request", "held as lease")
    want(call(port, "POST", "/v1/leases", {"session": "work"}, token=token), 400,
         "invalid_request", "held as lease")
    want(call(port, "PUT", f"/v1/leases/{lid}/files", raw=b"from-lease\n",
              query={"path": "more.txt"}, token=token), 204)
    want(call(port, "DELETE", f"/v1/leases/{lid}", token=token), 204)

    # Released: the session has its sandbox back, with what the lease left in it.
    r = execute(port, token, {"session": "work", "command": "cat state.txt more.txt"}).json()
    expect(r["container"] == first["container"] and r["stdout"] == "from-execute\nfrom-lease\n", r)

    # A dirty release retires the sandbox: the session continues in a new, empty one.
    lease = want(call(port, "POST", "/v1/leases", {"session": "work"}, token=token), 201).json()
    expect(lease["container"] == first["container"], lease)
    want(call(port, "DELETE", f"/v1/leases/{lease['id']}", query={"dirty": "true"},
              token=token), 204)
    r = execute(port, token, {"session": "work",
                              "command": "cat state.txt 2>/dev/null || echo gone"}).json()
    expect(r["container"] != first["container"] and r["stdout"] == "gone\n", r)


def test_expired_session_lease_goes_back_to_the_session(port):
    """A session's lease nobody touches for lease_ttl ends; the session keeps its sandbox."""
    first = execute(port, None, {"pool": "local", "session": "left",
                                 "command": "echo before-lease > state.txt"}).json()
    lease = want(call(port, "POST", "/v1/leases", {"session": "left"}), 201).json()
    expect(lease["container"] == first["container"], (lease, first))
    # Held until the sweeper ends the untouched lease; then the session runs again, in the
    # same sandbox with its files.
    def session_runs():
        r = call(port, "POST", "/v1/execute", {"session": "left", "command": "cat state.txt"})
        if r.status == 400 and "held as lease" in r.error()["message"]:
            return None
        return want(r, 200).json()
    r = api.wait_until("the untouched session lease to expire", session_runs, 30, 0.2)
    expect(r["container"] == first["container"] and r["stdout"] == "before-lease\n", r)
    want(call(port, "GET", f"/v1/leases/{lease['id']}"), 404, "unknown_lease")


def main():
    try:
        srv, port = start("single-tenant", SINGLE_TENANT_CONFIG)
        test_session_lease_is_the_sessions_sandbox(port, None)
        expect(srv.stop() == 0, "single-tenant server did not exit 0")

        srv, port = start("short-lease", SINGLE_TENANT_CONFIG.replace("lease_ttl: 60s", "lease_ttl: 1s")
                                             .replace("-single", "-short"))
        test_expired_session_lease_goes_back_to_the_session(port)
        expect("its sandbox goes back to session left" in srv.output(), "no log line for the expiry")
        expect(srv.stop() == 0, "short-lease server did not exit 0")

        env = dict(os.environ, WARMPOOL_TEST_BOB_TOKEN=BOB)
        env.pop("WARMPOOL_TOKEN", None)
        srv, port = start("tenants", TENANTS_CONFIG, env)
        test_tokens_required_even_on_loopback(port)
        test_other_tenants_lease_is_unknown(port)
        test_body_cannot_claim_another_tenant(port)
        test_sessions_are_per_tenant(port)
        test_session_lease_is_the_sessions_sandbox(port, ALICE)
        expect(srv.stop() == 0, "tenants server did not exit 0")
        test_audit_names_tenants_and_no_token_is_logged(srv)
    except AssertionError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        for s in api.SERVERS:
            print(f"--- {s.name} log (tail) ---\n{s.output()[-3000:]}", file=sys.stderr)
        return 1
    finally:
        for s in api.SERVERS:
            s.kill()
    print("http_tenants: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
