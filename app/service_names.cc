#include "app/service_names.h"

#include <utility>

namespace kipvs::app {

void ServiceNames::refresh(const agent::Sync& sync) {
  if (generation_ == sync.origins_generation()) return;
  auto taken = std::make_shared<const Taken>(sync.origin_maps());
  generation_ = sync.origins_generation();
  const std::scoped_lock lock(mutex_);
  taken_ = std::move(taken);
  ++taken_number_;
}

void ServiceNames::forget() {
  const std::scoped_lock lock(mutex_);
  published_ = std::make_shared<const Map>();
  published_number_ = 0;
}

std::shared_ptr<const ServiceNames::Map> ServiceNames::latest() const {
  std::shared_ptr<const Taken> taken;
  std::uint64_t number = 0;
  {
    const std::scoped_lock lock(mutex_);
    if (taken_number_ == published_number_) return published_;
    taken = taken_;
    number = taken_number_;
  }
  // Built outside the lock: refresh() on the sync thread never waits for it.
  // Services in order, the first claim of a key kept (the Sync's rule).
  auto names = std::make_shared<Map>();
  for (const auto& origins : *taken) {
    for (const auto& [key, origin] : *origins) {
      names->try_emplace(key, origin.service.namespace_, origin.service.name, origin.port_name);
    }
  }
  const std::scoped_lock lock(mutex_);
  if (number > published_number_) {
    published_ = std::move(names);
    published_number_ = number;
  }
  return published_;
}

}  // namespace kipvs::app
