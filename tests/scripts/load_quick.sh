# `warmpool load` on the shipped quick scenario (embedded sim engine, ~5 s): the command
# succeeds, the JSON result is self-consistent and the HTML report is well-formed with its
# charts. Counts and structure only, no timing.
set -euo pipefail
bin="$WARMPOOL_BUILD_DIR/bin/warmpool"
src="$WARMPOOL_SOURCE_DIR"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$bin" load "$src/loadtest/scenarios/quick-sim.yaml" --json "$tmp/out.json" --html "$tmp/out.html" \
  >"$tmp/stdout" 2>"$tmp/stderr" || fail "warmpool load exited $?: $(cat "$tmp/stderr")"
grep -q '^total ' "$tmp/stdout" || fail "no summary on stdout: $(cat "$tmp/stdout")"
# Not a TTY: periodic plain lines, no carriage returns.
if grep -q $'\r' "$tmp/stderr"; then fail "progress used \\r without a TTY"; fi

python3 - "$tmp/out.json" "$tmp/out.html" <<'PY'
import json, sys
from html.parser import HTMLParser

j = json.load(open(sys.argv[1]))
def check(t, what):
    errs = sum(t["errors"].values())
    assert t["requests"] == t["successes"] + errs, f"{what}: {t['requests']} != {t['successes']} + {errs}"
    for k in ("throughput_rps", "latency_ms", "pool_hit_rate"):
        assert k in t, f"{what}: no {k}"

names = [p["name"] for p in j["phases"]]
assert names == ["ramp-up", "steady", "spike"], names
for p in j["phases"]:
    check(p, p["name"])
check(j["total"], "total")
assert j["total"]["requests"] == sum(p["requests"] for p in j["phases"])
assert j["phases"][1]["requests"] == 300, j["phases"][1]["requests"]   # 150/s for 2 s
assert j["phases"][2]["requests"] == 60, j["phases"][2]["requests"]    # the burst
assert j["total"]["successes"] > 0
lat = j["total"]["latency_ms"]
assert lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99_9"] <= lat["max"], lat
# Per operation: the mix's three operations, adding up to the total; no TTFB without streams.
assert sorted(j["ops"]) == ["execute", "files", "lease"], sorted(j["ops"])
assert sum(o["requests"] for o in j["ops"].values()) == j["total"]["requests"]
for name, o in j["ops"].items():
    check(dict(o, pool_hit_rate=None), name)
    assert o["ttfb_ms"] is None, name
assert [f["action"] for f in j["faults"]] == ["kill_sandbox", "pause_backend"], j["faults"]
assert all(f["status"] == "applied" for f in j["faults"]), j["faults"]
buckets = j["timeseries"]["buckets"]
assert len(buckets) >= 15 and j["timeseries"]["bucket_s"] == 0.25, len(buckets)
assert any(b["pool"].get("states") for b in buckets), "no pool occupancy samples"

class Checker(HTMLParser):
    VOID = {"meta", "br", "hr", "img", "input", "link"}
    def __init__(self):
        super().__init__()
        self.stack, self.svgs, self.problems = [], 0, []
    def handle_starttag(self, tag, attrs):
        self.svgs += tag == "svg"
        for name, _ in attrs:
            if name in ("src", "href"):
                self.problems.append(f"external reference in <{tag} {name}>")
        if tag == "script":
            self.problems.append("script element")
        if tag not in self.VOID:
            self.stack.append(tag)
    def handle_startendtag(self, tag, attrs):
        self.svgs += tag == "svg"
    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()

c = Checker()
c.feed(open(sys.argv[2]).read())
c.close()
assert not c.problems, c.problems
assert not c.stack, f"unclosed: {c.stack}"
assert c.svgs >= 3, f"{c.svgs} svg charts"
print(f"load_quick: {j['total']['requests']} requests, {j['total']['successes']} ok, "
      f"{c.svgs} charts")
PY

# An invalid scenario is a usage error naming the key.
printf 'target: {engine: nope.yaml}\nphases: [{type: rate, rate: fast, duration: 1s}]\n' >"$tmp/bad.yaml"
set +e
"$bin" load "$tmp/bad.yaml" 2>"$tmp/err"
rc=$?
set -e
[ "$rc" -eq 2 ] || fail "invalid scenario exit code $rc, want 2"
grep -q 'phases\[0\].rate: expected a number per second, got "fast"' "$tmp/err" || fail "message: $(cat "$tmp/err")"
grep -q 'target.engine: no such file' "$tmp/err" || fail "message: $(cat "$tmp/err")"
echo "load_quick: ok"
