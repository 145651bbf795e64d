#include "agent/shells.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>

#include "agent/sandbox_processes.hpp"

extern char** environ;

namespace warmpool::agent {

namespace {

// A shell prints its banner and job-control complaints before it reads its first line; it
// must have answered the start-up line by then, or it is not a usable shell.
constexpr auto kStartTimeout = std::chrono::seconds(10);
// Between the steps of a timeout: SIGINT, then SIGKILL to the command's processes, then
// SIGKILL to the shell.
constexpr auto kGrace = std::chrono::seconds(1);
// An interrupt that lands while the shell is still reading makes dash/ash discard the input
// they had buffered, a sync line included: it is sent again this often until answered.
constexpr auto kResync = std::chrono::milliseconds(100);
constexpr auto kResignal = std::chrono::milliseconds(500);
// A timeout's SIGINT is repeated this often until the shell answers or is killed. bash can
// lose one: landing as it begins the command's line, or as a child of a loop exits normally
// (bash then takes the child for one that handled SIGINT). Measured on
// `while :; do sleep 0.1; done`: the loop went on in 13 of 20 tries without a repeat.
constexpr auto kReinterrupt = std::chrono::milliseconds(100);
// How often a process that was still a copy of the shell when signalled is looked at again.
constexpr auto kRecheck = std::chrono::milliseconds(5);
// Most read from one of a shell's pipes per wake-up.
constexpr size_t kFeedBudget = 1 << 20;

std::string single_quoted(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'')
      q += "'\\''";
    else
      q += c;
  }
  return q + "'";
}

// Every process below `root` (the shell's children and theirs): what a command started.
std::set<pid_t> descendants(pid_t root) {
  std::map<pid_t, std::vector<pid_t>> kids;
  for (const auto& [pid, ppid] : process_parents())
    kids[ppid].push_back(pid);
  std::set<pid_t> found;
  std::vector<pid_t> todo = {root};
  while (!todo.empty() && found.size() < 100000) {
    pid_t p = todo.back();
    todo.pop_back();
    for (pid_t k : kids[p])
      if (found.insert(k).second)
        todo.push_back(k);
  }
  return found;
}

// What /proc/PID/exe names; empty when it is gone or cannot be read.
std::string exe_of(pid_t pid) {
  char buf[PATH_MAX];
  ssize_t n = readlink(("/proc/" + std::to_string(pid) + "/exe").c_str(), buf, sizeof buf);
  return n > 0 ? std::string(buf, size_t(n)) : std::string();
}

void set_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

} // namespace

Shells::Shell& Shells::get(const json& msg) {
  std::string name = proto::shell_name_from_json(msg);
  auto it = shells_.find(name);
  if (it == shells_.end())
    throw OpError("not_found", "no shell '" + name + "'");
  return *it->second;
}

json Shells::open(const json& msg, const std::map<std::string, std::string>& env_in,
                  const std::string& cwd) {
  std::string name = proto::shell_name_from_json(msg);
  auto it = shells_.find(name);
  if (it != shells_.end()) {
    if (it->second->alive)
      throw OpError("conflict", "shell '" + name + "' is already open");
    shells_.erase(it); // exited: the name is free again
  }
  auto sh = std::make_unique<Shell>();
  sh->name = name;
  const char* path = "/bin/sh";
  for (const char* bash : {"/bin/bash", "/usr/bin/bash"})
    if (access(bash, X_OK) == 0) {
      path = bash;
      break;
    }
  if (!forced_path_.empty())
    path = forced_path_.c_str();
  char real[PATH_MAX];
  sh->exe = realpath(path, real) ? real : path;
  // argv[0] "sh" also makes a busybox binary its ash.
  sh->program = strstr(path, "bash") ? "bash" : "sh";
  std::vector<std::string> args = {sh->program};
  if (sh->program == "bash")
    args.insert(args.end(), {"--norc", "--noprofile", "--noediting"});
  args.insert(args.end(), {"+m", "-i"});
  std::map<std::string, std::string> env = env_in;
  env["PS1"] = env["PS2"] = ""; // prompts would land in stderr
  env.erase("ENV");             // an interactive sh would source it
  auto envp = CStrings::environment(env);
  CStrings argv(std::move(args));

  Fd in_r, out_w, err_w, st_w;
  make_pipe(in_r, sh->in);
  make_pipe(sh->out, out_w);
  make_pipe(sh->err, err_w);
  make_pipe(sh->status, st_w);
  int fds[4] = {in_r.fd, out_w.fd, err_w.fd, st_w.fd};
  auto become = become_tenant_;
  sh->pid = fork_job([&] {
    // Moved above 3 first so that dup2 onto 0..3 cannot clobber one still needed.
    int hi[4];
    for (int i = 0; i < 4; ++i)
      if ((hi[i] = fcntl(fds[i], F_DUPFD, 10)) < 0)
        _exit(126);
    for (int i = 0; i < 4; ++i)
      if (dup2(hi[i], i) < 0)
        _exit(126);
    close_from(4);
    become();
    if (chdir(cwd.c_str()) != 0)
      child_fail(("chdir " + cwd).c_str(), 126);
    environ = envp.data();
    execv(path, argv.data());
    child_fail(path, 127);
  });
  for (Fd* f : {&sh->in, &sh->out, &sh->err, &sh->status})
    set_nonblock(f->fd);
  if (sh->program == "bash")
    send(*sh, "set +H\n"); // no history expansion of `!`
  send(*sh, "unset HISTFILE PROMPT_COMMAND\n");
  send(*sh, "\\printf 'S 0\\n' >&3\n");
  Shell* s = sh.get();
  shells_[name] = std::move(sh);
  jobs_.pump(-1, steady::now() + kStartTimeout, [&] { return s->ready || !s->alive; });
  if (!s->ready) {
    kill_shell(*s);
    shells_.erase(name);
    throw OpError("shell_exited", "the shell " + std::string(path) + " did not start");
  }
  return json{{"shell", name}, {"pid", s->pid}, {"program", s->program}};
}

