#include "agent/contexts.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "agent/python_context_py.hpp"

extern char** environ;

namespace warmpool::agent {

namespace {

// Start-up imports the preload modules: numpy alone takes ~100 ms on a warm disk, seconds on
// a cold one.
constexpr auto kStartTimeout = std::chrono::seconds(30);
// After the timeout's SIGINT, how long the run has to stop before the context is killed:
// a KeyboardInterrupt unwinds in microseconds unless the code catches or ignores it.
constexpr auto kGrace = std::chrono::seconds(1);
constexpr size_t kFeedBudget = 1 << 20;
// Most kept of what a context printed before it was ready (quoted when it did not start).
constexpr size_t kStartupKeep = 2000;
// A status line longer than this is no driver's (it cuts what it reports to at most 6 MiB).
constexpr size_t kMaxStatusLine = 8u << 20;

void set_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

json died_error(int status, bool killed_by_us) {
  std::string why;
  if (killed_by_us)
    why = "the context was killed: its run did not stop within " +
          std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(kGrace).count()) +
          " ms of SIGINT";
  else if (WIFEXITED(status))
    why = "the context's process exited with status " + std::to_string(WEXITSTATUS(status));
  else
    why = "the context's process was killed by signal " +
          std::to_string(WIFSIGNALED(status) ? WTERMSIG(status) : SIGKILL);
  return json{{"name", "ContextExited"}, {"value", why + "; open it again"}, {"traceback", ""}};
}

} // namespace

Contexts::Context& Contexts::get(const json& msg) {
  std::string name = proto::context_name_from_json(msg);
  auto it = contexts_.find(name);
  if (it == contexts_.end())
    throw OpError("not_found", "no context '" + name + "'");
  return *it->second;
}

json Contexts::open(const json& msg, const std::map<std::string, std::string>& env_in,
                    const std::string& cwd) {
  std::string name = proto::context_name_from_json(msg);
  auto it = contexts_.find(name);
  if (it != contexts_.end()) {
    if (it->second->alive)
      throw OpError("conflict", "context '" + name + "' is already open");
    contexts_.erase(it); // died: the name is free again
  }
  auto [command, preload] = python_();
  std::vector<std::string> args = command;
  args.insert(args.end(), {"-c", kPythonContext});
  args.insert(args.end(), preload.begin(), preload.end());
  std::map<std::string, std::string> env = env_in;
  env["PYTHONUNBUFFERED"] = "1"; // a run's prints reach the host while it runs
  std::vector<std::string> env_strs;
  for (const auto& [k, v] : env)
    env_strs.push_back(k + "=" + v);
  std::vector<char*> argv, envp;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env_strs)
    envp.push_back(e.data());
  envp.push_back(nullptr);

  auto c = std::make_unique<Context>();
  c->name = name;
  Fd ctl_r, out_w, err_w, st_w;
  make_pipe(ctl_r, c->ctl);
  make_pipe(c->out, out_w);
  make_pipe(c->err, err_w);
  make_pipe(c->status, st_w);
  int fds[4] = {out_w.fd, err_w.fd, ctl_r.fd, st_w.fd}; // become 1, 2, 3, 4
  auto become = become_tenant_;
  c->pid = fork_job([&] {
    int hi[4];
    for (int i = 0; i < 4; ++i)
      if ((hi[i] = fcntl(fds[i], F_DUPFD, 10)) < 0)
        _exit(126);
    int null = ::open("/dev/null", O_RDONLY);
    if (null < 0 || dup2(null, 0) < 0)
      _exit(126);
    for (int i = 0; i < 4; ++i)
      if (dup2(hi[i], i + 1) < 0)
        _exit(126);
    close_from(5);
    become();
    if (chdir(cwd.c_str()) != 0)
      child_fail(("chdir " + cwd).c_str(), 126);
    environ = envp.data();
    execvp(argv[0], argv.data());
    child_fail(("cannot execute " + args[0]).c_str(), errno == ENOENT ? 127 : 126);
  });
  for (Fd* f : {&c->ctl, &c->out, &c->err, &c->status})
    set_nonblock(f->fd);
  Context* p = c.get();
  contexts_[name] = std::move(c);
  jobs_.pump(-1, steady::now() + kStartTimeout, [&] { return p->ready || !p->alive; });
  if (!p->ready) {
    feed(*p, 1);
    std::string why = p->startup.empty() ? std::string("no answer") : p->startup;
    kill_context(*p);
    contexts_.erase(name);
    throw OpError("shell_exited", "the python context (" + command[0] + ") did not start: " + why);
  }
  return json{{"context", name}, {"pid", p->pid}};
}

