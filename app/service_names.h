#pragma once
// The Kubernetes names of the virtual services, for the throughput series of
// /metrics. The scraper builds /metrics on its own thread and must not read
// the Sync, which belongs to the sync thread: the sync thread hands over the
// Services' immutable origin maps here and the scraper builds the names from
// the latest ones.

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "agent/sync.h"
#include "ipvs/model.h"
#include "metrics/throughput.h"

namespace kipvs::app {

class ServiceNames {
 public:
  using Map = std::map<ipvs::ServiceKey, metrics::ServiceLabels>;

  // On the sync thread: takes the Services' shared origin maps (a pointer
  // each, not a copy of the names), unless nothing they come from changed
  // since the last call.
  void refresh(const agent::Sync& sync);
  // From any thread: the names as last taken (empty before the first
  // refresh). The first call after a refresh builds them, on the caller's
  // thread (the scraper's), so a scrape costs the sync thread little.
  [[nodiscard]] std::shared_ptr<const Map> latest() const;
  // From any thread: drops the built names (the next latest() builds them
  // again from the maps last taken), so none are kept between scrapes.
  void forget();

 private:
  using Taken = std::vector<std::shared_ptr<const agent::Sync::OriginMap>>;

  std::optional<std::uint64_t> generation_;  // sync thread only
  mutable std::mutex mutex_;
  std::shared_ptr<const Taken> taken_;  // taken by refresh, not yet built
  std::uint64_t taken_number_ = 0;      // counts refreshes that took maps
  mutable std::uint64_t published_number_ = 0;
  mutable std::shared_ptr<const Map> published_ = std::make_shared<const Map>();
};

}  // namespace kipvs::app
