"""HTTP/1.1 over :mod:`http.client` with kept-alive connections, and the API's error
envelope turned into typed errors. Internal: the public surface is :class:`warmpool.Client`.

Environment proxies (``http_proxy``) are not used: the server is usually on loopback or the
same network, and a proxy would add latency to every call (use a URL that reaches it).
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .errors import ExecTimeout, Unreachable, WarmpoolError, error_class
from .types import ExecResult

# The server closes a connection idle for 120 s; one idle this long is not reused.
_MAX_IDLE_S = 60.0
_MAX_POOLED = 8


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Dict[str, Any]:
        if not self.body:
            return {}
        data = json.loads(self.body)
        if not isinstance(data, dict):
            raise WarmpoolError(self.status, "http_error", "expected a JSON object in the answer")
        return data


class Transport:
    """Sends requests to one base URL; thread-safe (each request takes its own connection
    from a small pool of idle kept-alive ones)."""

    def __init__(self, url: str, token: Optional[str], timeout: float,
                 ssl_context: Optional[ssl.SSLContext] = None,
                 headers: Optional[Mapping[str, str]] = None) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url: expected http://HOST[:PORT] or https://... (got {url!r})")
        self.url = url.rstrip("/")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._base = parts.path.rstrip("/")
        self._token = token
        self.timeout = timeout
        self._ssl = ssl_context
        self._headers = dict(headers or {})
        self._idle: List[Tuple[http.client.HTTPConnection, float]] = []
        self._lock = threading.Lock()

    # -- connections -----------------------------------------------------------------------

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        if self._https:
            ctx = self._ssl or ssl.create_default_context()
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=ctx)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _take(self, timeout: float) -> Tuple[http.client.HTTPConnection, bool]:
        now = time.monotonic()
        with self._lock:
            while self._idle:
                conn, since = self._idle.pop()
                if now - since < _MAX_IDLE_S:
                    conn.timeout = timeout
                    if conn.sock is not None:
                        conn.sock.settimeout(timeout)
                    return conn, True
                conn.close()
        return self._connect(timeout), False

    def _give_back(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < _MAX_POOLED:
                self._idle.append((conn, time.monotonic()))
                return
        conn.close()

    def close(self) -> None:
        """Closes the idle connections (requests still running finish on theirs)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            conn.close()

    # -- requests --------------------------------------------------------------------------

    def _prepare(self, method: str, path: str, body: Any, raw: Optional[bytes],
                 query: Optional[Mapping[str, str]], accept: str) -> Tuple[str, Dict[str, str], Optional[bytes]]:
        target = self._base + path
        if query:
            target += "?" + urllib.parse.urlencode(query)
        headers = dict(self._headers)
        headers["Accept"] = accept
        payload: Optional[bytes] = None
        if raw is not None:
            payload = raw
            headers["Content-Type"] = "application/octet-stream"
        elif body is not None:
            payload = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if payload is not None or method in ("POST", "PUT"):
            headers["Content-Length"] = str(len(payload or b""))
        if self._token:
            headers["Authorization"] = "Bearer " + self._token
        return target, headers, payload

    def request(self, method: str, path: str, *, body: Any = None, raw: Optional[bytes] = None,
                query: Optional[Mapping[str, str]] = None, extra_wait: float = 0.0) -> Answer:
        """Sends one request and reads the whole answer. ``extra_wait``: seconds the server
        may legitimately take on top of the client's timeout (an exec's or acquire's own
        time limit). Raises the typed error of an error answer, Unreachable without one."""
        target, headers, payload = self._prepare(method, path, body, raw, query, "application/json")
        timeout = self.timeout + max(extra_wait, 0.0)
        where = f"{method} {self.url}{path}"

        for attempt in (0, 1):
            conn, reused = self._take(timeout)
            sent = False
            try:
                conn.request(method, target, body=payload, headers=headers)
                sent = True
                res = conn.getresponse()
                data = res.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                conn.close()
                # A kept-alive connection the server closed meanwhile: the request never
                # reached it, so it is safe to send again on a fresh connection (once).
                if reused and attempt == 0 and (not sent or isinstance(e, http.client.RemoteDisconnected)):
                    continue
                raise Unreachable(0, "unreachable", f"{where}: {_describe(e)}") from e
            except socket.timeout as e:
                conn.close()
                raise Unreachable(0, "unreachable", f"{where}: no answer within {timeout:g} s "
                                  "(the client's timeout)") from e
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                raise Unreachable(0, "unreachable", f"{where}: {_describe(e)}") from e
            if res.will_close:
                conn.close()
            else:
                self._give_back(conn)
            answer = Answer(res.status, res.headers, data)
            if 200 <= res.status < 300:
                return answer
            raise to_error(answer)
        raise AssertionError("unreachable")  # pragma: no cover


    def stream(self, method: str, path: str, *, body: Any = None,
               query: Optional[Mapping[str, str]] = None,
               read_timeout: Optional[float] = None) -> "StreamAnswer":
        """Sends one request asking for NDJSON (``Accept: application/x-ndjson``) on a
        connection of its own, and returns once the answer's status and headers came: the
        body is read line by line from the :class:`StreamAnswer`. ``read_timeout``: seconds
        any one read may wait (None: no limit). Raises the typed error of an error answer
        (one that came before the stream started), Unreachable without an answer."""
        target, headers, payload = self._prepare(method, path, body, None, query, NDJSON)
        where = f"{method} {self.url}{path}"
        conn = self._connect(self.timeout)
        try:
            conn.request(method, target, body=payload, headers=headers)
            if conn.sock is not None:
                conn.sock.settimeout(read_timeout)
            res = conn.getresponse()
        except socket.timeout as e:
            conn.close()
            raise Unreachable(0, "unreachable", f"{where}: no answer within the client's timeout") from e
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise Unreachable(0, "unreachable", f"{where}: {_describe(e)}") from e
        if res.status >= 300:
            try:
                data = res.read()
            except (OSError, http.client.HTTPException) as e:
                raise Unreachable(0, "unreachable", f"{where}: {_describe(e)}") from e
            finally:
                conn.close()
            raise to_error(Answer(res.status, res.headers, data))
        return StreamAnswer(conn, res, where)


