#pragma once
// The sync loop's observer that feeds Prometheus and the proxy health:
// SyncObserver events become kube-proxy's and kipvs's metrics (metrics.h),
// and a sync that put the rules into the kernel marks the proxy healthy
// (health.h). Changes reach it through ChangeNotifyingSink, which sits
// between the object source and the Sync, so a change counts and queues the
// health clock the moment it arrives, as kube-proxy's OnServiceUpdate does.
//
// Single-threaded: everything is called on the agent's io_context thread.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>

#include "agent/sync.h"
#include "k8s/sink.h"
#include "metrics/health.h"
#include "metrics/metrics.h"

namespace kipvs::app {

// The label values of kipvs_netlink_operations_total: kind "add_service",
// "delete_destination", ...; result "ok" or an errno name ("EEXIST",
// "ENOENT"), or "error" for a failure whose errno the sync loop does not
// pass on.
[[nodiscard]] std::string_view operation_kind_label(ipvs::Operation::Kind kind);
[[nodiscard]] std::string_view operation_result_label(agent::OperationOutcome outcome);

class MetricsObserver final : public agent::SyncObserver {
 public:
  using WallClock = std::function<std::chrono::system_clock::time_point()>;

  // Optional; unset leaves the metric alone. table_size (the virtual
  // services and destinations in the kernel, as the sync saw them) is read
  // after each sync only: it walks the whole table, and the table changes
  // only in syncs. socket_reopens (a running total) is read after each sync
  // and before each scrape.
  struct Sources {
    std::function<std::pair<std::size_t, std::size_t>()> table_size;
    std::function<std::uint64_t()> socket_reopens;
    // Called after every sync (the Service health-check ports follow it).
    std::function<void()> after_sync;
  };

  // health may be null (no health server).
  MetricsObserver(metrics::Metrics& metrics, metrics::HealthState* health,
                  WallClock wall_clock = std::chrono::system_clock::now);

  void set_sources(Sources sources) { sources_ = std::move(sources); }

  // A Service or EndpointSlice change arrived: counted, and the sync it
  // needs is queued (health and ..._last_queued_timestamp_seconds).
  void change_received(k8s::ResourceKind kind);
  // Before a scrape: reads the running totals of the Sources.
  void refresh_for_scrape();
  // What a scrape's refresh (and names copy) held the sync thread for.
  void scrape_refreshed(std::chrono::nanoseconds duration) { metrics_.observe_scrape_sync_thread(duration); }
  // From the API reflectors: a watch frame of a type, a completed relist.
  void watch_event(k8s::ResourceKind kind, std::string_view type);
  void relisted(k8s::ResourceKind kind);
  // One GET to the API server (rest_client_* metrics); status 0: no answer.
  void api_request(std::string_view host, unsigned status, std::chrono::steady_clock::duration elapsed);
  // This node's object changed (nullptr: deleted): /healthz follows whether
  // the node may still take load-balancer traffic.
  void node_changed(const k8s::Node* now);

  void sync_started(agent::SyncKind kind) override;
  void sync_finished(agent::SyncKind kind, std::chrono::nanoseconds duration, bool ok) override;
  void operation_applied(ipvs::Operation::Kind kind, agent::OperationOutcome outcome,
                         std::uint64_t count) override;
  void object_skipped(k8s::ResourceKind kind, std::string_view reason) override;
  void network_programming_latency(ipvs::Family family, std::chrono::duration<double> latency) override;
  void drains_in_progress(std::size_t destinations) override;
  void pending_changes(std::size_t services, std::size_t endpoint_slices) override;
  void address_operation(bool add, bool ok) override;
  void no_local_endpoints(ipvs::Family family, std::size_t internal, std::size_t external) override;
  void nft_transaction(bool full, bool ok) override;

 private:
  metrics::Metrics& metrics_;
  metrics::HealthState* health_;
  WallClock wall_clock_;
  Sources sources_;
  std::uint64_t reopens_seen_ = 0;
};

// Whether a node may take load-balancer traffic, as kube-proxy's health
// server judges it: not while it is being deleted (or gone), nor once the
// cluster autoscaler has tainted it ToBeDeletedByClusterAutoscaler.
[[nodiscard]] bool node_eligible(const k8s::Node* node);

// Forwards every call to the target sink, telling the observer about
// Service and EndpointSlice changes first.
class ChangeNotifyingSink final : public k8s::ObjectSink {
 public:
  ChangeNotifyingSink(k8s::ObjectSink& target, MetricsObserver& observer)
      : target_(target), observer_(observer) {}

  void service_changed(const k8s::ObjectKey& key, const k8s::Service* now) override;
  void endpoint_slice_changed(const k8s::ObjectKey& key, const k8s::EndpointSlice* now) override;
  void node_changed(const k8s::Node* now) override {
    observer_.node_changed(now);
    target_.node_changed(now);
  }
  void synced(k8s::ResourceKind kind) override { target_.synced(kind); }
  void object_skipped(k8s::ResourceKind kind, const std::string& what, const std::string& reason) override {
    target_.object_skipped(kind, what, reason);
  }

 private:
  k8s::ObjectSink& target_;
  MetricsObserver& observer_;
};

}  // namespace kipvs::app
