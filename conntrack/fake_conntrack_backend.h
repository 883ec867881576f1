#pragma once
// A conntrack backend for unit tests that records what it was asked to clear
// (library kipvs_conntrack_fakes, which production code does not link).
#include <cstddef>
#include <span>
#include <vector>

#include "conntrack/conntrack.h"

namespace kipvs::conntrack {

// Records the flows it was asked to clear.
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
  std::vector<ConntrackFlow> cleared;
  std::vector<UdpServing> stale_cleanups;
  int fail_code = 0;
};

}  // namespace kipvs::conntrack
