#!/usr/bin/env python3
"""What a process pays for having slept: the same small piece of work, timed after the process
was idle for a while (sleeping, or spinning on the CPU), and a message round trip to a process
that was asleep, after the same gaps.

Every request to warmpool wakes a chain of threads and processes that were asleep (the HTTP
thread, an engine thread, the agent, the fork server's standby, and back). On a machine where
a woken process runs its first microseconds of work much slower than a busy one (caches and
address translations gone, a hypervisor), that chain, not the work, sets the latency of an
idle sandbox. This benchmark measures that factor on the machine it runs on.

  work         create a module object, then compile and exec one line (what a fork server
               run does around the code), timed after the gap
  round_trip   one byte to a child process over a pipe and one back, after the gap (the child
               sleeps in read)

Each row prints one JSON object per line with --json.
"""
import argparse
import json
import os
import statistics
import sys
import time
import types


def work():
    t0 = time.perf_counter()
    main = types.ModuleType("__main__")
    main.__dict__.update({"__builtins__": __builtins__, "__spec__": None})
    exec(compile("x = 6 * 7", "<string>", "exec"), main.__dict__)
    return (time.perf_counter() - t0) * 1e6


def idle(gap, how):
    if how == "sleep":
        time.sleep(gap)
        return
    end = time.perf_counter() + gap
    while time.perf_counter() < end:
        pass


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--gaps-ms", default="0,1,5,20,100")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    gaps = [float(g) / 1000 for g in args.gaps_ms.split(",")]

    # The peer of round_trip: echoes each byte.
    to_child_r, to_child_w = os.pipe()
    to_parent_r, to_parent_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(to_child_w)
        os.close(to_parent_r)
        while True:
            b = os.read(to_child_r, 1)
            if not b:
                os._exit(0)
            os.write(to_parent_w, b)
    os.close(to_child_r)
    os.close(to_parent_w)

    def round_trip():
        t0 = time.perf_counter()
        os.write(to_child_w, b"x")
        os.read(to_parent_r, 1)
        return (time.perf_counter() - t0) * 1e6

    rows = []
    for name, fn, ways in (("work", work, ("spin", "sleep")), ("round_trip", round_trip, ("sleep",))):
        for how in ways:
            for gap in gaps:
                xs = []
                for _ in range(args.iters):
                    idle(gap, how)
                    xs.append(fn())
                rows.append({"row": name, "idle": how, "gap_ms": gap * 1000,
                             "p50_us": round(statistics.median(xs), 1),
                             "min_us": round(min(xs), 1)})
    os.close(to_child_w)
    os.waitpid(pid, 0)

    if args.json:
        for r in rows:
            print(json.dumps(r))
        return
    print(f"{'row':<11} {'idle':<6} {'gap ms':>7} {'p50 us':>8} {'min us':>8}")
    for r in rows:
        print(f"{r['row']:<11} {r['idle']:<6} {r['gap_ms']:7.0f} {r['p50_us']:8.1f} {r['min_us']:8.1f}")


if __name__ == "__main__":
    sys.exit(main())
