#pragma once
// kipvs's Prometheus metrics: kube-proxy's names, labels and buckets where
// they apply (so existing dashboards and alerts keep working), and kipvs's
// own. One Metrics object owns the registry; the sync loop, the sources and
// the backend report through its methods (main hands them a reference), and
// the HTTP server serializes it on every scrape.
//
// Single-threaded like the rest of the agent, but prometheus-cpp's metrics
// are atomic, so a scrape on another thread would also be safe.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>

namespace kipvs::metrics {

// kube-proxy's buckets for kubeproxy_sync_proxy_rules_duration_seconds:
// exponential from 1 ms, factor 2, 15 buckets (to 16.384 s).
[[nodiscard]] prometheus::Histogram::BucketBoundaries sync_duration_buckets();
// kube-proxy's buckets for kubeproxy_network_programming_duration_seconds:
// 0.25, 0.5, 1..59 by 1, 60..115 by 5, 120..300 by 30 (seconds).
[[nodiscard]] prometheus::Histogram::BucketBoundaries network_programming_buckets();

// kube-proxy's name for Services with a Local policy and no local endpoints.
inline constexpr std::string_view kNoLocalEndpointsName =
    "kubeproxy_sync_proxy_rules_no_local_endpoints_total";

// The IP families kube-proxy labels its per-family metrics with.
inline constexpr std::string_view kIPv4 = "IPv4";
inline constexpr std::string_view kIPv6 = "IPv6";

// A collector that writes its exposition text itself. For families with
// very many series, building prometheus-cpp's MetricFamily objects costs
// several times what the text does.
class TextCollectable {
 public:
  virtual ~TextCollectable() = default;
  // Appends whole families (HELP, TYPE, samples) in the text format 0.0.4.
  virtual void append_text(std::string& out) const = 0;
  // Drops what it keeps from one scrape for the next (the scraper idles).
  virtual void forget() {}
};

class Metrics {
 public:
  // families: the IP families this node serves ("IPv4", "IPv6"). kipvs syncs
  // both in one pass, so per-sync metrics are recorded once for each.
  explicit Metrics(std::vector<std::string> families = {std::string(kIPv4)});

  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // --- kube-proxy's metrics -------------------------------------------------
  // A sync finished (successfully or not): its duration.
  void observe_sync(std::chrono::nanoseconds duration);
  // The rules are in the kernel: kubeproxy_sync_proxy_rules_last_timestamp_seconds.
  void synced_at(std::chrono::system_clock::time_point when);
  // A sync was requested by a change: ..._last_queued_timestamp_seconds.
  void queued_at(std::chrono::system_clock::time_point when);
  // From an EndpointSlice's last-change-trigger-time to the rule being in
  // the kernel. Negative latencies (clock skew) are dropped as kube-proxy does.
  void observe_network_programming(std::string_view family, std::chrono::nanoseconds latency);
  void endpoint_changes(std::uint64_t count);  // ..._endpoint_changes_total
  void set_endpoint_changes_pending(std::uint64_t count);
  void service_changes(std::uint64_t count);  // ..._service_changes_total
  void set_service_changes_pending(std::uint64_t count);
  // Services with a Local traffic policy ("internal"/"external") and no local
  // endpoints, recounted each sync (kube-proxy's gauge; exposed untyped, see
  // collect()).
  void set_no_local_endpoints(std::string_view family, std::string_view traffic_policy, std::uint64_t count);
  // The proxy health server's answers, by HTTP status code.
  void healthz_answered(int code);
  void livez_answered(int code);

  // --- client-go's, for the API server connection ----------------------------
  // One request: rest_client_requests_total{code,host,method} (code
  // "<error>" when it failed before an answer) and
  // rest_client_request_duration_seconds{host,verb} (time to the answer's
  // head), as kube-proxy's client exports them.
  void rest_client_request(std::string_view host, std::string_view method, unsigned status,
                           std::chrono::nanoseconds elapsed);

