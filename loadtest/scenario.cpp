#include "loadtest/scenario.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "warmpool/config.hpp"

namespace warmpool::loadtest {

namespace fs = std::filesystem;

namespace {

/// Collects issues instead of stopping at the first, so one run shows every mistake.
struct Reader {
  std::vector<std::string> issues;

  void bad(const std::string& path, const std::string& msg) { issues.push_back(path + ": " + msg); }

  static std::string shown(const YAML::Node& n) {
    if (n.IsScalar())
      return "\"" + n.Scalar() + "\"";
    if (n.IsSequence())
      return "a list";
    if (n.IsMap())
      return "a map";
    return "nothing";
  }

  using Handler = std::function<void(const YAML::Node&, const std::string&)>;

  /// Visits a map's keys; unknown keys are errors that list the known ones. Returns the
  /// keys present, for checks like "required" and "not used by this phase type".
  std::set<std::string> fields(const YAML::Node& n, const std::string& path,
                               const std::vector<std::pair<std::string, Handler>>& known) {
    std::set<std::string> seen;
    if (!n.IsMap()) {
      bad(path.empty() ? "(scenario)" : path, "expected a map, got " + shown(n));
      return seen;
    }
    for (const auto& kv : n) {
      auto key = kv.first.Scalar();
      auto at = path.empty() ? key : path + "." + key;
      auto it = std::find_if(known.begin(), known.end(), [&](auto& k) { return k.first == key; });
      if (it == known.end()) {
        std::string list;
        for (auto& k : known)
          list += (list.empty() ? "" : ", ") + k.first;
        bad(at, "unknown key (expected one of " + list + ")");
        continue;
      }
      seen.insert(key);
      it->second(kv.second, at);
    }
    return seen;
  }

  Handler number(double& out, const std::string& what, double min = 0) {
    return [this, &out, what, min](const YAML::Node& n, const std::string& at) {
      char* end = nullptr;
      std::string s = n.IsScalar() ? n.Scalar() : "";
      double v = s.empty() ? 0 : std::strtod(s.c_str(), &end);
      if (s.empty() || *end != '\0' || !std::isfinite(v))
        return bad(at, "expected " + what + ", got " + shown(n));
      if (v < min) {
        std::ostringstream m;
        m << "must be >= " << min << " (got " << s << ")";
        return bad(at, m.str());
      }
      out = v;
    };
  }

  Handler count(uint32_t& out, const std::string& what, uint32_t min) {
    return [this, &out, what, min](const YAML::Node& n, const std::string& at) {
      std::string s = n.IsScalar() ? n.Scalar() : "";
      char* end = nullptr;
      long long v = s.empty() ? 0 : std::strtoll(s.c_str(), &end, 10);
      if (s.empty() || *end != '\0' || v < 0 || v > 1000000)
        return bad(at, "expected " + what + ", got " + shown(n));
      if (v < min)
        return bad(at, "must be >= " + std::to_string(min) + " (got " + s + ")");
      out = static_cast<uint32_t>(v);
    };
  }

  Handler dur(duration& out) {
    return [this, &out](const YAML::Node& n, const std::string& at) {
      try {
        if (!n.IsScalar())
          throw std::invalid_argument("");
        out = parse_duration(n.Scalar());
      } catch (const std::invalid_argument&) {
        bad(at, "expected a duration like 5s or 500ms, got " + shown(n));
      }
    };
  }

  Handler size(uint64_t& out) {
    return [this, &out](const YAML::Node& n, const std::string& at) {
      try {
        if (!n.IsScalar())
          throw std::invalid_argument("");
        out = parse_size(n.Scalar());
      } catch (const std::invalid_argument&) {
        bad(at, "expected a size like 4k or 1m, got " + shown(n));
      }
    };
  }

