#include "metrics/metrics.h"

#include <prometheus/text_serializer.h>

namespace kipvs::metrics {
namespace {

// A metric family registered in `registry`, by its name and help text.
prometheus::Family<prometheus::Counter>& counters(prometheus::Registry& registry, std::string name,
                                                  std::string help) {
  return prometheus::BuildCounter().Name(std::move(name)).Help(std::move(help)).Register(registry);
}
prometheus::Family<prometheus::Gauge>& gauges(prometheus::Registry& registry, std::string name,
                                              std::string help) {
  return prometheus::BuildGauge().Name(std::move(name)).Help(std::move(help)).Register(registry);
}
prometheus::Family<prometheus::Histogram>& histograms(prometheus::Registry& registry, std::string name,
                                                      std::string help) {
  return prometheus::BuildHistogram().Name(std::move(name)).Help(std::move(help)).Register(registry);
}

double seconds(std::chrono::system_clock::time_point when) {
  return std::chrono::duration<double>(when.time_since_epoch()).count();
}

double seconds(std::chrono::nanoseconds duration) {
  return std::chrono::duration<double>(duration).count();
}

}  // namespace

prometheus::Histogram::BucketBoundaries sync_duration_buckets() {
  prometheus::Histogram::BucketBoundaries buckets;
  double bound = 0.001;
  for (int i = 0; i < 15; ++i, bound *= 2) buckets.push_back(bound);
  return buckets;
}

prometheus::Histogram::BucketBoundaries network_programming_buckets() {
  prometheus::Histogram::BucketBoundaries buckets{0.25, 0.5};
  for (int s = 1; s <= 59; ++s) buckets.push_back(s);
  for (int s = 60; s <= 115; s += 5) buckets.push_back(s);
  for (int s = 120; s <= 300; s += 30) buckets.push_back(s);
  return buckets;
}

Metrics::Metrics(std::vector<std::string> families)
    : families_(std::move(families)),
      registry_(std::make_shared<prometheus::Registry>()),
      sync_duration_(histograms(*registry_, "kubeproxy_sync_proxy_rules_duration_seconds",
                                "SyncProxyRules latency in seconds")),
      last_sync_(gauges(*registry_, "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
                        "The last time proxy rules were successfully synced")),
      last_queued_(gauges(*registry_, "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
                          "The last time a sync of proxy rules was queued")),
      network_programming_(histograms(*registry_, "kubeproxy_network_programming_duration_seconds",
                                      "In Cluster Network Programming Latency in seconds")),
      endpoint_changes_(counters(*registry_, "kubeproxy_sync_proxy_rules_endpoint_changes_total",
                                 "Cumulative proxy rules Endpoint changes")
                            .Add({})),
      endpoint_changes_pending_(gauges(*registry_, "kubeproxy_sync_proxy_rules_endpoint_changes_pending",
                                       "Pending proxy rules Endpoint changes")
                                    .Add({})),
      service_changes_(counters(*registry_, "kubeproxy_sync_proxy_rules_service_changes_total",
                                "Cumulative proxy rules Service changes")
                           .Add({})),
      service_changes_pending_(gauges(*registry_, "kubeproxy_sync_proxy_rules_service_changes_pending",
                                      "Pending proxy rules Service changes")
                                   .Add({})),
      no_local_endpoints_(gauges(*registry_, std::string(kNoLocalEndpointsName),
                                 "Number of services with a Local traffic policy and no endpoints")),
      healthz_(counters(*registry_, "kubeproxy_proxy_healthz_total", "Cumulative proxy healthz HTTP status")),
      livez_(counters(*registry_, "kubeproxy_proxy_livez_total", "Cumulative proxy livez HTTP status")),
      rest_client_requests_(
          counters(*registry_, "rest_client_requests_total",
                   "Number of HTTP requests, partitioned by status code, method, and host.")),
      rest_client_duration_(histograms(*registry_, "rest_client_request_duration_seconds",
                                       "Request latency in seconds. Broken down by verb, and host.")),
      netlink_operations_(counters(*registry_, "kipvs_netlink_operations_total",
                                   "IPVS netlink operations sent to the kernel, by kind and result")),
      socket_reopens_(counters(*registry_, "kipvs_netlink_socket_reopens_total",
                               "Times the IPVS netlink socket was closed and opened again after an error")
                          .Add({})),
      objects_skipped_(counters(*registry_, "kipvs_objects_skipped_total",
                                "API objects or parts of them skipped as invalid, by kind and reason")),
      watch_events_(counters(*registry_, "kipvs_watch_events_total",
                             "Watch events received from the API server, by resource and type")),
      relists_(counters(*registry_, "kipvs_relists_total",
                        "Full lists of a resource after the first (expired watches, errors)")),
      scrape_sync_thread_(
          histograms(*registry_, "kipvs_scrape_sync_thread_seconds",
                     "Time a scrape of /metrics held the sync thread, copying what the scrape shows")
              .Add({}, prometheus::Histogram::BucketBoundaries{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                               0.25, 0.5, 1})),
      virtual_services_(
          gauges(*registry_, "kipvs_virtual_services", "IPVS virtual services kipvs has programmed").Add({})),
      destinations_(
          gauges(*registry_, "kipvs_destinations", "IPVS destinations (real servers) kipvs has programmed")
              .Add({})),
      drains_(gauges(*registry_, "kipvs_drains_in_progress",
                     "Destinations at weight 0 waiting for their connections to end")
                  .Add({})),
      nftables_failures_(
          counters(*registry_, "kipvs_nftables_failures_total", "Failed nftables rule updates").Add({})),
      nftables_transactions_(
          counters(*registry_, "kipvs_nftables_transactions_total",
                   "nftables transactions written, by scope: the whole table, or set elements only")),
      http_dropped_(counters(*registry_, "kipvs_http_connections_dropped_total",
                             "Connections to kipvs's metrics and health servers closed unanswered, by server "
                             "and reason: over_limit, replaced, request_timeout, write_timeout")) {
  // Create the per-family series up front so a dashboard sees them (at 0)
  // before the first sync, as kube-proxy's do.
  for (const auto& family : families_) {
    sync_duration_.Add({{"ip_family", family}}, sync_duration_buckets());
    last_sync_.Add({{"ip_family", family}});
    last_queued_.Add({{"ip_family", family}});
    network_programming_.Add({{"ip_family", family}}, network_programming_buckets());
    for (const char* policy : {"internal", "external"}) {
      no_local_endpoints_.Add({{"ip_family", family}, {"traffic_policy", policy}});
    }
  }
}

void Metrics::observe_sync(std::chrono::nanoseconds duration) {
  for (const auto& family : families_) {
    sync_duration_.Add({{"ip_family", family}}, sync_duration_buckets()).Observe(seconds(duration));
  }
}

void Metrics::synced_at(std::chrono::system_clock::time_point when) {
  for (const auto& family : families_) last_sync_.Add({{"ip_family", family}}).Set(seconds(when));
}

void Metrics::queued_at(std::chrono::system_clock::time_point when) {
  for (const auto& family : families_) last_queued_.Add({{"ip_family", family}}).Set(seconds(when));
}

void Metrics::observe_network_programming(std::string_view family, std::chrono::nanoseconds latency) {
  if (latency.count() < 0) return;
  network_programming_.Add({{"ip_family", std::string(family)}}, network_programming_buckets())
      .Observe(seconds(latency));
}

void Metrics::endpoint_changes(std::uint64_t count) {
  endpoint_changes_.Increment(static_cast<double>(count));
}
void Metrics::set_endpoint_changes_pending(std::uint64_t count) {
  endpoint_changes_pending_.Set(static_cast<double>(count));
}
void Metrics::service_changes(std::uint64_t count) {
  service_changes_.Increment(static_cast<double>(count));
}
void Metrics::set_service_changes_pending(std::uint64_t count) {
  service_changes_pending_.Set(static_cast<double>(count));
}

void Metrics::set_no_local_endpoints(std::string_view family, std::string_view traffic_policy,
                                     std::uint64_t count) {
  no_local_endpoints_
      .Add({{"ip_family", std::string(family)}, {"traffic_policy", std::string(traffic_policy)}})
      .Set(static_cast<double>(count));
}

void Metrics::healthz_answered(int code) {
  healthz_.Add({{"code", std::to_string(code)}}).Increment();
}
void Metrics::livez_answered(int code) {
  livez_.Add({{"code", std::to_string(code)}}).Increment();
}

void Metrics::netlink_operations(std::string_view kind, std::string_view result, std::uint64_t count) {
  netlink_operations_.Add({{"kind", std::string(kind)}, {"result", std::string(result)}})
      .Increment(static_cast<double>(count));
}
void Metrics::netlink_socket_reopened() {
  socket_reopens_.Increment();
}
void Metrics::object_skipped(std::string_view kind, std::string_view reason, std::uint64_t count) {
  objects_skipped_.Add({{"kind", std::string(kind)}, {"reason", std::string(reason)}})
      .Increment(static_cast<double>(count));
}
void Metrics::watch_event(std::string_view resource, std::string_view type) {
  watch_events_.Add({{"resource", std::string(resource)}, {"type", std::string(type)}}).Increment();
}
void Metrics::rest_client_request(std::string_view host, std::string_view method, unsigned status,
                                  std::chrono::nanoseconds elapsed) {
  // client-go's buckets for this histogram.
  static const prometheus::Histogram::BucketBoundaries kBuckets{0.005, 0.025, 0.1, 0.25, 0.5,  1.0,
                                                                2.0,   4.0,   8.0, 15.0, 30.0, 60.0};
  const std::string code = status == 0 ? "<error>" : std::to_string(status);
  rest_client_requests_.Add({{"code", code}, {"host", std::string(host)}, {"method", std::string(method)}})
      .Increment();
  rest_client_duration_.Add({{"host", std::string(host)}, {"verb", std::string(method)}}, kBuckets)
      .Observe(std::chrono::duration<double>(elapsed).count());
}
void Metrics::observe_scrape_sync_thread(std::chrono::nanoseconds duration) {
  scrape_sync_thread_.Observe(std::chrono::duration<double>(duration).count());
}
void Metrics::relisted(std::string_view resource) {
  relists_.Add({{"resource", std::string(resource)}}).Increment();
}
void Metrics::set_virtual_services(std::uint64_t count) {
  virtual_services_.Set(static_cast<double>(count));
}
void Metrics::set_destinations(std::uint64_t count) {
  destinations_.Set(static_cast<double>(count));
}
void Metrics::set_drains_in_progress(std::uint64_t count) {
  drains_.Set(static_cast<double>(count));
}
void Metrics::nftables_failed() {
  nftables_failures_.Increment();
}
void Metrics::nftables_transaction(bool whole_table) {
  nftables_transactions_.Add({{"scope", whole_table ? "table" : "elements"}}).Increment();
}

void Metrics::http_connection_dropped(std::string_view server, std::string_view reason) {
  http_dropped_.Add({{"server", std::string(server)}, {"reason", std::string(reason)}}).Increment();
}

void Metrics::add_collectable(std::shared_ptr<prometheus::Collectable> collectable) {
  collectables_.push_back(std::move(collectable));
}

std::vector<prometheus::MetricFamily> Metrics::collect() const {
  auto families = registry_->Collect();
  // kube-proxy's no_local_endpoints gauge carries a counter's _total suffix,
  // which promtool rejects for a gauge. Exposed untyped, the name (and every
  // query over it) stays kube-proxy's and the exposition lints clean.
  for (auto& family : families) {
    if (family.name != kNoLocalEndpointsName) continue;
    family.type = prometheus::MetricType::Untyped;
    for (auto& metric : family.metric) metric.untyped.value = metric.gauge.value;
  }
  for (const auto& collectable : collectables_) {
    auto more = collectable->Collect();
    families.insert(families.end(), std::make_move_iterator(more.begin()),
                    std::make_move_iterator(more.end()));
  }
  return families;
}

void Metrics::add_text_collectable(std::shared_ptr<TextCollectable> collectable) {
  text_collectables_.push_back(std::move(collectable));
}

void Metrics::forget_between_scrapes() {
  for (const auto& collectable : text_collectables_) collectable->forget();
}

std::string Metrics::serialize() const {
  std::string text = prometheus::TextSerializer().Serialize(collect());
  for (const auto& collectable : text_collectables_) collectable->append_text(text);
  return text;
}

}  // namespace kipvs::metrics
