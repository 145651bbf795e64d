#!/usr/bin/env python3
"""The observability kit against real servers: docs/grafana/warmpool.json and
docs/prometheus/alerts.yaml parse and have the shape Grafana and Prometheus need, and every
metric (and label) their PromQL uses is in a real /metrics scrape of `warmpool serve`.

Two real nodes on loopback, bubblewrap pools: `near` serves HTTP and runs the commands, `far`
is its cluster peer. Killing `far` must turn warmpool_node_up{node="far..."} to 0 on `near`,
the series the node-lost alert matches. Run by observability.sh (WARMPOOL_BUILD_DIR and
WARMPOOL_SOURCE_DIR in the environment).
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import yaml

BUILD = os.environ["WARMPOOL_BUILD_DIR"]
SOURCE = os.environ["WARMPOOL_SOURCE_DIR"]
BIN = os.path.join(BUILD, "bin", "warmpool")
TMP = tempfile.mkdtemp(prefix="warmpool-observability-")
DASHBOARD = os.path.join(SOURCE, "docs", "grafana", "warmpool.json")
ALERTS = os.path.join(SOURCE, "docs", "prometheus", "alerts.yaml")
NEAR, FAR = f"obs-near-{os.getpid()}", f"obs-far-{os.getpid()}"
PROMQL_CHECK = os.environ["PROMQL_CHECK"]  # tests/scripts/promql, installed by observability.sh
PROCS = []
LOGS = {}


def fail(msg):
    for name, path in LOGS.items():
        with open(path) as f:
            sys.stderr.write(f"--- {name} log (last lines)\n" + "".join(f.readlines()[-30:]))
    raise AssertionError(msg)


def expect(cond, msg):
    if not cond:
        fail(msg)


def wait_until(what, pred, deadline=60):
    end = time.time() + deadline
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    fail(f"timed out after {deadline}s waiting for {what}")


# -- the files ------------------------------------------------------------------

METRIC = re.compile(r"\bwarmpool_[a-z0-9_]+\b")
# One vector selector with labels: name{label op "value", ...}
SELECTOR = re.compile(r"\b(warmpool_[a-z0-9_]+)\s*\{([^}]*)\}")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
FUNCTION = re.compile(r"\b([a-z_]+)\s*\(")
PROMQL_WORDS = {  # functions, aggregations and keywords the kit may use
    "sum", "min", "max", "avg", "count", "rate", "irate", "increase", "histogram_quantile",
    "clamp_min", "clamp_max", "by", "without", "and", "or", "unless", "on", "ignoring",
    "max_over_time", "min_over_time", "avg_over_time", "absent", "label_values"}


def balanced(expr):
    depth = {"(": 0, "{": 0, "[": 0}
    close = {")": "(", "}": "{", "]": "["}
    for c in re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr):
        if c in depth:
            depth[c] += 1
        elif c in close:
            depth[close[c]] -= 1
            if depth[close[c]] < 0:
                return False
    return all(v == 0 for v in depth.values())


def check_promql(where, expr):
    expect(isinstance(expr, str) and expr.strip(), f"{where}: empty expression")
    expect(balanced(expr), f"{where}: unbalanced brackets in {expr!r}")
    for fn in FUNCTION.findall(re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)):
        expect(fn in PROMQL_WORDS, f"{where}: unknown PromQL function {fn!r} in {expr!r}")
    expect(METRIC.search(expr) or "up{" in expr, f"{where}: uses no warmpool metric: {expr!r}")


def load_dashboard():
    with open(DASHBOARD) as f:
        d = json.load(f)
    expect(isinstance(d.get("schemaVersion"), int) and d["schemaVersion"] >= 30,
           "dashboard: schemaVersion missing or older than Grafana 8")
    expect(d.get("title") and d.get("uid"), "dashboard: title and uid required")
    variables = {v["name"]: v for v in d["templating"]["list"]}
    for name in ("datasource", "node", "pool"):
        expect(name in variables, f"dashboard: template variable ${name} missing")
    expect(variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus",
           "dashboard: $datasource must pick a Prometheus data source")
    for name in ("node", "pool"):
        q = variables[name]["query"]["query"]
        expect(f", {name})" in q, f"dashboard: ${name} must list the {name} label's values: {q!r}")

    # label_values() is Grafana's, not PromQL: these are checked for names, not parsed.
    variable_exprs = [(f"variable ${n}", v["query"]["query"]) for n, v in variables.items() if n != "datasource"]
    exprs = []
    titles = []
    panels = [p for p in d["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in d["panels"]]
    expect(len(ids) == len(set(ids)), "dashboard: panel ids repeat")
    for p in panels:
        where = f"panel {p.get('title')!r}"
        titles.append(p["title"])
        expect(p.get("datasource", {}).get("uid") == "${datasource}", f"{where}: not on $datasource")
        expect(p.get("targets"), f"{where}: no queries")
        pos = p["gridPos"]
        expect(all(k in pos for k in ("x", "y", "w", "h")) and pos["x"] + pos["w"] <= 24,
               f"{where}: bad gridPos {pos}")
        for t in p["targets"]:
            check_promql(where, t["expr"])
            exprs.append((where, t["expr"]))
            for _, labels in SELECTOR.findall(t["expr"]):
                if "node" in labels or "pool" in labels:
                    expect('=~"$node"' in labels, f"{where}: selector {{{labels}}} ignores $node")
    check_parses(exprs)
    return d, titles, exprs + variable_exprs


def load_alerts():
    with open(ALERTS) as f:
        doc = yaml.safe_load(f)
    expect(isinstance(doc, dict) and set(doc) == {"groups"}, "alerts: top level must be just `groups`")
    exprs, names = [], []
    for g in doc["groups"]:
        expect(g.get("name") and g.get("rules"), f"alerts: group without name or rules: {g}")
        for r in g["rules"]:
            name = r.get("alert")
            where = f"alert {name!r}"
            expect(name and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name), f"alerts: rule without a valid `alert` name: {r}")
            expect(set(r) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"},
                   f"{where}: unknown keys {set(r)}")
            expect(isinstance(r.get("for"), str) and re.fullmatch(r"\d+[smh]", r["for"]), f"{where}: `for` must be a duration")
            expect(r.get("labels", {}).get("severity") in ("warning", "critical"), f"{where}: labels.severity missing")
            expect(r.get("annotations", {}).get("summary"), f"{where}: annotations.summary missing")
            check_promql(where, r["expr"])
            exprs.append((where, r["expr"]))
            names.append(name)
    expect(len(names) == len(set(names)), "alerts: alert names repeat")
    check_parses(exprs)
    return names, exprs


# Grafana's own variables, as Grafana substitutes them before the query reaches Prometheus.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "6h"}


def check_parses(exprs):
    """Every expression through the Prometheus project's PromQL grammar (tests/scripts/promql)."""
    items = []
    for where, expr in exprs:
        for var, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(var, value)
        items.append({"where": where, "expr": expr})
    r = subprocess.run(["node", os.path.join(PROMQL_CHECK, "check.mjs")], input=json.dumps(items),
                       capture_output=True, text=True)
    expect(r.returncode == 0, f"PromQL that does not parse:\n{r.stderr}{r.stdout}")
    print(r.stdout.strip())


