// A container actor on its own, against a stand-in pool that records every report, with
// backend calls that finish only when the test says so (executor::manual): each test of
// the lifecycle table drives the container into a row's state, sends the row's event and
// checks the states reported after it. A message queued while a backend call is held is
// handled before that call's completion.
#pragma once

#include <ostream>
#include <vector>

#include "actor_fixture.hpp"

namespace warmpool {

/// gtest prints states by name.
inline void PrintTo(cstate s, std::ostream* os) { *os << to_string(s); }

} // namespace warmpool

namespace warmpool::test {

using namespace std::chrono_literals;

/// What the stand-in pool saw.
struct recorder {
  std::vector<container_report> reports;
  size_t handed_back = 0;
  size_t expire_asks = 0;
  bool grant_expire = false;
};

inline pool_actor::behavior_type stand_in_pool(pool_actor::pointer, std::shared_ptr<recorder> rec) {
  return {
    [](acquire_atom, acquire_request&) -> caf::result<lease_info> {
      return make_error(Errc::internal, "stand-in pool");
    },
    [rec](lease_atom, lease_offer&) -> caf::result<lease_info> {
      ++rec->handed_back;
      return make_error(Errc::internal, "handed back");
    },
    [rec](report_atom, container_report& r) { rec->reports.push_back(std::move(r)); },
    [rec](expire_atom, std::string&) {
      ++rec->expire_asks;
      return rec->grant_expire;
    },
    [](list_atom) { return std::vector<container_ref>{}; },
    [](stats_atom) { return PoolStats{}; },
    [](shutdown_atom, duration) { return ok_atom::value; },
  };
}

using states = std::vector<cstate>;

inline const states to_gone{cstate::retiring, cstate::destroying, cstate::gone};

inline states then(states v, const states& more) {
  v.insert(v.end(), more.begin(), more.end());
  return v;
}

struct LifecycleTable : ActorTest {
  std::shared_ptr<recorder> rec = std::make_shared<recorder>();
  pool_actor fake;
  container_internal_actor box;

  LifecycleTable() {
    executor_ = executor::manual(); // backend calls finish when the test says so
    pc->restart.backoff_initial = 100ms;
  }

  ~LifecycleTable() override {
    if (box)
      caf::anon_send_exit(box, caf::exit_reason::user_shutdown);
    if (fake)
      caf::anon_send_exit(fake, caf::exit_reason::user_shutdown);
    sched.run();
  }

  /// Spawns the container; it starts creating when it first runs.
  void spawn(bool fresh = false) {
    fake = sys.spawn(stand_in_pool, rec);
    container_params cp{"p-1", pc,       backend,    executor_, registry,
                        fake,  "node-1", "inst0001", fresh,     nullptr};
    box = sys.spawn(container, cp);
    self->monitor(box);
  }

  /// Runs messages and finishes backend calls until nothing is left to do.
  void drive() {
    run();
    while (executor_->run_pending() > 0)
      run();
  }

  /// Like drive(), but stops once `s` is reported, with the calls it started still held.
  void drive_to(cstate s) {
    run();
    while (now() != s && executor_->run_pending() > 0)
      run();
    ASSERT_EQ(now(), s);
  }

  void spawn_idle() {
    spawn();
    drive();
    ASSERT_EQ(now(), cstate::idle);
  }

  /// An idle sandbox that failed one probe (health_check.failures must be above 1).
  void spawn_suspect() {
    spawn_idle();
    backend->fail_next_pings(1);
    probe();
    drive();
    ASSERT_EQ(now(), cstate::suspect);
  }

  cstate now() const { return rec->reports.empty() ? cstate::creating : rec->reports.back().state; }

  size_t mark() const { return rec->reports.size(); }

  /// The states reported from report `from` on.
  states since(size_t from) const {
    states out;
    for (size_t i = from; i < rec->reports.size(); ++i)
      out.push_back(rec->reports[i].state);
    return out;
  }

  const std::string& reason() const { return rec->reports.back().reason; }

  /// A request whose answer arrives as the test drives.
  template <class T, class... Ts>
  std::shared_ptr<reply<T>> call(Ts... xs) {
    return ask_async<T>(box, xs...);
  }

  std::shared_ptr<reply<probe_result>> probe() { return call<probe_result>(probe_atom::value); }

  lease_info lease() {
    lease_offer offer;
    offer.lease.id = "l-1";
    offer.lease.handle = box;
    offer.seen = rec->reports.back().seq;
    auto r = ask<lease_info>(box, lease_atom::value, offer);
    EXPECT_TRUE(r && *r);
    return r && *r ? **r : lease_info{};
  }

  std::shared_ptr<reply<ok_atom>> release_async(const lease_info& li, bool dirty = false) {
    return ask_async<ok_atom>(li.handle, release_atom::value, li.id, dirty);
  }

  std::shared_ptr<reply<ExecResult>> exec_async(const lease_info& li) {
    ExecRequest req;
    req.argv = {"echo", "hi"};
    return ask_async<ExecResult>(li.handle, exec_atom::value, li.id, req);
  }

  /// Stands in for the timers: the test holds the internal handle, a lease holder does not.
  void age_timer_fires() {
    self->send(box, timer_atom::value, static_cast<uint8_t>(timer_kind::age), uint64_t{0});
  }
  void died() { self->send(box, died_atom::value); }
  void retire(std::string why = "test") { self->send(box, retire_atom::value, why); }
  void shutdown() { self->send(box, shutdown_atom::value); }
  void lose_pool() {
    caf::anon_send_exit(fake, caf::exit_reason::user_shutdown);
    fake = nullptr;
  }

  bool ended() {
    bool down = false;
    self->receive([&](caf::down_msg& msg) { down = msg.source == box.address(); },
                  caf::after(std::chrono::seconds(0)) >> [] {});
    return down;
  }
};

} // namespace warmpool::test