json Contexts::run(const json& msg) {
  auto req = proto::ctx_run_from_json(msg);
  Context& c = get(msg);
  if (!c.alive)
    throw OpError("shell_exited", "context '" + c.name + "' exited; open it again");
  if (c.job && jobs_.find(c.job) && jobs_.find(c.job)->running)
    throw OpError("conflict", "context '" + c.name + "' is still running code");
  Job& job = jobs_.add_shell_command(c.pid, "python context " + c.name, req.output_limit);
  uint64_t num = job.num;
  c.job = num;
  c.stage = 0;
  c.started = false;
  c.held = 0;
  c.seq++;
  c.deadline = steady::now() + std::chrono::milliseconds(req.timeout_ms);
  c.next = steady::time_point::max();
  c.ctl_queue += std::to_string(req.code.size()) + "\n" + req.code;
  flush(c);
  jobs_.await_output(steady::now() + std::chrono::milliseconds(req.output.wait_ms), [&] {
    Job* j = jobs_.find(num);
    return !j || !j->running;
  });
  if (!jobs_.find(num))
    throw OpError("not_found", "the run's job was forgotten");
  return jobs_.output(num, req.output);
}

json Contexts::close(const json& msg) {
  Context& c = get(msg);
  kill_context(c, "the context was closed during this run");
  contexts_.erase(c.name);
  return json::object();
}

json Contexts::list() const {
  json list = json::array();
  for (const auto& [name, c] : contexts_)
    list.push_back(
      {{"context", name}, {"pid", c->pid}, {"running", c->alive}, {"busy", c->job != 0}});
  return json{{"contexts", list}};
}

void Contexts::clear() {
  for (auto& [name, c] : contexts_)
    kill_context(*c, "the sandbox was reset during this run");
  contexts_.clear();
}

void Contexts::kill_context(Context& c, const std::string& why) {
  if (c.alive) {
    kill(-c.pid, SIGKILL);
    kill(c.pid, SIGKILL);
    job_release(c.pid);
    c.alive = false;
  }
  if (Job* job = c.job ? jobs_.find(c.job) : nullptr)
    if (job->running) {
      job->extra = {{"result", nullptr},
                    {"error", why.empty() ? died_error(0, true)
                                          : json{{"name", "ContextExited"},
                                                 {"value", why},
                                                 {"traceback", ""}}}};
      jobs_.finish(*job, -1, SIGKILL, false);
    }
  c.job = 0;
  for (Fd* f : {&c.ctl, &c.out, &c.err, &c.status})
    f->reset();
}

// ---------------------------------------------------------------- driver I/O

void Contexts::flush(Context& c) {
  while (c.ctl.fd >= 0 && !c.ctl_queue.empty()) {
    ssize_t put = write(c.ctl.fd, c.ctl_queue.data(), c.ctl_queue.size());
    if (put > 0) {
      c.ctl_queue.erase(0, size_t(put));
    } else if (put < 0 && errno == EINTR) {
      continue;
    } else {
      if (put < 0 && errno != EAGAIN) { // EPIPE: it is dying; the reaper will tell
        c.ctl_queue.clear();
        c.ctl.reset();
      }
      return;
    }
  }
}

void Contexts::feed(Context& c, int stream) {
  Fd& fd = stream == 0 ? c.out : c.err;
  if (fd.fd < 0)
    return;
  Job* job = c.job ? jobs_.find(c.job) : nullptr;
  if (job && !job->running)
    job = nullptr;
  // Between runs (a thread the code left behind may print) it goes nowhere; before the
  // first, stderr is kept to explain a failed start.
  if (!read_available(
        fd.fd,
        [&](const char* p, size_t n) {
          if (job)
            job->streams[stream].append(p, n);
          else if (!c.ready && c.startup.size() < kStartupKeep)
            c.startup.append(p, std::min(n, kStartupKeep - c.startup.size()));
        },
        kFeedBudget))
    fd.reset();
}