# -- the scrape ------------------------------------------------------------------

def parse_scrape(text):
    """{family: type}, {sample name: set of label names}."""
    types, labels = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            types[name] = kind
        elif line and not line.startswith("#"):
            m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? \S+$", line)
            expect(m, f"malformed metrics line {line!r}")
            names = set(re.findall(r'(\w+)="', m.group(2) or ""))
            labels.setdefault(m.group(1), set()).update(names)
    return types, labels


def family_of(name, types):
    """The declared family a sample name belongs to (histogram series end in _bucket/_sum/_count)."""
    if name in types:
        return name
    base = re.sub(r"_(bucket|sum|count)$", "", name)
    if base != name and types.get(base) == "histogram":
        return base
    return None


def check_names_in_scrape(exprs, types, labels):
    used = set()
    for where, expr in exprs:
        for name in METRIC.findall(expr):
            used.add(name)
            family = family_of(name, types)
            expect(family, f"{where}: {name} is not a metric warmpool serve exports (no # TYPE for it)")
            expect(name in labels, f"{where}: {name} is declared but the scrape has no sample of it")
        for name, selector in SELECTOR.findall(expr):
            for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", selector):
                # `node` on every series is landing beside this kit (the metric names are what this checks).
                expect(label in labels.get(name, set()) or label == "node",
                       f"{where}: {name} has no label {label!r} in the scrape")
    return used


# -- servers -----------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(name, config, *args):
    cfg = os.path.join(TMP, name + ".yaml")
    with open(cfg, "w") as f:
        f.write(config)
    LOGS[name] = os.path.join(TMP, name + ".log")
    proc = subprocess.Popen([BIN, *args, "--config", cfg], stdout=open(LOGS[name], "w"), stderr=subprocess.STDOUT)
    PROCS.append(proc)
    return proc


def log_of(name):
    with open(LOGS[name]) as f:
        return f.read()


