"""Protocol-level checks of streamed answers (chunked NDJSON), for http_api.py: real
requests with `Accept: application/x-ndjson` on a raw socket, so the framing itself is
checked, not what http.client makes of it.

Every command endpoint (`/v1/execute`, lease exec, shell exec, process output with
`follow=true`) answers 200 with `Content-Type: application/x-ndjson` and
`Transfer-Encoding: chunked`; the body is complete chunks ending with the zero chunk; each
line is one JSON object valid against the spec's StreamLine; stdout/stderr lines come in
their order; the last line, and only it, is `{"type": "exit", ...}` with the result's fields
but not stdout/stderr. Errors before the stream starts stay JSON envelopes.
"""
import json
import socket

NDJSON = "application/x-ndjson"


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


class Streamed:
    def __init__(self, status, headers, chunks):
        self.status, self.headers, self.chunks = status, headers, chunks
        self.body = b"".join(chunks)

    def lines(self):
        text = self.body.decode("utf-8")
        expect(text.endswith("\n"), f"the stream does not end with a newline: {text[-100:]!r}")
        return [json.loads(line) for line in text[:-1].split("\n")]


def _read_until(sock, buf, sep):
    while sep not in buf:
        got = sock.recv(65536)
        expect(got, f"the connection closed before {sep!r}: {buf[-200:]!r}")
        buf += got
    head, _, rest = buf.partition(sep)
    return head, rest


def _read_exact(sock, buf, n):
    while len(buf) < n:
        got = sock.recv(65536)
        expect(got, "the connection closed inside a chunk")
        buf += got
    return buf[:n], buf[n:]


def request(port, token, method, path, body=None, spec=None):
    """One request asking for NDJSON; the answer with its chunks as they were framed
    (checked against the spec's status and content types when `spec` is given)."""
    res = _request(port, token, method, path, body)
    if spec is not None:
        spec.check(method, path.split("?")[0], res.status, res.headers, res.body)
    return res


