"""The non-streamed endpoints of live sandboxes, for http_api.py: a held lease's shells, code
contexts and background processes (list, output from offsets, stdin and its close, signals, a PTY and its
resize, wait, forget), every answer validated against docs/openapi.yaml by `call`, and the
typed errors: 404 not_found, 409 conflict, 413, 400, 504 exec_timeout."""


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


def run(port, call, want, wait_until):
    lid = want(call(port, "POST", "/v1/leases", {"pool": "local"}), 201).json()["id"]
    base = f"/v1/leases/{lid}"
    try:
        _shells(port, call, want, base)
        _contexts(port, call, want, base)
        _stdin_and_output(port, call, want, wait_until, base)
        _signals_and_wait(port, call, want, base)
        _pty(port, call, want, wait_until, base)
    finally:
        want(call(port, "DELETE", base), 204)
    # Release ended them all (and the lease with them).
    for collection in ("/processes", "/shells", "/contexts"):
        want(call(port, "GET", base + collection), 404, "unknown_lease")


def _shells(port, call, want, base):
    # A name the lease would pick itself, taken by the caller first, is passed over.
    want(call(port, "POST", base + "/shells", {"name": "sh1"}), 201)
    sid = want(call(port, "POST", base + "/shells"), 201).json()["id"]
    expect(sid == "sh2", sid)
    listed = want(call(port, "GET", base + "/shells"), 200).json()["shells"]
    expect([(s["id"], s["running"], s["busy"]) for s in listed] == [("sh1", True, False), ("sh2", True, False)]
           and all(s["pid"] > 0 for s in listed), listed)
    want(call(port, "DELETE", f"{base}/shells/sh1"), 204)
    expect([s["id"] for s in want(call(port, "GET", base + "/shells"), 200).json()["shells"]] == ["sh2"], "sh1 closed")
    r = want(call(port, "POST", f"{base}/shells/{sid}/exec", {"command": "cd /tmp; f() { echo in $PWD; }"}), 200)
    r = want(call(port, "POST", f"{base}/shells/{sid}/exec", {"command": "f", "timeout": "5s"}), 200).json()
    expect((r["stdout"], r["exit_code"], r["lease"]) == ("in /tmp\n", 0, base.split("/")[-1]), r)
    r = want(call(port, "POST", f"{base}/shells/{sid}/exec", {"command": "echo x; sleep 30", "timeout": 300}),
             504, "exec_timeout").json()
    expect(r["stdout"] == "x\n" and r["timed_out"] is True, r)
    want(call(port, "POST", f"{base}/shells/{sid}/exec", {"command": "a\u0000b"}), 400, "invalid_request")
    want(call(port, "POST", f"{base}/shells/{sid}/exec", {"cmd": "true"}), 400, "invalid_request")
    want(call(port, "DELETE", f"{base}/shells/{sid}"), 204)
    want(call(port, "DELETE", f"{base}/shells/{sid}"), 404, "not_found")
    want(call(port, "POST", f"{base}/shells/{sid}/exec", {"command": "true"}), 404, "not_found")


def _contexts(port, call, want, base):
    want(call(port, "POST", base + "/contexts", {"name": "py1"}), 201)
    cid = want(call(port, "POST", base + "/contexts"), 201).json()["id"]
    expect(cid == "py2", cid)
    listed = want(call(port, "GET", base + "/contexts"), 200).json()["contexts"]
    expect([(c["id"], c["running"], c["busy"]) for c in listed] == [("py1", True, False), ("py2", True, False)]
           and all(c["pid"] > 0 for c in listed), listed)
    want(call(port, "DELETE", f"{base}/contexts/py1"), 204)
    expect([c["id"] for c in want(call(port, "GET", base + "/contexts"), 200).json()["contexts"]] == ["py2"],
           "py1 closed")
    want(call(port, "POST", f"{base}/contexts/{cid}/run", {"code": "x = 0"}), 200)
    want(call(port, "POST", f"{base}/contexts/{cid}/run", {"code": "x += 1\nx += 1"}), 200)
    r = want(call(port, "POST", f"{base}/contexts/{cid}/run", {"code": "print('p')\nx"}), 200).json()
    expect((r["result"], r["stdout"], r["error"], r["timed_out"], r["truncated"]) == ("2", "p\n", None, False, False), r)
    # Output over the pool's output_limit (1 MiB by default) is cut, and the answer says so.
    r = want(call(port, "POST", f"{base}/contexts/{cid}/run", {"code": "print('y' * (3 << 19))"}), 200).json()
    expect((len(r["stdout"]), r["truncated"], r["error"]) == (1 << 20, True, None), (len(r["stdout"]), r["truncated"]))
    r = want(call(port, "POST", f"{base}/contexts/{cid}/run", {"code": "1/0"}), 200).json()
    expect(r["error"]["name"] == "ZeroDivisionError" and "1/0" in r["error"]["traceback"], r)
    r = want(call(port, "POST", f"{base}/contexts/{cid}/run", {"code": "while 1: pass", "timeout": "300ms"}),
             200).json()
    expect(r["timed_out"] and r["error"]["name"] == "KeyboardInterrupt" and r["result"] is None, r)
    want(call(port, "POST", f"{base}/contexts/{cid}/run", {"command": "1"}), 400, "invalid_request")
    r = want(call(port, "POST", f"{base}/contexts/{cid}/run", {"code": "import os\nos._exit(1)"}), 200).json()
    expect(r["error"]["name"] == "ContextExited", r)
    want(call(port, "POST", f"{base}/contexts/{cid}/run", {"code": "x"}), 409, "shell_exited")
    listed = want(call(port, "GET", base + "/contexts"), 200).json()["contexts"]
    expect([(c["id"], c["running"]) for c in listed] == [(cid, False)], listed)
    named = want(call(port, "POST", base + "/contexts", {"name": "py"}), 201).json()["id"]
    expect(named == "py", named)
    want(call(port, "DELETE", f"{base}/contexts/py"), 204)
    want(call(port, "DELETE", f"{base}/contexts/py"), 404, "not_found")
    want(call(port, "POST", f"{base}/contexts/py/run", {"code": "1"}), 404, "not_found")


