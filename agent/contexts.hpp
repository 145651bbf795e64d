// Stateful Python code contexts (ctx_* ops): one long-lived Python process per named context
// runs the driver agent/python_context.py; runs in it share globals. Each run is a job of
// agent/live_jobs.hpp (output by offset, like a shell command) whose final answer carries
// the value of the last expression ("result", its repr) and a structured "error".
//
// Mechanism: the driver reads `<length>\n<code>` on fd 3 and answers one JSON line per run on
// fd 4, after flushing stdout/stderr, so the run's output is in its pipes when the agent
// reads the status. Signals wait for the driver's "started" line: before it, the driver
// could not tell an interrupt of this run from a late one of the last. A timeout sends SIGINT (KeyboardInterrupt inside the run: the context
// survives, the run reports error KeyboardInterrupt and timed_out), then SIGKILL to the
// context's process group after kGrace: the context is gone (shell_exited on the next run)
// and may be opened again under the same name.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "agent/live_jobs.hpp"
#include "agent/pipe_roster.hpp"

namespace warmpool::agent {

class Contexts : public LoopPart {
public:
  /// `python` gives the interpreter's argv and the modules to import first (the pool's
  /// interpreters.python, else python3 and none), read at each open.
  Contexts(LiveJobs& jobs, std::function<void()> become_tenant,
           std::function<std::pair<std::vector<std::string>, std::vector<std::string>>()> python)
      : jobs_(jobs), become_tenant_(std::move(become_tenant)), python_(std::move(python)) {}

  /// ctx_open with the (already resolved) environment and working directory.
  json open(const json& msg, const std::map<std::string, std::string>& env, const std::string& cwd);
  json run(const json& msg);
  json close(const json& msg);
  /// ctx_list: {"contexts": [{"context", "pid", "running", "busy"}]}, by name.
  json list() const;
  /// reset: kills every context and forgets them.
  void clear();

  void add_fds(std::vector<pollfd>& fds) override;
  void on_events(const pollfd* fds, size_t n) override;
  void on_tick(steady::time_point now) override;
  steady::time_point next_timer() const override;
  void signalled(uint64_t job, int sig) override;
  void stop(uint64_t job) override;

private:
  struct Context {
    std::string name;
    pid_t pid = -1;
    Fd ctl, out, err, status;
    std::string ctl_queue;  // request bytes the driver did not read yet
    std::string status_buf; // a partial line from fd 4
    std::string startup;    // what it printed before it was ready (why it did not start)
    bool alive = true, ready = false;
    uint64_t seq = 0; // of the last run sent
    uint64_t job = 0; // the running run's job, 0: idle
    int stage = 0;    // of a timeout: 1 SIGINT sent (or held)
    bool started = false; // the driver reported the run began: a signal may go now
    int held = 0;         // a signal for the run held until then
    steady::time_point deadline = steady::time_point::max(), next = steady::time_point::max();
  };
  Context& get(const json& msg);
  void flush(Context& c);
  void feed(Context& c, int stream);
  void on_status(Context& c);
  void end_run(Context& c, const json& result, const json& error, int exit_code, int signal);
  void died(Context& c, int status);
  /// Kills its process; a run still going ends with ContextExited and `why` (by default:
  /// it did not stop at the timeout's SIGINT).
  void kill_context(Context& c, const std::string& why = "");
  /// Now if the run started, else once it does.
  void interrupt(Context& c, int sig);

  LiveJobs& jobs_;
  std::function<void()> become_tenant_;
  std::function<std::pair<std::vector<std::string>, std::vector<std::string>>()> python_;
  std::map<std::string, std::unique_ptr<Context>> contexts_;
  PipeRoster<Context> polled_; // owner and role of each pollfd add_fds appended
};

} // namespace warmpool::agent
