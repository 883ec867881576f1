#include "ipvs/table.h"

#include <algorithm>

namespace kipvs::ipvs {

TableEntry entry_from(const ServiceWithDestinations& read) {
  TableEntry entry{.service = read.service.service, .destinations = {}};
  entry.destinations.reserve(read.destinations.size());
  for (const auto& state : read.destinations) {
    entry.destinations.insert_or_assign(state.destination.key, state.destination);
  }
  return entry;
}

bool same_as(const TableEntry& entry, const ServiceWithDestinations& read) {
  if (entry.service != read.service.service || entry.destinations.size() != read.destinations.size()) {
    return false;
  }
  return std::ranges::all_of(read.destinations, [&entry](const DestinationState& state) {
    const auto found = entry.destinations.find(state.destination.key);
    return found != entry.destinations.end() && found->second == state.destination;
  });
}

Table table_from(const std::vector<ServiceWithDestinations>& dump) {
  Table table;
  for (const auto& item : dump) {
    auto entry = entry_from(item);
    const auto key = entry.service.key;
    table.insert_or_assign(key, std::move(entry));
  }
  return table;
}

void put(Table& table, const Service& service, const std::vector<Destination>& destinations) {
  auto& entry = table[service.key];
  entry.service = service;
  for (const auto& destination : destinations)
    entry.destinations.insert_or_assign(destination.key, destination);
}

}  // namespace kipvs::ipvs
