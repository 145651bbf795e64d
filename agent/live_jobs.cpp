#include "agent/live_jobs.hpp"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

extern char** environ;

namespace warmpool::agent {

namespace {

// Jobs kept at once. Ended ones are evicted (ephemeral first) to make room; only when every
// kept job still runs is a new one refused.
constexpr size_t kMaxJobs = 256;
// Tail retention trims the front in steps of this much, so appending stays amortised O(1)
// while a stream never holds more than limit + this.
constexpr size_t kTrimSlack = 64 << 10;
// After the leader exited, what is still in its pipes is read at once, up to this much (a
// grandchild holding the pipe may write forever).
constexpr size_t kDrainAfterExit = 4 << 20;

char g_chunk[65536];

std::string id_of(uint64_t num) { return "p" + std::to_string(num); }

void set_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

void kill_group(pid_t pid, int sig) {
  if (pid <= 0)
    return;
  if (kill(-pid, sig) != 0)
    kill(pid, sig); // not a group leader (yet)
}

} // namespace

// ---------------------------------------------------------------- OutputStream

void OutputStream::append(const char* p, size_t n) {
  if (head_) {
    size_t room = buf_.size() < limit_ ? size_t(limit_ - buf_.size()) : 0;
    buf_.append(p, std::min(room, n));
    if (n > room)
      truncated_ = true;
    return;
  }
  buf_.append(p, n);
  if (buf_.size() > limit_ + kTrimSlack) {
    size_t drop = buf_.size() - limit_;
    buf_.erase(0, drop);
    start_ += drop;
    truncated_ = true;
  }
}

std::string OutputStream::read(uint64_t& from, uint64_t max) const {
  // What is beyond limit_ in the tail's slack is still returned: it was produced, it is here.
  from = std::clamp(from, begin(), end());
  size_t pos = size_t(from - start_);
  return buf_.substr(pos, size_t(std::min<uint64_t>(max, buf_.size() - pos)));
}

void OutputStream::drop_suffix(std::string_view suffix, uint64_t since) {
  if (buf_.size() >= suffix.size() && end() - suffix.size() >= since &&
      std::string_view(buf_).substr(buf_.size() - suffix.size()) == suffix)
    buf_.resize(buf_.size() - suffix.size());
}

// ---------------------------------------------------------------- table

bool read_available(int fd, const std::function<void(const char*, size_t)>& sink, size_t budget) {
  while (budget > 0) {
    ssize_t got = read(fd, g_chunk, std::min(sizeof g_chunk, budget));
    if (got > 0) {
      sink(g_chunk, size_t(got));
      budget -= size_t(got);
      continue;
    }
    if (got < 0 && errno == EINTR)
      continue;
    return got < 0 && errno == EAGAIN; // EIO on a terminal's master: its last holder closed it
  }
  return true;
}

uint64_t LiveJobs::make_room() {
  if (jobs_.size() >= kMaxJobs) {
    auto victim = jobs_.end();
    for (auto it = jobs_.begin(); it != jobs_.end(); ++it)
      if (!it->second->running &&
          (victim == jobs_.end() || (it->second->ephemeral && !victim->second->ephemeral)))
        victim = it;
    if (victim == jobs_.end())
      throw OpError("too_large",
                    "too many running jobs (at most " + std::to_string(kMaxJobs) + ")");
    jobs_.erase(victim);
  }
  return next_++;
}

JobSpawn job_spawn(const ExecRequest& ex, const std::vector<std::string>& python) {
  JobSpawn spawn;
  if (!ex.language.empty()) {
    spawn.argv = python;
    spawn.argv.insert(spawn.argv.end(), {"-c", ex.code});
    spawn.command = ex.language;
  } else if (!ex.argv.empty()) {
    spawn.argv = ex.argv;
    for (const auto& a : ex.argv)
      spawn.command += (spawn.command.empty() ? "" : " ") + a;
  } else {
    spawn.argv = {"/bin/sh", "-c", ex.shell};
    spawn.command = ex.shell;
  }
  return spawn;
}

Job& LiveJobs::start(const JobSpawn& spawn, const proto::ProcStartRequest& req) {
  if (spawn.argv.empty())
    throw proto::BadRequest("an empty command");
  uint64_t num = make_room();
  auto job = std::make_unique<Job>();
  job->num = num;
  job->id = id_of(num);
  job->command = spawn.command;
  job->tty = req.tty;
  job->listed = !req.ephemeral;
  job->ephemeral = req.ephemeral;
  uint64_t limit = std::min(req.exec.output_limit, proto::kMaxOutputPerStream);
  for (auto& s : job->streams)
    s.configure(limit, req.retain_head);

  // Everything the child needs is built before fork: it may only exec or _exit.
  std::map<std::string, std::string> env = spawn.env;
  if (req.tty && !env.count("TERM"))
    env["TERM"] = "xterm"; // what a terminal program looks for first
  auto envp = CStrings::environment(env);
  CStrings argv(spawn.argv);
  std::string cwd = spawn.cwd;

  Fd in_r, out_w, err_w;
  std::string slave;
  if (req.tty) {
    job->out.fd = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (job->out.fd < 0 || grantpt(job->out.fd) != 0 || unlockpt(job->out.fd) != 0)
      throw OpError("internal", std::string("pseudo-terminal: ") + strerror(errno));
    char name[128];
    if (ptsname_r(job->out.fd, name, sizeof name) != 0)
      throw OpError("internal", std::string("ptsname: ") + strerror(errno));
    slave = name;
    winsize ws{};
    ws.ws_col = req.cols;
    ws.ws_row = req.rows;
    ioctl(job->out.fd, TIOCSWINSZ, &ws);
    job->in.fd = fcntl(job->out.fd, F_DUPFD_CLOEXEC, 3);
  } else {
    make_pipe(in_r, job->in);
    make_pipe(job->out, out_w);
    make_pipe(job->err, err_w);
  }
  const char* slave_path = slave.c_str();
  int in_fd = in_r.fd, out_fd = out_w.fd, err_fd = err_w.fd;
  auto become = become_tenant_;
  job->started = steady::now();
  job->pid = fork_job([&] {
    if (*slave_path) {
      // The first terminal a session leader opens becomes its controlling terminal;
      // TIOCSCTTY makes it explicit. Opened before becoming the tenant (it is root's).
      int t = open(slave_path, O_RDWR);
      if (t < 0 || ioctl(t, TIOCSCTTY, 0) != 0)
        child_fail("controlling terminal", 126);
      in_fd = out_fd = err_fd = t;
    }
    if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0)
      _exit(126);
    close_from(3);
    become();
    if (chdir(cwd.c_str()) != 0)
      child_fail(("chdir " + cwd).c_str(), 126);
    environ = envp.data(); // execvp searches the PATH of the new environment
    execvp(argv.data()[0], argv.data());
    child_fail(("cannot execute " + spawn.argv[0]).c_str(), errno == ENOENT ? 127 : 126);
  });
  for (Fd* f : {&job->in, &job->out, &job->err})
    if (f->fd >= 0)
      set_nonblock(f->fd);
  if (req.timeout_ms)
    job->deadline = job->started + std::chrono::milliseconds(req.timeout_ms);
  job->in_queue = req.exec.stdin_data;
  if (!req.keep_stdin) {
    job->stdin_closed = true;
    if (req.tty)
      job->in_queue += '\x04'; // end of file for the terminal's reader; the terminal stays
    else
      job->close_when_drained = true;
  }
  flush_stdin(*job);
  Job& ref = *job;
  jobs_[num] = std::move(job);
  return ref;
}

