#!/usr/bin/env python3
"""End-to-end test of `warmpool serve`: a real server on a loopback port, real HTTP requests.

Drives every endpoint and every error status, checks /metrics after a known sequence of
operations, validates every response against docs/openapi.yaml, runs
examples/python_client.py, and checks auth, the lease/session TTLs and graceful shutdown.
Run by http_api.sh (needs WARMPOOL_BUILD_DIR and WARMPOOL_SOURCE_DIR).
"""
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

import yaml

BUILD = os.environ["WARMPOOL_BUILD_DIR"]
SOURCE = os.environ["WARMPOOL_SOURCE_DIR"]
BIN = os.path.join(BUILD, "bin", "warmpool")
TMP = tempfile.mkdtemp(prefix="warmpool-http-")


def fail(msg):
    raise AssertionError(msg)


def expect(cond, msg):
    if not cond:
        fail(msg)


# -- OpenAPI validation -------------------------------------------------------

class Spec:
    """Just enough of OpenAPI 3.0 to check real responses: the documented status codes,
    content types, headers, and JSON bodies against their schemas ($ref, allOf, oneOf,
    type, required, properties, additionalProperties, items, enum, nullable, minimum)."""

    def __init__(self, path):
        with open(path) as f:
            self.doc = yaml.safe_load(f)
        self.ops = []  # (method, regex, template, operation)
        for template, item in self.doc["paths"].items():
            rx = re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$")
            for method, op in item.items():
                if method in ("get", "post", "put", "delete"):
                    self.ops.append((method.upper(), rx, template, op))
        self.seen = set()  # (operationId, status)

    def resolve(self, node):
        while isinstance(node, dict) and "$ref" in node:
            target = self.doc
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            node = target
        return node

    def operation(self, method, path):
        for m, rx, template, op in self.ops:
            if m == method and rx.match(path):
                return op
        return None

    def check(self, method, path, status, headers, body):
        op = self.operation(method, path)
        if op is None:
            expect(status == 404, f"{method} {path}: undocumented route answered {status}")
            return
        where = f"{method} {path} -> {status}"
        responses = op["responses"]
        expect(str(status) in responses, f"{where}: status not documented in openapi.yaml")
        self.seen.add((op["operationId"], status))
        resp = self.resolve(responses[str(status)])
        for name in resp.get("headers", {}):
            expect(headers.get(name.lower()), f"{where}: documented header {name} missing")
        content = resp.get("content")
        if not content:
            expect(body == b"", f"{where}: documented without a body, got {body[:100]!r}")
            return
        ctype = headers.get("content-type", "").split(";")[0].strip()
        expect(ctype in content, f"{where}: content type {ctype!r} not in {list(content)}")
        if ctype == "application/json":
            self.validate(json.loads(body), content[ctype]["schema"], "$", where)

    TYPES = {"object": dict, "array": list, "string": str, "boolean": bool,
             "integer": int, "number": (int, float)}

    def validate(self, value, schema, at, where):
        schema = self.resolve(schema)
        for sub in schema.get("allOf", []):
            self.validate(value, sub, at, where)
        if "oneOf" in schema:
            ok = 0
            for sub in schema["oneOf"]:
                try:
                    self.validate(value, sub, at, where)
                    ok += 1
                except AssertionError:
                    pass
            expect(ok == 1, f"{where}: {at} matches {ok} of oneOf (want 1): {value!r}")
        if value is None:
            expect(schema.get("nullable", False), f"{where}: {at} is null")
            return
        t = schema.get("type")
        if t:
            good = isinstance(value, self.TYPES[t]) and not (
                t in ("integer", "number") and isinstance(value, bool))
            expect(good, f"{where}: {at} should be {t}, got {value!r}")
        if "enum" in schema:
            expect(value in schema["enum"], f"{where}: {at}={value!r} not in {schema['enum']}")
        if "minimum" in schema:
            expect(value >= schema["minimum"], f"{where}: {at}={value!r} < minimum")
        if isinstance(value, dict):
            for key in schema.get("required", []):
                expect(key in value, f"{where}: {at}.{key} required but missing")
            props = schema.get("properties", {})
            extra = schema.get("additionalProperties", True)
            for key, v in value.items():
                if key in props:
                    self.validate(v, props[key], f"{at}.{key}", where)
                elif isinstance(extra, dict):
                    self.validate(v, extra, f"{at}.{key}", where)
        if isinstance(value, list) and "items" in schema:
            for i, v in enumerate(value):
                self.validate(v, schema["items"], f"{at}[{i}]", where)


