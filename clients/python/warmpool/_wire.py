"""Request pieces shared by the client, leases, shells and processes: paths with their ids
quoted, and the exec fields of a request body. Internal."""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Union
from urllib.parse import quote

from .types import Command, Duration, Size, duration_ms, wire_command, wire_duration


def seg(value: str, what: str = "id") -> str:
    """One path segment (ids and names are the server's, but never trust them)."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what}: expected a non-empty string (got {value!r})")
    return quote(value, safe="")


def lease_path(lease_id: str, suffix: str = "") -> str:
    return f"/v1/leases/{seg(lease_id, 'lease_id')}{suffix}"


def wait_s(timeout: Optional[Duration]) -> float:
    """Seconds the server may take on purpose for a request with this ``timeout``."""
    if timeout is None:
        return 0.0
    try:
        return duration_ms(timeout) / 1000.0
    except (TypeError, ValueError):
        return 0.0  # the server says what is wrong with it


def text(value: Union[str, bytes, bytearray], what: str) -> str:
    """Text the API carries in JSON: a str, or bytes that are UTF-8."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{what}: the API carries this as text; these bytes are not "
                             "UTF-8 (write them to a file instead)") from None
    raise TypeError(f"{what}: expected str or bytes (got {type(value).__name__})")


def what_runs(command: Optional[Command], code: Optional[str],
              language: Optional[str]) -> Dict[str, Any]:
    """``command``, or ``code`` for the pool's warm interpreter of ``language`` (default
    ``"python"``): exactly one of the two."""
    if code is None:
        if language is not None:
            raise ValueError("language: goes with code (the source the interpreter runs)")
        if command is None:
            raise TypeError("give a command (a shell string or an argv list), or code "
                            "(Python source for the pool's warm interpreter)")
        return {"command": wire_command(command)}
    if command is not None:
        raise ValueError("set either command or code, not both")
    if not isinstance(code, str):
        raise TypeError(f"code: Python source as a string (got {type(code).__name__})")
    if language is not None and not isinstance(language, str):
        raise TypeError(f"language: expected a string (got {type(language).__name__})")
    return {"code": code, "language": language or "python"}


def shown(command: Optional[Command], language: Optional[str]) -> str:
    """How a process started with these is listed (as the server lists it)."""
    if command is None:
        return language or "python"
    return command if isinstance(command, str) else " ".join(command)


def exec_body(command: Optional[Command], stdin: Optional[Union[str, bytes]],
              env: Optional[Mapping[str, str]], cwd: Optional[str],
              timeout: Optional[Duration], output_limit: Optional[Size],
              code: Optional[str] = None, language: Optional[str] = None) -> Dict[str, Any]:
    """The exec fields of a request (execute, lease exec, a process start)."""
    body = what_runs(command, code, language)
    if stdin is not None:
        body["stdin"] = text(stdin, "stdin")
    if env is not None:
        body["env"] = dict(env)
    if cwd is not None:
        body["cwd"] = cwd
    if timeout is not None:
        body["timeout"] = wire_duration(timeout)
    if output_limit is not None:
        body["output_limit"] = output_limit
    return body
