// The render command's flags, and where it takes the node's facts from.

#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "app/render.h"
#include "test/support/builders.h"

namespace kipvs::app {
namespace {

using agent::AffinityMode;
using kipvs::test::ip;
using kipvs::test::service_key;

TEST_CASE("render flags: errors name the flag", "[desired][render]") {
  struct Row {
    std::vector<std::string_view> args;
    const char* error;
  };
  const auto row = GENERATE(values<Row>({
      {{"--hostname-override", "n"}, "--manifests"},
      {{"--manifests", "d", "--node-ip", "10.0.0.300"}, "--node-ip"},
      {{"--manifests", "d", "--ipvs-scheduler", "fast"}, "--ipvs-scheduler"},
      {{"--manifests", "d", "--ipvs-scheduler-flags", "turbo"}, "--ipvs-scheduler-flags"},
      {{"--manifests", "d", "--ipvs-scheduler-flags", "sh-port"}, "--ipvs-scheduler-flags"},
      {{"--manifests", "d", "--affinity-mode", "sticky"}, "--affinity-mode"},
      {{"--manifests", "d", "--nodeport-addresses", "10.0.0.0/99"}, "--nodeport-addresses"},
      {{"--manifests", "d", "--frobnicate", "1"}, "--frobnicate"},
      {{"--manifests"}, "--manifests"},
  }));
  const auto options = parse_render_args(row.args);
  REQUIRE_FALSE(options.has_value());
  CHECK_THAT(options.error().text(), Catch::Contains(row.error));
}

TEST_CASE("render flags: both spellings, last --node-ip wins", "[desired][render]") {
  const std::vector<std::string_view> args{"--manifests=dir",
                                           "--node-ip",
                                           "10.0.0.1",
                                           "--node-ip=fd00::1,192.168.0.1",
                                           "--ipvs-scheduler",
                                           "sh",
                                           "--ipvs-scheduler-flags=sh-port",
                                           "--affinity-mode=hash",
                                           "--proxy-name",
                                           "kipvs"};
  const auto options = parse_render_args(args);
  REQUIRE(options.has_value());
  CHECK(options->manifests == "dir");
  CHECK(options->facts.node_ips == std::vector<ipvs::Address>{ip("fd00::1"), ip("192.168.0.1")});
  CHECK(options->facts.scheduler == "sh");
  CHECK(options->facts.scheduler_flags == ipvs::flags::kSchedShPort);
  CHECK(options->facts.affinity_mode == AffinityMode::kHash);
  CHECK(options->facts.proxy_name == "kipvs");
}

TEST_CASE("render takes zone and node IPs from this node's Node object unless flags set them",
          "[desired][render]") {
  const auto dir = std::filesystem::temp_directory_path() / ("kipvs-render-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  {
    std::ofstream out(dir / "all.yaml");
    out << R"(apiVersion: v1
kind: Node
metadata:
  name: node-a
  labels: {topology.kubernetes.io/zone: zone-b}
status:
  addresses:
    - {type: InternalIP, address: 192.168.7.7}
    - {type: Hostname, address: node-a}
---
apiVersion: v1
kind: Node
metadata:
  name: node-z
  labels: {topology.kubernetes.io/zone: zone-a}
status:
  addresses: [{type: InternalIP, address: 192.168.9.9}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: NodePort
  clusterIP: 10.96.0.10
  ports: [{name: http, port: 80, nodePort: 30080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-a
  namespace: default
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
  - {addresses: ["10.244.1.5"], hints: {forZones: [{name: zone-a}]}}
  - {addresses: ["10.244.2.5"], hints: {forZones: [{name: zone-b}]}}
)";
  }
  const std::string manifests = dir.string();

  SECTION("from the Node") {
    const std::vector<std::string_view> args{"--manifests", manifests, "--hostname-override", "node-a"};
    auto result = render(*parse_render_args(args));
    REQUIRE(result.has_value());
    CHECK(result->warnings.empty());
    const auto& cluster = result->state.table.at(service_key("10.96.0.10", 80));
    REQUIRE(cluster.destinations.size() == 1);
    CHECK(cluster.destinations.begin()->first.address == ip("10.244.2.5"));  // zone-b's hint
    CHECK(result->state.table.contains(service_key("192.168.7.7", 30080)));
    CHECK(result->state.table.size() == 2);
  }
  SECTION("flags win") {
    const std::vector<std::string_view> args{"--manifests", manifests, "--hostname-override", "node-a",
                                             "--zone",      "zone-a",  "--node-ip",           "10.0.0.5"};
    auto result = render(*parse_render_args(args));
    REQUIRE(result.has_value());
    const auto& cluster = result->state.table.at(service_key("10.96.0.10", 80));
    REQUIRE(cluster.destinations.size() == 1);
    CHECK(cluster.destinations.begin()->first.address == ip("10.244.1.5"));
    CHECK(result->state.table.contains(service_key("10.0.0.5", 30080)));
    CHECK_FALSE(result->state.table.contains(service_key("192.168.7.7", 30080)));
  }
  SECTION("a missing directory is an error") {
    const std::string missing = (dir / "nope").string();
    const std::vector<std::string_view> args{"--manifests", missing};
    CHECK_FALSE(render(*parse_render_args(args)).has_value());
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kipvs::app