SPEC = Spec(os.path.join(SOURCE, "docs", "openapi.yaml"))


# -- server and client ------------------------------------------------------

class Server:
    def __init__(self, name, config, args=(), env=None):
        self.name = name
        self.cfg = os.path.join(TMP, name + ".yaml")
        with open(self.cfg, "w") as f:
            f.write(config)
        self.log_path = os.path.join(TMP, name + ".log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([BIN, "serve", "--config", self.cfg, *args],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.port = None

    def output(self):
        with open(self.log_path) as f:
            return f.read()

    def wait_listening(self, deadline=60):
        end = time.time() + deadline
        while time.time() < end:
            m = re.search(r"serving HTTP on \S+?:(\d+)", self.output())
            if m:
                self.port = int(m.group(1))
                return self
            if self.proc.poll() is not None:
                fail(f"{self.name}: serve exited with {self.proc.returncode}:\n{self.output()}")
            time.sleep(0.05)
        fail(f"{self.name}: no 'serving HTTP on' line within {deadline}s:\n{self.output()}")

    def wait_exit(self, timeout=60):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            fail(f"{self.name}: did not exit within {timeout}s")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait_exit()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


SERVERS = []


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    def error(self):
        return self.json()["error"]


def call(port, method, path, body=None, raw=None, query=None, token=None, headers=None,
         conn=None, validate=True, chunked=False):
    """One request on a fresh connection (or `conn`); every answer is checked against the spec."""
    url = path + ("?" + urllib.parse.urlencode(query) if query else "")
    hdrs = dict(headers or {})
    data = None
    if raw is not None:
        data = raw
        hdrs["Content-Type"] = "application/octet-stream"
    elif body is not None:
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        hdrs["Content-Type"] = "application/json"
    if token:
        hdrs["Authorization"] = "Bearer " + token
    own = conn is None
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        if chunked:  # Transfer-Encoding: chunked, in 16k pieces
            data = data.encode() if isinstance(data, str) else data
            data = iter([data[i:i + (16 << 10)] for i in range(0, len(data), 16 << 10)])
        c.request(method, url, body=data, headers=hdrs, encode_chunked=chunked)
        r = c.getresponse()
        res = Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        if own:
            c.close()
    if validate:
        SPEC.check(method, path, res.status, res.headers, res.body)
    return res


def want(res, status, code=None, message=None):
    """Asserts the status (and for errors the envelope's code and a message fragment)."""
    detail = res.body[:400]
    expect(res.status == status, f"status {res.status}, want {status}: {detail!r}")
    if code is not None:
        err = res.error()
        expect(err["code"] == code, f"error code {err['code']}, want {code}: {detail!r}")
        if message is not None:
            expect(message in err["message"], f"message {err['message']!r} lacks {message!r}")
    return res


def wait_until(what, pred, deadline=15, interval=0.05):
    end = time.time() + deadline
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    fail(f"timed out after {deadline}s waiting for {what}")


def parse_metrics(text):
    """{(name, frozenset(labels)): value}; also checks HELP/TYPE precede each family."""
    samples, typed = {}, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', line)
        expect(m, f"malformed metrics line {line!r}")
        name, labels = m.group(1), m.group(3) or ""
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        expect(name in typed or family in typed, f"{name} has no # TYPE line before it")
        pairs = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels))
        samples[(name, pairs)] = float(m.group(4))
    return samples


