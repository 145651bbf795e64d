#include "messages/messages.hpp"

#include <algorithm>

#include <caf/actor_system_config.hpp>

#include "messages/errors.hpp"

namespace warmpool {

bool node_capacity::operator==(const node_capacity& o) const {
  auto same = [](const pool_capacity& a, const pool_capacity& b) {
    return a.pool == b.pool && a.idle == b.idle && a.total == b.total && a.max_size == b.max_size &&
           a.leased == b.leased && a.waiting == b.waiting && a.served == b.served;
  };
  return node == o.node &&
         std::equal(pools.begin(), pools.end(), o.pools.begin(), o.pools.end(), same);
}

void register_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<ExecRequest>("warmpool.exec_request");
  cfg.add_message_type<ExecResult>("warmpool.exec_result");
  cfg.add_message_type<ResetReport>("warmpool.reset_report");
  cfg.add_message_type<ContainerStats>("warmpool.container_stats");
  cfg.add_message_type<PoolStats>("warmpool.pool_stats");
  cfg.add_message_type<std::vector<PoolStats>>("warmpool.pool_stats_list");
  cfg.add_message_type<acquire_request>("warmpool.acquire_request");
  cfg.add_message_type<lease_info>("warmpool.lease_info");
  cfg.add_message_type<lease_offer>("warmpool.lease_offer");
  cfg.add_message_type<probe_result>("warmpool.probe_result");
  cfg.add_message_type<op_result>("warmpool.op_result");
  cfg.add_message_type<container_report>("warmpool.container_report");
  cfg.add_message_type<container_ref>("warmpool.container_ref");
  cfg.add_message_type<std::vector<container_ref>>("warmpool.container_ref_list");
  cfg.add_message_type<pool_ref>("warmpool.pool_ref");
  cfg.add_message_type<std::vector<pool_ref>>("warmpool.pool_ref_list");
  cfg.add_message_type<duration>("warmpool.duration");
  cfg.add_message_type<sandbox_lease_actor>("warmpool.sandbox_lease_actor");
  cfg.add_message_type<container_actor>("warmpool.container_actor");
  cfg.add_message_type<pool_actor>("warmpool.pool_actor");
  cfg.add_message_type<pool_capacity>("warmpool.pool_capacity");
  cfg.add_message_type<node_capacity>("warmpool.node_capacity");
  cfg.add_message_type<cluster_hello>("warmpool.cluster_hello");
  cfg.add_message_type<connect_result>("warmpool.connect_result");
  cfg.add_message_type<cluster_actor>("warmpool.cluster_actor");
  register_error_category(cfg);
}

} // namespace warmpool