def _request(port, token, method, path, body, on_first_chunk=None):
    data = json.dumps(body).encode() if body is not None else b""
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}"
            f"Accept: {NDJSON}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(head + data)
        raw_head, buf = _read_until(sock, b"", b"\r\n\r\n")
        status_line, *header_lines = raw_head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        headers = {}
        for line in header_lines:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        if headers.get("transfer-encoding", "").lower() != "chunked":
            n = int(headers.get("content-length", "0"))
            payload, _ = _read_exact(sock, buf, n)
            return Streamed(status, headers, [payload])
        chunks = []
        while True:
            size_line, buf = _read_until(sock, buf, b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                _, buf = _read_until(sock, buf, b"\r\n")  # no trailers: the empty line
                return Streamed(status, headers, chunks)
            chunk, buf = _read_exact(sock, buf, size + 2)
            expect(chunk.endswith(b"\r\n"), f"chunk not followed by CRLF: {chunk[-20:]!r}")
            chunks.append(chunk[:-2])
            if on_first_chunk is not None and len(chunks) == 1:
                on_first_chunk()


def check_stream(res, spec, where, exit_code=0):
    """The framing and the lines of a streamed command; returns (stdout, stderr, exit line)."""
    expect(res.status == 200, f"{where}: status {res.status}: {res.body[:300]!r}")
    ctype = res.headers.get("content-type", "").split(";")[0].strip()
    expect(ctype == NDJSON, f"{where}: Content-Type {ctype!r}, want {NDJSON}")
    expect(res.headers.get("transfer-encoding", "").lower() == "chunked", f"{where}: not chunked")
    expect("content-length" not in res.headers, f"{where}: a Content-Length with chunked")
    for chunk in res.chunks:  # whole lines per chunk: a reader never sees half an object
        expect(chunk.endswith(b"\n"), f"{where}: a chunk ends inside a line: {chunk[-80:]!r}")
    schema = spec.doc["components"]["schemas"]["StreamLine"]
    lines = res.lines()
    out, err = [], []
    for i, line in enumerate(lines):
        expect(isinstance(line, dict), f"{where}: line {i} is not an object: {line!r}")
        spec.validate(line, schema, f"line {i}", where)
        if line["type"] in ("stdout", "stderr"):
            expect(isinstance(line.get("data"), str) and line["data"], f"{where}: empty output line {line!r}")
            (out if line["type"] == "stdout" else err).append(line["data"])
        else:
            expect(line["type"] == "exit" and i == len(lines) - 1,
                   f"{where}: line {i} of {len(lines)} is {line!r}; only the last is the exit")
    last = lines[-1]
    expect(last["type"] == "exit", f"{where}: the last line is not the exit: {last!r}")
    for field in ("exit_code", "signal", "duration_ms", "timed_out", "truncated"):
        expect(field in last, f"{where}: the exit line lacks {field}: {last!r}")
    expect("stdout" not in last and "stderr" not in last, f"{where}: the exit line repeats output")
    expect(last["exit_code"] == exit_code, f"{where}: exit_code {last['exit_code']}, want {exit_code}")
    return "".join(out), "".join(err), last


def run(port, token, call, want, spec):
    """All the checks against the main server's `local` pool (one bubblewrap sandbox, free
    when this runs). Returns the number of audited /v1/execute requests it made."""
    def request(port, token, method, path, body=None):
        return globals()["request"](port, token, method, path, body, spec)

    script = "for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; sleep 0.05; done; exit 3"
    numbered = lambda name: "".join(f"{name}{i}\n" for i in range(1, 6))  # noqa: E731

    res = request(port, token, "POST", "/v1/execute", {"pool": "local", "command": script})
    out, err, last = check_stream(res, spec, "execute", exit_code=3)
    expect((out, err) == (numbered("out"), numbered("err")), f"execute: {out!r} {err!r}")
    expect(len(res.lines()) > 3, f"execute: the output came in one piece: {res.lines()!r}")
    expect(last["timed_out"] is False and last["duration_ms"] > 0, last)

    res = request(port, token, "POST", "/v1/execute",
                  {"pool": "local", "command": "echo partial; sleep 30", "timeout": 300})
    out, _, last = check_stream(res, spec, "timed-out execute", exit_code=-1)
    expect(out == "partial\n" and last["timed_out"] is True, f"timed-out execute: {out!r} {last!r}")

    # Errors before the stream starts are the usual JSON envelopes.
    res = request(port, token, "POST", "/v1/execute", {"pool": "no-such-pool", "command": "true"})
    expect(res.status == 404 and res.headers["content-type"].startswith("application/json"), res.body)
    expect(json.loads(res.body)["error"]["code"] == "unknown_pool", res.body)
    res = request(port, token, "POST", "/v1/execute", {"pool": "local", "command": []})
    expect(res.status == 400 and json.loads(res.body)["error"]["code"] == "invalid_request", res.body)
    res = request(port, token, "POST", "/v1/leases/no-such-lease/exec", {"command": "true"})
    expect(res.status == 404 and json.loads(res.body)["error"]["code"] == "unknown_lease", res.body)

    lid = want(call(port, "POST", "/v1/leases", {"pool": "local"}, token=token), 201).json()["id"]
    try:
        res = request(port, token, "POST", f"/v1/leases/{lid}/exec", {"command": script})
        out, err, _ = check_stream(res, spec, "lease exec", exit_code=3)
        expect((out, err) == (numbered("out"), numbered("err")), f"lease exec: {out!r} {err!r}")

        shell = want(call(port, "POST", f"/v1/leases/{lid}/shells", {"name": "nd"}, token=token), 201).json()
        expect(shell == {"id": "nd"}, shell)
        want(call(port, "POST", f"/v1/leases/{lid}/shells/nd/exec", {"command": "cd /tmp; X=kept"},
                  token=token), 200)
        res = request(port, token, "POST", f"/v1/leases/{lid}/shells/nd/exec",
                      {"command": "echo $X; pwd; printf 'no newline' >&2"})
        out, err, _ = check_stream(res, spec, "shell exec")
        expect((out, err) == ("kept\n/tmp\n", "no newline"), f"shell exec: {out!r} {err!r}")
        res = request(port, token, "POST", f"/v1/leases/{lid}/shells/no-such-shell/exec", {"command": "true"})
        expect(res.status == 404 and json.loads(res.body)["error"]["code"] == "not_found", res.body)

        pid = want(call(port, "POST", f"/v1/leases/{lid}/processes", {"command": script}, token=token),
                   201).json()["id"]
        res = request(port, token, "GET", f"/v1/leases/{lid}/processes/{pid}/output?follow=true")
        out, err, _ = check_stream(res, spec, "process follow", exit_code=3)
        expect((out, err) == (numbered("out"), numbered("err")), f"follow: {out!r} {err!r}")
        res = request(port, token, "GET", f"/v1/leases/{lid}/processes/{pid}/output?follow=true&offset=5")
        out, _, _ = check_stream(res, spec, "process follow from an offset", exit_code=3)
        expect(out == numbered("out")[5:], f"follow from an offset: {out!r}")
        res = request(port, token, "GET", f"/v1/leases/{lid}/processes/no-such-process/output?follow=true")
        expect(res.status == 404 and json.loads(res.body)["error"]["code"] == "not_found", res.body)
    finally:
        want(call(port, "DELETE", f"/v1/leases/{lid}", token=token), 204)

    # Another client releases the lease while its process's output is followed. The stream
    # ends in step (the killed process's exit, or an unknown_lease error line, then the last
    # chunk), and the server goes on answering every call: the follower's next poll finding
    # the lease gone once killed the engine thread that made it, and the calls its turn came
    # to were never answered.
    lid = want(call(port, "POST", "/v1/leases", {"pool": "local"}, token=token), 201).json()["id"]
    pid = want(call(port, "POST", f"/v1/leases/{lid}/processes", {"command": "echo started; sleep 100"},
                    token=token), 201).json()["id"]
    released = []
    res = _request(port, token, "GET", f"/v1/leases/{lid}/processes/{pid}/output?follow=true", None,
                   on_first_chunk=lambda: released.append(
                       call(port, "DELETE", f"/v1/leases/{lid}", token=token).status))
    expect(released == [204], f"release during a follow: {released}")
    expect(res.status == 200, f"follow, released: status {res.status}")
    lines = res.lines()
    for i, line in enumerate(lines):
        spec.validate(line, spec.doc["components"]["schemas"]["StreamLine"], f"line {i}", "follow, released")
    expect(lines[0] == {"type": "stdout", "data": "started\n"}, f"follow, released: {lines!r}")
    last = lines[-1]
    expect(last["type"] == "exit" or (last["type"] == "error" and last["error"]["code"] == "unknown_lease"),
           f"follow, released: the stream ended with {last!r}")
    for i in range(16):
        want(call(port, "POST", "/v1/execute", {"pool": "local", "command": ["true"]}, token=token), 200)

    # A sticky session's shell, streamed (the session the sessions test uses later: the
    # local pool has one sandbox).
    shelled = {"pool": "local", "session": "s-local", "shell": "nd", "command": "export Y=1; cd /tmp"}
    check_stream(request(port, token, "POST", "/v1/execute", shelled), spec, "session shell")
    res = request(port, token, "POST", "/v1/execute", dict(shelled, command="echo $Y; pwd"))
    out, _, _ = check_stream(res, spec, "session shell, next request")
    expect(out == "1\n/tmp\n", f"session shell: {out!r}")
    return 20  # the audited /v1/execute requests: two one-shot streams, the 16 after the
    # release during a follow, two of the session
