#include "actors/sandbox_work.hpp"

#include <nlohmann/json.hpp>

#include "messages/errors.hpp"

namespace warmpool {

op_result run_work(const work_fn& work) {
  op_result r;
  try {
    if (work)
      r = work();
  } catch (const Error& e) {
    r.err = make_error(e.code(), e.what());
  } catch (const std::exception& e) {
    r.err = make_error(Errc::internal, e.what());
  }
  return r;
}

SandboxSpec sandbox_spec(const PoolConfig& cfg, const std::string& node,
                         const std::string& instance, const std::string& id, uint32_t restarts) {
  SandboxSpec spec;
  spec.pool = cfg.name;
  spec.node = node;
  spec.instance = instance;
  spec.name = "wp-" + instance.substr(0, 8) + "-" + id + "-" + std::to_string(restarts);
  spec.pool_config = &cfg;
  return spec;
}

work_fn create_work(BackendPtr backend, SandboxSpec spec, std::shared_ptr<SandboxPtr> slot) {
  return [backend, spec, slot]() -> op_result {
    *slot = backend->create(spec);
    return {};
  };
}

work_fn probe_work(BackendPtr backend, SandboxPtr box, std::shared_ptr<const PoolConfig> cfg) {
  return [backend, box, cfg]() -> op_result {
    const auto& hc = cfg->health_check;
    backend->ping(*box, hc.timeout);
    if (auto why = backend->unfit_reason(*box); !why.empty())
      throw Error{Errc::container_failed, why};
    if (hc.argv.empty() && hc.shell.empty())
      return {};
    ExecRequest req;
    req.argv = hc.argv;
    req.shell = hc.shell;
    req.timeout = hc.timeout;
    req.output_limit = 64 * 1024;
    auto res = backend->exec(*box, req);
    if (res.timed_out)
      throw Error{Errc::exec_timeout,
                  "health probe timed out after " + std::to_string(hc.timeout.count()) + "ms"};
    if (res.exit_code != 0)
      throw Error{Errc::container_failed, "health probe exited with " +
                                            std::to_string(res.exit_code) + ": " +
                                            res.stderr_data.substr(0, 200)};
    if (!hc.expect.empty() && res.stdout_data.find(hc.expect) == std::string::npos) {
      auto out = res.stdout_data.substr(0, 200);
      while (!out.empty() && (out.back() == '\n' || out.back() == '\r'))
        out.pop_back();
      throw Error{Errc::container_failed,
                  "health probe output lacks \"" + hc.expect + "\": \"" + out + "\""};
    }
    return {};
  };
}

work_fn reset_work(BackendPtr backend, SandboxPtr box, std::shared_ptr<const PoolConfig> cfg,
                   SandboxSpec spec, std::shared_ptr<SandboxPtr> slot) {
  if (cfg->reset.mode == ResetMode::restart)
    return [backend, box, spec, cfg, slot]() -> op_result {
      backend->destroy(*box);
      *slot = backend->create(spec);
      backend->ping(**slot, cfg->reset.timeout);
      return {};
    };
  return [backend, box, cfg]() -> op_result {
    op_result r;
    r.reset = backend->reset(*box, cfg->reset.timeout);
    r.unfit = backend->unfit_reason(*box); // e.g. a tenant's leftover hit the memory limit
    return r;
  };
}

work_fn destroy_work(BackendPtr backend, SandboxPtr box) {
  if (!box)
    return {};
  return [backend, box]() -> op_result {
    backend->destroy(*box);
    return {};
  };
}

work_fn exec_work(BackendPtr backend, SandboxPtr box, ExecRequest req) {
  return [backend, box, req]() -> op_result {
    op_result r;
    r.exec = backend->exec(*box, req);
    r.unfit = backend->unfit_reason(*box);
    return r;
  };
}

work_fn read_work(BackendPtr backend, SandboxPtr box, std::string path) {
  return [backend, box, path]() -> op_result {
    op_result r;
    r.data = backend->read_file(*box, path);
    return r;
  };
}

work_fn write_work(BackendPtr backend, SandboxPtr box, std::string path, std::string data) {
  return [backend, box, path, data]() -> op_result {
    backend->write_file(*box, path, data);
    return {};
  };
}

work_fn live_work(BackendPtr backend, SandboxPtr box, std::string request, duration timeout) {
  return [backend, box, request, timeout]() -> op_result {
    op_result r;
    r.data = backend->agent_call(*box, request, timeout);
    r.unfit = backend->unfit_reason(*box);
    return r;
  };
}

bool is_output_poll(const std::string& request) {
  if (request.size() > 4096 || request.find("wait_ms") == std::string::npos)
    return false; // a poll is a small request; a large one carries data (a stdin write)
  auto j = nlohmann::json::parse(request, nullptr, false);
  if (!j.is_object())
    return false;
  auto w = j.find("wait_ms");
  return w != j.end() && w->is_number() && w->get<double>() > 0;
}

std::string reset_verdict(const op_result& r) {
  if (r.err)
    return "reset_failed: " + render(r.err);
  if (!r.unfit.empty())
    return r.unfit;
  if (r.reset.residue.empty())
    return {};
  // The next tenant would find this one's traces: never reuse it.
  std::string what;
  for (const auto& s : r.reset.residue) {
    if (!what.empty())
      what += "; ";
    what += s;
  }
  return "reset_residue: " + what;
}

} // namespace warmpool
