#pragma once
// A whole IPVS table as a sorted value: every virtual service with its
// destinations. Both sides of a diff have this shape: the desired table that
// agent/ computes and the observed one that a backend's list_all() returns.
// Sorted maps keep iteration (and so plans and printed output) deterministic.

#include <map>
#include <vector>

#include "ipvs/backend.h"
#include "ipvs/model.h"

namespace kipvs::ipvs {

// One virtual service and its destinations, keyed by destination address and
// port. destinations[k].key == k always holds.
struct TableEntry {
  Service service;
  std::map<DestinationKey, Destination> destinations;

  friend bool operator==(const TableEntry&, const TableEntry&) = default;
};

// Keyed by service identity; table[k].service.key == k always holds.
using Table = std::map<ServiceKey, TableEntry>;

// Builds a table from a backend dump, dropping counters. A duplicate service
// or destination (which the kernel never reports) keeps the last copy.
[[nodiscard]] Table table_from(const std::vector<ServiceWithDestinations>& dump);

// Inserts or replaces a destination under an existing or new service entry.
// For building tables by hand (tests, the fake backend).
void put(Table& table, const Service& service, const std::vector<Destination>& destinations = {});

}  // namespace kipvs::ipvs
