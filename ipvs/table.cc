#include "ipvs/table.h"

namespace kipvs::ipvs {

Table table_from(const std::vector<ServiceWithDestinations>& dump) {
  Table table;
  for (const auto& item : dump) {
    TableEntry entry{.service = item.service.service, .destinations = {}};
    for (const auto& state : item.destinations) {
      entry.destinations.insert_or_assign(state.destination.key, state.destination);
    }
    table.insert_or_assign(entry.service.key, std::move(entry));
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