def metric(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


# -- the main server ----------------------------------------------------------

MAIN_CONFIG = f"""
log: {{level: info}}
server:
  listen: 127.0.0.1:0
  max_body: 64k
  lease_ttl: 60s
  session_ttl: 60s
  audit: {{file: {TMP}/audit.jsonl}}
routing:
  default_pool: sim
  rules:
    - labels: {{lang: shell}}
      pool: local
pools:
  - name: sim           # sessions hold sandboxes for session_ttl: room for them
    backend: sim
    min_idle: 2
    max_size: 8
  - name: tiny          # one sandbox: the second acquire is exhausted
    backend: sim
    min_idle: 1
    max_size: 1
  - name: flaky         # one-off sandboxes whose create or exec fails half the time
    backend: sim
    enabled: false
    min_idle: 0
    max_size: 1
    sim: {{failure_rate: 0.5, seed: 7}}
  - name: local         # real commands in bubblewrap
    backend: local
    min_idle: 1
    max_size: 1
"""

AUDITED_EXECUTES = 0  # execute requests that got past validation (each is audited)


def execute(port, body, status=200, **kw):
    global AUDITED_EXECUTES
    res = call(port, "POST", "/v1/execute", body)
    if res.status in (200, 502, 503, 504):
        AUDITED_EXECUTES += 1
    return want(res, status, **kw)


def test_metrics_after_known_sequence(port):
    for _ in range(3):
        r = execute(port, {"pool": "sim", "command": ["echo", "hi"]}).json()
        expect(r["stdout"] == "hi\n" and r["exit_code"] == 0 and r["pool"] == "sim", r)
    # Pool counters travel from the sandbox actors to the pool asynchronously.
    wait_until("3 executions in pool stats",
               lambda: call(port, "GET", "/v1/pools/sim").json()["executions"] >= 3)
    text = want(call(port, "GET", "/metrics"), 200).body.decode()
    m = parse_metrics(text)
    # Every series names its node (a cluster has the same pool on several nodes).
    node = call(port, "GET", "/v1/pools/sim").json()["node"]
    unlabeled = sorted({k[0] for k in m if "node" not in dict(k[1])})
    expect(not unlabeled, f"series without a node label: {unlabeled}")
    expect(metric(m, "warmpool_executions_total", pool="sim", node=node) == 3, "executions_total != 3")
    expect(metric(m, "warmpool_executions_total", pool="tiny", node=node) == 0, "tiny executions != 0")
    hits = metric(m, "warmpool_acquire_hits_total", pool="sim", node=node)
    misses = metric(m, "warmpool_acquire_misses_total", pool="sim", node=node)
    expect(hits + misses == 3, f"hits {hits} + misses {misses} != 3")
    for family in ("warmpool_exec_duration_seconds", "warmpool_acquire_duration_seconds"):
        count = metric(m, family + "_count", pool="sim", node=node)
        expect(count == 3, f"{family}_count = {count}, want 3")
        expect(metric(m, family + "_bucket", pool="sim", le="+Inf", node=node) == 3, f"{family} +Inf")
        buckets = sorted((float(dict(k[1])["le"]), v) for k, v in m.items()
                         if k[0] == family + "_bucket" and dict(k[1]).get("pool") == "sim")
        counts = [v for _, v in buckets]
        expect(counts == sorted(counts), f"{family} buckets not cumulative: {buckets}")
        expect(metric(m, family + "_sum", pool="sim", node=node) >= 0, f"{family}_sum")
    expect(metric(m, "warmpool_http_requests_total", method="POST", route="/v1/execute",
                  status="200", node=node) == 3, "http_requests_total for 3 executes")
    states = {dict(k[1])["state"]: v for k, v in m.items()
              if k[0] == "warmpool_sandboxes" and dict(k[1])["pool"] == "sim"}
    expect(sum(states.values()) >= 2 and states.get("idle", 0) >= 1, f"sim states {states}")
    for name in ("warmpool_acquire_exhausted_total", "warmpool_recycled_total",
                 "warmpool_probe_failures_total", "warmpool_retired_total"):
        expect(f"# TYPE {name} counter" in text, f"{name} family missing")


def test_execute(port):
    r = execute(port, {"command": "echo a b"}).json()  # shell string, default pool
    expect(r["stdout"] == "a b\n" and r["pool"] == "sim", r)
    r = execute(port, {"command": ["cat"], "stdin": "piped"}).json()
    expect(r["stdout"] == "piped", r)
    r = execute(port, {"command": ["exit", "3"], "tenant": "t1"}).json()
    expect(r["exit_code"] == 3, r)
    r = execute(port, {"command": ["echo", "abcdefgh"], "output_limit": 4}).json()
    expect(r["stdout"] == "abcd" and r["truncated"] is True, r)
    # Routed by label to the real (bubblewrap) pool.
    r = execute(port, {"labels": {"lang": "shell"},
                       "command": "echo $((6*7)); echo err >&2; exit 3"}).json()
    expect((r["pool"], r["stdout"], r["stderr"], r["exit_code"]) == ("local", "42\n", "err\n", 3), r)
    r = execute(port, {"pool": "local", "command": ["sh", "-c", 'echo "$FOO"'],
                       "env": {"FOO": "bar"}, "timeout": "10s"}).json()
    expect(r["stdout"] == "bar\n", r)
    # A real timeout: 504 with the output produced before the kill.
    t0 = time.time()
    r = execute(port, {"pool": "local", "command": "echo partial; sleep 30", "timeout": 500},
                504, code="exec_timeout").json()
    expect(r["timed_out"] is True and r["stdout"] == "partial\n", r)
    expect(time.time() - t0 < 15, "timeout took too long")


def test_sessions(port):
    a = execute(port, {"pool": "sim", "session": "s-sim", "command": ["true"]}).json()
    b = execute(port, {"pool": "sim", "session": "s-sim", "command": ["true"]}).json()
    expect(a["lease"] == b["lease"] and a["container"] == b["container"], (a, b))
    expect(a["session"] == "s-sim", a)
    # Real state survives between requests of a session (last use of the one local sandbox).
    execute(port, {"pool": "local", "session": "s-local", "command": "echo kept > state.txt"})
    r = execute(port, {"pool": "local", "session": "s-local", "command": "cat state.txt"}).json()
    expect(r["stdout"] == "kept\n", r)


def test_leases(port):
    lease = want(call(port, "POST", "/v1/leases", {"pool": "sim", "tenant": "t1"}), 201).json()
    lid = lease["id"]
    expect(lease["pool"] == "sim" and lease["tenant"] == "t1" and lease["expires_in_ms"] == 60000,
           lease)
    want(call(port, "GET", f"/v1/leases/{lid}"), 200)
    data = bytes(range(256)) * 4
    want(call(port, "PUT", f"/v1/leases/{lid}/files", raw=data, query={"path": "bin.dat"}), 204)
    got = want(call(port, "GET", f"/v1/leases/{lid}/files", query={"path": "bin.dat"}), 200)
    expect(got.body == data, "file bytes differ")
    expect(got.headers["content-type"] == "application/octet-stream", got.headers)
    r = want(call(port, "POST", f"/v1/leases/{lid}/exec", {"command": ["ls"]}), 200).json()
    expect("bin.dat" in r["stdout"] and r["lease"] == lid and r["container"] == lease["container"], r)
    r = want(call(port, "POST", f"/v1/leases/{lid}/exec", {"command": ["hang"]}), 504).json()
    expect(r["error"]["code"] == "exec_timeout" and r["lease"] == lid, r)
    want(call(port, "GET", f"/v1/leases/{lid}/files", query={"path": "missing"}), 400,
         "invalid_request")
    want(call(port, "DELETE", f"/v1/leases/{lid}", query={"dirty": "true"}), 204)
    want(call(port, "DELETE", f"/v1/leases/{lid}"), 404, "unknown_lease")
    want(call(port, "POST", f"/v1/leases/{lid}/exec", {"command": ["true"]}), 404, "unknown_lease")
    want(call(port, "GET", f"/v1/leases/{lid}/files", query={"path": "bin.dat"}), 404,
         "unknown_lease")
    want(call(port, "PUT", f"/v1/leases/{lid}/files", raw=b"x", query={"path": "x"}), 404,
         "unknown_lease")
    want(call(port, "GET", f"/v1/leases/{lid}"), 404, "unknown_lease")

    # A real sandbox through a lease routed by labels: write a script, run it, read output.
    lease = want(call(port, "POST", "/v1/leases", {"labels": {"lang": "shell"}}), 201).json()
    lid = lease["id"]
    expect(lease["pool"] == "local", lease)
    want(call(port, "PUT", f"/v1/leases/{lid}/files", raw=b"echo from-script > out.txt\n",
              query={"path": "main.sh"}), 204)
    r = want(call(port, "POST", f"/v1/leases/{lid}/exec", {"command": ["sh", "main.sh"]}), 200)
    expect(r.json()["exit_code"] == 0, r.body)
    got = want(call(port, "GET", f"/v1/leases/{lid}/files", query={"path": "out.txt"}), 200)
    expect(got.body == b"from-script\n", got.body)
    want(call(port, "DELETE", f"/v1/leases/{lid}", {"dirty": False}), 204)


def test_errors(port):
    global AUDITED_EXECUTES
    bad = lambda body, msg: execute(port, body, 400, code="invalid_request", message=msg)
    bad('{"command": [', "body: invalid JSON")
    bad("[1, 2]", "body: expected a JSON object")
    bad({}, "command: required")
    bad({"command": 42}, "command: expected an array of strings or a shell string")
    bad({"command": []}, "command: must not be empty")
    bad({"command": ["echo", 1]}, "command: expected an array of strings")
    bad({"command": ["true"], "timeout": "soon"},
        'timeout: expected a duration like "5s" or milliseconds')
    bad({"command": ["true"], "timeout": -5}, 'timeout: expected a duration like "5s"')
    bad({"command": ["true"], "labels": {"lang": 1}}, "labels.lang: expected a string")
    bad({"command": ["true"], "env": "X=1"}, "env: expected an object of strings")
    bad({"command": ["true"], "stdin": 5}, "stdin: expected a string")
    bad({"command": ["true"], "output_limit": "lots"}, "output_limit: expected a size")
    bad({"command": ["true"], "comand": ["x"]}, "comand: unknown field")
    bad({"language": "ruby", "code": "puts 1"}, 'language: unknown language "ruby"')
    bad({"language": "python"}, "code: required with language")
    bad({"command": ["true"], "language": "python", "code": "1"}, "command: set either command")
    want(call(port, "POST", "/v1/leases", {"timeout": "1 day"}), 400, "invalid_request", "timeout:")
    want(call(port, "POST", "/v1/leases", {"command": ["x"]}), 400, "invalid_request",
         "command: unknown field")
    lease = want(call(port, "POST", "/v1/leases", {"pool": "sim"}), 201).json()
    lid = lease["id"]
    want(call(port, "PUT", f"/v1/leases/{lid}/files", raw=b"x"), 400, "invalid_request",
         "path: required")
    want(call(port, "GET", f"/v1/leases/{lid}/files"), 400, "invalid_request", "path: required")
    want(call(port, "POST", f"/v1/leases/{lid}/exec", {"pool": "sim", "command": ["true"]}), 400,
         "invalid_request", "pool: unknown field")
    want(call(port, "DELETE", f"/v1/leases/{lid}", query={"dirty": "maybe"}), 400,
         "invalid_request", "dirty: expected true or false")
    want(call(port, "DELETE", f"/v1/leases/{lid}", {"dirty": "yes"}), 400, "invalid_request",
         "dirty: expected true or false")
    # 413: a body over server.max_body (64k), JSON or raw.
    want(call(port, "PUT", f"/v1/leases/{lid}/files", raw=b"x" * (70 << 10),
              query={"path": "big"}), 413, "payload_too_large")
    execute(port, {"command": ["cat"], "stdin": "x" * (70 << 10)}, 413, code="payload_too_large")
    # Chunked bodies have no Content-Length to check up front: the limit holds all the same,
    # and the connection stays usable.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    want(call(port, "PUT", f"/v1/leases/{lid}/files", raw=b"x" * (200 << 10),
              query={"path": "big"}, chunked=True, conn=conn), 413, "payload_too_large")
    want(call(port, "POST", f"/v1/leases/{lid}/exec", {"command": ["cat"], "stdin": "chunked"},
              chunked=True, conn=conn), 200)
    conn.close()
    # A transport-level rejection any route may give (documented in the spec's description).
    want(call(port, "GET", "/v1/pools", raw=b"x", chunked=True, validate=False), 400,
         "invalid_request",
         "GET requests take no body")
    want(call(port, "DELETE", f"/v1/leases/{lid}"), 204)

    # 404: unknown pool, lease, route.
    execute(port, {"pool": "nope", "command": ["true"]}, 404, code="unknown_pool", message="nope")
    want(call(port, "POST", "/v1/leases", {"pool": "nope"}), 404, "unknown_pool")
    want(call(port, "GET", "/v1/pools/nope"), 404, "unknown_pool")
    for method, path in (("GET", "/v1/leases/l-none"), ("DELETE", "/v1/leases/l-none")):
        want(call(port, method, path), 404, "unknown_lease")
    want(call(port, "POST", "/v1/leases/l-none/exec", {"command": ["true"]}), 404, "unknown_lease")
    want(call(port, "GET", "/v2/nothing", validate=False), 404, "not_found")

    # 503 pool_exhausted, with Retry-After, when the only sandbox is held.
    held = want(call(port, "POST", "/v1/leases", {"pool": "tiny"}), 201).json()
    r = want(call(port, "POST", "/v1/leases", {"pool": "tiny", "timeout": "200ms"}), 503,
             "pool_exhausted")
    expect(r.headers.get("retry-after"), "pool_exhausted without Retry-After")
    want(call(port, "DELETE", f"/v1/leases/{held['id']}"), 204)

    # 502 container_failed and 503 backend_unavailable from a backend that fails half of its
    # creates and execs (seeded, so the sequence is the same on every run).
    seen = set()
    for _ in range(100):
        res = call(port, "POST", "/v1/execute", {"pool": "flaky", "command": ["true"]})
        AUDITED_EXECUTES += 1
        expect(res.status in (200, 502, 503), f"flaky: {res.status} {res.body!r}")
        if res.status != 200:
            code = res.error()["code"]
            expect((res.status, code) in ((502, "container_failed"), (503, "backend_unavailable")),
                   f"flaky: {res.status} {code}")
        seen.add(res.status)
        if seen == {200, 502, 503}:
            break
    expect(seen == {200, 502, 503}, f"flaky pool statuses seen: {seen}")

    # Garbage that is not even HTTP must not hurt the server.
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"\x00\xff garbage\r\n\r\n")
        s.recv(4096)
    want(call(port, "GET", "/healthz"), 200)