Job& LiveJobs::add_shell_command(pid_t shell_pid, const std::string& command, uint64_t limit) {
  uint64_t num = make_room();
  auto job = std::make_unique<Job>();
  job->num = num;
  job->id = id_of(num);
  job->command = command;
  job->pid = shell_pid;
  job->ephemeral = true;
  job->shell_command = true;
  job->stdin_closed = true; // its stdin is /dev/null
  for (auto& s : job->streams)
    s.configure(std::min(limit, proto::kMaxOutputPerStream), true);
  job->started = steady::now();
  Job& ref = *job;
  jobs_[num] = std::move(job);
  return ref;
}

Job* LiveJobs::find(uint64_t num) {
  auto it = jobs_.find(num);
  return it == jobs_.end() ? nullptr : it->second.get();
}

Job& LiveJobs::get(const json& msg) {
  std::string id = proto::req_string(msg, "process");
  uint64_t num = 0;
  if (id.size() > 1 && id.size() < 20 && id[0] == 'p' &&
      std::all_of(id.begin() + 1, id.end(), [](char c) { return c >= '0' && c <= '9'; }))
    num = std::stoull(id.substr(1));
  Job* job = find(num);
  if (!job)
    throw OpError("not_found", "no process '" + id + "'");
  return *job;
}

void LiveJobs::finish(Job& job, int exit_code, int signal, bool timed_out) {
  if (!job.running)
    return;
  job.running = false;
  job.exit_code = exit_code;
  job.signal = signal;
  job.timed_out = job.timed_out || timed_out;
  job.ended = steady::now();
  job.in.reset();
  job.out.reset();
  job.err.reset();
  job.in_queue.clear();
}