NDJSON = "application/x-ndjson"


class StreamAnswer:
    """An answer whose body is read as it comes, on a connection no one else uses.
    :meth:`close` drops the connection: the server sees the client gone."""

    def __init__(self, conn: http.client.HTTPConnection, res: http.client.HTTPResponse,
                 where: str) -> None:
        self._conn = conn
        self._res = res
        self.where = where
        self.status = res.status
        self.content_type = (res.getheader("Content-Type") or "").split(";")[0].strip().lower()
        self.closed = False

    def readline(self) -> bytes:
        """The next line of the body (with its newline), b"" at its end. Unreachable when
        the connection fails or a read waits longer than the read timeout."""
        try:
            return self._res.readline()
        except socket.timeout as e:
            self.close()
            raise Unreachable(0, "unreachable", f"{self.where}: no output within the "
                              "read timeout") from e
        except (OSError, http.client.HTTPException, ValueError) as e:
            self.close()
            raise Unreachable(0, "unreachable", f"{self.where}: {_describe(e)}") from e

    def read_all(self) -> bytes:
        try:
            return self._res.read()
        except (OSError, http.client.HTTPException, ValueError) as e:
            raise Unreachable(0, "unreachable", f"{self.where}: {_describe(e)}") from e
        finally:
            self.close()

    def close(self) -> None:
        """Drops the connection (shut down at once, even with unread output)."""
        if self.closed:
            return
        self.closed = True
        sock = self._conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._res.close()
        self._conn.close()


def _describe(e: BaseException) -> str:
    if isinstance(e, ConnectionRefusedError):
        return "connection refused (is warmpool serve running there?)"
    if isinstance(e, socket.gaierror):
        return f"cannot resolve the host ({e.strerror or e})"
    if isinstance(e, http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def to_error(answer: Answer) -> WarmpoolError:
    """The typed error for an error answer (status >= 400)."""
    text = answer.body.decode("utf-8", errors="replace")
    retry_after: Optional[float] = None
    header = answer.headers.get("Retry-After")
    if header:
        try:
            retry_after = float(header)
        except ValueError:
            retry_after = None
    parsed: Any = None
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = None
    envelope = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("code"), str):
        message = text.strip() or http.client.responses.get(answer.status, "error answer without a body")
        cls = error_class("http_error", answer.status)
        return cls(answer.status, "http_error", message, retry_after=retry_after, body=text)
    code: str = envelope["code"]
    said = envelope.get("message")
    message = said if isinstance(said, str) else ""
    if code == "exec_timeout":
        return ExecTimeout(answer.status, code, message, result=ExecResult.from_json(parsed),
                           retry_after=retry_after, body=parsed)
    return error_class(code, answer.status)(answer.status, code, message,
                                            retry_after=retry_after, body=parsed)