def http(port, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def ok_json(port, method, path, body=None, status=200):
    got, payload = http(port, method, path, body)
    expect(got == status, f"{method} {path}: HTTP {got}, want {status}: {payload[:300]!r}")
    return json.loads(payload) if payload else None


def node_up(text, node):
    m = re.search(r'^warmpool_node_up\{node="' + re.escape(node) + r'"\} (\S+)$', text, re.M)
    return m and m.group(1)


def main():
    _, titles, dash_exprs = load_dashboard()
    alert_names, alert_exprs = load_alerts()
    for want in ("WarmpoolPoolExhausted", "WarmpoolHitRateFalling", "WarmpoolProbeFailuresRising", "WarmpoolNodeLost"):
        expect(want in alert_names, f"alerts: {want} missing")

    far_port = free_port()
    pool = """
    backend: local
    min_idle: 1
    max_size: 1
    acquire_timeout: 20s"""
    start("far", f"node: {FAR}\nlog: {{level: info}}\ncluster: {{heartbeat: 200ms, timeout: 2s}}\n"
                 f"pools:\n  - name: far-pool{pool}\n", "run", "--listen", f"127.0.0.1:{far_port}")
    near = start("near", f"node: {NEAR}\nlog: {{level: info}}\ncluster: {{heartbeat: 200ms, timeout: 2s}}\n"
                         f"server: {{listen: '127.0.0.1:0'}}\npools:\n  - name: near-pool{pool}\n",
                 "serve", "--cluster-listen", "127.0.0.1:0", "--peer", f"127.0.0.1:{far_port}")
    port = int(wait_until("near's HTTP port", lambda: (re.search(r"serving HTTP on \S+?:(\d+)", log_of("near")) or [0, 0])[1]))
    wait_until("both nodes' pools warm in near's stats", lambda: sorted(
        (p["node"], p["idle"]) for p in ok_json(port, "GET", "/v1/pools")["pools"]) == [(FAR, 1), (NEAR, 1)])

    # Traffic, so counters and histograms have samples: executes (hits and a miss after a
    # retirement), a lease released dirty (a retirement with a reason).
    for i in range(3):
        r = ok_json(port, "POST", "/v1/execute", {"pool": "near-pool", "command": ["echo", str(i)]})
        expect(r["stdout"] == f"{i}\n", r)
    lease = ok_json(port, "POST", "/v1/leases", {"pool": "near-pool"}, status=201)
    ok_json(port, "POST", f"/v1/leases/{lease['id']}/exec", {"command": ["true"]})
    ok_json(port, "DELETE", f"/v1/leases/{lease['id']}?dirty=true", status=204)
    wait_until("the dirty retirement in near-pool's stats",
               lambda: ok_json(port, "GET", "/v1/pools/near-pool")["retired"].get("dirty") == 1)
    ok_json(port, "POST", "/v1/execute", {"pool": "near-pool", "command": ["true"]})

    text = http(port, "GET", "/metrics")[1].decode()
    types, labels = parse_scrape(text)
    used = check_names_in_scrape(dash_exprs + alert_exprs, types, labels)
    for family in ("warmpool_acquire_hits_total", "warmpool_acquire_misses_total", "warmpool_sandboxes",
                   "warmpool_retired_total", "warmpool_probe_failures_total", "warmpool_node_up",
                   "warmpool_acquire_duration_seconds_bucket", "warmpool_exec_duration_seconds_bucket"):
        expect(family in used, f"the kit does not chart or alert on {family}")
    expect(node_up(text, NEAR) == "1" and node_up(text, FAR) == "1",
           f"both nodes should be up:\n{[l for l in text.splitlines() if 'node_up' in l]}")

    # Lose the peer: its stats vanish from near's, and the node-lost series turns to 0.
    PROCS[0].kill()
    PROCS[0].wait()
    wait_until(f'warmpool_node_up{{node="{FAR}"}} 0 after far was killed',
               lambda: node_up(http(port, "GET", "/metrics")[1].decode(), FAR) == "0")
    expect(node_up(http(port, "GET", "/metrics")[1].decode(), NEAR) == "1", "near itself should still be up")

    near.send_signal(signal.SIGTERM)
    expect(near.wait(timeout=60) == 0, f"near exited with {near.returncode}")
    print(f"observability: {len(titles)} panels, {len(alert_names)} alerts, "
          f"{len(used)} metric names all in the scrape; node lost seen: PASSED")


if __name__ == "__main__":
    try:
        main()
    finally:
        for p in PROCS:
            if p.poll() is None:
                p.kill()
                p.wait()