void LiveJobs::forget(uint64_t num) {
  Job* job = find(num);
  if (!job)
    return;
  if (job->running && !job->shell_command) {
    kill_group(job->pid, SIGKILL);
    job_release(job->pid);
  } else if (job->running) {
    // Its shell stays: the command is stopped as a timeout would stop it, and the job is
    // dropped once it ended (an ended ephemeral job goes first when the table is full).
    job->ephemeral = true;
    for (LoopPart* part : parts_)
      part->stop(num);
    return;
  }
  jobs_.erase(num);
}

void LiveJobs::clear() {
  for (auto& [num, job] : jobs_)
    if (job->running && !job->shell_command) {
      kill_group(job->pid, SIGKILL);
      job_release(job->pid);
    }
  jobs_.clear();
}

// ---------------------------------------------------------------- the loop

void LiveJobs::drain(Job& job, int s) {
  Fd& fd = s == 0 ? job.out : job.err;
  if (fd.fd < 0)
    return;
  OutputStream& os = job.streams[s];
  if (!read_available(
        fd.fd, [&](const char* p, size_t n) { os.append(p, n); }, kDrainAfterExit))
    fd.reset();
}

void LiveJobs::flush_stdin(Job& job) {
  while (job.in.fd >= 0 && !job.in_queue.empty()) {
    ssize_t put = write(job.in.fd, job.in_queue.data(), job.in_queue.size());
    if (put > 0) {
      job.in_queue.erase(0, size_t(put));
      continue;
    }
    if (put < 0 && errno == EINTR)
      continue;
    if (put < 0 && errno == EAGAIN)
      return;
    job.in_queue.clear(); // EPIPE: nobody reads its stdin any more
    job.in.reset();
    job.stdin_closed = true;
  }
  if (job.in_queue.empty() && job.close_when_drained)
    job.in.reset();
}

void LiveJobs::reap() {
  auto now = steady::now();
  for (auto& [num, job] : jobs_) {
    if (!job->running || job->shell_command)
      continue;
    int st = 0;
    if (job_exited(job->pid, st)) {
      // It wrote everything before it exited: take what is in the pipes now.
      drain(*job, 0);
      drain(*job, 1);
      if (WIFEXITED(st))
        finish(*job, WEXITSTATUS(st), 0, false);
      else
        finish(*job, -1, WIFSIGNALED(st) ? WTERMSIG(st) : SIGKILL, false);
    } else if (now >= job->deadline && !job->timed_out) {
      job->timed_out = true;
      kill_group(job->pid, SIGKILL);
    }
  }
}

void LiveJobs::pump(int conn_fd, steady::time_point deadline, const std::function<bool()>& done) {
  std::vector<pollfd> fds;
  std::vector<std::pair<uint64_t, int>> owners; // job number, 0 stdout / 1 stderr / 2 stdin
  std::vector<size_t> part_begin;
  for (;;) {
    reap();
    auto now = steady::now();
    for (LoopPart* part : parts_)
      part->on_tick(now);
    if (done && done())
      return;
    if (now >= deadline)
      return;
    auto until = deadline;
    for (LoopPart* part : parts_)
      until = std::min(until, part->next_timer());
    fds.clear();
    owners.clear();
    fds.push_back({reaper_wake_fd(), POLLIN, 0});
    if (conn_fd >= 0)
      fds.push_back({conn_fd, POLLIN, 0});
    size_t first_job = fds.size();
    for (auto& [num, job] : jobs_) {
      if (job->running)
        until = std::min(until, job->timed_out ? deadline : job->deadline);
      if (job->out.fd >= 0) {
        fds.push_back({job->out.fd, POLLIN, 0});
        owners.push_back({num, 0});
      }
      if (job->err.fd >= 0) {
        fds.push_back({job->err.fd, POLLIN, 0});
        owners.push_back({num, 1});
      }
      if (job->in.fd >= 0 && !job->in_queue.empty()) {
        fds.push_back({job->in.fd, POLLOUT, 0});
        owners.push_back({num, 2});
      }
    }
    // Each part's pollfds, in order: part i owns [part_begin[i], part_begin[i + 1]).
    size_t first_part = fds.size();
    part_begin.clear();
    for (LoopPart* part : parts_) {
      part_begin.push_back(fds.size());
      part->add_fds(fds);
    }
    part_begin.push_back(fds.size());
    now = steady::now();
    int ms =
      until <= now
        ? 0
        : int(std::min<int64_t>(INT32_MAX,
                                std::chrono::ceil<std::chrono::milliseconds>(until - now).count()));
    int r = poll(fds.data(), nfds_t(fds.size()), ms);
    if (r < 0)
      continue; // EINTR (SIGCHLD): everything is re-checked
    if (fds[0].revents)
      drain_wake();
    for (size_t i = first_job; i < first_part; ++i) {
      if (!fds[i].revents)
        continue;
      auto [num, what] = owners[i - first_job];
      Job* job = find(num);
      if (!job)
        continue;
      if (what == 2)
        flush_stdin(*job);
      else
        drain(*job, what);
    }
    for (size_t i = 0; i < parts_.size(); ++i)
      parts_[i]->on_events(fds.data() + part_begin[i], part_begin[i + 1] - part_begin[i]);
    if (conn_fd >= 0 && fds[1].revents)
      return;
  }
}

