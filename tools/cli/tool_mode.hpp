// `warmpool tool`: llm-runtime's tool mode. Reads an LLM's output on stdin and runs the
// <open PATH>, <write PATH>CONTENT</write> and <exec CMD> commands in it against a
// repository, each in a warm sandbox that mounts the repository at /repo.
#pragma once

#include <string>
#include <vector>

namespace warmpool::tool {

struct Command {
  enum Kind { open, write, exec } kind;
  std::string arg;     // the path, or the shell command
  std::string content; // <write> only
  std::string error;   // set when the command itself is malformed (e.g. no </write>)
};

/// Finds the commands in `text`, in order; text around them is ignored. A path ends at the
/// first '>'. A command ends at the last '>' before the next command or the end of its line,
/// so `<exec make test > log.txt>` works. <write> content ends at the next </write>.
std::vector<Command> parse(const std::string& text);

/// Empty when `path` is a non-empty relative path that stays inside the repository (no
/// ".." component, not absolute); else why not.
std::string path_problem(const std::string& path);

struct Options {
  std::string repo;
  std::string config;  // empty: two pools built in code
  std::string backend; // empty: the config's (or local)
  std::string image;
  std::string timeout; // exec timeout; empty: the pool's exec_timeout
  std::string log_level = "warn";
};

/// Runs every command of stdin and prints a block per command. Returns 0 when every command
/// succeeded (an exec exited 0), 1 otherwise.
int run(const Options& opts);

} // namespace warmpool::tool