json Shells::run(const json& msg) {
  auto req = proto::shell_run_from_json(msg);
  Shell& sh = get(msg);
  if (!sh.alive)
    throw OpError("shell_exited", "shell '" + sh.name + "' exited; open it again");
  if (sh.job && jobs_.find(sh.job) && jobs_.find(sh.job)->running)
    throw OpError("conflict", "shell '" + sh.name + "' is still running a command");
  Job& job = jobs_.add_shell_command(sh.pid, req.command, req.output_limit);
  uint64_t num = job.num;
  sh.job = num;
  sh.stage = 0;
  sh.seq++;
  sh.deadline = steady::now() + std::chrono::milliseconds(req.timeout_ms);
  sh.next = steady::time_point::max();
  // `command` keeps a failing special builtin or a syntax error from aborting the line (dash
  // and ash would drop the status report and the input they had read).
  std::string seq = std::to_string(sh.seq);
  send(sh, "\\printf 'R " + seq + "\\n' >&3; \\command eval " + single_quoted(req.command) +
             " </dev/null 3>&-; \\printf 'D " + seq + " %s\\n' \"$?\" >&3\n");
  jobs_.await_output(steady::now() + std::chrono::milliseconds(req.output.wait_ms), [&] {
    Job* j = jobs_.find(num);
    return !j || !j->running;
  });
  if (!jobs_.find(num))
    throw OpError("not_found", "the command's job was forgotten");
  return jobs_.output(num, req.output);
}

json Shells::close(const json& msg) {
  Shell& sh = get(msg);
  kill_shell(sh);
  std::string name = sh.name;
  shells_.erase(name);
  return json::object();
}

json Shells::list() const {
  json list = json::array();
  for (const auto& [name, sh] : shells_) {
    Job* job = sh->job ? jobs_.find(sh->job) : nullptr;
    list.push_back({{"shell", name},
                    {"pid", sh->pid},
                    {"program", sh->program},
                    {"running", sh->alive},
                    {"busy", job && job->running}});
  }
  return json{{"shells", list}};
}

void Shells::clear() {
  for (auto& [name, sh] : shells_)
    kill_shell(*sh);
  shells_.clear();
}

void Shells::kill_shell(Shell& sh) {
  if (sh.alive) {
    kill(-sh.pid, SIGKILL);
    kill(sh.pid, SIGKILL);
    job_release(sh.pid);
    sh.alive = false;
  }
  if (Job* job = sh.job ? jobs_.find(sh.job) : nullptr)
    jobs_.finish(*job, -1, SIGKILL, false);
  sh.job = 0;
  for (Fd* f : {&sh.in, &sh.out, &sh.err, &sh.status})
    f->reset();
}

// ---------------------------------------------------------------- shell I/O

void Shells::send(Shell& sh, const std::string& line) {
  sh.in_queue += line;
  flush(sh);
}

std::string Shells::sync_line(const Shell& sh) {
  return std::string("\\printf '") + (sh.dropped ? 'I' : 'S') + " " + std::to_string(sh.seq) +
         "\\n' >&3\n";
}

