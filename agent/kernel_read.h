#pragma once
// A periodic resync's read of the IPVS table, a few services at a time: at
// 10,000 Services the whole read takes seconds, and a change must not wait
// for it. The services are listed at once; their destinations are read in
// pieces between which the sync thread runs. A sync that writes a service
// meanwhile marks it touched: for those, what the sync wrote is newer than
// what the read saw.
#include <chrono>
#include <cstddef>
#include <expected>
#include <optional>
#include <set>
#include <vector>

#include "base/error.h"
#include "ipvs/backend.h"
#include "ipvs/diff.h"

namespace kipvs::agent {

class StepwiseKernelRead {
 public:
  using Dump = std::expected<std::vector<ipvs::ServiceWithDestinations>, Error>;

  // Lists the services; an error when even that fails.
  [[nodiscard]] static std::expected<StepwiseKernelRead, Error> begin(ipvs::Backend& backend,
                                                                      ipvs::DrainClock::time_point started);

  // Reads destinations for about `budget` (one service at least); true once
  // every service is read or a read failed.
  bool read_piece(ipvs::Backend& backend, std::chrono::milliseconds budget);
  void touch(const ipvs::ServiceKey& key) { touched_.insert(key); }

  // When done: the dump (or the error that ended it).
  [[nodiscard]] Dump take_dump();
  [[nodiscard]] const std::set<ipvs::ServiceKey>& touched() const { return touched_; }
  [[nodiscard]] ipvs::DrainClock::time_point started() const { return started_; }
  // Time spent reading, without the turns between pieces.
  [[nodiscard]] std::chrono::steady_clock::duration spent() const { return spent_; }

 private:
  StepwiseKernelRead(std::vector<ipvs::ServiceState> services, ipvs::DrainClock::time_point started,
                     std::chrono::steady_clock::duration spent);

  std::vector<ipvs::ServiceState> services_;
  std::size_t next_ = 0;
  std::vector<ipvs::ServiceWithDestinations> dump_;
  std::optional<Error> failed_;
  std::set<ipvs::ServiceKey> touched_;
  ipvs::DrainClock::time_point started_;
  std::chrono::steady_clock::duration spent_{};
};

}  // namespace kipvs::agent
