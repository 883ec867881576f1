// The registry's names, buckets and values as a scrape shows them, and the
// kernel-throughput collector's series.

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <prometheus/text_serializer.h>

#include "ipvs/model.h"
#include "metrics/metrics.h"
#include "metrics/process.h"
#include "metrics/throughput.h"
#include "test/support/builders.h"

namespace {

using namespace std::chrono_literals;
using kipvs::metrics::Metrics;

bool has_line(const std::string& text, const std::string& line) {
  return text.starts_with(line + "\n") || text.find("\n" + line + "\n") != std::string::npos;
}

using kipvs::test::ip;

}  // namespace

TEST_CASE("kube-proxy's bucket layouts", "[metrics]") {
  const auto sync = kipvs::metrics::sync_duration_buckets();
  REQUIRE(sync.size() == 15);
  CHECK(sync.front() == Approx(0.001));
  CHECK(sync[1] == Approx(0.002));
  CHECK(sync.back() == Approx(16.384));

  const auto programming = kipvs::metrics::network_programming_buckets();
  // 0.25, 0.5, 1..59 (59), 60..115 by 5 (12), 120..300 by 30 (7)
  REQUIRE(programming.size() == 2 + 59 + 12 + 7);
  CHECK(programming[0] == 0.25);
  CHECK(programming[1] == 0.5);
  CHECK(programming[2] == 1);
  CHECK(programming[60] == 59);
  CHECK(programming[61] == 60);
  CHECK(programming[72] == 115);
  CHECK(programming[73] == 120);
  CHECK(programming.back() == 300);
}

TEST_CASE("a scrape carries kube-proxy's metrics with their types", "[metrics]") {
  Metrics metrics({"IPv4", "IPv6"});
  const std::string text = metrics.serialize();
  for (const char* line : {
           "# TYPE kubeproxy_sync_proxy_rules_duration_seconds histogram",
           "# TYPE kubeproxy_sync_proxy_rules_last_timestamp_seconds gauge",
           "# TYPE kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds gauge",
           "# TYPE kubeproxy_network_programming_duration_seconds histogram",
           "# TYPE kubeproxy_sync_proxy_rules_endpoint_changes_total counter",
           "# TYPE kubeproxy_sync_proxy_rules_endpoint_changes_pending gauge",
           "# TYPE kubeproxy_sync_proxy_rules_service_changes_total counter",
           "# TYPE kubeproxy_sync_proxy_rules_service_changes_pending gauge",
           "# TYPE kubeproxy_sync_proxy_rules_no_local_endpoints_total untyped",
           "# TYPE kipvs_netlink_socket_reopens_total counter",
           "# TYPE kipvs_virtual_services gauge",
           "# TYPE kipvs_destinations gauge",
           "# TYPE kipvs_drains_in_progress gauge",
           "# TYPE kipvs_nftables_failures_total counter",
           "# TYPE kipvs_scrape_sync_thread_seconds histogram",
           // Per-family series exist before the first sync.
           "kubeproxy_sync_proxy_rules_duration_seconds_bucket{ip_family=\"IPv4\",le=\"0.001\"} 0",
           "kubeproxy_sync_proxy_rules_duration_seconds_bucket{ip_family=\"IPv6\",le=\"16.384\"} 0",
           "kubeproxy_network_programming_duration_seconds_bucket{ip_family=\"IPv4\",le=\"0.25\"} 0",
           "kubeproxy_network_programming_duration_seconds_bucket{ip_family=\"IPv4\",le=\"300\"} 0",
           "kubeproxy_sync_proxy_rules_no_local_endpoints_total{ip_family=\"IPv6\",traffic_policy="
           "\"external\"} 0",
       }) {
    INFO(line);
    CHECK(has_line(text, line));
  }
}

