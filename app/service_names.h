#pragma once
// The Kubernetes names of the virtual services, for the throughput series of
// /metrics. The scraper builds /metrics on its own thread and must not read
// the Sync, which belongs to the sync thread: the sync thread publishes an
// immutable copy here and the scraper reads the latest one.

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>

#include "agent/sync.h"
#include "ipvs/model.h"
#include "metrics/throughput.h"

namespace kipvs::app {

class ServiceNames {
 public:
  using Map = std::map<ipvs::ServiceKey, metrics::ServiceLabels>;

  // On the sync thread: copies the names out of sync, unless nothing they
  // come from changed since the last call.
  void refresh(const agent::Sync& sync);
  // From any thread: the names as last published (empty before the first
  // refresh).
  [[nodiscard]] std::shared_ptr<const Map> latest() const;

 private:
  std::optional<std::uint64_t> generation_;  // sync thread only
  mutable std::mutex mutex_;
  std::shared_ptr<const Map> published_ = std::make_shared<const Map>();
};

}  // namespace kipvs::app
