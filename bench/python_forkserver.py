#!/usr/bin/env python3
"""Warm Python (issue 16) through HTTP POST /v1/execute, side by side in one run.

Starts `warmpool serve` with one-sandbox pools (so every request of a pool lands in the same
warm sandbox) on the local and the docker backend and times, per backend:

  fork_server      {"language": "python", "code": "print(6*7)"}: a child of the warm interpreter
  fork_server_plain  the same through a fork server that preloaded json only (the others
                   preload numpy too)
  fork_server_again  the same, sent right after fork_server's answer to the same sandbox: the
                   child forked ahead for it may not be ready yet (a run then waits for a fork)
  fork_server_no_prefault  fork_server through a pool with `prefault: false`: the child forked
                   ahead does not copy the server's memory while it waits
  python3_c        {"command": ["python3", "-c", "print(6*7)"]} in the same warm sandbox
  exec_true        {"command": ["true"]} in the same warm sandbox: the round trip of any execute,
                   the floor under every row
  lease_fork_server  fork_server's request as POST /v1/leases/{id}/exec on a lease held for the
                   whole run (no acquire, release or reset per request)
  lease_fork_server_again  the same, sent right after lease_fork_server's answer: the child
                   forked ahead for it is not there yet, so the run waits for a fork
  numpy_preloaded  {"language": "python", "code": NUMPY} with numpy in interpreters.python.preload
  numpy_not_preloaded  the same code through a fork server that did not preload numpy
  numpy_python3_c  {"command": ["python3", "-c", NUMPY]}

NUMPY is `import numpy; print(numpy.arange(10).sum())`. Rows are interleaved round-robin
(one request of each row in turn), so a load change on the machine hits every row alike.
Latency is the client's: request sent to response read, over one keep-alive connection.

  bench/python_forkserver.py [--warmpool build/bin/warmpool] [--iters 200] [--backends local,docker]
                             [--docker-image warmpool-test-python-numpy] [--json]

--json prints one JSON object per row on stdout; the table always goes to stderr.
"""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_helper import pct, python_pool_yaml, serving, timed_post  # noqa: E402

NUMPY = "import numpy; print(numpy.arange(10).sum())"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warmpool", default=os.path.join(os.path.dirname(__file__), "..", "build", "bin", "warmpool"))
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--backends", default="local,docker")
    ap.add_argument("--docker-image", default="warmpool-test-python-numpy")
    ap.add_argument("--gap-ms", type=float, default=0.0,
                    help="pause before each request (except the *_again rows), so that the "
                         "resets of earlier requests are over")
    ap.add_argument("--cases", default="",
                    help="only these cases (comma-separated, e.g. fork_server,python3_c); "
                         "default: all")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    cases = [c for c in args.cases.split(",") if c]

    pools = []
    for b in backends:
        image = args.docker_image if b == "docker" else ""
        pools.append(python_pool_yaml(f"{b}-numpy", b, image, ["json", "numpy"]))
        pools.append(python_pool_yaml(f"{b}-plain", b, image, ["json"]))
        pools.append(python_pool_yaml(f"{b}-noprefault", b, image, ["json", "numpy"], prefault=False))
        pools.append(python_pool_yaml(f"{b}-exec", b, image, ["json", "numpy"]))
        pools.append(python_pool_yaml(f"{b}-lease", b, image, ["json", "numpy"]))
    with serving(args.warmpool, pools) as conn:

        leases = {}
        for b in backends:
            conn.request("POST", "/v1/leases", json.dumps({"pool": f"{b}-lease"}),
                         {"Content-Type": "application/json"})
            r = conn.getresponse()
            payload = r.read()
            if r.status != 201:
                raise SystemExit(f"acquiring a lease of {b}-lease failed: {r.status} {payload[:500]!r}")
            leases[f"{b}-lease"] = json.loads(payload)["id"]

        def execute(body):
            path = "/v1/execute"
            if body.get("pool") in leases:
                path = f"/v1/leases/{leases[body['pool']]}/exec"
                body = {k: v for k, v in body.items() if k != "pool"}
            return timed_post(conn, path, body)

        rows = []
        for b in backends:
            rows += [
                (b, "fork_server", "print(6*7)", {"pool": f"{b}-numpy", "language": "python", "code": "print(6*7)"}, "42\n"),
                (b, "fork_server_plain", "print(6*7)", {"pool": f"{b}-plain", "language": "python", "code": "print(6*7)"}, "42\n"),
                (b, "fork_server_again", "print(6*7)", {"pool": f"{b}-numpy", "language": "python", "code": "print(6*7)"}, "42\n"),
                (b, "fork_server_no_prefault", "print(6*7)", {"pool": f"{b}-noprefault", "language": "python", "code": "print(6*7)"}, "42\n"),
                (b, "python3_c", "print(6*7)", {"pool": f"{b}-numpy", "command": ["python3", "-c", "print(6*7)"]}, "42\n"),
                (b, "exec_true", "true", {"pool": f"{b}-exec", "command": ["true"]}, ""),
                (b, "lease_fork_server", "print(6*7)", {"pool": f"{b}-lease", "language": "python", "code": "print(6*7)"}, "42\n"),
                (b, "lease_fork_server_again", "print(6*7)", {"pool": f"{b}-lease", "language": "python", "code": "print(6*7)"}, "42\n"),
                (b, "numpy_preloaded", NUMPY, {"pool": f"{b}-numpy", "language": "python", "code": NUMPY}, "45\n"),
                (b, "numpy_not_preloaded", NUMPY, {"pool": f"{b}-plain", "language": "python", "code": NUMPY}, "45\n"),
                (b, "numpy_python3_c", NUMPY, {"pool": f"{b}-plain", "command": ["python3", "-c", NUMPY]}, "45\n"),
            ]
        if cases:
            unknown = set(cases) - {r[1] for r in rows}
            if unknown:
                raise SystemExit(f"unknown cases: {', '.join(sorted(unknown))}")
            rows = [r for r in rows if r[1] in cases]
        samples = {i: [] for i in range(len(rows))}
        inside = {i: [] for i in range(len(rows))}
        for it in range(args.warmup + args.iters):
            for i, (_, case, _, body, expect) in enumerate(rows):
                if args.gap_ms and not case.endswith("_again"):
                    time.sleep(args.gap_ms / 1000)
                dt, out = execute(body)
                if out.get("stdout") != expect:
                    raise SystemExit(f"unexpected output {out.get('stdout')!r} for {body}")
                if it >= args.warmup:
                    samples[i].append(dt)
                    inside[i].append(out.get("duration_ms", 0.0))

        print(f"{'backend':8} {'case':24} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'mean ms':>8} "
              f"{'in-sandbox p50':>15}  code", file=sys.stderr)
        for i, (b, case, code, body, _) in enumerate(rows):
            xs = samples[i]
            row = {"bench": "python_forkserver", "backend": b, "case": case, "code": code, "iters": len(xs),
                   "p50_ms": round(pct(xs, 50), 3), "p90_ms": round(pct(xs, 90), 3), "p99_ms": round(pct(xs, 99), 3),
                   "mean_ms": round(statistics.mean(xs), 3),
                   "exec_duration_p50_ms": round(pct(inside[i], 50), 3)}
            print(f"{b:8} {case:24} {row['p50_ms']:8.2f} {row['p90_ms']:8.2f} {row['p99_ms']:8.2f} "
                  f"{row['mean_ms']:8.2f} {row['exec_duration_p50_ms']:15.2f}  {code}", file=sys.stderr)
            if args.json:
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