TEST_CASE("reported values show up in the scrape", "[metrics]") {
  Metrics metrics({"IPv4"});
  metrics.observe_sync(3ms);
  metrics.observe_sync(40ms);
  metrics.synced_at(std::chrono::system_clock::time_point{1'700'000'000s});
  metrics.queued_at(std::chrono::system_clock::time_point{1'700'000'001s});
  metrics.observe_network_programming("IPv4", 1500ms);
  metrics.observe_network_programming("IPv4", -1s);  // clock skew: dropped
  metrics.endpoint_changes(3);
  metrics.set_endpoint_changes_pending(2);
  metrics.service_changes(1);
  metrics.set_service_changes_pending(0);
  metrics.set_no_local_endpoints("IPv4", "external", 4);
  metrics.netlink_operations("add_destination", "ok", 10);
  metrics.netlink_operations("add_destination", "EEXIST");
  metrics.netlink_socket_reopened();
  metrics.object_skipped("EndpointSlice", "no_service_name");
  metrics.watch_event("services", "ADDED");
  metrics.watch_event("services", "ADDED");
  metrics.relisted("endpointslices");
  metrics.set_virtual_services(7);
  metrics.set_destinations(21);
  metrics.set_drains_in_progress(2);
  metrics.nftables_failed();
  metrics.healthz_answered(503);

  const std::string text = metrics.serialize();
  for (const char* line : {
           "kubeproxy_sync_proxy_rules_duration_seconds_count{ip_family=\"IPv4\"} 2",
           "kubeproxy_sync_proxy_rules_duration_seconds_bucket{ip_family=\"IPv4\",le=\"0.002\"} 0",
           "kubeproxy_sync_proxy_rules_duration_seconds_bucket{ip_family=\"IPv4\",le=\"0.004\"} 1",
           "kubeproxy_sync_proxy_rules_duration_seconds_bucket{ip_family=\"IPv4\",le=\"0.064\"} 2",
           "kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family=\"IPv4\"} 1700000000",
           "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds{ip_family=\"IPv4\"} 1700000001",
           "kubeproxy_network_programming_duration_seconds_count{ip_family=\"IPv4\"} 1",
           "kubeproxy_network_programming_duration_seconds_bucket{ip_family=\"IPv4\",le=\"1\"} 0",
           "kubeproxy_network_programming_duration_seconds_bucket{ip_family=\"IPv4\",le=\"2\"} 1",
           "kubeproxy_sync_proxy_rules_endpoint_changes_total 3",
           "kubeproxy_sync_proxy_rules_endpoint_changes_pending 2",
           "kubeproxy_sync_proxy_rules_service_changes_total 1",
           "kubeproxy_sync_proxy_rules_no_local_endpoints_total{ip_family=\"IPv4\",traffic_policy="
           "\"external\"} 4",
           "kipvs_netlink_operations_total{kind=\"add_destination\",result=\"ok\"} 10",
           "kipvs_netlink_operations_total{kind=\"add_destination\",result=\"EEXIST\"} 1",
           "kipvs_netlink_socket_reopens_total 1",
           "kipvs_objects_skipped_total{kind=\"EndpointSlice\",reason=\"no_service_name\"} 1",
           "kipvs_watch_events_total{resource=\"services\",type=\"ADDED\"} 2",
           "kipvs_relists_total{resource=\"endpointslices\"} 1",
           "kipvs_virtual_services 7",
           "kipvs_destinations 21",
           "kipvs_drains_in_progress 2",
           "kipvs_nftables_failures_total 1",
           "kubeproxy_proxy_healthz_total{code=\"503\"} 1",
       }) {
    INFO(line);
    CHECK(has_line(text, line));
  }
}

TEST_CASE("throughput is read from the source on every scrape", "[metrics][throughput]") {
  int calls = 0;
  std::uint64_t bytes = 1000;
  auto collector = std::make_shared<kipvs::metrics::ThroughputCollector>([&] {
    ++calls;
    kipvs::metrics::ServiceThroughput svc;
    svc.namespace_name = "default";
    svc.name = "web";
    svc.port_name = "http";
    svc.protocol = kipvs::ipvs::Protocol::kTcp;
    svc.address = ip("10.96.0.10");
    svc.port = 80;
    svc.stats.connections = 5;
    svc.stats.packets_in = 50;
    svc.stats.packets_out = 40;
    svc.stats.bytes_in = bytes;
    svc.stats.bytes_out = 2 * bytes;
    kipvs::metrics::DestinationThroughput dst;
    dst.address = ip("fd00::17");
    dst.port = 8080;
    dst.stats.connections = 3;
    dst.stats.bytes_in = 600;
    dst.active_connections = 2;
    dst.inactive_connections = 1;
    dst.weight = 0;
    svc.destinations.push_back(dst);
    return kipvs::metrics::ThroughputSnapshot{svc};
  });
  Metrics metrics;
  metrics.add_text_collectable(collector);

  const std::string first = metrics.serialize();
  CHECK(calls == 1);
  const std::string svc =
      R"(namespace="default",service="web",port_name="http",protocol="TCP",address="10.96.0.10:80")";
  const std::string dst = svc + R"(,endpoint="[fd00::17]:8080")";
  for (const std::string& line : std::vector<std::string>{
           "# TYPE kipvs_service_connections_total counter",
           "# TYPE kipvs_destination_active_connections gauge",
           "kipvs_service_connections_total{" + svc + "} 5",
           "kipvs_service_packets_total{" + svc + ",direction=\"in\"} 50",
           "kipvs_service_packets_total{" + svc + ",direction=\"out\"} 40",
           "kipvs_service_bytes_total{" + svc + ",direction=\"in\"} 1000",
           "kipvs_service_bytes_total{" + svc + ",direction=\"out\"} 2000",
           "kipvs_destination_connections_total{" + dst + "} 3",
           "kipvs_destination_bytes_total{" + dst + ",direction=\"in\"} 600",
           "kipvs_destination_active_connections{" + dst + "} 2",
           "kipvs_destination_inactive_connections{" + dst + "} 1",
           "kipvs_destination_weight{" + dst + "} 0",
       }) {
    INFO(line);
    CHECK(has_line(first, line));
  }

  bytes = 5000;  // the kernel's counter rose between scrapes
  const std::string second = metrics.serialize();
  CHECK(calls == 2);
  CHECK(has_line(second, "kipvs_service_bytes_total{" + svc + ",direction=\"in\"} 5000"));
}

TEST_CASE("throughput families are present with no services", "[metrics][throughput]") {
  const auto families = kipvs::metrics::ThroughputCollector::families({});
  REQUIRE(families.size() == 9);
  for (const auto& family : families) CHECK(family.metric.empty());
}

TEST_CASE("a kernel dump becomes a snapshot of the named services only", "[metrics][throughput]") {
  kipvs::ipvs::ServiceWithDestinations ours;
  ours.service.service.key = {kipvs::ipvs::Family::kIPv6, kipvs::ipvs::Protocol::kUdp, ip("fd00::10"), 53, 0};
  ours.service.stats.bytes_out = 77;
  kipvs::ipvs::DestinationState dst;
  dst.destination.key = {ip("fd00::20"), 5353};
  dst.destination.weight = 3;
  dst.active_connections = 9;
  dst.stats.packets_in = 4;
  ours.destinations.push_back(dst);
  kipvs::ipvs::ServiceWithDestinations foreign;  // someone else's service
  foreign.service.service.key = {kipvs::ipvs::Family::kIPv4, kipvs::ipvs::Protocol::kTcp, ip("192.0.2.1"), 80,
                                 0};

  const auto snapshot = kipvs::metrics::throughput_snapshot(
      {foreign, ours},
      [&](const kipvs::ipvs::ServiceKey& key) -> std::optional<kipvs::metrics::ServiceLabels> {
        if (key.address == ip("fd00::10"))
          return kipvs::metrics::ServiceLabels{"kube-system", "dns", "dns-udp"};
        return std::nullopt;
      });
  REQUIRE(snapshot.size() == 1);
  const auto& svc = snapshot[0];
  CHECK(svc.namespace_name == "kube-system");
  CHECK(svc.name == "dns");
  CHECK(svc.port_name == "dns-udp");
  CHECK(svc.protocol == kipvs::ipvs::Protocol::kUdp);
  CHECK(svc.port == 53);
  CHECK(svc.stats.bytes_out == 77);
  REQUIRE(svc.destinations.size() == 1);
  CHECK(svc.destinations[0].port == 5353);
  CHECK(svc.destinations[0].weight == 3);
  CHECK(svc.destinations[0].active_connections == 9);
  CHECK(svc.destinations[0].stats.packets_in == 4);

  const std::string text = [&] {
    Metrics metrics;
    metrics.add_collectable(std::make_shared<kipvs::metrics::ThroughputCollector>([&] { return snapshot; }));
    return metrics.serialize();
  }();
  CHECK(has_line(
      text,
      R"(kipvs_service_bytes_total{namespace="kube-system",service="dns",port_name="dns-udp",protocol="UDP",address="[fd00::10]:53",direction="out"} 77)"));
}

TEST_CASE("a young snapshot is served again instead of dumping anew", "[metrics][throughput]") {
  int dumps = 0;
  std::chrono::steady_clock::time_point now{};
  kipvs::metrics::ThroughputCollector collector(
      [&] {
        ++dumps;
        return kipvs::metrics::ThroughputSnapshot{};
      },
      {.destinations = true, .max_age = 5s}, [&] { return now; });
  (void)collector.Collect();
  now += 4s;
  (void)collector.Collect();
  CHECK(dumps == 1);
  now += 1s;
  (void)collector.Collect();
  CHECK(dumps == 2);
  // Forgotten (the scraper idles): the next scrape dumps anew, however young.
  collector.forget();
  std::string text;
  collector.append_text(text);
  CHECK(dumps == 3);
  collector.append_text(text);
  CHECK(dumps == 3);
}

namespace {

kipvs::metrics::ThroughputSnapshot varied_snapshot() {
  kipvs::metrics::ThroughputSnapshot snapshot;
  for (int i = 0; i < 3; ++i) {
    kipvs::metrics::ServiceThroughput svc;
    svc.namespace_name = "ns" + std::to_string(i);
    svc.name = i == 2 ? "odd\"name\\x" : "svc" + std::to_string(i);  // escaping is exercised
    svc.port_name = i == 0 ? "" : "p";
    svc.protocol = i == 1 ? kipvs::ipvs::Protocol::kSctp : kipvs::ipvs::Protocol::kTcp;
    svc.address = ip(i == 1 ? "fd00::1" : "10.0.0.1");
    svc.port = static_cast<std::uint16_t>(80 + i);
    svc.stats = {1U + i, 2U + i, 3U + i, 4U + i, 5U + i, 0, 0, 0, 0, 0};
    for (int j = 0; j < i + 1; ++j) {
      kipvs::metrics::DestinationThroughput dst;
      dst.address = ip(i == 1 ? "fd00::2" : "10.1.0.2");
      dst.port = static_cast<std::uint16_t>(8000 + j);
      dst.stats = {7U + j, 8, 9, 10, 11, 0, 0, 0, 0, 0};
      dst.active_connections = 5;
      dst.inactive_connections = static_cast<std::uint32_t>(j);
      dst.weight = j;
      svc.destinations.push_back(dst);
    }
    snapshot.push_back(svc);
  }
  return snapshot;
}

}  // namespace

TEST_CASE("the direct text writer prints what prometheus-cpp's serializer prints", "[metrics][throughput]") {
  const auto snapshot = varied_snapshot();
  for (const bool destinations : {true, false}) {
    INFO("destinations " << destinations);
    const auto expected = prometheus::TextSerializer().Serialize(
        kipvs::metrics::ThroughputCollector::families(snapshot, destinations));
    std::string text;
    kipvs::metrics::ThroughputCollector::write_text(snapshot, destinations, text);
    CHECK(text == expected);
    CHECK((text.find("kipvs_destination_weight{") != std::string::npos) == destinations);
  }
  CHECK(prometheus::TextSerializer()
            .Serialize(kipvs::metrics::ThroughputCollector::families(snapshot))
            .find(R"(service="odd\"name\\x")") != std::string::npos);
}

TEST_CASE("64-bit kernel counters are printed exactly", "[metrics][throughput]") {
  auto snapshot = varied_snapshot();
  snapshot[0].stats.bytes_in = 18446744073709551615ULL;  // a double would print 1.8446744073709552e+19
  std::string text;
  kipvs::metrics::ThroughputCollector::write_text(snapshot, false, text);
  CHECK(text.find(",direction=\"in\"} 18446744073709551615\n") != std::string::npos);
}

TEST_CASE("process_* series from procfs, as client_golang's collector reads them", "[metrics]") {
  const auto dir = std::filesystem::temp_directory_path() / ("kipvs-proc-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir / "self" / "fd");
  for (const char* fd : {"0", "1", "2", "7"}) std::ofstream(dir / "self" / "fd" / fd) << "";
  // A command name with a space and a parenthesis, as /proc allows.
  std::ofstream(dir / "self" / "stat") << "4242 (kipvs (x) y) S 1 4242 4242 0 -1 4194560 9133 0 0 0 "
                                          "250 125 0 0 20 0 3 0 5000 104857600 2560 18446744073709551615\n";
  std::ofstream(dir / "stat") << "cpu  1 2 3\nbtime 1764800000\nprocesses 99\n";
  const auto stats = kipvs::metrics::read_process_stats(dir, 100, 4096, 1048576);
  REQUIRE(stats);
  CHECK(stats->cpu_seconds == 3.75);
  CHECK(stats->start_time_seconds == 1764800050);
  CHECK(stats->virtual_bytes == 104857600);
  CHECK(stats->resident_bytes == 2560.0 * 4096);
  CHECK(stats->open_fds == 4);
  CHECK(stats->max_fds == 1048576);
  const auto text = kipvs::metrics::process_metrics_text(*stats);
  CHECK_THAT(text,
             Catch::Contains("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 3.75\n"));
  CHECK_THAT(text, Catch::Contains("\nprocess_start_time_seconds 1764800050\n"));
  std::filesystem::remove(dir / "stat");
  CHECK_FALSE(kipvs::metrics::read_process_stats(dir, 100, 4096, 1));
  std::filesystem::remove_all(dir);

  // This process, for real.
  const auto own = kipvs::metrics::read_own_process_stats();
  REQUIRE(own);
  CHECK(own->resident_bytes > 1e6);
  CHECK(own->open_fds >= 3);
  CHECK(own->start_time_seconds > 1.7e9);
}

TEST_CASE("client-go's request series: by code, host and method, <error> without an answer", "[metrics]") {
  Metrics metrics;
  metrics.rest_client_request("10.0.0.5:6443", "GET", 200, std::chrono::milliseconds{30});
  metrics.rest_client_request("10.0.0.5:6443", "GET", 0, std::chrono::seconds{31});
  const auto text = metrics.serialize();
  CHECK_THAT(text, Catch::Contains(
                       "rest_client_requests_total{code=\"200\",host=\"10.0.0.5:6443\",method=\"GET\"} 1"));
  CHECK_THAT(text,
             Catch::Contains(
                 "rest_client_requests_total{code=\"<error>\",host=\"10.0.0.5:6443\",method=\"GET\"} 1"));
  CHECK_THAT(
      text,
      Catch::Contains(
          "rest_client_request_duration_seconds_bucket{host=\"10.0.0.5:6443\",verb=\"GET\",le=\"0.1\"} 1"));
  CHECK_THAT(text, Catch::Contains(
                       "rest_client_request_duration_seconds_count{host=\"10.0.0.5:6443\",verb=\"GET\"} 2"));
}

TEST_CASE("every metric the chart's dashboard and alerts may name is in a real scrape with its type",
          "[metrics][chart]") {
  std::ifstream listed(KIPVS_EXPORTED_METRICS_FILE);
  REQUIRE(listed);
  Metrics metrics({"IPv4", "IPv6"});
  metrics.add_text_collectable(
      std::make_shared<kipvs::metrics::ThroughputCollector>([] { return varied_snapshot(); }));
  // Families with labels appear once something is counted, as a running
  // agent's do (and as client_golang's vectors do).
  metrics.netlink_operations("add_service", "ok");
  metrics.object_skipped("Service", "bad_port");
  metrics.watch_event("services", "ADDED");
  metrics.relisted("services");
  metrics.rest_client_request("10.96.0.1:443", "GET", 200, std::chrono::milliseconds{30});
  metrics.http_connection_dropped("health", "over_limit");
  metrics.add_text_collectable(std::make_shared<kipvs::metrics::ProcessCollector>());
  const std::string scrape = metrics.serialize();
  int checked = 0;
  for (std::string line; std::getline(listed, line);) {
    if (line.empty() || line.starts_with('#')) continue;
    const auto space = line.find(' ');
    REQUIRE(space != std::string::npos);
    INFO(line);
    CHECK(has_line(scrape, "# TYPE " + line.substr(0, space) + " " + line.substr(space + 1)));
    ++checked;
  }
  CHECK(checked >= 20);
}
