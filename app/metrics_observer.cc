#include "app/metrics_observer.h"

#include <algorithm>

namespace kipvs::app {

std::string_view operation_kind_label(ipvs::Operation::Kind kind) {
  using Kind = ipvs::Operation::Kind;
  switch (kind) {
    case Kind::kAddService:
      return "add_service";
    case Kind::kEditService:
      return "edit_service";
    case Kind::kDeleteService:
      return "delete_service";
    case Kind::kAddDestination:
      return "add_destination";
    case Kind::kEditDestination:
      return "edit_destination";
    case Kind::kDeleteDestination:
      return "delete_destination";
  }
  return "unknown";
}

std::string_view operation_result_label(agent::OperationOutcome outcome) {
  switch (outcome) {
    case agent::OperationOutcome::kOk:
      return "ok";
    case agent::OperationOutcome::kExists:
      return "EEXIST";
    case agent::OperationOutcome::kMissing:
      // The sync loop folds ESRCH and ENOENT into one outcome; both are
      // ordinary answers to the chart's alert.
      return "ENOENT";
    case agent::OperationOutcome::kFailed:
      return "error";
  }
  return "error";
}

namespace {

std::string_view kind_label(k8s::ResourceKind kind) {
  switch (kind) {
    case k8s::ResourceKind::kService:
      return "Service";
    case k8s::ResourceKind::kEndpointSlice:
      return "EndpointSlice";
    case k8s::ResourceKind::kNode:
      return "Node";
  }
  return "Unknown";
}

}  // namespace

MetricsObserver::MetricsObserver(metrics::Metrics& metrics, metrics::HealthState* health,
                                 WallClock wall_clock)
    : metrics_(metrics), health_(health), wall_clock_(std::move(wall_clock)) {}

void MetricsObserver::change_received(k8s::ResourceKind kind) {
  if (kind == k8s::ResourceKind::kService) {
    metrics_.service_changes(1);
  } else if (kind == k8s::ResourceKind::kEndpointSlice) {
    metrics_.endpoint_changes(1);
  } else {
    return;
  }
  metrics_.queued_at(wall_clock_());
  if (health_ != nullptr) health_->queued();
}

void MetricsObserver::refresh_for_scrape() {
  if (sources_.socket_reopens) {
    // The backend keeps a running total; the counter takes the increase.
    const auto total = sources_.socket_reopens();
    for (; reopens_seen_ < total; ++reopens_seen_) metrics_.netlink_socket_reopened();
  }
}

void MetricsObserver::sync_started(agent::SyncKind) {}

void MetricsObserver::sync_finished(agent::SyncKind, std::chrono::nanoseconds duration, bool ok) {
  metrics_.observe_sync(duration);
  if (ok) {
    metrics_.synced_at(wall_clock_());
    if (health_ != nullptr) health_->updated();
  }
  if (sources_.table_size) {
    const auto [services, destinations] = sources_.table_size();
    metrics_.set_virtual_services(services);
    metrics_.set_destinations(destinations);
  }
  refresh_for_scrape();
  if (sources_.after_sync) sources_.after_sync();
}

void MetricsObserver::operation_applied(ipvs::Operation::Kind kind, agent::OperationOutcome outcome,
                                        std::uint64_t count) {
  metrics_.netlink_operations(operation_kind_label(kind), operation_result_label(outcome), count);
}

namespace {

// The API's resource names, as the metrics label them.
std::string_view resource_label(k8s::ResourceKind kind) {
  switch (kind) {
    case k8s::ResourceKind::kService:
      return "services";
    case k8s::ResourceKind::kEndpointSlice:
      return "endpointslices";
    case k8s::ResourceKind::kNode:
      return "nodes";
  }
  return "unknown";
}

}  // namespace

void MetricsObserver::no_local_endpoints(ipvs::Family family, std::size_t internal, std::size_t external) {
  const auto label = family == ipvs::Family::kIPv6 ? metrics::kIPv6 : metrics::kIPv4;
  metrics_.set_no_local_endpoints(label, "internal", internal);
  metrics_.set_no_local_endpoints(label, "external", external);
}

void MetricsObserver::watch_event(k8s::ResourceKind kind, std::string_view type) {
  metrics_.watch_event(resource_label(kind), type);
}

bool node_eligible(const k8s::Node* node) {
  if (node == nullptr || node->meta.being_deleted) return false;
  return std::ranges::none_of(
      node->taints, [](const k8s::Taint& taint) { return taint.key == "ToBeDeletedByClusterAutoscaler"; });
}

void MetricsObserver::node_changed(const k8s::Node* now) {
  if (health_ != nullptr) health_->set_node_eligible(node_eligible(now));
}

void MetricsObserver::api_request(std::string_view host, unsigned status,
                                  std::chrono::steady_clock::duration elapsed) {
  metrics_.rest_client_request(host, "GET", status,
                               std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed));
}

void MetricsObserver::relisted(k8s::ResourceKind kind) {
  metrics_.relisted(resource_label(kind));
}

void MetricsObserver::object_skipped(k8s::ResourceKind kind, std::string_view reason) {
  metrics_.object_skipped(kind_label(kind), reason);
}

void MetricsObserver::network_programming_latency(ipvs::Family family,
                                                  std::chrono::duration<double> latency) {
  metrics_.observe_network_programming(family == ipvs::Family::kIPv6 ? metrics::kIPv6 : metrics::kIPv4,
                                       std::chrono::duration_cast<std::chrono::nanoseconds>(latency));
}

void MetricsObserver::drains_in_progress(std::size_t destinations) {
  metrics_.set_drains_in_progress(destinations);
}

void MetricsObserver::pending_changes(std::size_t services, std::size_t endpoint_slices) {
  metrics_.set_service_changes_pending(services);
  metrics_.set_endpoint_changes_pending(endpoint_slices);
}

void MetricsObserver::address_operation(bool add, bool ok) {
  metrics_.netlink_operations(add ? "add_address" : "delete_address", ok ? "ok" : "error");
}

void MetricsObserver::nft_transaction(bool full, bool ok) {
  metrics_.nftables_transaction(full);
  if (!ok) metrics_.nftables_failed();
}

void ChangeNotifyingSink::service_changed(const k8s::ObjectKey& key, const k8s::Service* now) {
  observer_.change_received(k8s::ResourceKind::kService);
  target_.service_changed(key, now);
}

void ChangeNotifyingSink::endpoint_slice_changed(const k8s::ObjectKey& key, const k8s::EndpointSlice* now) {
  observer_.change_received(k8s::ResourceKind::kEndpointSlice);
  target_.endpoint_slice_changed(key, now);
}

}  // namespace kipvs::app