  Handler str(std::string& out) {
    return [this, &out](const YAML::Node& n, const std::string& at) {
      if (!n.IsScalar() || n.Scalar().empty())
        return bad(at, "expected a non-empty string, got " + shown(n));
      out = n.Scalar();
    };
  }
};

void read_target(Reader& r, const YAML::Node& n, Target& t, const std::string& base_dir) {
  std::string engine, http;
  auto seen =
    r.fields(n, "target",
             {{"engine", r.str(engine)}, {"http", r.str(http)}, {"token", r.str(t.token)}});
  if (!n.IsMap())
    return;
  if (seen.count("engine") + seen.count("http") != 1)
    return r.bad("target", "expected exactly one of engine: CONFIG.yaml or http: URL");
  if (seen.count("engine")) {
    t.kind = Target::Kind::engine;
    if (seen.count("token"))
      r.bad("target.token", "only used with an http target");
    if (engine.empty())
      return;
    fs::path p{engine};
    t.config = (p.is_absolute() ? p : fs::path(base_dir) / p).lexically_normal().string();
    if (!fs::is_regular_file(t.config))
      r.bad("target.engine", "no such file: " + t.config);
  } else {
    t.kind = Target::Kind::http;
    t.url = http;
    if (!http.empty() && http.rfind("http://", 0) != 0 && http.rfind("https://", 0) != 0)
      r.bad("target.http", "expected a URL like http://127.0.0.1:8080, got \"" + http + "\"");
  }
}

void read_phase(Reader& r, const YAML::Node& n, const std::string& at, Phase& p, size_t index) {
  std::string type;
  auto seen = r.fields(n, at,
                       {
                         {"name", r.str(p.name)},
                         {"type", r.str(type)},
                         {"duration", r.dur(p.length)},
                         {"rate", r.number(p.rate, "a number per second")},
                         {"from_rate", r.number(p.from_rate, "a number per second")},
                         {"to_rate", r.number(p.to_rate, "a number per second")},
                         {"workers", r.count(p.workers, "a number of workers", 1)},
                         {"think_time", r.dur(p.think_time)},
                         {"count", r.count(p.count, "a number of requests", 1)},
                       });
  if (!n.IsMap())
    return;
  if (p.name.empty())
    p.name = "phase" + std::to_string(index + 1);
  static const std::map<std::string, std::pair<Phase::Type, std::set<std::string>>> kinds = {
    {"ramp", {Phase::Type::ramp, {"from_rate", "to_rate", "duration"}}},
    {"rate", {Phase::Type::rate, {"rate", "duration"}}},
    {"concurrency", {Phase::Type::concurrency, {"workers", "duration"}}},
    {"burst", {Phase::Type::burst, {"count"}}},
    {"sequence", {Phase::Type::sequence, {"count"}}},
  };
  if (!seen.count("type"))
    return r.bad(at + ".type", "required (ramp, rate, concurrency, burst or sequence)");
  auto k = kinds.find(type);
  if (k == kinds.end())
    return r.bad(at + ".type",
                 "expected ramp, rate, concurrency, burst or sequence, got \"" + type + "\"");
  p.type = k->second.first;
  for (auto& req : k->second.second)
    if (!seen.count(req))
      r.bad(at + "." + req, "required by a " + type + " phase");
  // A key that belongs to another phase type is most likely a mistake (e.g. `rate` on a
  // concurrency phase): say so instead of silently ignoring it.
  std::set<std::string> usable = k->second.second;
  usable.insert({"name", "type"});
  // A sequence lasts as long as its requests take: a duration would contradict the count.
  if (p.type != Phase::Type::sequence)
    usable.insert("duration");
  if (p.type == Phase::Type::concurrency)
    usable.insert("think_time");
  for (auto& key : seen)
    if (!usable.count(key))
      r.bad(at + "." + key, key == "duration"
                              ? "not used by a sequence phase (it lasts until its count requests "
                                "have finished)"
                              : "not used by a " + type + " phase");
  if (seen.count("duration") && p.length.count() <= 0 && p.type != Phase::Type::burst)
    r.bad(at + ".duration", "must be > 0");
  if (p.type == Phase::Type::rate && seen.count("rate") && p.rate <= 0)
    r.bad(at + ".rate", "must be > 0");
  if (p.type == Phase::Type::ramp && p.from_rate <= 0 && p.to_rate <= 0 &&
      seen.count("from_rate") && seen.count("to_rate"))
    r.bad(at, "from_rate and to_rate cannot both be 0");
}

void read_fault(Reader& r, const YAML::Node& n, const std::string& at, Fault& f) {
  std::string action;
  uint32_t kill = 0;
  duration pause{0}, length{0};
  auto seen = r.fields(n, at,
                       {
                         {"at", r.dur(f.at)},
                         {"action", r.str(action)},
                         {"count", r.count(f.count, "a number of sandboxes", 1)},
                         {"duration", r.dur(length)},
                         {"kill", r.count(kill, "a number of sandboxes", 1)},
                         {"pause_backend", r.dur(pause)},
                       });
  if (!n.IsMap())
    return;
  if (!seen.count("at"))
    r.bad(at + ".at", "required (when to inject the fault, e.g. 5s)");
  if (seen.count("action") + seen.count("kill") + seen.count("pause_backend") != 1)
    return r.bad(at, "expected exactly one of action: kill_sandbox|pause_backend, kill: N, "
                     "pause_backend: DURATION");
  if (seen.count("kill")) {
    f.action = Fault::Action::kill_sandbox;
    f.count = kill;
  } else if (seen.count("pause_backend")) {
    f.action = Fault::Action::pause_backend;
    f.pause = pause;
  } else if (action == "kill_sandbox") {
    f.action = Fault::Action::kill_sandbox;
  } else if (action == "pause_backend") {
    f.action = Fault::Action::pause_backend;
    f.pause = length;
    if (!seen.count("duration"))
      r.bad(at + ".duration", "required by action pause_backend");
  } else if (!action.empty()) {
    r.bad(at + ".action", "expected kill_sandbox or pause_backend, got \"" + action + "\"");
  }
  if (seen.count("count") && f.action != Fault::Action::kill_sandbox)
    r.bad(at + ".count", "only used by kill_sandbox");
  if (seen.count("duration") && action != "pause_backend")
    r.bad(at + ".duration", "only used by action pause_backend");
  if (f.action == Fault::Action::pause_backend && f.pause.count() <= 0 &&
      (seen.count("pause_backend") || seen.count("duration")))
    r.bad(at + (seen.count("duration") ? ".duration" : ".pause_backend"), "must be > 0");
}

void read_mix(Reader& r, const YAML::Node& n, Mix& m) {
  m = Mix{};
  m.execute = 0;
  // An operation's key is its weight, or a map of its weight and its knobs.
  auto op = [&](double& weight, std::vector<std::pair<std::string, Reader::Handler>> knobs,
                const std::string& what) -> Reader::Handler {
    return [&r, w = &weight, knobs, what](const YAML::Node& v, const std::string& at) mutable {
      if (v.IsMap()) {
        knobs.insert(knobs.begin(), {"weight", r.number(*w, "a weight (a number >= 0)")});
        r.fields(v, at, knobs);
      } else {
        r.number(*w, "a weight (a number >= 0) or " + what)(v, at);
      }
    };
  };
  r.fields(n, "mix",
           {
             {"execute", r.number(m.execute, "a weight (a number >= 0)")},
             {"files", r.number(m.files, "a weight (a number >= 0)")},
             {"lease", op(m.lease, {{"execs", r.count(m.execs, "a number of commands", 1)}},
                          "{weight, execs}")},
             {"agent", op(m.agent,
                          {{"commands", r.count(m.agent_commands, "a number of commands", 1)},
                           {"step",
                            [&](const YAML::Node& v, const std::string& at) {
                              if (!v.IsScalar() || v.Scalar().empty())
                                return r.bad(at,
                                             "expected a shell command, got " + Reader::shown(v));
                              m.agent_step = v.Scalar();
                            }}},
                          "{weight, commands, step}")},
             {"stream", op(m.stream,
                           {{"lines", r.count(m.stream_lines, "a number of lines", 1)},
                            {"interval", r.dur(m.stream_interval)}},
                           "{weight, lines, interval}")},
           });
  if (m.stream_interval.count() < 0)
    r.bad("mix.stream.interval", "must be >= 0");
  if (n.IsMap() && m.total() <= 0)
    r.bad("mix", "at least one operation needs a weight > 0");
}

void read_payload(Reader& r, const YAML::Node& n, Payload& p) {
  r.fields(n, "payload",
           {
             {"command",
              [&](const YAML::Node& v, const std::string& at) {
                p.argv.clear();
                p.shell.clear();
                if (v.IsScalar() && !v.Scalar().empty()) {
                  p.shell = v.Scalar();
                } else if (v.IsSequence() && v.size() > 0) {
                  for (auto& a : v) {
                    if (!a.IsScalar())
                      return r.bad(at, "expected a list of strings (argv) or a shell string");
                    p.argv.push_back(a.Scalar());
                  }
                } else {
                  r.bad(at, "expected a list of strings (argv) or a shell string, got " +
                              Reader::shown(v));
                }
              }},
             {"stdin_size", r.size(p.stdin_size)},
             {"file_size", r.size(p.file_size)},
             {"timeout", r.dur(p.timeout)},
           });
}

} // namespace

ScenarioError::ScenarioError(std::vector<std::string> issues)
    : std::runtime_error([&] {
        std::string s;
        for (auto& i : issues)
          s += (s.empty() ? "" : "\n") + i;
        return s;
      }()),
      issues_(std::move(issues)) {}

duration Scenario::total_length() const {
  duration t{0};
  for (auto& p : phases)
    t += p.length;
  return t;
}

Scenario parse_scenario(const std::string& text, const std::string& base_dir) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw ScenarioError{{"(yaml): " + std::string(e.what())}};
  }
  Reader r;
  Scenario s;
  bool has_target = false, has_phases = false;
  r.fields(root, "",
           {
             {"name", r.str(s.name)},
             {"target",
              [&](const YAML::Node& v, const std::string&) {
                has_target = true;
                read_target(r, v, s.target, base_dir);
              }},
             {"pool", r.str(s.pool)},
             {"phases",
              [&](const YAML::Node& v, const std::string& at) {
                has_phases = true;
                if (!v.IsSequence() || v.size() == 0)
                  return r.bad(at, "expected a non-empty list of phases, got " + Reader::shown(v));
                for (size_t i = 0; i < v.size(); ++i)
                  read_phase(r, v[i], at + "[" + std::to_string(i) + "]", s.phases.emplace_back(),
                             i);
              }},
             {"mix", [&](const YAML::Node& v, const std::string&) { read_mix(r, v, s.mix); }},
             {"payload",
              [&](const YAML::Node& v, const std::string&) { read_payload(r, v, s.payload); }},
             {"think_time", r.dur(s.think_time)},
             {"sessions",
              [&](const YAML::Node& v, const std::string& at) {
                r.fields(v, at,
                         {{"reuse", r.number(s.session_reuse, "a fraction between 0 and 1")},
                          {"count", r.count(s.sessions, "a number of sessions", 1)}});
                if (s.session_reuse > 1)
                  r.bad(at + ".reuse", "must be <= 1 (a fraction of the executes)");
              }},
             {"faults",
              [&](const YAML::Node& v, const std::string& at) {
                if (!v.IsSequence())
                  return r.bad(at, "expected a list of faults, got " + Reader::shown(v));
                for (size_t i = 0; i < v.size(); ++i)
                  read_fault(r, v[i], at + "[" + std::to_string(i) + "]", s.faults.emplace_back());
              }},
             {"max_in_flight", r.count(s.max_in_flight, "a number of requests", 1)},
             {"acquire_timeout", r.dur(s.acquire_timeout)},
             {"request_timeout", r.dur(s.request_timeout)},
             {"warmup", r.dur(s.warmup)},
             {"drain", r.dur(s.drain)},
             {"bucket", r.dur(s.bucket)},
             {"seed",
              [&](const YAML::Node& v, const std::string& at) {
                uint32_t seed = 0;
                r.count(seed, "a number", 0)(v, at);
                s.seed = seed;
              }},
           });
  if (root.IsMap()) {
    if (!has_target)
      r.bad("target", "required ({engine: CONFIG.yaml} or {http: URL})");
    if (!has_phases)
      r.bad("phases", "required (a list of ramp, rate, concurrency, burst or sequence phases)");
  }
  if (s.bucket.count() != 0 && s.bucket < duration{50})
    r.bad("bucket", "must be >= 50ms");
  // Past the end of the phases there is nothing left to perturb.
  auto total = s.total_length();
  for (size_t i = 0; i < s.faults.size(); ++i)
    if (s.faults[i].at > total && has_phases)
      r.bad("faults[" + std::to_string(i) + "].at", std::to_string(s.faults[i].at.count()) +
                                                      "ms is after the last phase ends (" +
                                                      std::to_string(total.count()) + "ms)");
  if (!r.issues.empty())
    throw ScenarioError{std::move(r.issues)};
  if (s.name.empty())
    s.name = "scenario";
  if (s.bucket.count() == 0)
    s.bucket = total <= std::chrono::minutes(2) ? duration{250} : duration{1000};
  return s;
}

Scenario load_scenario(const std::string& path) {
  std::ifstream in{path};
  if (!in)
    throw ScenarioError{{path + ": cannot read the file"}};
  std::stringstream ss;
  ss << in.rdbuf();
  auto dir = fs::path(path).parent_path().string();
  auto s = parse_scenario(ss.str(), dir.empty() ? "." : dir);
  s.file = path;
  if (s.name == "scenario")
    s.name = fs::path(path).stem().string();
  return s;
}

const char* to_string(Phase::Type t) {
  switch (t) {
    case Phase::Type::ramp: return "ramp";
    case Phase::Type::rate: return "rate";
    case Phase::Type::concurrency: return "concurrency";
    case Phase::Type::burst: return "burst";
    case Phase::Type::sequence: return "sequence";
  }
  return "?";
}

const char* to_string(Fault::Action a) {
  return a == Fault::Action::kill_sandbox ? "kill_sandbox" : "pause_backend";
}

} // namespace warmpool::loadtest
