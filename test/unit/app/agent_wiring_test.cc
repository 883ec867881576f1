// The agent's wiring: the sync observer feeds the metrics a scrape shows and
// the proxy health; check-config's exit codes; flags become agent options.

#include <chrono>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <catch2/catch.hpp>

#include "app/agent.h"
#include "app/config.h"
#include "app/metrics_observer.h"
#include "metrics/health.h"
#include "metrics/metrics.h"

namespace kipvs::app {
namespace {

using agent::OperationOutcome;
using agent::SyncKind;

using namespace std::chrono_literals;

TEST_CASE("the metrics observer: what a scrape shows after syncs and changes", "[agent]") {
  metrics::Metrics metrics;
  auto now = std::chrono::system_clock::time_point{} + std::chrono::seconds{1'800'000'000};
  metrics::HealthState health(60s, [&] { return now; });
  MetricsObserver observer(metrics, &health, [&] { return now; });
  std::uint64_t reopens = 0;
  int table_walks = 0;
  observer.set_sources({.table_size =
                            [&] {
                              ++table_walks;
                              return std::pair<std::size_t, std::size_t>{3, 7};
                            },
                        .socket_reopens = [&] { return reopens; },
                        .after_sync = {}});

  observer.change_received(k8s::ResourceKind::kService);
  observer.change_received(k8s::ResourceKind::kEndpointSlice);
  observer.change_received(k8s::ResourceKind::kEndpointSlice);
  observer.pending_changes(1, 2);
  now += 61s;
  CHECK(health.livez().status == 503);  // a queued change older than the timeout

  observer.operation_applied(ipvs::Operation::Kind::kAddService, OperationOutcome::kOk, 1);
  observer.operation_applied(ipvs::Operation::Kind::kAddDestination, OperationOutcome::kExists, 1);
  observer.operation_applied(ipvs::Operation::Kind::kDeleteDestination, OperationOutcome::kFailed, 1);
  observer.address_operation(true, true);
  observer.object_skipped(k8s::ResourceKind::kService, "bad_port");
  observer.drains_in_progress(2);
  observer.network_programming_latency(ipvs::Family::kIPv6, 2s);  // an IPv6 slice's change
  observer.no_local_endpoints(ipvs::Family::kIPv4, 3, 1);
  reopens = 1;
  observer.refresh_for_scrape();
  CHECK(table_walks == 0);  // a scrape does not walk the table
  reopens = 2;
  observer.sync_finished(SyncKind::kFull, 3ms, true);
  CHECK(table_walks == 1);
  CHECK(health.livez().status == 200);

  const auto text = metrics.serialize();
  CHECK_THAT(text, Catch::Contains("kubeproxy_sync_proxy_rules_service_changes_total 1"));
  CHECK_THAT(text,
             Catch::Contains("kubeproxy_network_programming_duration_seconds_count{ip_family=\"IPv6\"} 1"));
  CHECK_THAT(text,
             Catch::Contains("kubeproxy_network_programming_duration_seconds_count{ip_family=\"IPv4\"} 0"));
  CHECK_THAT(text, Catch::Contains("kubeproxy_sync_proxy_rules_no_local_endpoints_total{ip_family=\"IPv4\","
                                   "traffic_policy=\"internal\"} 3"));
  CHECK_THAT(text, Catch::Contains("kubeproxy_sync_proxy_rules_endpoint_changes_total 2"));
  CHECK_THAT(text, Catch::Contains("kubeproxy_sync_proxy_rules_endpoint_changes_pending 2"));
  CHECK_THAT(text, Catch::Contains("kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds"));
  CHECK_THAT(text, Catch::Contains("kind=\"add_service\",result=\"ok\"} 1"));
  CHECK_THAT(text, Catch::Contains("kind=\"add_destination\",result=\"EEXIST\"} 1"));
  CHECK_THAT(text, Catch::Contains("kind=\"delete_destination\",result=\"error\"} 1"));
  CHECK_THAT(text, Catch::Contains("kind=\"add_address\",result=\"ok\"} 1"));
  CHECK_THAT(text, Catch::Contains("kipvs_virtual_services 3"));
  CHECK_THAT(text, Catch::Contains("kipvs_destinations 7"));
  CHECK_THAT(text, Catch::Contains("kipvs_drains_in_progress 2"));
  CHECK_THAT(text, Catch::Contains("kipvs_netlink_socket_reopens_total 2"));
  CHECK_THAT(text, Catch::Contains("reason=\"bad_port\"} 1"));

  // A failed sync leaves the proxy unhealthy once the timeout passes.
  observer.change_received(k8s::ResourceKind::kService);
  observer.sync_finished(SyncKind::kIncremental, 1ms, false);
  now += 61s;
  CHECK(health.livez().status == 503);
}

TEST_CASE("/healthz turns 503 while the Node is deleted or tainted by the cluster autoscaler", "[agent]") {
  struct Target final : k8s::ObjectSink {
    int nodes = 0;
    void service_changed(const k8s::ObjectKey&, const k8s::Service*) override {}
    void endpoint_slice_changed(const k8s::ObjectKey&, const k8s::EndpointSlice*) override {}
    void node_changed(const k8s::Node*) override { ++nodes; }
    void synced(k8s::ResourceKind) override {}
    void object_skipped(k8s::ResourceKind, const std::string&, const std::string&) override {}
  } target;
  metrics::Metrics metrics;
  metrics::HealthState health(60s);
  MetricsObserver observer(metrics, &health);
  ChangeNotifyingSink sink(target, observer);
  k8s::Node node;
  node.meta.name = "node-a";

  sink.node_changed(&node);
  CHECK(health.healthz().status == 200);
  CHECK(health.livez().status == 200);
  node.taints.push_back(
      {.key = "ToBeDeletedByClusterAutoscaler", .value = "1700000000", .effect = "NoSchedule"});
  sink.node_changed(&node);
  CHECK(health.healthz().status == 503);
  CHECK_THAT(health.healthz().body, Catch::Contains("\"nodeEligible\": false"));
  CHECK(health.livez().status == 200);  // the proxy itself is fine: no restart
  node.taints.clear();
  sink.node_changed(&node);
  CHECK(health.healthz().status == 200);
  node.meta.being_deleted = true;
  sink.node_changed(&node);
  CHECK(health.healthz().status == 503);
  node.meta.being_deleted = false;
  sink.node_changed(&node);
  sink.node_changed(nullptr);  // gone
  CHECK(health.healthz().status == 503);
  CHECK(target.nodes == 6);  // the sync still hears of every change
}

TEST_CASE("check-config: exit codes", "[agent]") {
  std::ostringstream out;
  std::ostringstream err;
  using Args = std::vector<std::string_view>;
  CHECK(run_main(Args{"check-config", KIPVS_CONFIG_CASES_DIR "/good/kube-proxy-v1.35.yaml"}, out, err) == 0);
  CHECK(run_main(Args{"check-config", KIPVS_CONFIG_CASES_DIR "/bad/bad-duration.yaml"}, out, err) == 1);
  CHECK(run_main(Args{"check-config"}, out, err) == 2);
  CHECK(run_main(Args{"--ipvs-sync-period", "soon"}, out, err) == 1);
  CHECK_THAT(err.str(), Catch::Contains("--ipvs-sync-period"));
  std::ostringstream help;
  CHECK(run_main(Args{"--help"}, help, err) == 0);
  CHECK_THAT(help.str(), Catch::Contains("--manifests"));
}

TEST_CASE("agent options from the configuration", "[agent]") {
  const auto no_env = [](const char*) -> const char* { return nullptr; };
  using Args = std::vector<std::string_view>;
  auto config = parse_command_line(Args{"--manifests", "/m", "--graceful-termination-period", "0s",
                                        "--ipvs-min-sync-period", "100ms", "--ipvs-sync-period", "10s"});
  REQUIRE(config);
  auto options = agent_options(*config, no_env);
  REQUIRE(options);
  CHECK(options->sync.grace_period == std::nullopt);  // 0s: wait for the connections
  CHECK(options->sync.min_sync_period == 100ms);
  CHECK(options->sync.sync_period == 10s);
  CHECK(options->protobuf_lists);
  CHECK(options->sync.routes_first);               // Service IPs bound as addresses, routes first
  CHECK_FALSE(options->rate_estimation_disabled);  // the node's run_estimation is left alone
  CHECK(
      agent_options(
          parse_command_line(Args{"--manifests", "/m", "--ipvs-rate-estimation", "disabled"}).value(), no_env)
          ->rate_estimation_disabled);
  CHECK_FALSE(
      agent_options(
          parse_command_line(Args{"--manifests", "/m", "--service-ip-binding", "localRoute"}).value(), no_env)
          ->sync.routes_first);
  CHECK_FALSE(agent_options(
                  parse_command_line(Args{"--manifests", "/m", "--kube-api-content-type", "application/json"})
                      .value(),
                  no_env)
                  ->protobuf_lists);
  // No source: the API only in a cluster.
  CHECK_FALSE(agent_options(parse_command_line(Args{}).value(), no_env));
  CHECK(agent_options(parse_command_line(Args{}).value(), [](const char* name) -> const char* {
          return std::string_view(name) == "KUBERNETES_SERVICE_HOST" ? "10.96.0.1" : nullptr;
        })->use_api);
}

}  // namespace
}  // namespace kipvs::app