  // --- kipvs's own ----------------------------------------------------------
  // kind: add_service, edit_service, delete_service, add_destination, ...;
  // result: ok, or an errno name such as EEXIST.
  void netlink_operations(std::string_view kind, std::string_view result, std::uint64_t count = 1);
  void netlink_socket_reopened();
  // kind: Service, EndpointSlice, ...; reason: a short stable code.
  void object_skipped(std::string_view kind, std::string_view reason, std::uint64_t count = 1);
  // resource: services, endpointslices, nodes; type: ADDED, MODIFIED, ...
  void watch_event(std::string_view resource, std::string_view type);
  void relisted(std::string_view resource);
  void set_virtual_services(std::uint64_t count);
  void set_destinations(std::uint64_t count);
  void set_drains_in_progress(std::uint64_t count);
  void nftables_failed();
  void nftables_transaction(bool whole_table);
  // The metrics or health server ("metrics", "health") closed a connection
  // unanswered; reason: drop_reason_label() (http_server.h).
  void http_connection_dropped(std::string_view server, std::string_view reason);
  // What one scrape cost the sync thread (the table's size and the Services'
  // names, copied out for the scrape): kipvs_scrape_sync_thread_seconds.
  void observe_scrape_sync_thread(std::chrono::nanoseconds duration);

  // Adds a collector asked on every scrape.
  void add_collectable(std::shared_ptr<prometheus::Collectable> collectable);
  // Adds a collector that writes its own text (the kernel-throughput one);
  // serialize() appends it after the rest, collect() leaves it out.
  void add_text_collectable(std::shared_ptr<TextCollectable> collectable);

  [[nodiscard]] prometheus::Registry& registry() { return *registry_; }
  // The registry, then each add_collectable() collector.
  [[nodiscard]] std::vector<prometheus::MetricFamily> collect() const;
  // What a scrape returns, in the Prometheus text exposition format (version
  // 0.0.4): collect(), then each text collector.
  [[nodiscard]] std::string serialize() const;
  // Each text collector's forget(): between scrapes.
  void forget_between_scrapes();

 private:
  std::vector<std::string> families_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::vector<std::shared_ptr<prometheus::Collectable>> collectables_;
  std::vector<std::shared_ptr<TextCollectable>> text_collectables_;

  prometheus::Family<prometheus::Histogram>& sync_duration_;
  prometheus::Family<prometheus::Gauge>& last_sync_;
  prometheus::Family<prometheus::Gauge>& last_queued_;
  prometheus::Family<prometheus::Histogram>& network_programming_;
  prometheus::Counter& endpoint_changes_;
  prometheus::Gauge& endpoint_changes_pending_;
  prometheus::Counter& service_changes_;
  prometheus::Gauge& service_changes_pending_;
  prometheus::Family<prometheus::Gauge>& no_local_endpoints_;
  prometheus::Family<prometheus::Counter>& healthz_;
  prometheus::Family<prometheus::Counter>& livez_;

  prometheus::Family<prometheus::Counter>& rest_client_requests_;
  prometheus::Family<prometheus::Histogram>& rest_client_duration_;
  prometheus::Family<prometheus::Counter>& netlink_operations_;
  prometheus::Counter& socket_reopens_;
  prometheus::Family<prometheus::Counter>& objects_skipped_;
  prometheus::Family<prometheus::Counter>& watch_events_;
  prometheus::Family<prometheus::Counter>& relists_;
  prometheus::Histogram& scrape_sync_thread_;
  prometheus::Gauge& virtual_services_;
  prometheus::Gauge& destinations_;
  prometheus::Gauge& drains_;
  prometheus::Counter& nftables_failures_;
  prometheus::Family<prometheus::Counter>& nftables_transactions_;
  prometheus::Family<prometheus::Counter>& http_dropped_;
};

}  // namespace kipvs::metrics
