#!/usr/bin/env python3
"""A stateful Python code context's run through HTTP (issue 16, target p50 <= 2 ms).

Starts `warmpool serve` with a one-sandbox pool per backend, leases its sandbox, opens a
context (POST /v1/leases/{id}/contexts), runs `x = 0`, then times, per backend:

  augment   POST .../contexts/{ctx}/run {"code": "x += 1"}   (a statement: result null)
  result    POST .../contexts/{ctx}/run {"code": "x"}        (an expression: result its repr)

Rows are interleaved (one request of each in turn) on one keep-alive connection; latency is
the client's (request sent to response read); "in-sandbox" is the run's duration_ms as the
agent measured it (code sent to the driver until its answer). At the end x must equal the
number of augment runs.

With --gap-ms N the client pauses N ms before each request, so every run meets a context (and
a server) that has been idle, as an agent waiting for its model does; without it, requests
go back to back.

  bench/python_context.py [--warmpool build/bin/warmpool] [--iters 300] [--backends local,docker]
                          [--docker-image warmpool-test-python] [--gap-ms 0] [--json]
"""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_helper import pct, serving  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warmpool", default=os.path.join(os.path.dirname(__file__), "..", "build", "bin", "warmpool"))
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--backends", default="local,docker")
    ap.add_argument("--docker-image", default="warmpool-test-python")
    ap.add_argument("--gap-ms", type=float, default=0.0, help="pause before each request")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    backends = [b for b in args.backends.split(",") if b]

    pools = []
    for b in backends:
        lines = [f"  - name: {b}", f"    backend: {b}", "    min_idle: 1", "    max_size: 1",
                 "    health_check: {interval: 0}"]
        if b == "docker":
            lines.append(f"    image: {args.docker_image}")
        pools.append("\n".join(lines))
    with serving(args.warmpool, pools) as conn:

        def call(method, path, body=None, want=200):
            data = json.dumps(body) if body is not None else None
            t0 = time.perf_counter()
            conn.request(method, path, data, {"Content-Type": "application/json"})
            r = conn.getresponse()
            payload = r.read()
            dt = (time.perf_counter() - t0) * 1000
            if r.status != want:
                raise SystemExit(f"{method} {path} {body}: {r.status} {payload[:500]!r}")
            return dt, (json.loads(payload) if payload else None)

        ctx = {}
        leases = []
        for b in backends:
            _, lease = call("POST", "/v1/leases", {"pool": b, "timeout": "60s"}, 201)
            leases.append(lease["id"])
            base = f"/v1/leases/{lease['id']}/contexts"
            _, c = call("POST", base, None, 201)
            ctx[b] = f"{base}/{c['id']}/run"
            call("POST", ctx[b], {"code": "x = 0"})

        rows = []
        for b in backends:
            rows += [(b, "augment", "x += 1"), (b, "result", "x")]
        samples = {i: [] for i in range(len(rows))}
        inside = {i: [] for i in range(len(rows))}
        for it in range(args.warmup + args.iters):
            for i, (b, _, code) in enumerate(rows):
                if args.gap_ms:
                    time.sleep(args.gap_ms / 1000)
                dt, out = call("POST", ctx[b], {"code": code})
                if out["error"] is not None:
                    raise SystemExit(f"run {code!r} on {b} failed: {out['error']}")
                if it >= args.warmup:
                    samples[i].append(dt)
                    inside[i].append(out["duration_ms"])
        for b in backends:
            _, out = call("POST", ctx[b], {"code": "x"})
            if out["result"] != str(args.warmup + args.iters):
                raise SystemExit(f"x is {out['result']} on {b}, expected {args.warmup + args.iters}")

        print(f"{'backend':8} {'case':8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'mean ms':>8} "
              f"{'in-sandbox p50':>15}  code", file=sys.stderr)
        for i, (b, case, code) in enumerate(rows):
            xs = samples[i]
            row = {"bench": "python_context", "backend": b, "case": case, "code": code, "iters": len(xs),
                   "gap_ms": args.gap_ms, "p50_ms": round(pct(xs, 50), 3), "p90_ms": round(pct(xs, 90), 3), "p99_ms": round(pct(xs, 99), 3),
                   "mean_ms": round(statistics.mean(xs), 3), "run_duration_p50_ms": round(pct(inside[i], 50), 3)}
            print(f"{b:8} {case:8} {row['p50_ms']:8.2f} {row['p90_ms']:8.2f} {row['p99_ms']:8.2f} "
                  f"{row['mean_ms']:8.2f} {row['run_duration_p50_ms']:15.3f}  {code}", file=sys.stderr)
            if args.json:
                print(json.dumps(row), flush=True)
        for lid in leases:
            call("DELETE", f"/v1/leases/{lid}", None, 204)


if __name__ == "__main__":
    main()