void Shells::flush(Shell& sh) {
  while (sh.in.fd >= 0 && !sh.in_queue.empty()) {
    ssize_t put = write(sh.in.fd, sh.in_queue.data(), sh.in_queue.size());
    if (put > 0) {
      sh.in_queue.erase(0, size_t(put));
    } else if (put < 0 && errno == EINTR) {
      continue;
    } else {
      if (put < 0 && errno != EAGAIN) { // EPIPE: it is dying; the reaper will tell
        sh.in_queue.clear();
        sh.in.reset();
      }
      return;
    }
  }
}

void Shells::feed(Shell& sh, int stream) {
  Fd& fd = stream == 0 ? sh.out : sh.err;
  if (fd.fd < 0)
    return;
  Job* job = sh.job ? jobs_.find(sh.job) : nullptr;
  if (job && !job->running)
    job = nullptr;
  // With no command running (start-up banner, a background job's late lines) it goes nowhere.
  // Bounded: a background `yes` would otherwise keep the pipe from ever being empty.
  if (!read_available(
        fd.fd,
        [&](const char* p, size_t n) {
          if (job)
            job->streams[stream].append(p, n);
        },
        kFeedBudget))
    fd.reset();
}

void Shells::end_command(Shell& sh, int exit_code, int signal, bool timed_out) {
  feed(sh, 0); // the command wrote all it printed before the shell reported
  feed(sh, 1);
  if (Job* job = sh.job ? jobs_.find(sh.job) : nullptr)
    jobs_.finish(*job, exit_code, signal, timed_out);
  sh.job = 0;
  sh.stage = 0;
  sh.signalled = sh.pending = 0;
  sh.started = sh.dropped = false;
  sh.deadline = sh.next = sh.resync = sh.resignal = sh.reinterrupt = steady::time_point::max();
  sh.forking.clear();
  sh.recheck = steady::time_point::max();
}

void Shells::interrupt(Shell& sh, int sig) {
  if (!sh.started) {
    sh.pending = sig;
    return;
  }
  if (Job* j = jobs_.find(sh.job))
    sh.err_at_interrupt = j->streams[1].end();
  if (sh.signalled) {
    std::set<pid_t> procs = descendants(sh.pid);
    if (procs.empty())
      kill(sh.pid, sig);
    for (pid_t p : procs) {
      kill(p, sig);
      if (exe_of(p) == sh.exe)
        sh.forking.insert(p);
    }
    if (!sh.forking.empty())
      sh.recheck = steady::now() + kRecheck;
  } else {
    kill(-sh.pid, sig); // the foreground: the command and the shell, which survives SIGINT
  }
  // A SIGINT makes the shell drop the rest of the command's line, status report included.
  send(sh, sync_line(sh));
  sh.resync = steady::now() + kResync;
}

void Shells::signalled(uint64_t job, int sig) {
  for (auto& [name, sh] : shells_)
    if (sh->alive && sh->job == job) {
      sh->signalled = sig;
      interrupt(*sh, sig);
      sh->resignal = steady::now() + kResignal;
    }
}

void Shells::stop(uint64_t job) {
  for (auto& [name, sh] : shells_)
    if (sh->alive && sh->job == job && sh->stage == 0)
      sh->deadline = steady::now(); // the next tick starts the timeout's steps
}

void Shells::on_status(Shell& sh) {
  if (sh.status.fd < 0)
    return;
  if (!read_available(
        sh.status.fd, [&](const char* p, size_t n) { sh.status_buf.append(p, n); }, 1 << 16))
    sh.status.reset(); // only the shell holds it: it is exiting
  size_t nl;
  while ((nl = sh.status_buf.find('\n')) != std::string::npos) {
    std::string line = sh.status_buf.substr(0, nl);
    sh.status_buf.erase(0, nl + 1);
    char kind = 0;
    unsigned long long seq = 0;
    int code = 0;
    int fields = sscanf(line.c_str(), "%c %llu %d", &kind, &seq, &code);
    if (kind == 'S' && fields >= 2 && seq == 0) {
      sh.ready = true;
    } else if (kind == 'R' && seq == sh.seq && sh.job && !sh.started) {
      sh.started = true;
      if (sh.pending)
        interrupt(sh, sh.pending);
    } else if (seq == sh.seq && sh.job) {
      if (kind == 'D' && fields == 3)
        end_command(sh, code, 0, sh.stage > 0);
      else if (kind == 'S' && (sh.stage > 0 || sh.signalled) && !sh.dropped) {
        // Interrupted: the shell dropped the status line, and printed a newline of its own.
        feed(sh, 1);
        if (Job* job = jobs_.find(sh.job))
          job->streams[1].drop_suffix("\n", sh.err_at_interrupt);
        sh.dropped = true;
        sh.dropped_exit = sh.stage > 0 ? 130 : 128 + sh.signalled;
        send(sh, sync_line(sh));
        sh.resync = steady::now() + kResync;
        if (sh.signalled) // no answer soon: a process of the command missed the signal
          sh.resignal = steady::now() + kResync;
      } else if (kind == 'I' && sh.dropped) {
        end_command(sh, sh.dropped_exit, 0, sh.stage > 0);
      }
    }
  }
}

