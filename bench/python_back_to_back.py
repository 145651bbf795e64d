#!/usr/bin/env python3
"""Python runs one after another through HTTP POST /v1/execute: latency, runs per second and
the host's CPU time per run, side by side in one run.

A client that sends its next request as soon as the last one answered (back_to_back) meets
sandboxes that are still preparing for it: each fork-server run uses up the child forked
ahead for it, and the next one must be forked, and its memory copied, first. The same
requests with a pause before each (paced, --pause-ms) find that work done. The CPU column
says what each run costs the host in all (the server, the agent, the fork server and its
children, dockerd): a back-to-back client is limited by it once the host's cores are busy.

Rows, per backend and pool size (min_idle = max_size = --sizes):

  fork_server   {"language": "python", "code": "print(6*7)"} (numpy and json preloaded)
  python3_c     {"command": ["python3", "-c", "print(6*7)"]} in the same pool
  exec_true     {"command": ["true"]} in the same pool: any execute's round trip and reset

each for --seconds back_to_back, then --seconds paced.

  bench/python_back_to_back.py [--warmpool build/bin/warmpool] [--seconds 5] [--sizes 1,3]
                               [--backends local,docker] [--pause-ms 100] [--json]

--json prints one JSON object per row on stdout; the table always goes to stderr. The CPU
figure is the host's non-idle time (/proc/stat) over the row divided by its runs, so
anything else running on the host counts too: run it on a quiet machine.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_helper import pct, python_pool_yaml, serving, timed_post  # noqa: E402


def host_busy_seconds():
    """Non-idle CPU time of the whole host so far (user, nice, system, irq, softirq, steal)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warmpool", default=os.path.join(os.path.dirname(__file__), "..", "build", "bin", "warmpool"))
    ap.add_argument("--seconds", type=float, default=5.0, help="per row and mode")
    ap.add_argument("--sizes", default="1,3", help="pool sizes (comma-separated)")
    ap.add_argument("--backends", default="local,docker")
    ap.add_argument("--docker-image", default="warmpool-test-python-numpy")
    ap.add_argument("--pause-ms", type=float, default=100.0, help="pause before each paced request")
    ap.add_argument("--cases", default="fork_server,python3_c,exec_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    sizes = [int(s) for s in args.sizes.split(",") if s]
    bodies = {
        "fork_server": {"language": "python", "code": "print(6*7)"},
        "python3_c": {"command": ["python3", "-c", "print(6*7)"]},
        "exec_true": {"command": ["true"]},
    }
    expect = {"fork_server": "42\n", "python3_c": "42\n", "exec_true": ""}
    cases = [c for c in args.cases.split(",") if c]
    unknown = set(cases) - set(bodies)
    if unknown:
        raise SystemExit(f"unknown cases: {', '.join(sorted(unknown))}")

    pools = [python_pool_yaml(f"{b}-{n}", b, args.docker_image if b == "docker" else "", ["json", "numpy"], n)
             for b in backends for n in sizes]
    with serving(args.warmpool, pools) as conn:
        time.sleep(2)  # the pools' sandboxes settle (their fork servers' first children)

        def execute(body):
            return timed_post(conn, "/v1/execute", body)

        print(f"{'backend':8} {'size':>4} {'case':12} {'mode':13} {'runs':>5} {'p50 ms':>8} "
              f"{'p90 ms':>8} {'runs/s':>7} {'host CPU ms/run':>16}", file=sys.stderr)
        for b in backends:
            for n in sizes:
                for case in cases:
                    body = dict(bodies[case], pool=f"{b}-{n}")
                    for mode in ("back_to_back", "paced"):
                        for _ in range(3):  # warm-up
                            execute(body)
                        lat = []
                        busy0, t0 = host_busy_seconds(), time.monotonic()
                        while time.monotonic() - t0 < args.seconds:
                            if mode == "paced":
                                time.sleep(args.pause_ms / 1000)
                            dt, out = execute(body)
                            if out.get("stdout") != expect[case]:
                                raise SystemExit(f"unexpected output {out.get('stdout')!r} for {body}")
                            lat.append(dt)
                        elapsed = time.monotonic() - t0
                        cpu_ms = (host_busy_seconds() - busy0) / len(lat) * 1000
                        row = {"bench": "python_back_to_back", "backend": b, "pool_size": n,
                               "case": case, "mode": mode, "runs": len(lat),
                               "p50_ms": round(pct(lat, 50), 3), "p90_ms": round(pct(lat, 90), 3),
                               "runs_per_s": round(len(lat) / elapsed, 1),
                               "host_cpu_ms_per_run": round(cpu_ms, 1)}
                        print(f"{b:8} {n:4} {case:12} {mode:13} {row['runs']:5} {row['p50_ms']:8.2f} "
                              f"{row['p90_ms']:8.2f} {row['runs_per_s']:7.1f} {row['host_cpu_ms_per_run']:16.1f}",
                              file=sys.stderr)
                        if args.json:
                            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
