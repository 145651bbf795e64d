#include "backends/sim_backend.hpp"

#include <thread>

namespace warmpool {

struct SimBackend::SimSandbox : Sandbox {
  std::string sid;
  std::atomic<bool> alive{true};
  std::atomic<bool> frozen{false}; // paused (pause_idle_after): every other call fails
  std::map<std::string, std::string> files;
  int background = 0; // processes left running by the tenant ("cmd &")
  std::string id() const override { return sid; }
};

SimBackend::SimBackend(SimConfig cfg) : cfg_(cfg), rng_(cfg.seed) {}

SimBackend::SimSandbox& SimBackend::cast(Sandbox& box) { return static_cast<SimSandbox&>(box); }

bool SimBackend::roll_failure() {
  if (cfg_.failure_rate <= 0)
    return false;
  std::lock_guard<std::mutex> guard{mtx_};
  return std::uniform_real_distribution<double>{0, 1}(rng_) < cfg_.failure_rate;
}

void SimBackend::pause(duration d) {
  if (d.count() > 0)
    std::this_thread::sleep_for(d);
}

void SimBackend::pause_for(duration d) {
  auto until = std::chrono::steady_clock::now() + d;
  paused_until_ns_ =
    std::chrono::duration_cast<std::chrono::nanoseconds>(until.time_since_epoch()).count();
}

void SimBackend::wait_while_paused() const {
  auto until =
    std::chrono::steady_clock::time_point{std::chrono::nanoseconds{paused_until_ns_.load()}};
  if (until > std::chrono::steady_clock::now())
    std::this_thread::sleep_until(until);
}

void SimBackend::check_alive(SimSandbox& box) {
  wait_while_paused(); // every call on a sandbox checks it is alive first
  if (!box.alive)
    throw Error{Errc::container_failed, "sim sandbox " + box.sid + " is dead"};
  // A frozen sandbox would not answer: calling it before unpause() is a bug to catch.
  if (box.frozen)
    throw Error{Errc::container_failed, "sim sandbox " + box.sid + " is paused"};
}

void SimBackend::pause(Sandbox& sandbox) {
  auto& box = cast(sandbox);
  check_alive(box);
  box.frozen = true;
  ++pauses_;
}

void SimBackend::unpause(Sandbox& sandbox) {
  auto& box = cast(sandbox);
  if (box.frozen.exchange(false))
    ++unpauses_;
}

SandboxPtr SimBackend::create(const SandboxSpec& spec) {
  wait_while_paused();
  auto now = ++creating_;
  for (auto seen = max_parallel_.load();
       now > seen && !max_parallel_.compare_exchange_weak(seen, now);)
    ;
  pause(cfg_.create_latency);
  --creating_;
  if (fail_creates_.fetch_sub(1) > 0 || roll_failure())
    throw Error{Errc::backend_unavailable, "sim: injected create failure for " + spec.name};
  fail_creates_.store(std::max(0, fail_creates_.load()));
  auto box = std::make_shared<SimSandbox>();
  box->sid = "sim-" + std::to_string(++next_id_);
  std::lock_guard<std::mutex> guard{mtx_};
  live_.insert(box->sid);
  boxes_[box->sid] = box;
  ++created_;
  return box;
}

// A tiny command language, enough to script tests: echo, cat, exit N, true, false,
// sleep-forever ("hang", times out), "bg" (leaves a background process), "ls" (files),
// "crash" (the sandbox dies under the command).
ExecResult SimBackend::exec(Sandbox& sandbox, const ExecRequest& req) {
  auto& box = cast(sandbox);
  check_alive(box);
  pause(cfg_.exec_latency);
  if (roll_failure())
    throw Error{Errc::container_failed, "sim: injected exec failure in " + box.sid};
  std::vector<std::string> argv = req.argv;
  // Code in a language is read as the sim's command language too (it has no interpreters).
  const std::string& text = req.language.empty() ? req.shell : req.code;
  if (argv.empty() && !text.empty()) {
    // Split the shell string on spaces; good enough for the sim's commands.
    std::string word;
    for (char c : text + " ") {
      if (c == ' ') {
        if (!word.empty())
          argv.push_back(word);
        word.clear();
      } else {
        word += c;
      }
    }
  }
  ExecResult res;
  res.exit_code = 0;
  if (argv.empty()) {
    res.exit_code = 127;
    res.stderr_data = "sim: empty command\n";
    return res;
  }
  const auto& cmd = argv[0];
  if (cmd == "crash") {
    box.alive = false;
    throw Error{Errc::container_failed, "sim sandbox " + box.sid + " died running the command"};
  }
  if (cmd == "echo") {
    for (size_t i = 1; i < argv.size(); ++i)
      res.stdout_data += (i > 1 ? " " : "") + argv[i];
    res.stdout_data += "\n";
  } else if (cmd == "cat") {
    res.stdout_data = req.stdin_data;
  } else if (cmd == "exit" && argv.size() > 1) {
    res.exit_code = std::stoi(argv[1]);
  } else if (cmd == "true") {
  } else if (cmd == "false") {
    res.exit_code = 1;
  } else if (cmd == "hang") {
    res.timed_out = true;
    res.exit_code = -1;
    res.signal = 9;
  } else if (cmd == "bg") {
    std::lock_guard<std::mutex> guard{mtx_};
    ++box.background;
  } else if (cmd == "ls") {
    std::lock_guard<std::mutex> guard{mtx_};
    for (auto& kv : box.files)
      res.stdout_data += kv.first + "\n";
  } else {
    res.exit_code = 127;
    res.stderr_data = "sim: unknown command " + cmd + "\n";
  }
  if (res.stdout_data.size() > req.output_limit) {
    res.stdout_data.resize(req.output_limit);
    res.truncated = true;
  }
  return res;
}

std::string SimBackend::read_file(Sandbox& sandbox, const std::string& path) {
  auto& box = cast(sandbox);
  check_alive(box);
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = box.files.find(path);
  if (i == box.files.end())
    throw Error{Errc::invalid_request, "no such file: " + path};
  return i->second;
}

void SimBackend::write_file(Sandbox& sandbox, const std::string& path, const std::string& data) {
  auto& box = cast(sandbox);
  check_alive(box);
  std::lock_guard<std::mutex> guard{mtx_};
  box.files[path] = data;
}

ResetReport SimBackend::reset(Sandbox& sandbox, duration) {
  auto& box = cast(sandbox);
  check_alive(box);
  if (fail_resets_.fetch_sub(1) > 0)
    throw Error{Errc::container_failed, "sim: injected reset failure in " + box.sid};
  fail_resets_.store(std::max(0, fail_resets_.load()));
  std::lock_guard<std::mutex> guard{mtx_};
  ResetReport rep{box.files.size(), static_cast<uint64_t>(box.background)};
  box.files.clear();
  box.background = 0;
  return rep;
}

void SimBackend::ping(Sandbox& sandbox, duration) {
  auto& box = cast(sandbox);
  check_alive(box);
  if (fail_pings_.fetch_sub(1) > 0)
    throw Error{Errc::container_failed, "sim: injected ping failure in " + box.sid};
  fail_pings_.store(std::max(0, fail_pings_.load()));
}

void SimBackend::destroy(Sandbox& sandbox) {
  auto& box = cast(sandbox);
  box.alive = false;
  std::lock_guard<std::mutex> guard{mtx_};
  boxes_.erase(box.sid);
  if (live_.erase(box.sid) > 0)
    ++destroyed_;
}

void SimBackend::on_death(DeathCallback cb) {
  std::lock_guard<std::mutex> guard{mtx_};
  on_death_ = std::move(cb);
}

void SimBackend::kill(const std::string& sandbox_id) {
  DeathCallback cb;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (live_.count(sandbox_id) == 0)
      return;
    cb = on_death_;
  }
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (auto box = boxes_[sandbox_id].lock())
      box->alive = false;
  }
  if (cb)
    cb(sandbox_id);
}

size_t SimBackend::live() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return live_.size();
}

std::set<std::string> SimBackend::live_ids() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return live_;
}

} // namespace warmpool
