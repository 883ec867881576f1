#pragma once
// A conntrack backend for unit tests that records what it was asked to clear
// (library kipvs_conntrack_fakes, which production code does not link).
#include <algorithm>
#include <cstddef>
#include <functional>
#include <span>
#include <vector>

#include "conntrack/conntrack.h"

namespace kipvs::conntrack {

// Records the flows it was asked to clear; the sweep over every entry works
// on `table`, the UDP entries the test put there.
class FakeConntrackBackend final : public ConntrackBackend {
 public:
  [[nodiscard]] std::expected<std::size_t, Error> delete_udp_flows(
      std::span<const ConntrackFlow> flows) override {
    if (fail_code != 0) return std::unexpected(Error{fail_code, "conntrack"});
    cleared.insert(cleared.end(), flows.begin(), flows.end());
    return flows.size();
  }
  [[nodiscard]] std::expected<std::size_t, Error> delete_stale_udp(const UdpServing& serving) override {
    if (fail_code != 0) return std::unexpected(Error{fail_code, "conntrack"});
    stale_cleanups.push_back(serving);
    return 0;
  }
  [[nodiscard]] std::expected<std::size_t, Error> delete_unserved_udp(
      std::span<const ipvs::Family> families,
      const std::function<bool(const ConntrackFlow&)>& unserved) override {
    if (fail_code != 0) return std::unexpected(Error{fail_code, "conntrack"});
    sweeps.emplace_back(families.begin(), families.end());
    return std::erase_if(table, [&](const ConntrackFlow& flow) {
      return std::ranges::find(families, flow.service.family) != families.end() && unserved(flow);
    });
  }
  std::vector<ConntrackFlow> cleared;
  std::vector<UdpServing> stale_cleanups;
  std::vector<ConntrackFlow> table;
  std::vector<std::vector<ipvs::Family>> sweeps;  // the families of each sweep over the table
  int fail_code = 0;
};

}  // namespace kipvs::conntrack
