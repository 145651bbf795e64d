#!/usr/bin/env python3
"""A small client for the warmpool HTTP API (python standard library only), and a demo.

    python3 examples/python_client.py --url http://127.0.0.1:8080 [--token T] [--pool P]

The demo runs a one-shot command, holds a lease to write, run and read back a file, uses a
sticky session, and prints the pools. It exits non-zero on any unexpected answer.
"""
import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request


class WarmpoolError(Exception):
    """An error answer of the API: HTTP status plus the error envelope's code and message."""

    def __init__(self, status, code, message, body=None):
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status, self.code, self.message, self.body = status, code, message, body


class Client:
    def __init__(self, url="http://127.0.0.1:8080", token=None, timeout=60):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _request(self, method, path, body=None, raw=None, query=None):
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        headers = {}
        data = None
        if raw is not None:
            data, headers["Content-Type"] = raw, "application/octet-stream"
        elif body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as res:
                return res.status, res.headers.get("Content-Type", ""), res.read()
        except urllib.error.HTTPError as e:
            payload = e.read()
            try:
                parsed = json.loads(payload)
                err = parsed["error"]
            except (ValueError, KeyError, TypeError):
                raise WarmpoolError(e.code, "http_error", payload.decode(errors="replace")) from None
            raise WarmpoolError(e.code, err["code"], err["message"], parsed) from None

    def _json(self, method, path, body=None, query=None):
        _, _, payload = self._request(method, path, body=body, query=query)
        return json.loads(payload) if payload else None

    @staticmethod
    def _exec_body(command, stdin=None, env=None, cwd=None, timeout=None, output_limit=None):
        body = {"command": command}
        for key, value in (("stdin", stdin), ("env", env), ("cwd", cwd), ("timeout", timeout),
                           ("output_limit", output_limit)):
            if value is not None:
                body[key] = value
        return body

    # -- one-shot ----------------------------------------------------------
    def execute(self, command, pool=None, labels=None, session=None, tenant=None, **exec_args):
        """Runs `command` (argv list or shell string) in a pooled sandbox; returns the result.
        A timed-out command raises WarmpoolError(504) whose .body holds the partial output."""
        body = self._exec_body(command, **exec_args)
        for key, value in (("pool", pool), ("labels", labels), ("session", session),
                           ("tenant", tenant)):
            if value is not None:
                body[key] = value
        return self._json("POST", "/v1/execute", body)

    # -- leases ------------------------------------------------------------
    def acquire(self, pool=None, labels=None, session=None, tenant=None, timeout=None):
        body = {k: v for k, v in (("pool", pool), ("labels", labels), ("session", session),
                                  ("tenant", tenant), ("timeout", timeout)) if v is not None}
        return self._json("POST", "/v1/leases", body)

    def exec(self, lease_id, command, **exec_args):
        return self._json("POST", f"/v1/leases/{urllib.parse.quote(lease_id)}/exec",
                          self._exec_body(command, **exec_args))

    def put_file(self, lease_id, path, data):
        if isinstance(data, str):
            data = data.encode()
        self._request("PUT", f"/v1/leases/{urllib.parse.quote(lease_id)}/files", raw=data,
                      query={"path": path})

    def get_file(self, lease_id, path):
        _, _, data = self._request("GET", f"/v1/leases/{urllib.parse.quote(lease_id)}/files",
                                   query={"path": path})
        return data

    def release(self, lease_id, dirty=False):
        self._request("DELETE", f"/v1/leases/{urllib.parse.quote(lease_id)}",
                      query={"dirty": "true"} if dirty else None)

    # -- introspection -----------------------------------------------------
    def pools(self):
        return self._json("GET", "/v1/pools")["pools"]

    def pool(self, name):
        return self._json("GET", f"/v1/pools/{urllib.parse.quote(name)}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--token", default=None, help="bearer token (if the server requires one)")
    ap.add_argument("--pool", default=None, help="pool to use (default: the server's routing)")
    args = ap.parse_args(argv)
    client = Client(args.url, args.token)
    failures = []

    def check(what, ok, got):
        print(f"{'ok  ' if ok else 'FAIL'} {what}: {got!r}")
        if not ok:
            failures.append(what)

    try:
        r = client.execute(["echo", "hello", "warmpool"], pool=args.pool)
        check("execute echo", r["exit_code"] == 0 and r["stdout"] == "hello warmpool\n", r["stdout"])
        print(f"     ran in pool {r['pool']} on {r['container']} ({r['duration_ms']:.2f} ms)")

        lease = client.acquire(pool=args.pool, tenant="demo")
        print(f"     lease {lease['id']} on {lease['container']} (pool {lease['pool']}, "
              f"released if untouched for {lease['expires_in_ms']} ms)")
        try:
            client.put_file(lease["id"], "demo.txt", b"data from the client\n")
            back = client.get_file(lease["id"], "demo.txt")
            check("file round trip", back == b"data from the client\n", back)
            r = client.exec(lease["id"], ["cat"], stdin="piped\n")
            check("lease exec with stdin", r["stdout"] == "piped\n" and r["lease"] == lease["id"],
                  r["stdout"])
        finally:
            client.release(lease["id"])
        try:
            client.exec(lease["id"], ["true"])
            check("exec after release fails", False, "succeeded")
        except WarmpoolError as e:
            check("exec after release fails", e.status == 404 and e.code == "unknown_lease", str(e))

        first = client.execute(["echo", "one"], pool=args.pool, session="demo-session")
        second = client.execute(["echo", "two"], pool=args.pool, session="demo-session")
        check("session is sticky", first["container"] == second["container"],
              (first["container"], second["container"]))

        for p in client.pools():
            print(f"     pool {p['name']} [{p['backend']}]: {p['idle']} idle, {p['leased']} leased, "
                  f"{p['total']} total, {p['executions']} executions")
    except (WarmpoolError, urllib.error.URLError, OSError, KeyError, ValueError) as e:
        print(f"FAIL unexpected error: {e}")
        return 1
    if failures:
        print(f"{len(failures)} checks failed: {', '.join(failures)}")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