def _stdin_and_output(port, call, want, wait_until, base):
    pid = want(call(port, "POST", base + "/processes", {"command": ["cat"]}), 201).json()["id"]
    listed = want(call(port, "GET", base + "/processes"), 200).json()["processes"]
    expect([(p["id"], p["running"], p["exit_code"]) for p in listed] == [(pid, True, None)], listed)
    r = want(call(port, "POST", f"{base}/processes/{pid}/stdin", raw=b"hello\n"), 200).json()
    expect(r == {"bytes": 6}, r)
    out = wait_until("cat's echo", lambda: (lambda o: o if o["stdout"] == "hello\n" else None)(
        want(call(port, "GET", f"{base}/processes/{pid}/output", query={"wait": 1000}), 200).json()), 10)
    expect((out["offset"], out["stderr_offset"], out["running"], out["exit_code"]) == (6, 0, True, None), out)
    more = want(call(port, "GET", f"{base}/processes/{pid}/output", query={"offset": 6}), 200).json()
    expect(more["stdout"] == "" and more["offset"] == 6, more)
    want(call(port, "GET", f"{base}/processes/{pid}/output", query={"offset": "x"}), 400, "invalid_request")
    want(call(port, "POST", f"{base}/processes/{pid}/stdin", raw=b"x" * (2 << 20)), 413)
    want(call(port, "POST", f"{base}/processes/{pid}/stdin", raw=b"bye\n", query={"close": "true"}), 200)
    want(call(port, "POST", f"{base}/processes/{pid}/stdin", raw=b"late\n"), 409, "conflict")
    r = want(call(port, "POST", f"{base}/processes/{pid}/wait", {"timeout": "10s"}), 200).json()
    expect((r["stdout"], r["exit_code"]) == ("hello\nbye\n", 0), r)
    done = want(call(port, "GET", f"{base}/processes/{pid}/output"), 200).json()
    expect(done["running"] is False and done["exit_code"] == 0 and "duration_ms" in done, done)
    want(call(port, "DELETE", f"{base}/processes/{pid}"), 204)
    want(call(port, "DELETE", f"{base}/processes/{pid}"), 404, "not_found")
    want(call(port, "GET", f"{base}/processes/{pid}/output"), 404, "not_found")


def _signals_and_wait(port, call, want, base):
    pid = want(call(port, "POST", base + "/processes", {"command": "exec sleep 30"}), 201).json()["id"]
    want(call(port, "POST", f"{base}/processes/{pid}/wait", {"timeout": 200}), 504, "exec_timeout")
    want(call(port, "POST", f"{base}/processes/{pid}/signal", {"signal": "NOPE"}), 400, "invalid_request")
    want(call(port, "POST", f"{base}/processes/{pid}/signal", {"signal": "TERM"}), 204)
    r = want(call(port, "POST", f"{base}/processes/{pid}/wait", {"timeout": "10s"}), 200).json()
    expect((r["signal"], r["exit_code"]) == (15, -1), r)
    listed = want(call(port, "GET", base + "/processes"), 200).json()["processes"]
    expect([(p["id"], p["running"], p.get("signal")) for p in listed] == [(pid, False, 15)], listed)
    want(call(port, "DELETE", f"{base}/processes/{pid}"), 204)


def _pty(port, call, want, wait_until, base):
    body = {"command": "test -t 0 && echo tty; stty size; read x; stty size", "tty": True, "cols": 100, "rows": 40}
    pid = want(call(port, "POST", base + "/processes", body), 201).json()["id"]
    wait_until("the first size", lambda: "40 100" in want(call(
        port, "GET", f"{base}/processes/{pid}/output", query={"wait": 1000}), 200).json()["stdout"], 10)
    want(call(port, "POST", f"{base}/processes/{pid}/resize", {"cols": 120}), 400, "invalid_request")
    want(call(port, "POST", f"{base}/processes/{pid}/resize", {"cols": 120, "rows": 50}), 204)
    want(call(port, "POST", f"{base}/processes/{pid}/stdin", raw=b"\n"), 200)
    r = want(call(port, "POST", f"{base}/processes/{pid}/wait", {"timeout": "10s"}), 200).json()
    expect("tty" in r["stdout"] and "50 120" in r["stdout"] and r["exit_code"] == 0, r)
    want(call(port, "DELETE", f"{base}/processes/{pid}"), 204)
