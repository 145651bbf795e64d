"""Shared by the HTTP benchmarks written in Python: a `warmpool serve` started for the run
(on a free loopback port, with the given pools), Python pools, a timed POST, percentiles."""
import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time


def python_pool_yaml(name, backend, image, preload, size=1, prefault=True):
    """A pool (a YAML list item) of `size` sandboxes, probes off, whose fork server preloads
    `preload`; `image` for docker."""
    lines = [f"  - name: {name}", f"    backend: {backend}", f"    min_idle: {size}",
             f"    max_size: {size}", "    health_check: {interval: 0}", "    reset: {mode: agent}",
             f"    interpreters: {{python: {{command: python3, preload: [{', '.join(preload)}], "
             f"prefault: {'true' if prefault else 'false'}}}}}"]
    if image:
        lines.append(f"    image: {image}")
    return "\n".join(lines)


def timed_post(conn, path, body):
    """POSTs `body` as JSON on `conn`: (milliseconds to the whole answer, the answer's JSON).
    Exits the benchmark when it is not a 200 with exit code 0."""
    data = json.dumps(body)
    t0 = time.perf_counter()
    conn.request("POST", path, data, {"Content-Type": "application/json"})
    r = conn.getresponse()
    payload = r.read()
    dt = (time.perf_counter() - t0) * 1000
    out = json.loads(payload)
    if r.status != 200 or out.get("exit_code") != 0:
        raise SystemExit(f"request {body} failed: {r.status} {payload[:500]!r}")
    return dt, out


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@contextlib.contextmanager
def serving(warmpool, pools, ready_within=180):
    """Runs `warmpool serve` with `pools` (YAML list items, already indented) and yields a
    keep-alive connection to it once /readyz answers 200; stops the server afterwards."""
    port = free_port()
    cfg = f"server:\n  listen: 127.0.0.1:{port}\nlog: {{level: warn}}\npools:\n" + "\n".join(pools) + "\n"
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(cfg)
        cfg_path = f.name
    server = subprocess.Popen([warmpool, "serve", "--config", cfg_path],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        conn = None
        deadline = time.time() + ready_within
        while time.time() < deadline:
            if server.poll() is not None:
                sys.exit("warmpool serve exited: " + server.stderr.read().decode(errors="replace"))
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                c.request("GET", "/readyz")
                r = c.getresponse()
                r.read()
                if r.status == 200:
                    conn = c
                    break
                c.close()
            except OSError:
                pass
            time.sleep(0.2)
        if conn is None:
            sys.exit(f"warmpool serve did not become ready in {ready_within} s")
        try:
            yield conn
        finally:
            conn.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
        os.unlink(cfg_path)


def pct(xs, p):
    """The p-th percentile (nearest rank) of xs."""
    xs = sorted(xs)
    return xs[max(0, min(len(xs) - 1, int(round(p / 100 * len(xs) + 0.5)) - 1))]
