"""Shared by the test modules: the server under test (WARMPOOL_URL, WARMPOOL_TOKEN, set by
tests/scripts/python_client.sh) and small helpers. Not a test module itself."""

from __future__ import annotations

import os
import time
from typing import Any, Callable

from warmpool import Client, Lease

URL = os.environ.get("WARMPOOL_URL", "")
TOKEN = os.environ.get("WARMPOOL_TOKEN", "")

# The one sticky session the suite uses (the `shell` pool has two sandboxes: a second
# session would keep the other one for the server's session_ttl).
SESSION = f"py-session-{os.getpid()}"


def require_server() -> None:
    if not URL or not TOKEN:
        raise RuntimeError("WARMPOOL_URL and WARMPOOL_TOKEN must name the server under test")


def client(**kw: Any) -> Client:
    kw.setdefault("timeout", 60)
    return Client(URL, kw.pop("token", TOKEN), **kw)


def wait_for(what: str, cond: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {seconds:g} s")
        time.sleep(0.05)


# Counts the sandbox's processes whose command line holds a marker (not itself).
_COUNT = """
import os, sys
me = str(os.getpid())
n = 0
for pid in os.listdir("/proc"):
    if not pid.isdigit() or pid == me:
        continue
    try:
        with open("/proc/%s/cmdline" % pid, "rb") as f:
            n += sys.argv[1].encode() in f.read()
    except OSError:
        pass
print(n)
"""


def running_with(lease: Lease, marker: str) -> int:
    """How many processes of the lease's sandbox have ``marker`` in their command line."""
    return int(lease.exec(["python3", "-c", _COUNT, marker]).stdout)
