"""warmpool: a client for the warmpool HTTP API (``warmpool serve``).

Warm sandboxes for agents and code runners: one-shot commands, held leases with commands and
files, persistent shells, background processes, streamed output, sticky sessions, pool
stats. Standard library only.

    import warmpool

    client = warmpool.Client("http://127.0.0.1:8080", token="...")
    print(client.execute(["python3", "-c", "print(6 * 7)"], pool="python").stdout)
    print(client.execute(code="print(6 * 7)", pool="python").stdout)  # the warm interpreter
    with client.lease("python") as lease:          # released when the block ends
        lease.write_file("main.py", "print('hi')\\n")
        print(lease.exec("python3 main.py").stdout)
        with lease.shell() as sh:                  # state carries over between commands
            sh.run("cd /tmp && export X=1")
            print(sh.run("echo $X in $(pwd)").stdout)
        with lease.context() as ctx:               # a Python namespace kept between runs
            ctx.run("x = 6")
            print(ctx.run("x * 7").result)         # 42 (its repr, a str)

Errors are typed by the API's error code: see :mod:`warmpool.errors`.
"""

from .client import DEFAULT_URL, Client
from .errors import (
    BackendUnavailable,
    BadRequest,
    ConfigInvalid,
    Conflict,
    ContainerFailed,
    ExecTimeout,
    InternalError,
    InvalidRequest,
    NodeLost,
    NotFound,
    NotReady,
    PayloadTooLarge,
    PoolExhausted,
    ShellExited,
    ShuttingDown,
    StillRunning,
    TooLarge,
    Unauthorized,
    Unavailable,
    UnknownLease,
    UnknownPool,
    Unreachable,
    WarmpoolError,
)
from .context import CodeError, CodeResult, Context
from .events import Event, ExecStream, ExitEvent, OutputEvent
from .lease import Lease
from .process import Process, ProcessInfo, ProcessOutput
from .shell import Shell, ShellInfo
from .types import Command, ContainerStats, Duration, ExecResult, Health, LeaseInfo, PoolStats, Size

__version__ = "0.1.0"

__all__ = [
    "Client",
    "DEFAULT_URL",
    "Lease",
    "Shell",
    "ShellInfo",
    "Context",
    "CodeResult",
    "CodeError",
    "Process",
    # results
    "ExecResult",
    "LeaseInfo",
    "PoolStats",
    "ContainerStats",
    "Health",
    "ProcessInfo",
    "ProcessOutput",
    # streamed output
    "ExecStream",
    "Event",
    "OutputEvent",
    "ExitEvent",
    # request value types
    "Command",
    "Duration",
    "Size",
    # errors
    "WarmpoolError",
    "BadRequest",
    "InvalidRequest",
    "Unauthorized",
    "NotFound",
    "UnknownPool",
    "UnknownLease",
    "PayloadTooLarge",
    "TooLarge",
    "Conflict",
    "ShellExited",
    "Unavailable",
    "PoolExhausted",
    "BackendUnavailable",
    "ShuttingDown",
    "NotReady",
    "ContainerFailed",
    "NodeLost",
    "ExecTimeout",
    "StillRunning",
    "ConfigInvalid",
    "InternalError",
    "Unreachable",
]
