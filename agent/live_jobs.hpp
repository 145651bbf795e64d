// Live jobs: processes the host starts now and reads later (proc_* ops), and the commands of
// named shells (agent/shells.hpp). Each job keeps its stdout/stderr addressed by absolute
// byte offsets, so a host that lost an answer can read the same bytes again.
//
// The agent is single-threaded: LiveJobs::pump() is its event loop. It polls the host's
// connection, the reaper's self-pipe, every job's pipes (and whatever a LoopPart adds) and
// returns when a request arrives, a condition holds or a deadline passes. serve() pumps
// between requests, so a chatty job never blocks on a full pipe while the host is idle.
#pragma once

#include <poll.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "agent/children.hpp"
#include "agent/live_requests.hpp"

namespace warmpool::agent {

using steady = std::chrono::steady_clock;
using json = proto::json;

/// One output stream of a job. "tail" keeps the last `limit` bytes (older ones drop off the
/// front, the start offset moves); "head" keeps the first `limit` bytes and drops the rest.
class OutputStream {
public:
  void configure(uint64_t limit, bool head) {
    limit_ = limit;
    head_ = head;
  }
  void append(const char* p, size_t n);
  uint64_t begin() const { return start_; }
  uint64_t end() const { return start_ + buf_.size(); }
  /// Kept bytes from `from` (moved up to begin(), down to end()), at most `max` of them.
  std::string read(uint64_t& from, uint64_t max) const;
  bool truncated() const { return truncated_; }
  /// Takes back `suffix` when the stream ends with it and it starts at or after `since`
  /// (what a shell printed about itself, not the command).
  void drop_suffix(std::string_view suffix, uint64_t since);

private:
  std::string buf_;
  uint64_t start_ = 0, limit_ = 0;
  bool head_ = false, truncated_ = false;
};

struct Job {
  uint64_t num = 0;
  std::string id; // "p<num>"
  std::string command;
  pid_t pid = -1;             // the leader; for a shell command the shell
  bool tty = false;           // `out` is the terminal's master side (stdin too)
  bool listed = false;        // a background process (proc_list)
  bool ephemeral = false;     // forgotten once ended and read to the end
  bool shell_command = false; // fed by a shell or code context: no pid or fds of its own
  Fd in, out, err;
  std::string in_queue; // stdin bytes the pipe did not take yet
  bool close_when_drained = false;
  bool stdin_closed = false; // as the host sees it
  OutputStream streams[2];
  bool running = true;
  int exit_code = 0, signal = 0;
  bool timed_out = false;
  steady::time_point started, ended;
  steady::time_point deadline = steady::time_point::max();
  /// Fields added to the answer once it ended (a code context's result and error).
  json extra = json::object();
};

/// What else the loop polls: the shells, the code contexts.
class LoopPart {
public:
  virtual ~LoopPart() = default;
  virtual void add_fds(std::vector<pollfd>& fds) = 0;
  /// The pollfds it added, in the same order, after poll().
  virtual void on_events(const pollfd* fds, size_t n) = 0;
  /// After every wake-up: reaped children, timers.
  virtual void on_tick(steady::time_point now) = 0;
  virtual steady::time_point next_timer() const = 0;
  /// proc_signal sent `sig` to the shell command `job` (its shell must learn it is ready).
  virtual void signalled(uint64_t job, int sig) = 0;
  /// proc_forget of the running shell command or context run `job`: stop it as its timeout
  /// would (SIGINT, then SIGKILL), keeping the shell or context if it can.
  virtual void stop(uint64_t job) = 0;
};

/// How to start a process job (argv, environment and cwd already resolved by the caller).
struct JobSpawn {
  std::vector<std::string> argv;
  std::map<std::string, std::string> env;
  std::string cwd;
  std::string command; // shown by proc_list
};

/// The argv and proc_list command of `ex` (argv | shell | language+code). Code runs as
/// `python -c`: a job outlives the request, so not in the fork server.
JobSpawn job_spawn(const ExecRequest& ex, const std::vector<std::string>& python);

class LiveJobs {
public:
  explicit LiveJobs(std::function<void()> become_tenant)
      : become_tenant_(std::move(become_tenant)) {}
  void add_part(LoopPart* part) { parts_.push_back(part); }

  /// proc_start; throws OpError.
  Job& start(const JobSpawn& spawn, const proto::ProcStartRequest& req);
  /// A shell command's job: output and end come from the shell.
  Job& add_shell_command(pid_t shell_pid, const std::string& command, uint64_t limit);
  Job* find(uint64_t num);
  /// The job named by field 'process'; throws OpError("not_found").
  Job& get(const json& msg);
  void finish(Job& job, int exit_code, int signal, bool timed_out);

  /// The proc_output answer for `job` from the request's offsets; forgets an ephemeral job
  /// once it ended and every byte was returned.
  json output(uint64_t num, const proto::ProcOutputRequest& req);
  /// Pumps until the job has bytes beyond the offsets, ended, or wait_ms passed.
  void wait_output(uint64_t num, const proto::ProcOutputRequest& req);

  json op_output(const json& msg);
  json op_stdin(const json& msg);
  json op_signal(const json& msg);
  json op_resize(const json& msg);
  json op_list() const;
  json op_forget(const json& msg);

  /// The event loop: returns when `conn_fd` (-1: none) is readable, `done()` holds or
  /// `deadline` passed.
  void pump(int conn_fd, steady::time_point deadline, const std::function<bool()>& done = {});
  /// The host connection being served (-1: none); see await_output().
  void set_connection(int fd) { conn_fd_ = fd; }
  /// The wait of an output poll (proc_output, shell_run, ctx_run with wait_ms): pumps until
  /// `done()`, the deadline, or the host sends something. The host sends while a poll is
  /// going on only to end it early (a "nudge": it has another call for this sandbox, which
  /// would otherwise wait for the poll's deadline); the poll then answers what it has.
  void await_output(steady::time_point deadline, const std::function<bool()>& done) {
    pump(conn_fd_, deadline, done);
  }
  /// reset: kills every job's process group and empties the table.
  void clear();

private:
  uint64_t make_room(); // evicts an ended job when the table is full; the next number
  void reap();
  void drain(Job& job, int stream);
  void flush_stdin(Job& job);
  void forget(uint64_t num);

  std::function<void()> become_tenant_;
  std::vector<LoopPart*> parts_;
  std::map<uint64_t, std::unique_ptr<Job>> jobs_;
  uint64_t next_ = 1; // ids are never reused, not even after reset
  int conn_fd_ = -1;
};

/// Reads what `fd` has now (non-blocking) into `sink` until EAGAIN, EOF or `budget` bytes.
/// False at EOF or error (the caller closes the fd).
bool read_available(int fd, const std::function<void(const char*, size_t)>& sink,
                    size_t budget = size_t(-1));

} // namespace warmpool::agent
