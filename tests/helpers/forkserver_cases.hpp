// The Python fork server checks (issue 16) shared by the local and the docker backend tests:
// each takes a function that runs an ExecRequest in one warm sandbox whose pool configures
// interpreters.python with numpy preloaded.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <thread>
#include <utility>
#include <set>
#include <string>

#include "warmpool/types.hpp"

namespace warmpool::testing {

using PyRun = std::function<ExecResult(const ExecRequest&)>;

/// A field of /proc/PID/smaps_rollup in KiB (Private_Dirty, Anonymous, ...); -1 if unreadable.
inline long smaps_kib(int pid, const std::string& field) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/smaps_rollup");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(field + ":", 0) == 0)
      return std::atol(line.c_str() + field.size() + 1);
  return -1;
}

/// Host pids of the fork server among the processes of `cgroup` and of its standby (0 when
/// there is none).
inline std::pair<int, int> fork_server_pids(const std::string& cgroup) {
  std::map<int, int> parent; // of each fork server process
  std::ifstream procs(cgroup + "/cgroup.procs");
  for (int pid; procs >> pid;) {
    std::ifstream cmd("/proc/" + std::to_string(pid) + "/cmdline");
    std::string all((std::istreambuf_iterator<char>(cmd)), std::istreambuf_iterator<char>());
    if (all.find("Python fork server") == std::string::npos)
      continue;
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string st((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    parent[pid] = std::atoi(st.c_str() + st.rfind(')') + 4);
  }
  int server = 0, standby = 0;
  for (auto [pid, ppid] : parent)
    (parent.count(ppid) ? standby : server) = pid;
  return {server, standby};
}

inline ExecRequest py_req(const std::string& code, duration timeout = duration(20000)) {
  ExecRequest r;
  r.language = "python";
  r.code = code;
  r.timeout = timeout;
  return r;
}

inline ExecResult py(const PyRun& run, const std::string& code,
                     duration timeout = duration(20000)) {
  return run(py_req(code, timeout));
}

/// The same code through the fork server and through `python3 -c` in the same sandbox:
/// exit code, signal, stdout, stderr and truncation must be identical.
inline void expect_same_as_python_c(const PyRun& run, ExecRequest req, const std::string& what) {
  SCOPED_TRACE(what);
  ExecResult fs = run(req);
  ExecRequest c = req;
  c.language.clear();
  c.code.clear();
  c.argv = {"python3", "-c", req.code};
  ExecResult pc = run(c);
  EXPECT_EQ(fs.exit_code, pc.exit_code);
  EXPECT_EQ(fs.signal, pc.signal);
  EXPECT_EQ(fs.stdout_data, pc.stdout_data);
  EXPECT_EQ(fs.stderr_data, pc.stderr_data);
  EXPECT_EQ(fs.truncated, pc.truncated);
  EXPECT_EQ(fs.timed_out, pc.timed_out);
}

inline void check_semantics_match_python_c(const PyRun& run) {
  auto same = [&](const std::string& code) { expect_same_as_python_c(run, py_req(code), code); };
  same("print(6*7)");
  same("print(__name__, __doc__, __package__, __spec__)");
  same("1/0");
  same("import sys; sys.exit(3)");
  same("import sys; sys.exit('bye')");
  same("raise SystemExit");
  same("x = (");
  same("def f():\n    raise ValueError('bad')\ntry:\n    f()\nexcept ValueError as e:\n    raise "
       "KeyError('k') from e\n");
  same("import sys; print(sys.argv)");
  same("print(input())"); // stdin closed: EOFError, as with python3 -c </dev/null
  same("import sys, atexit; atexit.register(lambda: print('bye')); print('hi', file=sys.stderr)");
  same("import threading, time\n"
       "def late(): time.sleep(0.2); print('thread done')\n"
       "threading.Thread(target=late).start()\nprint('main done')");
  // A child that forks and one that spawns a subprocess.
  same(
    "import os\npid = os.fork()\nif pid == 0:\n    os._exit(7)\nprint(os.waitpid(pid, 0)[1] >> 8)");
  same("import subprocess; print(subprocess.run(['echo', 'sub'], capture_output=True, "
       "text=True).stdout, end='')");
  same("import random, numpy; print(type(random.random()).__name__, numpy.arange(10).sum())");
  same("import os; print(sorted(os.environ.items()))"); // the environment, whole
  // As deep as python3 -c, and the same traceback (its "repeated N more times" included).
  same("n = 0\ndef f():\n    global n\n    n += 1\n    f()\ntry:\n    f()\n"
       "except RecursionError:\n    print(n)");
  same("def f(): f()\nf()");

  ExecRequest in = py_req(
    "import sys; data = sys.stdin.read(); print(len(data), data[:5]); print(input.__name__)");
  in.stdin_data = std::string("hello") + std::string(100000, 'x');
  expect_same_as_python_c(run, in, "stdin read");
  ExecRequest line = py_req("print(input().upper())");
  line.stdin_data = "abc\n";
  expect_same_as_python_c(run, line, "input()");

  ExecRequest env =
    py_req("import os; print(os.environ['GREETING'], os.getcwd(), os.environ['HOME'])");
  env.env = {{"GREETING", "hi"}};
  env.cwd = "/tmp";
  expect_same_as_python_c(run, env, "env and cwd");

  ExecRequest cap =
    py_req("import sys; sys.stdout.write('o' * 5000); sys.stderr.write('e' * 5000)");
  cap.output_limit = 1000;
  expect_same_as_python_c(run, cap, "output cap");
  ExecResult capped = run(cap);
  EXPECT_TRUE(capped.truncated);
  EXPECT_EQ(capped.stdout_data, std::string(1000, 'o'));

  ExecRequest bad_cwd = py_req("print(1)");
  bad_cwd.cwd = "/no/such/dir";
  ExecResult r = run(bad_cwd);
  EXPECT_EQ(r.exit_code, 126) << r.stderr_data;
  EXPECT_NE(r.stderr_data.find("/no/such/dir"), std::string::npos) << r.stderr_data;
}

/// A run's globals, monkeypatches, threads and random state never reach the next run.
inline void check_isolation_between_runs(const PyRun& run) {
  ExecResult a =
    py(run, "import json, numpy, threading, time, os, random\n"
            "leaked = 1\n"
            "json.dumps = lambda *a, **k: 'patched'\n"
            "numpy.arange = None\n"
            "threading.Thread(target=time.sleep, args=(300,), daemon=True).start()\n"
            "print(os.getpid(), os.getppid(), random.random(), numpy.random.rand())\n");
  ASSERT_EQ(a.exit_code, 0) << a.stderr_data;
  ExecResult b =
    py(run, "import json, numpy, threading, os, random\n"
            "print('leaked' in globals(), json.dumps([1]), numpy.arange(3).sum(), "
            "threading.active_count())\n"
            "print(os.getpid(), os.getppid(), random.random(), numpy.random.rand())\n");
  ASSERT_EQ(b.exit_code, 0) << b.stderr_data;
  auto nl = b.stdout_data.find('\n');
  EXPECT_EQ(b.stdout_data.substr(0, nl), "False [1] 3 1");
  std::istringstream sa(a.stdout_data), sb(b.stdout_data.substr(nl + 1));
  std::string pid_a, ppid_a, rnd_a, np_a, pid_b, ppid_b, rnd_b, np_b;
  sa >> pid_a >> ppid_a >> rnd_a >> np_a;
  sb >> pid_b >> ppid_b >> rnd_b >> np_b;
  EXPECT_NE(pid_a, pid_b) << "os.getpid() must differ between runs";
  EXPECT_EQ(ppid_a, ppid_b) << "both runs are children of the same fork server";
  EXPECT_NE(rnd_a, rnd_b) << "random must be re-seeded per run";
  EXPECT_NE(np_a, np_b) << "numpy.random must be re-seeded per run";
}

inline std::string server_pid(const PyRun& run) {
  ExecResult r = py(run, "import os; print(os.getppid())");
  EXPECT_EQ(r.exit_code, 0) << r.stderr_data;
  return r.stdout_data;
}

/// Live (non-zombie) processes whose command line starts with `prefix`, seen from a run.
inline int count_processes(const PyRun& run, const std::string& prefix) {
  ExecResult r =
    py(run, "import os\nn = 0\n"
            "for p in os.listdir('/proc'):\n"
            "    if not p.isdigit() or int(p) == os.getpid(): continue\n"
            "    try:\n"
            "        st = open('/proc/%s/stat' % p).read().rsplit(')', 1)[1].split()[0]\n"
            "        cmd = open('/proc/%s/cmdline' % p, 'rb').read().replace(b'\\0', b' ')\n"
            "    except OSError: continue\n"
            "    if st != 'Z' and cmd.startswith(b'" +
              prefix +
              "'): n += 1\n"
              "print(n)\n");
  EXPECT_EQ(r.exit_code, 0) << r.stderr_data;
  return std::atoi(r.stdout_data.c_str());
}

/// A timeout kills the child and its children; the server survives and serves the next run.
inline void check_timeout_kills_child_tree(const PyRun& run) {
  std::string server = server_pid(run);
  ExecResult r = py(run,
                    "import subprocess, time\n"
                    "subprocess.Popen(['sleep', '301'])\n"
                    "print('started', flush=True)\n"
                    "time.sleep(300)\n",
                    duration(1500));
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.signal, 9);
  EXPECT_EQ(r.stdout_data, "started\n");
  EXPECT_EQ(count_processes(run, "sleep 301"), 0);
  EXPECT_EQ(server_pid(run), server) << "the fork server must survive a run's timeout";
}

/// A fork bomb stays inside the sandbox's process limit; afterwards runs work again.
inline void check_fork_bomb_contained(const PyRun& run) {
  ExecResult r = py(run,
                    "import os\n"
                    "while True:\n"
                    "    try:\n"
                    "        os.fork()\n"
                    "    except OSError:\n"
                    "        pass\n",
                    duration(2000));
  EXPECT_TRUE(r.timed_out);
  ExecResult after = py(run, "print('alive')");
  EXPECT_EQ(after.exit_code, 0) << after.stderr_data;
  EXPECT_EQ(after.stdout_data, "alive\n");
}

/// A tenant that kills the server gets a clear note; the next run has a new server.
inline void check_killed_server_is_replaced(const PyRun& run) {
  std::string before = server_pid(run);
  ExecResult r =
    py(run, "import os, signal, time; os.kill(os.getppid(), signal.SIGKILL); time.sleep(0.5)");
  EXPECT_NE(r.stderr_data.find("fork server died"), std::string::npos) << r.stderr_data;
  std::string after = server_pid(run);
  EXPECT_FALSE(after.empty());
  EXPECT_NE(after, before);
}

/// Reset kills every child (even one in its own session) and keeps the untouched server.
inline void check_reset_kills_children_keeps_server(const PyRun& run,
                                                    const std::function<ResetReport()>& reset) {
  std::string before = server_pid(run);
  ExecResult r =
    py(run, "import subprocess\n"
            "subprocess.Popen(['sleep', '302'], start_new_session=True)\n"
            "import time\n"
            "while True:\n"
            "    if any(open('/proc/%s/cmdline' % p, 'rb').read().startswith(b'sleep') for p in "
            "__import__('os').listdir('/proc') if p.isdigit()): break\n"
            "    time.sleep(0.01)\n");
  ASSERT_EQ(r.exit_code, 0) << r.stderr_data;
  EXPECT_EQ(count_processes(run, "sleep 302"), 1);
  ResetReport rep = reset();
  EXPECT_TRUE(rep.residue.empty()) << rep.residue.front();
  EXPECT_GE(rep.processes_killed, 1u);
  EXPECT_EQ(count_processes(run, "sleep 302"), 0);
  EXPECT_EQ(server_pid(run), before) << "a server that never ran tenant code survives reset";
}

/// A run is of the server's uid, so it can renice the server and lower its limits, which the
/// next tenant's runs would inherit. Reset replaces a server that was changed, and its new
/// children have the sandbox's own settings again.
inline void check_a_server_a_tenant_changed_is_replaced(
  const PyRun& run, const std::function<ResetReport()>& reset) {
  std::string before = server_pid(run);
  ExecResult r = py(run, "import os, resource\n"
                         "server = os.getppid()\n"
                         "os.setpriority(os.PRIO_PROCESS, server, 9)\n"
                         "resource.prlimit(server, resource.RLIMIT_NOFILE, (64, 64))\n"
                         "print(os.getpriority(os.PRIO_PROCESS, server))\n");
  ASSERT_EQ(r.exit_code, 0) << r.stderr_data;
  ASSERT_EQ(r.stdout_data, "9\n") << "the tenant could not change the server here";
  EXPECT_EQ(py(run, "import os; print(os.getpriority(os.PRIO_PROCESS, 0))").stdout_data, "9\n")
    << "before the reset, runs inherit the change";
  ResetReport rep = reset();
  EXPECT_TRUE(rep.residue.empty()) << rep.residue.front();
  EXPECT_NE(server_pid(run), before);
  r = py(run, "import os, resource\n"
              "print(os.getpriority(os.PRIO_PROCESS, 0), "
              "resource.getrlimit(resource.RLIMIT_NOFILE)[0] != 64)\n");
  EXPECT_EQ(r.stdout_data, "0 True\n") << r.stderr_data;
}

/// With prefault (the default), the standby forked after a run copies the server's memory
/// while it waits. Read from the host: inside, the tenant's uid cannot read the /proc files
/// of a non-dumpable process, and neither could the copy (which is what this caught once).
inline void check_standby_copies_server_memory(const PyRun& run, const std::string& cgroup) {
  EXPECT_EQ(py(run, "print(1)").stdout_data, "1\n");
  long copied = 0, anon = 0;
  for (int i = 0; i < 200; ++i) { // forked after the run, it copies in the background
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    auto [server, standby] = fork_server_pids(cgroup);
    anon = server ? smaps_kib(server, "Anonymous") : 0;
    copied = standby ? smaps_kib(standby, "Private_Dirty") : 0;
    if (anon > 1024 && copied >= anon / 2)
      break;
  }
  EXPECT_GT(anon, 1024) << "no fork server with numpy found in " << cgroup;
  EXPECT_GE(copied, anon / 2) << "server anonymous " << anon << " KiB";
}

} // namespace warmpool::testing
