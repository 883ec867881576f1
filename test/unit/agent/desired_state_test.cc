// Desired-state rules that manifests cannot express (values the decoder
// already refuses, conflicts between Services), the incremental entry point,
// ownership, and the small parsers.

#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "agent/desired_state.h"
#include "agent/node_facts.h"
#include "ipvs/diff.h"
#include "test/support/builders.h"

namespace kipvs::agent {
namespace {

using kipvs::test::ip;

using kipvs::test::service_key;

NodeFacts facts() {
  NodeFacts facts;
  facts.node_name = "node-a";
  facts.zone = "zone-a";
  facts.node_ips = {ip("192.168.0.10")};
  return facts;
}

// A slice named NAME (its own name matters in these cases).
k8s::EndpointSlice slice(const std::string& name, const std::string& service_name,
                         const std::vector<std::string>& addresses) {
  return test::make_slice(service_name, addresses,
                          [&](k8s::EndpointSlice& slice) { slice.meta.name = name; });
}

std::vector<std::string> reasons(const DesiredState& state) {
  std::vector<std::string> result;
  for (const auto& problem : state.problems) result.push_back(problem.reason);
  return result;
}

TEST_CASE("affinity timeout outside 1..86400 falls back to 10800 with a problem", "[desired]") {
  struct Row {
    std::int32_t requested;
    std::uint32_t programmed;
    bool problem;
  };
  const auto row = GENERATE(values<Row>({{1, 1, false},
                                         {86400, 86400, false},
                                         {600, 600, false},
                                         {0, 10800, true},
                                         {86401, 10800, true},
                                         {-5, 10800, true}}));
  CAPTURE(row.requested);
  auto web = test::make_service("web", "10.96.0.10");
  web.session_affinity = k8s::SessionAffinity::kClientIP;
  web.affinity_timeout_seconds = row.requested;
  const auto state = desired_for_service(web, {}, facts());
  const auto& programmed = state.table.at(service_key("10.96.0.10", 80)).service;
  CHECK(programmed.flags == ipvs::flags::kPersistent);
  CHECK(programmed.timeout == row.programmed);
  CHECK(reasons(state) ==
        (row.problem ? std::vector<std::string>{"invalid_affinity_timeout"} : std::vector<std::string>{}));
  CHECK(state.problems.empty() != row.problem);
  if (row.problem) CHECK_THAT(state.problems[0].message, Catch::Contains("default/web"));
}

TEST_CASE("an unknown sessionAffinity is treated as None with a problem", "[desired]") {
  auto web = test::make_service("web", "10.96.0.10");
  web.session_affinity = k8s::Word<k8s::SessionAffinity>::parse("Cookie");
  const auto state = desired_for_service(web, {}, facts());
  CHECK(state.table.at(service_key("10.96.0.10", 80)).service.flags == 0);
  CHECK(reasons(state) == std::vector<std::string>{"invalid_affinity"});
}

TEST_CASE("invalid ports skip that port only", "[desired]") {
  auto web = test::make_service("web", "10.96.0.10");
  web.ports.push_back(
      k8s::ServicePort{.name = "zero", .protocol = k8s::Protocol::kTcp, .port = 0, .node_port = 0});
  auto slices = slice("web-a", "web", {"10.244.1.5"});
  slices.ports.push_back(
      k8s::EndpointPort{.name = std::nullopt, .protocol = k8s::Protocol::kTcp, .port = 81});
  slices.ports.push_back(
      k8s::EndpointPort{.name = "nope", .protocol = k8s::Protocol::kTcp, .port = std::nullopt});
  const auto state = desired_for_service(web, {&slices}, facts());
  CHECK(state.table.size() == 1);
  CHECK(state.table.at(service_key("10.96.0.10", 80)).destinations.size() == 1);
  auto got = reasons(state);
  std::ranges::sort(got);
  CHECK(got == std::vector<std::string>{"invalid_port", "invalid_port", "invalid_port"});
}

TEST_CASE("two Services claiming one virtual service: the first keeps it", "[desired]") {
  ServiceMap services;
  auto a = test::make_service("a", "10.96.0.10");
  a.external_ips = {"203.0.113.1"};
  auto b = test::make_service("b", "10.96.0.11");
  b.external_ips = {"203.0.113.1"};
  services.emplace(k8s::key_of(a), a);
  services.emplace(k8s::key_of(b), b);
  EndpointSliceMap slices;
  const auto sa = slice("a-1", "a", {"10.244.1.5"});
  const auto sb = slice("b-1", "b", {"10.244.2.5"});
  slices.emplace(k8s::key_of(sa), sa);
  slices.emplace(k8s::key_of(sb), sb);

  const auto state = compute_desired_state(services, slices, facts());
  CHECK(state.table.size() == 3);
  const auto& shared = state.table.at(service_key("203.0.113.1", 80));
  REQUIRE(shared.destinations.size() == 1);
  CHECK(shared.destinations.begin()->first.address == ip("10.244.1.5"));
  CHECK(state.origins.at(service_key("203.0.113.1", 80)).service.name == "a");
  CHECK(reasons(state) == std::vector<std::string>{"duplicate_virtual_service"});
  CHECK(state.problems[0].object.name == "b");
}

TEST_CASE("origins name the Service, the port and the kind of address", "[desired]") {
  auto web = test::make_service("web", "10.96.0.10");
  web.type = k8s::ServiceType::kNodePort;
  web.ports[0].node_port = 30080;
  web.external_ips = {"203.0.113.1"};
  const auto state = desired_for_service(web, {}, facts());
  using Kind = ServiceOrigin::Kind;
  const k8s::ObjectKey key{"default", "web"};
  CHECK(state.origins.at(service_key("10.96.0.10", 80)) == ServiceOrigin{key, "http", Kind::kClusterIp});
  CHECK(state.origins.at(service_key("203.0.113.1", 80)) == ServiceOrigin{key, "http", Kind::kExternalIp});
  CHECK(state.origins.at(service_key("192.168.0.10", 30080)) == ServiceOrigin{key, "http", Kind::kNodePort});
  CHECK(state.bound_addresses == std::set<ipvs::Address>{ip("10.96.0.10"), ip("203.0.113.1")});
}

TEST_CASE("the per-Service computation adds up to the whole", "[desired]") {
  ServiceMap services;
  EndpointSliceMap slices;
  for (int i = 0; i < 20; ++i) {
    const std::string name = "svc" + std::to_string(i);
    const std::string cluster_ip = "10.96.0." + std::to_string(i + 1);
    auto s = test::make_service(name.c_str(), cluster_ip.c_str());
    services.emplace(k8s::key_of(s), s);
    const std::string endpoint = "10.244.1." + std::to_string(i + 1);
    auto sl = slice((name + "-a").c_str(), name.c_str(), {endpoint});
    slices.emplace(k8s::key_of(sl), sl);
  }
  const auto whole = compute_desired_state(services, slices, facts());
  CHECK(whole.table.size() == 20);

  DesiredState summed;
  for (const auto& [key, s] : services) {
    std::vector<const k8s::EndpointSlice*> own;
    for (const auto& [slice_key, sl] : slices) {
      if (owning_service(sl) == key) own.push_back(&sl);
    }
    summed.merge(desired_for_service(s, own, facts()));
  }
  CHECK(summed.table == whole.table);
  CHECK(summed.bound_addresses == whole.bound_addresses);

  // Deterministic: computing again and diffing gives nothing to do.
  const auto again = compute_desired_state(services, slices, facts());
  CHECK(ipvs::diff(again.table, whole.table, [](const ipvs::ServiceKey&) { return true; }).empty());
}

TEST_CASE("slices of unknown Services are ignored, unlabelled ones reported", "[desired]") {
  ServiceMap services;
  EndpointSliceMap slices;
  auto orphan = slice("orphan-a", "gone", {"10.244.1.5"});
  auto unlabelled = slice("x", "", {"10.244.1.6"});
  unlabelled.meta.labels.clear();
  slices.emplace(k8s::key_of(orphan), orphan);
  slices.emplace(k8s::key_of(unlabelled), unlabelled);
  const auto state = compute_desired_state(services, slices, facts());
  CHECK(state.table.empty());
  CHECK(reasons(state) == std::vector<std::string>{"no_service_name"});
  CHECK(state.problems[0].kind == k8s::ResourceKind::kEndpointSlice);
}

TEST_CASE("owns_service: bound addresses and node ports, never excluded or fwmark", "[desired]") {
  auto node = facts();
  node.node_ips = {ip("192.168.0.10"), ip("10.0.0.5")};
  node.exclude_cidrs = {*Cidr::parse("10.96.100.0/24")};
  const std::set<ipvs::Address> bound{ip("10.96.0.10"), ip("10.96.100.7")};

  CHECK(owns_service(service_key("10.96.0.10", 80), bound, node));
  CHECK(owns_service(service_key("10.96.0.10", 12345), bound, node));
  CHECK_FALSE(owns_service(service_key("10.96.100.7", 80), bound, node));  // excluded although bound
  CHECK(owns_service(service_key("192.168.0.10", 30080), bound, node));
  CHECK(owns_service(service_key("10.0.0.5", 32767), bound, node));
  CHECK_FALSE(owns_service(service_key("192.168.0.10", 443), bound, node));    // keepalived's, say
  CHECK_FALSE(owns_service(service_key("192.168.0.10", 32768), bound, node));  // outside the range
  CHECK_FALSE(owns_service(service_key("192.0.2.1", 30080), bound, node));     // not a node IP

  node.node_port_addresses = {*Cidr::parse("10.0.0.0/8")};
  CHECK_FALSE(owns_service(service_key("192.168.0.10", 30080), bound, node));
  CHECK(owns_service(service_key("10.0.0.5", 30080), bound, node));

  ipvs::ServiceKey mark{
      .family = ipvs::Family::kIPv4, .protocol = ipvs::Protocol::kTcp, .address = {}, .port = 0, .fwmark = 7};
  CHECK_FALSE(owns_service(mark, bound, node));
}

TEST_CASE("Cidr parses and matches prefixes", "[desired][cidr]") {
  struct Row {
    const char* cidr;
    const char* address;
    bool inside;
  };
  const auto row = GENERATE(values<Row>({{"10.0.0.0/8", "10.255.1.2", true},
                                         {"10.0.0.0/8", "11.0.0.1", false},
                                         {"192.168.1.0/23", "192.168.0.200", true},
                                         {"192.168.1.0/23", "192.168.2.1", false},
                                         {"0.0.0.0/0", "203.0.113.9", true},
                                         {"0.0.0.0/0", "fd00::1", false},
                                         {"fd00::/8", "fd12::1", true},
                                         {"fd00::/64", "fd00:0:0:1::1", false},
                                         {"::/0", "2001:db8::1", true},
                                         {"10.1.2.3", "10.1.2.3", true},
                                         {"10.1.2.3", "10.1.2.4", false}}));
  CAPTURE(row.cidr, row.address);
  const auto cidr = Cidr::parse(row.cidr);
  REQUIRE(cidr.has_value());
  CHECK(cidr->contains(ip(row.address)) == row.inside);
}

TEST_CASE("Cidr refuses malformed text", "[desired][cidr]") {
  const char* text =
      GENERATE("", "10.0.0.0/", "10.0.0.0/33", "fd00::/129", "10.0.0.0/8x", "10.0.0/8", "x/8", "10.0.0.0/-1");
  CAPTURE(text);
  CHECK_FALSE(Cidr::parse(text).has_value());
}

TEST_CASE("scheduler names and flags", "[desired]") {
  CHECK(is_known_scheduler("rr"));
  CHECK(is_known_scheduler("twos"));
  CHECK_FALSE(is_known_scheduler("RR"));
  CHECK_FALSE(is_known_scheduler(""));
  CHECK(parse_scheduler_flags("") == 0U);
  CHECK(parse_scheduler_flags("sh-fallback, sh-port") ==
        (ipvs::flags::kSchedShFallback | ipvs::flags::kSchedShPort));
  CHECK(parse_scheduler_flags("one-packet") == ipvs::flags::kOnePacket);
  CHECK_FALSE(parse_scheduler_flags("sh-fallback,bogus").has_value());
  CHECK(flags_fit_scheduler("mh-port,one-packet", "mh"));
  CHECK_FALSE(flags_fit_scheduler("mh-port", "sh"));
  CHECK(flags_fit_scheduler("one-packet", "rr"));
}

TEST_CASE("NodeFacts: families and node-port addresses", "[desired]") {
  NodeFacts node;
  // Both families whatever the node's addresses, as kube-proxy.
  CHECK(node.families() == std::vector<ipvs::Family>{ipvs::Family::kIPv4, ipvs::Family::kIPv6});
  node.node_ips = {ip("fd00::10"), ip("127.0.0.1"), ip("::1"), ip("192.168.0.10"), ip("192.168.0.10")};
  CHECK(node.families() == std::vector<ipvs::Family>{ipvs::Family::kIPv4, ipvs::Family::kIPv6});
  CHECK(node.node_port_ips(ipvs::Family::kIPv4) == std::vector<ipvs::Address>{ip("192.168.0.10")});
  CHECK(node.node_port_ips(ipvs::Family::kIPv6) == std::vector<ipvs::Address>{ip("fd00::10")});
  // A second NIC, a bridge, link-local and loopback addresses of the host:
  // node ports on every local address but the last two, as kube-proxy.
  node.local_addresses = {ip("10.0.0.5"), ip("169.254.1.1"), ip("fe80::1"), ip("127.0.0.1"), ip("fd00::10")};
  CHECK(node.node_port_ips(ipvs::Family::kIPv4) ==
        std::vector<ipvs::Address>{ip("192.168.0.10"), ip("10.0.0.5")});
  CHECK(node.node_port_ips(ipvs::Family::kIPv6) == std::vector<ipvs::Address>{ip("fd00::10")});
  node.node_port_addresses = {*Cidr::parse("10.0.0.0/8")};
  CHECK(node.node_port_ips(ipvs::Family::kIPv4) == std::vector<ipvs::Address>{ip("10.0.0.5")});
  node.node_port_addresses.clear();
  node.local_addresses.clear();
  node.ip_families = {ipvs::Family::kIPv6};
  CHECK_FALSE(node.serves(ipvs::Family::kIPv4));
  CHECK(node.is_excluded(ip("10.0.0.1")) == false);
  node.exclude_cidrs = {*Cidr::parse("10.0.0.0/8")};
  CHECK(node.is_excluded(ip("10.0.0.1")));
}

TEST_CASE("NodeFacts: health-check node ports listen on the node's addresses inside nodePortAddresses",
          "[desired]") {
  NodeFacts node;
  node.node_ips = {ip("192.168.0.10")};
  node.local_addresses = {ip("10.0.0.5"), ip("127.0.0.1"), ip("192.168.0.10"), ip("fd00::5")};
  CHECK_FALSE(node.health_check_ips().has_value());  // every address
  // Addresses, not the CIDR's network address (10.0.0.0 is nobody's).
  node.node_port_addresses = {*Cidr::parse("10.0.0.0/8"), *Cidr::parse("fd00::/64")};
  CHECK(node.health_check_ips() == std::vector<ipvs::Address>{ip("10.0.0.5"), ip("fd00::5")});
  node.node_port_addresses = {*Cidr::parse("172.16.0.0/12")};
  CHECK(node.health_check_ips() == std::vector<ipvs::Address>{});
  // 0.0.0.0/0 and ::/0 mean every address: one socket, not two that clash.
  node.node_port_addresses = {*Cidr::parse("0.0.0.0/0"), *Cidr::parse("::/0")};
  CHECK_FALSE(node.health_check_ips().has_value());
  CHECK(node.is_node_address(ip("10.0.0.5")));
  CHECK(node.is_node_address(ip("192.168.0.10")));
  CHECK_FALSE(node.is_node_address(ip("10.96.0.1")));
}

}  // namespace
}  // namespace kipvs::agent
