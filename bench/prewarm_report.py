#!/usr/bin/env python3
import json, sys
# Hit rate in the step phase (all of it, and after the first 2 s of adaptation) and
# idle-sandbox-seconds over the whole run (integral of the idle count over time).
for name in sys.argv[1:]:
    r = json.load(open(name))
    step = [p for p in r["phases"] if p["name"] == "step"][0]
    b = r["timeseries"]["buckets"]; dt = r["timeseries"]["bucket_s"]
    idle_s = sum(x["pool"]["states"].get("idle", 0) for x in b) * dt
    t0 = step["start_s"] + 2.0; t1 = step["start_s"] + step["span_s"]
    inside = [x for x in b if t0 <= x["t_s"] < t1]
    h = inside[-1]["pool"]["hits"] - inside[0]["pool"]["hits"]
    m = inside[-1]["pool"]["misses"] - inside[0]["pool"]["misses"]
    after = [x for x in b if x["t_s"] >= t1]
    print(json.dumps({"run": name, "step_hit_rate": step["pool_hit_rate"],
                      "adapted_hit_rate": round(h / max(1, h + m), 4),
                      "step_p99_ms": step["latency_ms"]["p99"],
                      "idle_sandbox_seconds": round(idle_s, 1),
                      "idle_at_end": after[-1]["pool"]["states"].get("idle", 0)}))