void Contexts::end_run(Context& c, const json& result, const json& error, int exit_code,
                       int signal) {
  feed(c, 0); // the driver flushed the run's output before it reported
  feed(c, 1);
  if (Job* job = c.job ? jobs_.find(c.job) : nullptr) {
    job->extra = {{"result", result}, {"error", error}};
    jobs_.finish(*job, exit_code, signal, c.stage > 0);
  }
  c.job = 0;
  c.stage = 0;
  c.started = false;
  c.held = 0;
  c.deadline = c.next = steady::time_point::max();
}

void Contexts::on_status(Context& c) {
  if (c.status.fd < 0)
    return;
  if (!read_available(
        c.status.fd, [&](const char* p, size_t n) { c.status_buf.append(p, n); }, 1 << 20))
    c.status.reset();
  size_t nl;
  while ((nl = c.status_buf.find('\n')) != std::string::npos) {
    std::string line = c.status_buf.substr(0, nl);
    c.status_buf.erase(0, nl + 1);
    json j = json::parse(line, nullptr, false);
    if (!j.is_object())
      continue;
    if (j.value("ready", false)) {
      c.ready = true;
    } else if (c.job && j.value("started", uint64_t{0}) == c.seq) {
      c.started = true;
      if (c.held)
        interrupt(c, std::exchange(c.held, 0));
    } else if (c.job && j.value("seq", uint64_t{0}) == c.seq) {
      json error = j.contains("error") ? j["error"] : json();
      end_run(c, j.contains("result") ? j["result"] : json(), error, error.is_null() ? 0 : 1, 0);
    }
  }
  if (c.status_buf.size() > kMaxStatusLine)
    c.status_buf.clear();
}

void Contexts::died(Context& c, int status) {
  c.alive = false;
  on_status(c); // a run that ended just before
  feed(c, 0);   // the rest of its output: the run's, or why it did not start
  feed(c, 1);
  if (c.job)
    end_run(c, json(), died_error(status, c.stage > 0), WIFEXITED(status) ? WEXITSTATUS(status) : -1,
            WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  for (Fd* f : {&c.ctl, &c.out, &c.err, &c.status})
    f->reset();
  c.ctl_queue.clear();
}

// ---------------------------------------------------------------- LoopPart

void Contexts::add_fds(std::vector<pollfd>& fds) {
  polled_.clear();
  for (auto& [name, c] : contexts_)
    if (c->alive)
      polled_.add(c.get(), fds, c->out, c->err, c->status, c->ctl, !c->ctl_queue.empty());
}

void Contexts::on_events(const pollfd* fds, size_t n) {
  polled_.dispatch(fds, n, [this](Context& c, PipeRole role) {
    if (!c.alive)
      return;
    switch (role) {
      case PipeRole::out: feed(c, 0); break;
      case PipeRole::err: feed(c, 1); break;
      case PipeRole::status: on_status(c); break;
      case PipeRole::control: flush(c); break;
    }
  });
}

void Contexts::on_tick(steady::time_point now) {
  for (auto& [name, cp] : contexts_) {
    Context& c = *cp;
    if (!c.alive)
      continue;
    int st = 0;
    if (job_exited(c.pid, st)) {
      died(c, st);
      continue;
    }
    if (!c.job)
      continue;
    if (c.stage == 0 && now >= c.deadline) {
      interrupt(c, SIGINT);
      c.stage = 1;
      c.next = now + kGrace;
    } else if (c.stage == 1 && now >= c.next) {
      kill(-c.pid, SIGKILL);
      kill(c.pid, SIGKILL);
      c.next = steady::time_point::max(); // the reaper reports it; died() ends the run
    }
  }
}

steady::time_point Contexts::next_timer() const {
  auto t = steady::time_point::max();
  for (const auto& [name, c] : contexts_)
    if (c->alive && c->job)
      t = std::min(t, c->stage == 0 ? c->deadline : c->next);
  return t;
}

void Contexts::interrupt(Context& c, int sig) {
  if (c.started)
    kill(-c.pid, sig); // the process group: the run's children (a subprocess it waits for) too
  else
    c.held = sig;
}

void Contexts::stop(uint64_t job) {
  for (auto& [name, c] : contexts_)
    if (c->alive && c->job == job && c->stage == 0)
      c->deadline = steady::now(); // the next tick starts the timeout's steps
}

void Contexts::signalled(uint64_t job, int sig) {
  for (auto& [name, c] : contexts_)
    if (c->alive && c->job == job)
      interrupt(*c, sig);
}

} // namespace warmpool::agent
