// A status line on a terminal while pools warm up ("warming up: 3/8 sandboxes warm"), so a
// slow warm-up (docker image pulls, a big min_idle) does not look like a hang. Shown only
// when stderr is a terminal, the log is quieter than info (as exec's is by default) and
// warm-up has taken a moment; erased when done.
#pragma once

#include <condition_variable>
#include <mutex>
#include <thread>

namespace warmpool {
class Engine;
}

namespace warmpool::cli {

class WarmupProgress {
public:
  /// Starts watching `engine` when stderr is a terminal and info lines are not logged;
  /// does nothing otherwise.
  explicit WarmupProgress(Engine& engine);
  ~WarmupProgress(); // calls stop()
  WarmupProgress(const WarmupProgress&) = delete;
  WarmupProgress& operator=(const WarmupProgress&) = delete;

  /// Ends the display and erases its line; returns once nothing more will be written.
  void stop();

private:
  void watch();

  Engine& engine_;
  std::mutex mtx_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

} // namespace warmpool::cli
