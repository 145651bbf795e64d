#!/usr/bin/env python3
"""A demo of the warmpool Python client package (clients/python) against `warmpool serve`.

    python3 examples/python_client.py --url http://127.0.0.1:8080 [--token T] [--pool P]

The demo runs a one-shot command, holds a lease to write, run and read back a file, uses a
sticky session, and prints the pools. It exits non-zero on any unexpected answer.

It uses the installed package (`pip install ./clients/python`, see clients/python/README.md)
and, run from a checkout without it, the package's sources next to this file.
"""
import argparse
import os
import sys

try:
    import warmpool
except ImportError:  # a checkout: use clients/python without installing it
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "clients", "python"))
    import warmpool


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default=None, help="server URL (default: $WARMPOOL_URL, else http://127.0.0.1:8080)")
    ap.add_argument("--token", default=None, help="bearer token (default: $WARMPOOL_TOKEN)")
    ap.add_argument("--pool", default=None, help="pool to use (default: the server's routing)")
    args = ap.parse_args(argv)
    client = warmpool.Client(args.url, args.token)
    failures = []

    def check(what, ok, got):
        print(f"{'ok  ' if ok else 'FAIL'} {what}: {got!r}")
        if not ok:
            failures.append(what)

    try:
        r = client.execute(["echo", "hello", "warmpool"], pool=args.pool)
        check("execute echo", r.exit_code == 0 and r.stdout == "hello warmpool\n", r.stdout)
        print(f"     ran in pool {r.pool} on {r.container} ({r.duration_ms:.2f} ms)")

        with client.lease(args.pool, tenant="demo") as lease:  # released at the end of the block
            print(f"     lease {lease.id} on {lease.container} (pool {lease.pool}, "
                  f"released if untouched for {lease.info.expires_in_ms} ms)")
            lease.write_file("demo.txt", b"data from the client\n")
            back = lease.read_file("demo.txt")
            check("file round trip", back == b"data from the client\n", back)
            r = lease.exec(["cat"], stdin="piped\n")
            check("lease exec with stdin", r.stdout == "piped\n" and r.lease == lease.id, r.stdout)
        try:
            lease.exec(["true"])
            check("exec after release fails", False, "succeeded")
        except warmpool.UnknownLease as e:
            check("exec after release fails", e.status == 404 and e.code == "unknown_lease", str(e))

        first = client.execute(["echo", "one"], pool=args.pool, session="demo-session")
        second = client.execute(["echo", "two"], pool=args.pool, session="demo-session")
        check("session is sticky", first.container == second.container,
              (first.container, second.container))

        for p in client.pools():
            print(f"     pool {p.name} [{p.backend}]: {p.idle} idle, {p.leased} leased, "
                  f"{p.total} total, {p.executions} executions")
    except warmpool.WarmpoolError as e:
        print(f"FAIL unexpected error: {e}")
        return 1
    finally:
        client.close()
    if failures:
        print(f"{len(failures)} checks failed: {', '.join(failures)}")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
