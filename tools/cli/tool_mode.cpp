#include "tool_mode.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <sstream>

#include "warmpool/engine.hpp"

namespace warmpool::tool {

namespace {

constexpr const char* kRepo = "/repo"; // outside /workspace: resets never touch it
constexpr const char* kReadPool = "repo-ro";
constexpr const char* kWritePool = "repo-rw";

std::string trim(const std::string& s) {
  auto b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

const char* name(Command::Kind k) {
  return k == Command::open ? "open" : k == Command::write ? "write" : "exec";
}

// Two pools over one template: the first pool of --config (llm-runtime's `container_pool:`
// block makes it "default"), or min_idle 1 / max_size 2 on the local backend.
EngineConfig make_config(const Options& o, const std::string& repo) {
  EngineConfig cfg;
  PoolConfig base;
  base.min_idle = 1;
  base.max_size = 2;
  if (!o.config.empty()) {
    cfg = load_config_file(o.config);
    base = cfg.pools.front();
    for (const auto& p : cfg.pools)
      if (p.name == "default")
        base = p;
  }
  if (!o.backend.empty())
    base.backend = o.backend;
  if (!o.image.empty())
    base.image = o.image;
  struct stat st {};
  if (base.backend == "docker" && stat(repo.c_str(), &st) == 0 && st.st_uid != 0)
    base.user = std::to_string(st.st_uid) + ":" +
                std::to_string(st.st_gid); // writes belong to the repo's owner
  PoolConfig ro = base, rw = base;
  ro.name = kReadPool;
  ro.mounts.push_back({repo, kRepo, true});
  rw.name = kWritePool;
  rw.mounts.push_back({repo, kRepo, false});
  cfg.pools = {ro, rw};
  cfg.routing = {};
  cfg.log.level = o.log_level;
  return cfg;
}

struct Outcome {
  std::string header; // after the command, e.g. "(exit 0)"
  std::string body;
  bool ok = true;
};

Outcome perform(Engine& engine, const Command& c, duration timeout) {
  if (!c.error.empty())
    return {"(error)", c.error, false};
  if (c.kind != Command::exec)
    if (auto why = path_problem(c.arg); !why.empty())
      return {"(error)", why, false};
  const std::string path = std::string(kRepo) + "/" + c.arg;
  Lease lease = engine.acquire(c.kind == Command::open ? kReadPool : kWritePool);
  Outcome out;
  if (c.kind == Command::open) {
    out.body = lease.read_file(path);
  } else if (c.kind == Command::write) {
    lease.write_file(path, c.content);
    out.header = "(" + std::to_string(c.content.size()) + " bytes)";
  } else {
    ExecRequest req;
    req.shell = c.arg;
    req.cwd = kRepo;
    req.timeout = timeout;
    auto r = lease.exec(req);
    out.body = r.stdout_data + r.stderr_data;
    out.ok = r.exit_code == 0 && !r.timed_out;
    out.header = r.timed_out ? "(timed out)"
                 : r.signal  ? "(killed by signal " + std::to_string(r.signal) + ")"
                             : "(exit " + std::to_string(r.exit_code) + ")";
  }
  lease.release();
  return out;
}

} // namespace

std::vector<Command> parse(const std::string& t) {
  static const std::pair<const char*, Command::Kind> kTags[] = {{"<open ", Command::open},
                                                                {"<write ", Command::write},
                                                                {"<exec ", Command::exec}};
  auto next_tag = [&](size_t from) {
    std::pair<size_t, const std::pair<const char*, Command::Kind>*> best{std::string::npos,
                                                                         nullptr};
    for (const auto& tag : kTags)
      if (size_t at = t.find(tag.first, from); at < best.first)
        best = {at, &tag};
    return best;
  };
  std::vector<Command> out;
  for (size_t pos = 0;;) {
    auto [at, tag] = next_tag(pos);
    if (!tag)
      return out;
    Command c{tag->second, "", "", ""};
    const size_t start = at + std::strlen(tag->first);
    const size_t line_end = std::min(t.find('\n', start), t.size());
    if (c.kind == Command::exec) {
      const size_t limit = std::min(next_tag(start).first, line_end);
      const size_t close = limit > start ? t.rfind('>', limit - 1) : std::string::npos;
      if (close == std::string::npos || close < start) {
        c.arg = trim(t.substr(start, limit - start));
        c.error = "<exec " + c.arg + " has no closing '>'";
        pos = limit;
      } else {
        c.arg = trim(t.substr(start, close - start));
        pos = close + 1;
      }
    } else {
      const size_t close = t.find('>', start);
      if (close == std::string::npos || close > line_end) {
        c.arg = trim(t.substr(start, line_end - start));
        c.error = std::string("<") + name(c.kind) + " " + c.arg + " has no closing '>'";
        pos = line_end;
      } else {
        c.arg = trim(t.substr(start, close - start));
        pos = close + 1;
        if (c.kind == Command::write) {
          const size_t end = t.find("</write>", pos);
          if (end == std::string::npos) {
            c.error = "<write " + c.arg + "> has no </write>";
            pos = t.size();
          } else {
            c.content = t.substr(pos, end - pos);
            pos = end + std::strlen("</write>");
          }
        }
      }
    }
    out.push_back(std::move(c));
  }
}

std::string path_problem(const std::string& path) {
  if (path.empty())
    return "the path is empty";
  if (path.find('\0') != std::string::npos)
    return "the path contains a NUL byte";
  if (path[0] == '/')
    return "path \"" + path + "\" is absolute; paths are relative to the repository";
  std::stringstream parts(path);
  for (std::string part; std::getline(parts, part, '/');)
    if (part == "..")
      return "path \"" + path + "\" leaves the repository (\"..\" is not allowed)";
  return "";
}

int run(const Options& o) {
  std::error_code ec;
  const std::string repo = std::filesystem::canonical(o.repo, ec).string();
  if (ec || !std::filesystem::is_directory(repo)) {
    std::cerr << "warmpool tool: --repo " << o.repo << " is not a directory\n";
    return 2;
  }
  const std::string input((std::istreambuf_iterator<char>(std::cin)), {});
  const auto commands = parse(input);
  if (commands.empty()) {
    std::cerr
      << "warmpool tool: no <open PATH>, <write PATH>...</write> or <exec CMD> in the input\n";
    return 0;
  }
  duration timeout{0}; // 0: the pool's exec_timeout
  try {
    if (!o.timeout.empty())
      timeout = parse_duration(o.timeout);
  } catch (const std::invalid_argument&) {
    std::cerr << "warmpool tool: --timeout: invalid duration \"" << o.timeout
              << "\" (use e.g. 30s, 5m)\n";
    return 2;
  }
  Engine engine{make_config(o, repo)};
  bool all_ok = true;
  for (const auto& c : commands) {
    Outcome r;
    try {
      r = perform(engine, c, timeout);
    } catch (const Error& e) {
      r = {"(error)", e.what(), false};
    }
    all_ok = all_ok && r.ok;
    std::string block = "=== " + std::string(name(c.kind)) + " " + c.arg +
                        (r.header.empty() ? "" : " " + r.header) + " ===\n" + r.body;
    if (!r.body.empty() && r.body.back() != '\n')
      block += "\n";
    std::fwrite(block.data(), 1, block.size(), stdout);
    std::fflush(stdout);
  }
  engine.stop();
  return all_ok ? 0 : 1;
}

} // namespace warmpool::tool