def test_pools_and_health(port):
    want(call(port, "GET", "/healthz"), 200)
    pools = want(call(port, "GET", "/v1/pools"), 200).json()["pools"]
    expect(sorted(p["name"] for p in pools) == ["flaky", "local", "sim", "tiny"], pools)
    sim = want(call(port, "GET", "/v1/pools/sim"), 200).json()
    expect(sim["backend"] == "sim" and sim["containers"], sim)
    row = sim["containers"][0]
    expect({"id", "state", "uses", "age_ms", "last_probe_ms_ago"} <= set(row), row)


def test_concurrency(port):
    """Concurrent clients mixing one-shot executes, sessions and leases: all answered right."""
    global AUDITED_EXECUTES
    errors = []

    def client(n):
        try:
            for i in range(10):
                r = call(port, "POST", "/v1/execute",
                         {"pool": "sim", "command": ["echo", f"{n}-{i}"],
                          **({"session": f"c{n}"} if n % 3 == 0 else {})})
                expect(r.status == 200 and r.json()["stdout"] == f"{n}-{i}\n", r.body)
            lease = want(call(port, "POST", "/v1/leases", {"pool": "sim"}), 201).json()
            r = want(call(port, "POST", f"/v1/leases/{lease['id']}/exec",
                          {"command": ["echo", str(n)]}), 200).json()
            expect(r["stdout"] == f"{n}\n", r)
            want(call(port, "DELETE", f"/v1/leases/{lease['id']}"), 204)
        except Exception as e:  # reported below: a thread's failure must fail the test
            errors.append(f"client {n}: {e}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    AUDITED_EXECUTES += 60
    expect(not errors, "; ".join(errors))


def test_live(port):
    """Shells, processes and streamed answers (tests/scripts/http_live.py, http_ndjson.py),
    on the `local` pool before the sessions test holds its sandbox."""
    global AUDITED_EXECUTES
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import http_live
    import http_ndjson

    http_live.run(port, call, want, wait_until)
    AUDITED_EXECUTES += http_ndjson.run(port, None, call, want, SPEC)
    # Each live route is its own series in the request metrics, with its ids left out.
    m = parse_metrics(want(call(port, "GET", "/metrics"), 200).body.decode())
    routes = {dict(k[1]).get("route") for k in m if k[0] == "warmpool_http_requests_total"}
    for route in ("/v1/leases/{id}/shells", "/v1/leases/{id}/shells/{shell}/exec",
                  "/v1/leases/{id}/shells/{shell}", "/v1/leases/{id}/contexts",
                  "/v1/leases/{id}/contexts/{ctx}/run", "/v1/leases/{id}/contexts/{ctx}",
                  "/v1/leases/{id}/processes", "/v1/leases/{id}/processes/{pid}/output"):
        expect(route in routes, f"no request metrics for {route}: {sorted(r for r in routes if r)}")


def test_audit():
    with open(os.path.join(TMP, "audit.jsonl")) as f:
        records = [json.loads(line) for line in f]
    ops = {}
    for r in records:
        ops[r["operation"]] = ops.get(r["operation"], 0) + 1
    for op in ("execute", "acquire", "exec", "file_put", "file_get", "release"):
        expect(ops.get(op), f"no audit record for {op}: {ops}")
    expect(ops["execute"] == AUDITED_EXECUTES,
           f"{ops['execute']} execute audit records, want {AUDITED_EXECUTES}")
    timeouts = [r for r in records if r["operation"] == "execute" and "exec_timeout" in r["error"]]
    expect(timeouts and timeouts[0]["pool"] == "local", "no audited exec_timeout")
    ok = next(r for r in records if r["operation"] == "execute" and not r["error"])
    expect(ok["container"] and ok["pool"] and ok["duration_ms"] >= 0, ok)


def test_shutting_down(server):
    # A keep-alive connection open before SIGTERM gets 503 shutting_down, not a crash.
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    want(call(server.port, "GET", "/healthz", conn=conn), 200)
    server.proc.send_signal(signal.SIGTERM)
    wait_until("shutdown to begin", lambda: "shutting down" in server.output(), 10)
    time.sleep(0.2)
    want(call(server.port, "GET", "/v1/pools", conn=conn), 503, "shutting_down")
    conn.close()
    rc = server.wait_exit()
    expect(rc == 0, f"serve exited {rc} after SIGTERM:\n{server.output()[-2000:]}")
    expect("engine stopped" in server.output(), "engine did not stop cleanly")


def run_main_server():
    srv = Server("main", MAIN_CONFIG)
    SERVERS.append(srv)
    port = srv.wait_listening().port
    wait_until("/readyz 200", lambda: call(port, "GET", "/readyz").status == 200, 60, 0.1)
    test_metrics_after_known_sequence(port)
    test_pools_and_health(port)
    test_execute(port)
    test_leases(port)
    test_live(port)
    test_errors(port)
    test_sessions(port)
    test_concurrency(port)
    test_audit()  # before the demo below adds records of its own
    demo = subprocess.run([sys.executable, os.path.join(SOURCE, "examples", "python_client.py"),
                           "--url", f"http://127.0.0.1:{port}", "--pool", "sim"],
                          capture_output=True, text=True, timeout=120)
    expect(demo.returncode == 0 and "all checks passed" in demo.stdout,
           f"python_client.py failed ({demo.returncode}):\n{demo.stdout}\n{demo.stderr}")
    test_shutting_down(srv)


# -- auth and TTLs --------------------------------------------------------------

AUTH_CONFIG = """
log: {level: info}
server:
  listen: 127.0.0.1:0
  token: s3cret
  lease_ttl: 1s
  session_ttl: 1s
pools:
  - name: sim
    backend: sim
    min_idle: 1
    max_size: 2
"""


def run_auth_server():
    env = {k: v for k, v in os.environ.items() if k != "WARMPOOL_TOKEN"}
    # Off loopback without a token: refused before anything starts.
    srv = Server("public-no-token", AUTH_CONFIG.replace("  token: s3cret\n", ""),
                 ["--listen", "0.0.0.0:0"], env)
    SERVERS.append(srv)
    rc = srv.wait_exit(30)
    expect(rc == 2, f"serve without a token on 0.0.0.0 exited {rc}, want 2")
    expect("not a loopback address" in srv.output() and "WARMPOOL_TOKEN" in srv.output(),
           f"unclear refusal: {srv.output()}")

    # With a token, a public listener is fine; every endpoint but /healthz needs it.
    srv = Server("auth", AUTH_CONFIG, ["--listen", "0.0.0.0:0"], env)
    SERVERS.append(srv)
    port = srv.wait_listening().port
    want(call(port, "GET", "/healthz"), 200)
    for path in ("/v1/pools", "/readyz", "/metrics"):
        r = want(call(port, "GET", path), 401, "unauthorized", "missing Authorization")
        expect(r.headers.get("www-authenticate", "").startswith("Bearer"), r.headers)
        want(call(port, "GET", path, token="wrong"), 401, "unauthorized", "invalid bearer token")
        want(call(port, "GET", path, token="s3cre"), 401, "unauthorized")
    want(call(port, "POST", "/v1/execute", {"command": ["true"]}), 401, "unauthorized")
    want(call(port, "POST", "/v1/execute", {"command": ["true"]}, token="s3cret"), 200)
    wait_until("ready", lambda: call(port, "GET", "/readyz", token="s3cret").status == 200)

    # An abandoned lease is released after lease_ttl (1s).
    lease = want(call(port, "POST", "/v1/leases", {"pool": "sim"}, token="s3cret"), 201).json()
    t0 = time.time()
    leased = lambda: call(port, "GET", "/v1/pools/sim", token="s3cret").json()["leased"]
    expect(leased() == 1, "lease not counted")
    wait_until("the abandoned lease to be released", lambda: leased() == 0, 15, 0.1)
    expect(time.time() - t0 >= 0.8, "lease released before its TTL")
    want(call(port, "GET", f"/v1/leases/{lease['id']}", token="s3cret"), 404, "unknown_lease")
    # An idle session gives its sandbox back after session_ttl (1s).
    want(call(port, "POST", "/v1/execute", {"session": "idle", "command": ["true"]},
              token="s3cret"), 200)
    expect(leased() == 1, "session does not hold its sandbox")
    wait_until("the idle session to be released", lambda: leased() == 0, 15, 0.1)
    expect(srv.stop() == 0, "auth server did not exit 0")

    # The token may come from the environment instead of the config.
    srv = Server("env-token", AUTH_CONFIG.replace("  token: s3cret\n", ""),
                 ["--listen", "0.0.0.0:0"], dict(env, WARMPOOL_TOKEN="from-env"))
    SERVERS.append(srv)
    port = srv.wait_listening().port
    want(call(port, "GET", "/v1/pools"), 401, "unauthorized")
    want(call(port, "GET", "/v1/pools", token="from-env"), 200)
    expect(srv.stop() == 0, "env-token server did not exit 0")


def check_coverage():
    """Every documented operation was exercised, and every error status was produced."""
    ops = {op["operationId"] for _, _, _, op in SPEC.ops}
    exercised = {op for op, _ in SPEC.seen}
    expect(ops <= exercised, f"operations never exercised: {sorted(ops - exercised)}")
    statuses = {s for _, s in SPEC.seen}
    for s in (200, 201, 204, 400, 401, 404, 413, 502, 503, 504):
        expect(s in statuses, f"status {s} never produced")


def main():
    try:
        run_auth_server()
        run_main_server()
        check_coverage()
    except AssertionError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        for s in SERVERS:
            print(f"--- {s.name} log (tail) ---\n{s.output()[-3000:]}", file=sys.stderr)
        return 1
    finally:
        for s in SERVERS:
            s.kill()
    print(f"http_api: ok ({len(SPEC.seen)} operation/status pairs validated against openapi.yaml)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
