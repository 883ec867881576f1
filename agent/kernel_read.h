#pragma once
// A periodic resync's read of the IPVS table, a few services at a time: at
// 10,000 Services the whole read takes seconds, and a change must not wait
// for it. The services are listed at once; their destinations are read in
// pieces between which the sync thread runs, and each service read goes to
// the caller at once (the sync compares and repairs it while the read is
// fresh: no whole-table copy is kept). A sync that writes a service
// meanwhile marks it touched: one the list did not have is not missing.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <expected>
#include <functional>
#include <optional>
#include <set>
#include <vector>

#include "base/error.h"
#include "ipvs/backend.h"
#include "ipvs/diff.h"

namespace kipvs::agent {

class StepwiseKernelRead {
 public:
  // Lists the services (IPv4 ones alone when ipv4_only); an error when even
  // that fails.
  [[nodiscard]] static std::expected<StepwiseKernelRead, Error> begin(ipvs::Backend& backend, bool ipv4_only,
                                                                      ipvs::DrainClock::time_point started);

  // Reads destinations for about `budget` (one service at least), handing
  // each service read to `visit`; true once every service is read or a read
  // failed.
  using Visit = std::function<void(ipvs::ServiceWithDestinations&&)>;
  bool read_piece(ipvs::Backend& backend, std::chrono::milliseconds budget, const Visit& visit);
  void touch(const ipvs::ServiceKey& key) { touched_.insert(key); }

  // Whether the kernel had the service when it was read, or a sync wrote it
  // since the list: the others are gone from the kernel.
  [[nodiscard]] bool present(const ipvs::ServiceKey& key) const {
    return std::ranges::binary_search(read_, key) || touched_.contains(key);
  }
  [[nodiscard]] const std::optional<Error>& failure() const { return failed_; }
  [[nodiscard]] ipvs::DrainClock::time_point started() const { return started_; }

 private:
  StepwiseKernelRead(std::vector<ipvs::ServiceState> services, ipvs::DrainClock::time_point started);

  std::vector<ipvs::ServiceState> services_;
  std::size_t next_ = 0;
  std::vector<ipvs::ServiceKey> read_;  // sorted once the read is done
  std::optional<Error> failed_;
  std::set<ipvs::ServiceKey> touched_;
  ipvs::DrainClock::time_point started_;
};

}  // namespace kipvs::agent
