// Named persistent shells (shell_* ops). One shell process per name keeps its state (cwd,
// exports, functions, aliases, options) between commands; each command is a job of
// agent/live_jobs.hpp whose output is the shell's stdout/stderr while it runs.
//
// Mechanism: the shell is interactive (SIGINT aborts the running command and the shell
// survives) without job control (+m: commands stay in the shell's process group, `&` jobs
// ignore SIGINT) and without prompts. Its stdin is a pipe from the agent; each command is one
// line `\command eval '<command, single-quoted>' </dev/null 3>&-; \printf 'D <seq> %s\n' "$?" >&3`,
// so any text (several lines, heredocs) arrives as one unit, reads EOF from stdin, and its
// status comes back on fd 3, never in its output. After an interrupt the rest of that line is
// dropped by the shell, so the agent sends `\printf 'S <seq>\n' >&3` to learn it is ready.
// The line starts with `\printf 'R <seq>\n' >&3`: signals wait for it, because an interrupt
// while the shell still reads the line would leave it parsing half a line.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>

#include "agent/live_jobs.hpp"
#include "agent/pipe_roster.hpp"

namespace warmpool::agent {

class Shells : public LoopPart {
public:
  Shells(LiveJobs& jobs, std::function<void()> become_tenant)
      : jobs_(jobs), become_tenant_(std::move(become_tenant)) {}

  /// The program every shell runs instead of the sandbox's bash or /bin/sh (--shell; tests
  /// run the same commands through bash, dash and busybox ash).
  void set_program(std::string path) { forced_path_ = std::move(path); }
  /// shell_open with the (already resolved) environment and working directory.
  json open(const json& msg, const std::map<std::string, std::string>& env, const std::string& cwd);
  json run(const json& msg);
  json close(const json& msg);
  json list() const;
  /// reset: kills every shell and forgets them.
  void clear();

  void add_fds(std::vector<pollfd>& fds) override;
  void on_events(const pollfd* fds, size_t n) override;
  void on_tick(steady::time_point now) override;
  steady::time_point next_timer() const override;
  void signalled(uint64_t job, int sig) override;
  void stop(uint64_t job) override;

private:
  struct Shell {
    std::string name, program;
    pid_t pid = -1;
    Fd in, out, err, status;
    std::string in_queue;   // lines the shell did not read yet
    std::string status_buf; // a partial line from fd 3
    bool alive = true, ready = false;
    uint64_t seq = 0;              // of the last command sent
    uint64_t job = 0;              // the running command's job, 0: idle
    int stage = 0;                 // of a timeout: 1 SIGINT sent, 2 its children killed
    uint64_t err_at_interrupt = 0; // the job's stderr end when SIGINT was sent
    int signalled = 0;             // proc_signal sent this to the running command
    bool started = false;          // the shell read the command's whole line ("R")
    int pending = 0;               // a signal held until then (a partly read line would
                                   // leave the shell inside an open quote)
    // The shell answered an interrupt by dropping the command's line. It may still wait for
    // a process of the command that the signal missed (bash forking as SIGINT lands), so the
    // job ends only when it answers a line sent after that ("I"): then it reads input again.
    bool dropped = false;
    int dropped_exit = 0;
    steady::time_point deadline = steady::time_point::max(), next = steady::time_point::max();
    steady::time_point resync = steady::time_point::max(); // next sync line while interrupted
    // proc_signal's signal once more, to the command's processes only: one that was forking
    // when the first came may have missed it.
    steady::time_point resignal = steady::time_point::max();
    steady::time_point reinterrupt = steady::time_point::max(); // the timeout's next SIGINT
    std::string exe; // the shell's program, as /proc/PID/exe names it
    // Processes proc_signal's signal reached while they were still copies of the shell
    // (forked, not exec'd): the shell's handler took it there, and the program they exec
    // never sees it. Each one that execs gets it again.
    std::set<pid_t> forking;
    steady::time_point recheck = steady::time_point::max();
  };
  Shell& get(const json& msg);
  void send(Shell& sh, const std::string& line);
  /// The line the shell answers once it reads input again: "S" until it dropped the
  /// interrupted command's line, "I" after.
  static std::string sync_line(const Shell& sh);
  void flush(Shell& sh);
  void feed(Shell& sh, int stream); // its stdout/stderr into the running job (or nowhere)
  void on_status(Shell& sh);
  void end_command(Shell& sh, int exit_code, int signal, bool timed_out);
  void died(Shell& sh, int status);
  void kill_shell(Shell& sh);
  /// Now if started, else once started. The timeout's SIGINT goes to the process group;
  /// proc_signal's to the command's processes (or the shell running a builtin): a bash child
  /// hit between fork and exec can otherwise take over reading the shell's input.
  void interrupt(Shell& sh, int sig);

  LiveJobs& jobs_;
  std::function<void()> become_tenant_;
  std::string forced_path_;
  std::map<std::string, std::unique_ptr<Shell>> shells_;
  PipeRoster<Shell> polled_; // owner and role of each pollfd add_fds appended
};

} // namespace warmpool::agent
