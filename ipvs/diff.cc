#include "ipvs/diff.h"

#include <algorithm>

namespace kipvs::ipvs {

namespace {

Operation service_operation(Operation::Kind kind, const Service& service) {
  return Operation{.kind = kind, .service = service, .destination = {}};
}

Operation destination_operation(Operation::Kind kind, const Service& service,
                                const Destination& destination) {
  // Destination operations identify the service by key only; carrying the
  // whole service is harmless and keeps logs informative.
  return Operation{.kind = kind, .service = service, .destination = destination};
}

// Appends one kept-or-added service's operations: make before break.
void diff_destinations(const TableEntry& desired, const TableEntry* observed, Plan& plan) {
  using Kind = Operation::Kind;
  for (const auto& [key, destination] : desired.destinations) {
    const Destination* current = nullptr;
    if (observed != nullptr) {
      if (auto it = observed->destinations.find(key); it != observed->destinations.end())
        current = &it->second;
    }
    if (current == nullptr)
      plan.operations.push_back(destination_operation(Kind::kAddDestination, desired.service, destination));
  }
  if (observed == nullptr) return;
  for (const auto& [key, destination] : desired.destinations) {
    auto it = observed->destinations.find(key);
    if (it != observed->destinations.end() && destination_differs(destination, it->second)) {
      plan.operations.push_back(destination_operation(Kind::kEditDestination, desired.service, destination));
    }
  }
  for (const auto& [key, destination] : observed->destinations) {
    if (!desired.destinations.contains(key)) {
      plan.operations.push_back(
          destination_operation(Kind::kDeleteDestination, desired.service, destination));
    }
  }
}

}  // namespace

std::size_t Plan::count(Operation::Kind kind) const {
  return static_cast<std::size_t>(std::ranges::count_if(
      operations, [kind](const Operation& operation) { return operation.kind == kind; }));
}

void Plan::append(const Plan& other) {
  operations.insert(operations.end(), other.operations.begin(), other.operations.end());
}

bool service_differs(const Service& desired, const Service& observed) {
  const auto mask = ~flags::kHashed;
  return desired.scheduler != observed.scheduler || (desired.flags & mask) != (observed.flags & mask) ||
         desired.timeout != observed.timeout || desired.netmask != observed.netmask;
}

bool destination_differs(const Destination& desired, const Destination& observed) {
  return desired.forwarding != observed.forwarding || desired.weight != observed.weight ||
         desired.upper_threshold != observed.upper_threshold ||
         desired.lower_threshold != observed.lower_threshold;
}

Plan diff_service(const ServiceKey& key, const TableEntry* desired, const TableEntry* observed) {
  using Kind = Operation::Kind;
  Plan plan;
  if (desired == nullptr) {
    if (observed != nullptr) {
      Service service = observed->service;
      service.key = key;
      plan.operations.push_back(service_operation(Kind::kDeleteService, service));
    }
    return plan;
  }
  if (observed == nullptr) {
    plan.operations.push_back(service_operation(Kind::kAddService, desired->service));
  } else if (service_differs(desired->service, observed->service)) {
    // An edit keeps the service's connections and destinations; a delete and
    // add would drop both (and a changed persistence timeout must not do that).
    plan.operations.push_back(service_operation(Kind::kEditService, desired->service));
  }
  diff_destinations(*desired, observed, plan);
  return plan;
}

Plan diff(const Table& desired, const Table& observed, const Ownership& owned) {
  Plan plan;
  Plan deletes;
  // At most one operation per service and destination on either side. The
  // bound is reserved, not grown into: a first sync at 10,000 Services plans
  // 200,000 operations, and doubling would hold one and a half copies at
  // once. Pages of the bound that are never written are never resident.
  std::size_t bound = 0;
  for (const auto* table : {&desired, &observed})
    for (const auto& [key, entry] : *table) bound += 1 + entry.destinations.size();
  plan.operations.reserve(bound);
  // Merge-walk the two sorted maps: one pass, no lookups.
  auto want = desired.begin();
  auto have = observed.begin();
  while (want != desired.end() || have != observed.end()) {
    if (have == observed.end() || (want != desired.end() && want->first < have->first)) {
      plan.append(diff_service(want->first, &want->second, nullptr));
      ++want;
    } else if (want == desired.end() || have->first < want->first) {
      if (owned && owned(have->first)) deletes.append(diff_service(have->first, nullptr, &have->second));
      ++have;
    } else {
      plan.append(diff_service(want->first, &want->second, &have->second));
      ++want;
      ++have;
    }
  }
  plan.append(deletes);
  return plan;
}

// ---------------------------------------------------------------------------

void add_connections(ConnectionTable& table, const ServiceWithDestinations& read) {
  for (const auto& state : read.destinations) {
    // Idle ones are left out: a missing destination counts as idle, and at
    // 10,000 Services an idle node's resync would hold 180,000 entries.
    if (state.active_connections == 0 && state.inactive_connections == 0) continue;
    table.insert_or_assign(DestinationRef{read.service.service.key, state.destination.key},
                           Connections{state.active_connections, state.inactive_connections});
  }
}

ConnectionTable connections_from(const std::vector<ServiceWithDestinations>& dump) {
  ConnectionTable table;
  for (const auto& item : dump) add_connections(table, item);
  return table;
}

DrainResult apply_drain_policy(Plan plan, const Table& observed, const ConnectionTable& connections,
                               const DrainSet& draining, DrainClock::time_point now,
                               const DrainOptions& options) {
  using Kind = Operation::Kind;
  DrainResult result{.plan = {}, .draining = draining};
  // Rewritten in place, each operation into at most one: a second plan the
  // size of a first sync's would be tens of MB at 10,000 Services.
  auto& operations = plan.operations;
  std::size_t kept = 0;
  const auto keep = [&operations, &kept](std::size_t at) {
    if (kept != at) operations[kept] = std::move(operations[at]);
    ++kept;
  };

  for (std::size_t at = 0; at < operations.size(); ++at) {
    Operation& operation = operations[at];
    const DestinationRef ref{operation.service.key, operation.destination.key};
    switch (operation.kind) {
      case Kind::kAddDestination:
      case Kind::kEditDestination:
        result.draining.erase(ref);  // the endpoint came back
        keep(at);
        break;
      case Kind::kDeleteService: {
        const auto& key = operation.service.key;
        std::erase_if(result.draining, [&key](const auto& item) { return item.first.service == key; });
        keep(at);
        break;
      }
      case Kind::kDeleteDestination: {
        // UDP has no connection to finish, and kube-proxy deletes UDP and
        // SCTP real servers at once (expire_nodest_conn=1 ends an SCTP
        // association on its next packet; clients retry).
        const bool udp = !drains_on_delete(operation.service.key.protocol);
        const auto counts = connections.find(ref);
        const bool idle = counts == connections.end() || counts->second.idle();
        auto [since, inserted] = result.draining.try_emplace(ref, now);
        const bool expired = options.grace_period && now - since->second >= *options.grace_period;
        if (udp || idle || expired) {
          result.draining.erase(since);
          keep(at);
          break;
        }
        // Keep draining: weight 0 unless it is 0 already (a previous sync or a
        // previous run set it).
        const Destination* current = nullptr;
        if (auto service = observed.find(ref.service); service != observed.end()) {
          if (auto it = service->second.destinations.find(ref.destination);
              it != service->second.destinations.end()) {
            current = &it->second;
          }
        }
        if (current == nullptr || current->weight != 0) {
          if (current != nullptr) operation.destination = *current;
          operation.destination.weight = 0;
          operation.kind = Kind::kEditDestination;
          keep(at);
        }
        break;
      }
      case Kind::kAddService:
      case Kind::kEditService:
        keep(at);
        break;
    }
  }
  operations.resize(kept);
  result.plan = std::move(plan);
  return result;
}

DrainSet prune_drains(const DrainSet& draining, const Table& observed) {
  DrainSet kept;
  for (const auto& [ref, since] : draining) {
    auto service = observed.find(ref.service);
    if (service != observed.end() && service->second.destinations.contains(ref.destination))
      kept.emplace(ref, since);
  }
  return kept;
}

}  // namespace kipvs::ipvs
