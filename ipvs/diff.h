#pragma once
// Desired table vs observed table -> an ordered list of operations that turns
// the second into the first. Pure: no kernel, no clock; the backend applies
// the plan. Like Katran's batchRealsUpdate, the result is a delta, so tests
// check its size: diff(x, x) is empty.
//
// The graceful-termination rewrite (weight 0 instead of delete while a
// destination still has connections) is a separate pure pass,
// apply_drain_policy, so the diff stays a plain set difference and the caller
// decides when draining applies.

#include <chrono>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <vector>

#include "ipvs/backend.h"
#include "ipvs/model.h"
#include "ipvs/table.h"

namespace kipvs::ipvs {

// Says whether kipvs may edit or delete an observed service that it does not
// want. Asked only for services present in the observed table and absent from
// the desired one: a service kipvs wants is always its own. Services it does
// not own (keepalived's, an operator's) are never touched.
using Ownership = std::function<bool(const ServiceKey&)>;

// An ordered list of operations. Order, per service: the service's add or
// edit, then its destination adds, edits and deletes (make before break: a
// service whose endpoints all change never passes through zero destinations).
// Deletes of whole services come last, after every add, so that a Service that
// moves to a new address is reachable at the new one first. A deleted service
// takes its destinations with it in the kernel, so no destination deletes are
// emitted for it.
struct Plan {
  std::vector<Operation> operations;

  [[nodiscard]] bool empty() const { return operations.empty(); }
  [[nodiscard]] std::size_t size() const { return operations.size(); }
  [[nodiscard]] std::size_t count(Operation::Kind kind) const;
  void append(const Plan& other);
};

// Whether the kernel must be told about a change between two versions of one
// service (scheduler, flags, persistence timeout or netmask); the key is not
// compared. kHashed, which only the kernel sets, is ignored.
[[nodiscard]] bool service_differs(const Service& desired, const Service& observed);
// Likewise for a destination: forwarding method, weight, thresholds.
[[nodiscard]] bool destination_differs(const Destination& desired, const Destination& observed);

// The whole-table diff. Services in both tables are diffed; desired-only ones
// are added; observed-only ones are deleted when owned(key) says so.
[[nodiscard]] Plan diff(const Table& desired, const Table& observed, const Ownership& owned);

// One service's part of the diff, for incremental syncs: desired or observed
// may be null (absent). With desired == nullptr the service is deleted: the
// caller checks ownership first. Both null yields an empty plan.
[[nodiscard]] Plan diff_service(const ServiceKey& key, const TableEntry* desired, const TableEntry* observed);

// ---------------------------------------------------------------------------
// Graceful termination.

// A destination of a given service.
struct DestinationRef {
  ServiceKey service;
  DestinationKey destination;
  friend auto operator<=>(const DestinationRef&, const DestinationRef&) = default;
};

// The kernel's connection counts for one destination.
struct Connections {
  std::uint32_t active = 0;
  std::uint32_t inactive = 0;
  [[nodiscard]] bool idle() const { return active == 0 && inactive == 0; }
};
using ConnectionTable = std::map<DestinationRef, Connections>;

// Counts from a backend dump, busy destinations only (a missing destination
// counts as idle).
[[nodiscard]] ConnectionTable connections_from(const std::vector<ServiceWithDestinations>& dump);
// The same for one service read, added to `table`.
void add_connections(ConnectionTable& table, const ServiceWithDestinations& read);

using DrainClock = std::chrono::steady_clock;

// Destinations that are draining, with the moment the drain began. Owned by
// the caller and passed through apply_drain_policy on every sync.
using DrainSet = std::map<DestinationRef, DrainClock::time_point>;

struct DrainOptions {
  // After this long a draining destination is deleted even if it still has
  // connections; nullopt waits for the connections however long they last
  // (kube-proxy's behaviour). The default is the sync layer's to override.
  std::optional<std::chrono::seconds> grace_period = std::chrono::seconds{900};
};

struct DrainResult {
  Plan plan;
  DrainSet draining;
};

// Rewrites a plan's destination deletes for graceful termination:
//  - UDP and SCTP destinations are deleted at once, as kube-proxy does
//    (drains_on_delete);
//  - a destination with no active or inactive connections is deleted;
//  - one whose drain is older than the grace period is deleted;
//  - otherwise the delete becomes an edit to weight 0 (new connections go
//    elsewhere, established ones stay), or is dropped when the observed weight
//    is 0 already; the destination enters (or stays in) the drain set.
// A destination that is added or edited again (its endpoint came back) leaves
// the drain set; the diff has already restored its weight. Deleting a whole
// service drops its destinations from the set. Draining entries the plan does
// not mention are carried over unchanged.
// Whether a removed destination of this protocol drains at weight 0 (TCP)
// or is deleted at once (UDP, SCTP).
[[nodiscard]] constexpr bool drains_on_delete(Protocol protocol) {
  return protocol != Protocol::kUdp && protocol != Protocol::kSctp;
}

[[nodiscard]] DrainResult apply_drain_policy(Plan plan, const Table& observed,
                                             const ConnectionTable& connections, const DrainSet& draining,
                                             DrainClock::time_point now, const DrainOptions& options = {});

// Drops drain entries whose destination is no longer in the observed table
// (deleted by someone else). For the periodic full resync.
[[nodiscard]] DrainSet prune_drains(const DrainSet& draining, const Table& observed);

}  // namespace kipvs::ipvs