void Shells::died(Shell& sh, int status) {
  sh.alive = false;
  on_status(sh);
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  feed(sh, 0);
  feed(sh, 1);
  Job* job = sh.job ? jobs_.find(sh.job) : nullptr;
  if (job && WIFEXITED(status) && sh.program == "bash")
    job->streams[1].drop_suffix("exit\n", 0); // interactive bash announces its `exit`
  if (sh.job)
    end_command(sh, sh.stage > 0 ? 130 : code, sh.stage > 0 ? 0 : sig, sh.stage > 0);
  for (Fd* f : {&sh.in, &sh.out, &sh.err, &sh.status})
    f->reset();
  sh.in_queue.clear();
}

// ---------------------------------------------------------------- LoopPart

void Shells::add_fds(std::vector<pollfd>& fds) {
  polled_.clear();
  for (auto& [name, sh] : shells_)
    if (sh->alive)
      polled_.add(sh.get(), fds, sh->out, sh->err, sh->status, sh->in, !sh->in_queue.empty());
}

void Shells::on_events(const pollfd* fds, size_t n) {
  polled_.dispatch(fds, n, [this](Shell& sh, PipeRole role) {
    if (!sh.alive)
      return;
    switch (role) {
      case PipeRole::out: feed(sh, 0); break;
      case PipeRole::err: feed(sh, 1); break;
      case PipeRole::status: on_status(sh); break;
      case PipeRole::control: flush(sh); break;
    }
  });
}

void Shells::on_tick(steady::time_point now) {
  for (auto& [name, shp] : shells_) {
    Shell& sh = *shp;
    if (!sh.alive)
      continue;
    int st = 0;
    if (job_exited(sh.pid, st)) {
      died(sh, st);
      continue;
    }
    if (!sh.job)
      continue;
    std::string sync = sync_line(sh);
    if (now >= sh.resignal) {
      if (sh.started)
        for (pid_t p : descendants(sh.pid))
          kill(p, sh.signalled);
      // Once started, one more is enough, unless the shell is waiting for a process of the
      // command after dropping its line: that one missed every signal so far.
      sh.resignal = sh.started && !sh.dropped ? steady::time_point::max() : now + kResignal;
    }
    if (now >= sh.recheck) {
      for (auto it = sh.forking.begin(); it != sh.forking.end();) {
        std::string exe = exe_of(*it);
        if (exe.empty() || exe != sh.exe) { // gone, or exec'd after the signal: it missed it
          if (!exe.empty())
            kill(*it, sh.signalled);
          it = sh.forking.erase(it);
        } else {
          ++it;
        }
      }
      sh.recheck = sh.forking.empty() ? steady::time_point::max() : now + kRecheck;
    }
    if (now >= sh.resync) {
      send(sh, sync);
      sh.resync = now + kResync;
    }
    if (sh.stage == 0 && now >= sh.deadline) {
      sh.stage = 1;
      sh.next = now + kGrace;
      sh.reinterrupt = now + kReinterrupt;
      interrupt(sh, SIGINT);
    } else if (sh.stage >= 1 && now >= sh.reinterrupt && now < sh.next) {
      sh.reinterrupt = now + kReinterrupt;
      if (sh.started)
        interrupt(sh, SIGINT);
    } else if (sh.stage == 1 && now >= sh.next) {
      for (pid_t p : descendants(sh.pid))
        kill(p, SIGKILL);
      send(sh, sync); // again: a shell may drop input it read before the interrupt
      sh.stage = 2;
      sh.next = now + kGrace;
    } else if (sh.stage == 2 && now >= sh.next) {
      // Still no answer: the shell itself runs the command (a builtin loop ignoring SIGINT).
      kill(-sh.pid, SIGKILL);
      kill(sh.pid, SIGKILL);
      sh.next = sh.reinterrupt = steady::time_point::max(); // the reaper reports it; died()
                                                             // ends the job
    }
  }
}

steady::time_point Shells::next_timer() const {
  auto t = steady::time_point::max();
  for (const auto& [name, sh] : shells_)
    if (sh->alive && sh->job)
      t = std::min({t, sh->stage == 0 ? sh->deadline : sh->next, sh->resync, sh->resignal,
                    sh->reinterrupt, sh->recheck});
  return t;
}

} // namespace warmpool::agent
