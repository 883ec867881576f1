#include "app/service_names.h"

namespace kipvs::app {

void ServiceNames::refresh(const agent::Sync& sync) {
  if (generation_ == sync.origins_generation()) return;
  auto names = std::make_shared<Map>();
  sync.visit_origins([&](const ipvs::ServiceKey& key, const agent::ServiceOrigin& origin) {
    names->emplace_hint(
        names->end(), key,
        metrics::ServiceLabels{origin.service.namespace_, origin.service.name, origin.port_name});
  });
  generation_ = sync.origins_generation();
  const std::scoped_lock lock(mutex_);
  published_ = std::move(names);
}

std::shared_ptr<const ServiceNames::Map> ServiceNames::latest() const {
  const std::scoped_lock lock(mutex_);
  return published_;
}

}  // namespace kipvs::app