// ---------------------------------------------------------------- ops

json LiveJobs::output(uint64_t num, const proto::ProcOutputRequest& req) {
  Job& job = *find(num);
  json out;
  out["process"] = job.id;
  uint64_t from[2] = {req.offset, req.stderr_offset};
  const char* data_key[2] = {"stdout", "stderr"};
  const char* end_key[2] = {"offset", "stderr_offset"};
  const char* start_key[2] = {"offset_start", "stderr_offset_start"};
  bool all_read = true;
  for (int s = 0; s < 2; ++s) {
    std::string data = job.streams[s].read(from[s], req.max_bytes);
    out[data_key[s]] = proto::base64_encode(data);
    out[start_key[s]] = from[s];
    out[end_key[s]] = from[s] + data.size();
    all_read = all_read && from[s] + data.size() == job.streams[s].end();
  }
  out["running"] = job.running;
  if (!job.running) {
    out["exit_code"] = job.exit_code;
    out["signal"] = job.signal;
    out["timed_out"] = job.timed_out;
    out["truncated"] = job.streams[0].truncated() || job.streams[1].truncated();
    out["duration_us"] =
      std::chrono::duration_cast<std::chrono::microseconds>(job.ended - job.started).count();
    for (const auto& [k, v] : job.extra.items())
      out[k] = v;
    if (job.ephemeral && all_read)
      jobs_.erase(num);
  }
  return out;
}

void LiveJobs::wait_output(uint64_t num, const proto::ProcOutputRequest& req) {
  await_output(steady::now() + std::chrono::milliseconds(req.wait_ms), [&] {
    Job* job = find(num);
    return !job || !job->running || job->streams[0].end() > req.offset ||
           job->streams[1].end() > req.stderr_offset;
  });
}

json LiveJobs::op_output(const json& msg) {
  auto req = proto::proc_output_from_json(msg);
  uint64_t num = get(msg).num;
  wait_output(num, req);
  if (!find(num))
    throw OpError("not_found", "process '" + req.process + "' was forgotten");
  return output(num, req);
}

json LiveJobs::op_stdin(const json& msg) {
  bool too_large = false;
  auto req = proto::proc_stdin_from_json(msg, too_large);
  Job& job = get(msg);
  if (job.shell_command)
    throw OpError("conflict", "a shell command's stdin is /dev/null");
  if (!job.running)
    throw OpError("conflict", "process '" + job.id + "' already exited");
  if (job.stdin_closed)
    throw OpError("conflict", "the stdin of process '" + job.id + "' is closed");
  if (too_large || job.in_queue.size() + req.data.size() > proto::kMaxStdinWrite)
    throw OpError("too_large", "at most " + std::to_string(proto::kMaxStdinWrite) +
                                 " bytes of stdin may be queued for a process");
  job.in_queue += req.data;
  if (req.close) {
    job.stdin_closed = true;
    if (job.tty)
      job.in_queue += '\x04';
    else
      job.close_when_drained = true;
  }
  flush_stdin(job);
  return json{{"bytes", req.data.size()}};
}

json LiveJobs::op_signal(const json& msg) {
  int sig = proto::signal_from_json(msg);
  Job& job = get(msg);
  if (job.running && job.shell_command)
    for (LoopPart* part : parts_)
      part->signalled(job.num, sig);
  else if (job.running)
    kill_group(job.pid, sig);
  return json::object();
}

json LiveJobs::op_resize(const json& msg) {
  uint16_t cols = 0, rows = 0;
  proto::window_from_json(msg, true, cols, rows);
  Job& job = get(msg);
  if (!job.tty)
    throw OpError("conflict", "process '" + job.id + "' has no terminal");
  winsize ws{};
  ws.ws_col = cols;
  ws.ws_row = rows;
  if (job.out.fd >= 0)
    ioctl(job.out.fd, TIOCSWINSZ, &ws); // the kernel sends SIGWINCH to its foreground
  return json::object();
}

json LiveJobs::op_list() const {
  json list = json::array();
  for (const auto& [num, job] : jobs_) {
    if (!job->listed)
      continue;
    list.push_back({{"id", job->id},
                    {"command", job->command},
                    {"running", job->running},
                    {"exit_code", job->exit_code},
                    {"signal", job->signal},
                    {"tty", job->tty},
                    {"pid", job->pid}});
  }
  return json{{"processes", list}};
}

json LiveJobs::op_forget(const json& msg) {
  forget(get(msg).num);
  return json::object();
}

} // namespace warmpool::agent
