#pragma once
// A whole IPVS table as a sorted value: every virtual service with its
// destinations. Both sides of a diff have this shape: the desired table that
// agent/ computes and the observed one that a backend's list_all() returns.
// Sorted maps keep iteration (and so plans and printed output) deterministic.

#include <map>
#include <vector>

#include <boost/container/flat_map.hpp>

#include "ipvs/backend.h"
#include "ipvs/model.h"

namespace kipvs::ipvs {

// One virtual service and its destinations, keyed by destination address and
// port. destinations[k].key == k always holds. A sorted vector, not a tree:
// at 10,000 Services the desired and observed tables hold 180,000
// destinations each, 36 bytes apiece here against 88 in a tree's nodes.
// Inserting or erasing moves the later elements and invalidates iterators.
struct TableEntry {
  Service service;
  boost::container::flat_map<DestinationKey, Destination> destinations;

  friend bool operator==(const TableEntry&, const TableEntry&) = default;
};

// Keyed by service identity; table[k].service.key == k always holds.
using Table = std::map<ServiceKey, TableEntry>;

// One service of a backend dump as a table entry, dropping counters.
[[nodiscard]] TableEntry entry_from(const ServiceWithDestinations& read);

// Whether the entry holds what the read shows, counters aside (the kernel
// never reports a destination twice); cheaper than comparing entry_from().
[[nodiscard]] bool same_as(const TableEntry& entry, const ServiceWithDestinations& read);

// Builds a table from a backend dump, dropping counters. A duplicate service
// or destination (which the kernel never reports) keeps the last copy.
[[nodiscard]] Table table_from(const std::vector<ServiceWithDestinations>& dump);

// Inserts or replaces a destination under an existing or new service entry.
// For building tables by hand (tests, the fake backend).
void put(Table& table, const Service& service, const std::vector<Destination>& destinations = {});

}  // namespace kipvs::ipvs
