// The nftables part of the desired state (which virtual services masquerade,
// hairpin endpoints, source ranges) and its place in the sync loop: written
// before the IPVS rules, element changes only for an endpoint change, and a
// failed transaction reported without touching IPVS.

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "address/address_backend.h"
#include "address/fake_address_backend.h"
#include "agent/desired_state.h"
#include "agent/nft_state.h"
#include "agent/sync.h"
#include "app/agent.h"
#include "app/metrics_observer.h"
#include "conntrack/fake_conntrack_backend.h"
#include "ipvs/fake_backend.h"
#include "metrics/metrics.h"
#include "nftables/fake_nft_backend.h"
#include "nftables/nft_backend.h"
#include "test/support/builders.h"

namespace kipvs::agent {
namespace {

using app::Config;
using app::DetectLocalMode;
using app::MetricsObserver;
using app::nft_config;
using app::parse_agent_args;
using ipvs::Family;
using nftables::nft_set_name;
namespace nft_set = nftables::nft_set;

using kipvs::test::ip;

// Endpoints on this node (node-a) unless said otherwise.
k8s::EndpointSlice slice(const std::string& service_name, const std::vector<std::string>& addresses,
                         const std::string& node = "node-a", k8s::Protocol protocol = k8s::Protocol::kTcp) {
  return test::make_slice(service_name, addresses, [&](k8s::EndpointSlice& slice) {
    test::on_node(node)(slice);
    test::with_protocol(protocol)(slice);
  });
}

NodeFacts facts() {
  NodeFacts facts;
  facts.node_name = "node-a";
  facts.node_ips = {ip("192.168.0.10")};
  return facts;
}

const std::set<std::string>& set_of(const nftables::NftState& state, std::string_view base) {
  static const std::set<std::string> kEmpty;
  auto it = state.elements.find(nft_set_name(base, Family::kIPv4));
  return it == state.elements.end() ? kEmpty : it->second;
}

nftables::NftState state_for(const k8s::Service& object, const std::vector<k8s::EndpointSlice>& slices) {
  std::vector<const k8s::EndpointSlice*> pointers;
  for (const auto& s : slices) pointers.push_back(&s);
  const auto desired = desired_for_service(object, pointers, facts());
  return nft_state(desired.origins, desired.bound_addresses, nft_config(Config{}));
}

TEST_CASE("nft state: cluster IP, node port by traffic policy, hairpin", "[nft]") {
  auto object = test::make_service("web", "10.96.0.10");
  object.type = k8s::ServiceType::kNodePort;
  object.ports[0].node_port = 30080;
  const std::vector slices{slice("web", {"10.244.0.5"}), slice("web", {"10.244.1.5"}, "node-b")};

  SECTION("externalTrafficPolicy Cluster: the node port masquerades") {
    const auto state = state_for(object, slices);
    CHECK(set_of(state, nft_set::kVipAddresses) == std::set<std::string>{"10.96.0.10"});
    CHECK(set_of(state, nft_set::kVipPorts) == std::set<std::string>{"10.96.0.10 . tcp . 80"});
    CHECK(set_of(state, nft_set::kClusterPorts) == std::set<std::string>{"10.96.0.10 . tcp . 80"});
    CHECK(set_of(state, nft_set::kMasqueradePorts) == std::set<std::string>{"192.168.0.10 . tcp . 30080"});
    // Only the endpoint on this node can hairpin here.
    CHECK(set_of(state, nft_set::kHairpin) == std::set<std::string>{"10.244.0.5 . tcp . 8080 . 10.244.0.5"});
    CHECK(state.config.masquerade_mark == 0x4000);
  }
  SECTION("externalTrafficPolicy Local: the client's source is kept") {
    object.external_traffic_policy = k8s::TrafficPolicy::kLocal;
    const auto state = state_for(object, slices);
    CHECK(set_of(state, nft_set::kMasqueradePorts).empty());
    CHECK(set_of(state, nft_set::kClusterPorts) == std::set<std::string>{"10.96.0.10 . tcp . 80"});
  }
}

TEST_CASE("nft state: loadBalancerSourceRanges, host bits cleared, bad ranges reported", "[nft]") {
  auto object = test::make_service("lb", "10.96.0.20");
  object.type = k8s::ServiceType::kLoadBalancer;
  object.load_balancer_ingress.push_back(
      {.ip = "203.0.113.7", .hostname = "", .ip_mode = k8s::IngressIpMode::kVip});
  object.load_balancer_source_ranges = {"192.0.2.77/24", " 198.51.100.1/32", "nonsense"};
  const auto state = state_for(object, {slice("lb", {"10.244.0.5"})});
  CHECK(set_of(state, nft_set::kFirewallPorts) == std::set<std::string>{"203.0.113.7 . tcp . 80"});
  CHECK(set_of(state, nft_set::kFirewallAllow) ==
        std::set<std::string>{"203.0.113.7 . tcp . 80 . 192.0.2.0/24",
                              "203.0.113.7 . tcp . 80 . 198.51.100.1/32"});
  CHECK(set_of(state, nft_set::kVipPorts).contains("203.0.113.7 . tcp . 80"));
  CHECK(set_of(state, nft_set::kMasqueradePorts).contains("203.0.113.7 . tcp . 80"));

  const auto desired = desired_for_service(object, {}, facts());
  REQUIRE(desired.problems.size() == 1);
  CHECK(desired.problems[0].message.find("nonsense") != std::string::npos);
}

TEST_CASE("nft state: an external or load-balancer IP that is a node address is served, not filtered",
          "[nft]") {
  // The node's own 192.168.0.10 (a node IP) and 192.168.0.11 (another
  // interface's address) must keep every other port reachable: SSH, the
  // kubelet, an API server on the node.
  auto object = test::make_service("lb", "10.96.0.30");
  object.type = k8s::ServiceType::kLoadBalancer;
  object.external_ips = {"192.168.0.10", "203.0.113.8"};
  object.load_balancer_ingress.push_back(
      {.ip = "192.168.0.11", .hostname = "", .ip_mode = k8s::IngressIpMode::kVip});
  auto node = facts();
  node.local_addresses = {ip("192.168.0.11"), ip("127.0.0.1")};
  const auto endpoints = slice("lb", {"10.244.0.5"});
  const auto desired = desired_for_service(object, {&endpoints}, node);
  CHECK(desired.table.contains(ipvs::ServiceKey{.family = Family::kIPv4,
                                                .protocol = ipvs::Protocol::kTcp,
                                                .address = ip("192.168.0.10"),
                                                .port = 80,
                                                .fwmark = 0}));
  CHECK(desired.table.contains(ipvs::ServiceKey{.family = Family::kIPv4,
                                                .protocol = ipvs::Protocol::kTcp,
                                                .address = ip("192.168.0.11"),
                                                .port = 80,
                                                .fwmark = 0}));
  CHECK(desired.bound_addresses == std::set{ip("10.96.0.30"), ip("203.0.113.8")});
  const auto state = nft_state(desired.origins, desired.bound_addresses, nft_config(Config{}));
  CHECK(set_of(state, nft_set::kVipAddresses) == std::set<std::string>{"10.96.0.30", "203.0.113.8"});
  CHECK(set_of(state, nft_set::kVipPorts) ==
        std::set<std::string>{"10.96.0.30 . tcp . 80", "203.0.113.8 . tcp . 80"});
  // Still masqueraded as external traffic (policy Cluster).
  CHECK(set_of(state, nft_set::kMasqueradePorts).contains("192.168.0.10 . tcp . 80"));
}

TEST_CASE("nft state: a load balancer's probe of its health-check node port passes the port filter",
          "[nft]") {
  auto object = test::make_service("lb", "10.96.0.20");
  object.type = k8s::ServiceType::kLoadBalancer;
  object.external_traffic_policy = k8s::TrafficPolicy::kLocal;
  object.health_check_node_port = 31999;
  object.ports[0].node_port = 30080;
  object.load_balancer_ingress.push_back(
      {.ip = "203.0.113.7", .hostname = "", .ip_mode = k8s::IngressIpMode::kVip});
  const auto state = state_for(object, {slice("lb", {"10.244.0.5"})});
  CHECK(set_of(state, nft_set::kVipPorts) == std::set<std::string>{"10.96.0.20 . tcp . 80",
                                                                   "203.0.113.7 . tcp . 80",
                                                                   "203.0.113.7 . tcp . 31999"});

  // Policy Cluster has no health-check port: nothing more is let through.
  object.external_traffic_policy = k8s::TrafficPolicy::kCluster;
  CHECK_FALSE(set_of(state_for(object, {slice("lb", {"10.244.0.5"})}), nft_set::kVipPorts)
                  .contains("203.0.113.7 . tcp . 31999"));
}

TEST_CASE("nft config: CIDR host bits, masquerade bit", "[nft]") {
  Config input;
  input.cluster_cidrs = {*Cidr::parse("10.244.3.4/16")};
  input.masquerade_all = true;
  input.masquerade_bit = 15;
  const auto config = nft_config(input);
  CHECK(config.cluster_cidrs == std::vector<std::string>{"10.244.0.0/16"});
  CHECK(config.local_interface.empty());
  CHECK(config.masquerade_all);
  CHECK(config.masquerade_mark == 0x8000);
  CHECK(network_of(*Cidr::parse("fd00:10:244:1::7/56")).to_string() == "fd00:10:244::/56");
}

TEST_CASE("nft config: detectLocalMode picks the pods' traffic by CIDR, bridge or interface prefix",
          "[nft]") {
  Config input;
  input.cluster_cidrs = {*Cidr::parse("10.244.0.0/16")};
  input.detect_local = {
      .mode = DetectLocalMode::kBridgeInterface, .bridge_interface = "cni0", .interface_name_prefix = "veth"};
  auto config = nft_config(input);
  CHECK(config.local_interface == "cni0");
  CHECK(config.cluster_cidrs.empty());
  input.detect_local.mode = DetectLocalMode::kInterfaceNamePrefix;
  config = nft_config(input);
  CHECK(config.local_interface == "veth*");
  CHECK(config.cluster_cidrs.empty());
}

TEST_CASE("nft state: the node's own connection to a load balancer when a source range admits the node",
          "[nft]") {
  // kube-proxy's allowFromNode: the node's connection to an LB IP bound here
  // has that IP as its source.
  auto object = test::make_service("lb", "10.96.0.20");
  object.type = k8s::ServiceType::kLoadBalancer;
  object.load_balancer_ingress.push_back(
      {.ip = "203.0.113.7", .hostname = "", .ip_mode = k8s::IngressIpMode::kVip});
  SECTION("a range holds the node IP 192.168.0.10: the LB IP itself is admitted") {
    object.load_balancer_source_ranges = {"192.0.2.0/24", "192.168.0.0/16"};
    CHECK(set_of(state_for(object, {slice("lb", {"10.244.0.5"})}), nft_set::kFirewallAllow) ==
          std::set<std::string>{"203.0.113.7 . tcp . 80 . 192.0.2.0/24",
                                "203.0.113.7 . tcp . 80 . 192.168.0.0/16",
                                "203.0.113.7 . tcp . 80 . 203.0.113.7/32"});
  }
  SECTION("no range holds it: the node is kept out like anyone else") {
    object.load_balancer_source_ranges = {"192.0.2.0/24"};
    CHECK(set_of(state_for(object, {slice("lb", {"10.244.0.5"})}), nft_set::kFirewallAllow) ==
          std::set<std::string>{"203.0.113.7 . tcp . 80 . 192.0.2.0/24"});
  }
}

// An IPVS backend that notes whether the nftables table was there when the
// first IPVS write came.
class OrderingBackend final : public ipvs::Backend {
 public:
  OrderingBackend(ipvs::FakeBackend& kernel, nftables::FakeNftBackend& nft) : kernel_(kernel), nft_(nft) {}
  std::vector<ipvs::OperationResult> apply(std::span<const ipvs::Operation> operations) override {
    // A write to a service on an address not yet bound (a cold start's
    // cluster IPs, written while the lists arrive) reaches no client.
    for (const auto& operation : operations) {
      if (!check_order || nft_.table().has_value()) break;
      if (reachable && !reachable(operation.service.key)) {
        ++unreachable_writes_before_table;
        continue;
      }
      first_write_saw_table = false;
    }
    if (check_order && !operations.empty() && !first_write_saw_table && nft_.table().has_value())
      first_write_saw_table = true;
    return kernel_.apply(operations);
  }
  std::expected<std::vector<ipvs::ServiceState>, Error> list_services() override {
    return kernel_.list_services();
  }
  std::expected<std::vector<ipvs::DestinationState>, Error> list_destinations(
      const ipvs::ServiceKey& key) override {
    return kernel_.list_destinations(key);
  }
  std::expected<std::vector<ipvs::ServiceWithDestinations>, Error> list_all() override {
    return kernel_.list_all();
  }
  std::expected<ipvs::Timeouts, Error> get_timeouts() override { return kernel_.get_timeouts(); }
  std::expected<void, Error> set_timeouts(const ipvs::Timeouts& timeouts) override {
    return kernel_.set_timeouts(timeouts);
  }
  std::expected<ipvs::Info, Error> get_info() override { return kernel_.get_info(); }
  std::expected<void, Error> flush() override { return kernel_.flush(); }

  std::optional<bool> first_write_saw_table;  // the first write a client could reach
  std::size_t unreachable_writes_before_table = 0;
  bool check_order = true;                                 // off where the table is written on another thread
  std::function<bool(const ipvs::ServiceKey&)> reachable;  // default: every service

 private:
  ipvs::FakeBackend& kernel_;
  nftables::FakeNftBackend& nft_;
};

// An address backend that notes every address bound before the nftables
// table listed it among the virtual addresses: from the bind on, clients
// reach its services, so their rules must be there first.
class OrderingLinks final : public address::AddressBackend {
 public:
  OrderingLinks(address::FakeAddressBackend& links, nftables::FakeNftBackend& nft)
      : links_(links), nft_(nft) {}
  std::expected<void, Error> ensure_link(const std::string& name) override {
    return links_.ensure_link(name);
  }
  std::expected<std::set<ipvs::Address>, Error> list_addresses(const std::string& name) override {
    return links_.list_addresses(name);
  }
  std::expected<void, Error> add_address(const std::string& name, const ipvs::Address& address) override {
    if (!nft_.holds(nftables::nft_set_name(nftables::nft_set::kVipAddresses, address.family),
                    nftables::nft_element(address)))
      ++binds_before_table;
    return links_.add_address(name, address);
  }
  std::expected<void, Error> delete_address(const std::string& name, const ipvs::Address& address) override {
    return links_.delete_address(name, address);
  }
  std::expected<void, Error> delete_link(const std::string& name) override {
    return links_.delete_link(name);
  }
  std::vector<std::expected<void, Error>> add_local_routes(
      const std::string& name, std::span<const ipvs::Address> addresses) override {
    for (const auto& address : addresses) {
      if (!nft_.holds(nftables::nft_set_name(nftables::nft_set::kVipAddresses, address.family),
                      nftables::nft_element(address)))
        ++binds_before_table;
    }
    return links_.add_local_routes(name, addresses);
  }
  std::set<ipvs::Address> local_routes(const std::string& name) const override {
    return links_.local_routes(name);
  }
  std::expected<void, Error> promote(const std::string& name, const ipvs::Address& address) override {
    return links_.promote(name, address);
  }

  std::atomic<std::size_t> binds_before_table = 0;

 private:
  address::FakeAddressBackend& links_;
  nftables::FakeNftBackend& nft_;
};

struct NftObserver final : NoopSyncObserver {
  int nft_ok = 0;
  int nft_failed = 0;
  int finished_failed = 0;
  void sync_finished(SyncKind, std::chrono::nanoseconds, bool ok) override { finished_failed += ok ? 0 : 1; }
  void nft_transaction(bool, bool ok) override { ++(ok ? nft_ok : nft_failed); }
};

struct Rig {
  boost::asio::io_context io;
  ipvs::FakeBackend kernel;
  address::FakeAddressBackend links;
  nftables::FakeNftBackend nft;
  conntrack::FakeConntrackBackend conntrack;
  OrderingBackend ordering{kernel, nft};
  OrderingLinks ordered_links{links, nft};
  NftObserver observer;
  std::vector<std::string> logs;
  std::unique_ptr<Sync> sync;

  explicit Rig(bool routes_first = false) {
    SyncOptions options;
    options.facts = facts();
    options.routes_first = routes_first;
    Config config;
    config.cluster_cidrs = {*Cidr::parse("10.244.0.0/16")};
    options.nft = nft_config(config);
    options.log = [this](std::string_view line) { logs.emplace_back(line); };
    sync = std::make_unique<Sync>(io, ordering, ordered_links, observer, std::move(options), &nft, conntrack);
    source = std::make_unique<test::SourceCache>(*sync);
    // A client reaches a service on a bound address, or on one kipvs does
    // not bind (a node's own).
    ordering.reachable = [this](const ipvs::ServiceKey& key) {
      return links.addresses("kube-ipvs0").contains(key.address) ||
             !sync->desired_addresses().contains(key.address);
    };
  }
  std::unique_ptr<test::SourceCache> source;
  void add(const k8s::Service& object) { source->add(object); }
  void add(const k8s::EndpointSlice& object) { source->add(object); }
  void start() {
    source->synced();
    io.restart();
    io.poll();
    REQUIRE(sync->initial_sync_done());
  }
  // Runs the loop until a cold start's writes so far have landed.
  void settle() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{5};
    do {
      io.restart();
      io.run_for(std::chrono::milliseconds{5});
    } while (sync->cold_start_writing() && std::chrono::steady_clock::now() < deadline);
  }
};

TEST_CASE("sync: a cold start's first sync writes the table, then binds every address (routes first or not)",
          "[nft][sync]") {
  const bool routes_first = GENERATE(false, true);
  CAPTURE(routes_first);
  Rig rig(routes_first);
  for (int i = 0; i < 1300; ++i) {
    const auto name = "svc-" + std::to_string(i);
    rig.add(test::make_service(name, "10.96." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1)));
    rig.add(slice(name, {"10.244.0.5"}));
  }
  rig.settle();
  rig.io.restart();
  rig.io.run_for(std::chrono::milliseconds{50});
  CHECK_FALSE(rig.sync->initial_sync_done());
  CHECK(rig.links.addresses("kube-ipvs0").empty());
  CHECK(rig.links.local_routes("kube-ipvs0").empty());
  CHECK(rig.nft.transactions == 0);
  CHECK(rig.kernel.service_count() > 0);  // the virtual services still go in as the lists arrive

  rig.start();  // and the swap, when routes first: start() runs the loop until it is idle
  CHECK(rig.links.addresses("kube-ipvs0").size() == 1300);
  CHECK(rig.links.local_routes("kube-ipvs0").empty());
  CHECK(rig.links.adds == (routes_first ? 0 : 1300));
  CHECK(rig.links.route_adds == (routes_first ? 1300 : 0));
  CHECK(rig.links.promotions == (routes_first ? 1300 : 0));
  CHECK(rig.ordered_links.binds_before_table == 0);
  CHECK(rig.nft.full_writes == 1);
  CHECK(rig.nft.transactions == 1);
  CHECK(rig.nft.table() == rig.sync->desired_nft());
  auto dump = rig.kernel.list_all();
  REQUIRE(dump);
  CHECK(ipvs::table_from(*dump) == rig.sync->desired());
}

TEST_CASE("sync: the table comes with the first virtual services, then element changes only",
          "[nft][sync][acceptance]") {
  Rig rig;
  for (int i = 0; i < 50; ++i) {
    const auto name = "svc-" + std::to_string(i);
    rig.add(test::make_service(name, "10.96.0." + std::to_string(i + 1)));
    rig.add(slice(name, {"10.244.0.5", "10.244.0.6"}));
  }
  // A cold start: the virtual services go in while the lists arrive, on
  // addresses not yet bound; the table is there before any is reachable.
  rig.settle();
  CHECK(rig.kernel.service_count() == 50);
  CHECK(rig.ordering.unreachable_writes_before_table == 150);
  rig.start();
  REQUIRE(rig.kernel.service_count() == 50);
  CHECK(rig.ordering.first_write_saw_table != false);
  CHECK(rig.nft.full_writes == 1);
  CHECK(rig.nft.transactions == 1);
  CHECK(rig.nft.table() == rig.sync->desired_nft());

  // One endpoint replaced in one Service: one hairpin element added, no
  // rewrite (10.244.0.6 stays, other Services still use it).
  rig.add(slice("svc-7", {"10.244.0.5", "10.244.0.9"}));
  REQUIRE(rig.sync->sync_dirty());
  CHECK(rig.nft.full_writes == 1);
  CHECK(rig.nft.transactions == 2);
  CHECK(rig.nft.element_changes == 1);
  CHECK(rig.nft.table()->elements.at("hairpin_v4").contains("10.244.0.9 . tcp . 8080 . 10.244.0.9"));

  // The last user of an endpoint lets go of it: the element goes.
  rig.add(slice("svc-7", {"10.244.0.5"}));
  REQUIRE(rig.sync->sync_dirty());
  CHECK(rig.nft.full_writes == 1);
  CHECK(rig.nft.element_changes == 2);
  CHECK_FALSE(rig.nft.table()->elements.at("hairpin_v4").contains("10.244.0.9 . tcp . 8080 . 10.244.0.9"));
  CHECK(rig.nft.table() == rig.sync->desired_nft());

  // Nothing changed: no transaction; an idle resync neither.
  REQUIRE(rig.sync->sync_dirty());
  REQUIRE(rig.sync->sync_full());
  CHECK(rig.nft.transactions == 3);
  CHECK(rig.observer.nft_failed == 0);

  // The ruleset flushed behind kipvs's back: the next resync writes it again.
  rig.nft.drop_table();
  REQUIRE(rig.sync->sync_full());
  CHECK(rig.nft.full_writes == 2);
  CHECK(rig.nft.table() == rig.sync->desired_nft());
}

TEST_CASE("sync: incremental syncs touch the table and the link only for what changed", "[nft][sync]") {
  Rig rig;
  for (int i = 0; i < 20; ++i) {
    const auto name = "svc-" + std::to_string(i);
    rig.add(test::make_service(name, "10.96.0." + std::to_string(i + 1)));
    rig.add(slice(name, {"10.244.0.5"}, "node-b"));
  }
  rig.start();
  REQUIRE(rig.nft.transactions == 1);
  const auto address_writes = [&] { return rig.links.adds + rig.links.deletes; };
  const auto writes_after_start = address_writes();

  // An endpoint on another node: IPVS changes; the table is not even
  // computed (at 10,000 Services that costs more than the change), and the
  // link is left alone.
  const auto computed = rig.sync->stats().nft_computations;
  rig.add(slice("svc-3", {"10.244.0.5", "10.244.1.7"}, "node-b"));
  REQUIRE(rig.sync->sync_dirty());
  CHECK(rig.kernel.destination_count() == 21);
  CHECK(rig.nft.transactions == 1);
  CHECK(rig.sync->stats().nft_computations == computed);
  CHECK(address_writes() == writes_after_start);

  // A new Service: its address is bound and its elements are added.
  rig.add(test::make_service("new", "10.96.0.77"));
  rig.add(slice("new", {"10.244.0.8"}, "node-b"));
  REQUIRE(rig.sync->sync_dirty());
  CHECK(rig.links.addresses("kube-ipvs0").contains(ip("10.96.0.77")));
  CHECK(address_writes() == writes_after_start + 1);
  CHECK(rig.nft.transactions == 2);
  CHECK(rig.nft.full_writes == 1);
  CHECK(rig.nft.table() == rig.sync->desired_nft());

  // An endpoint of it moves to this node: a hairpin element, no address.
  rig.add(slice("new", {"10.244.0.8"}, "node-a"));
  REQUIRE(rig.sync->sync_dirty());
  CHECK(rig.nft.transactions == 3);
  CHECK(rig.nft.table()->elements.at("hairpin_v4").contains("10.244.0.8 . tcp . 8080 . 10.244.0.8"));
  CHECK(address_writes() == writes_after_start + 1);

  // The Service goes: its address and its elements go with it.
  rig.sync->service_changed(k8s::ObjectKey{"default", "new"}, nullptr);
  REQUIRE(rig.sync->sync_dirty());
  CHECK_FALSE(rig.links.addresses("kube-ipvs0").contains(ip("10.96.0.77")));
  CHECK(address_writes() == writes_after_start + 2);
  CHECK(rig.nft.transactions == 4);
  CHECK(rig.nft.table() == rig.sync->desired_nft());
  CHECK(rig.links.addresses("kube-ipvs0") == rig.sync->desired_addresses());

  // A resync finds nothing to do, and does not compute the table either.
  const auto computed_before_resync = rig.sync->stats().nft_computations;
  REQUIRE(rig.sync->sync_full());
  CHECK(rig.sync->stats().nft_computations == computed_before_resync);
  CHECK(rig.nft.transactions == 4);
  CHECK(address_writes() == writes_after_start + 2);
}

TEST_CASE("sync: a failed nftables transaction is reported, counted and retried, and IPVS is untouched",
          "[nft][sync]") {
  Rig rig;
  rig.add(test::make_service("web", "10.96.0.10"));
  rig.add(slice("web", {"10.244.0.5"}));
  // A kernel without nf_tables.
  rig.nft.fail_code = EOPNOTSUPP;
  rig.start();
  CHECK(rig.kernel.service_count() == 1);
  CHECK(rig.kernel.destination_count() == 1);
  CHECK(rig.observer.nft_failed == 1);
  CHECK(rig.observer.finished_failed == 1);
  REQUIRE_FALSE(rig.logs.empty());
  bool said = false;
  for (const auto& line : rig.logs) said |= line.find("nftables transaction failed") != std::string::npos;
  CHECK(said);
  CHECK_FALSE(rig.sync->written_nft().has_value());

  // Another change while it still fails: IPVS follows, nothing is removed.
  rig.add(slice("web", {"10.244.0.5", "10.244.0.6"}));
  CHECK_FALSE(rig.sync->sync_dirty());
  CHECK(rig.kernel.destination_count() == 2);
  CHECK(rig.observer.nft_failed == 2);

  // nf_tables comes back: the next sync writes the whole table.
  rig.nft.fail_code = 0;
  REQUIRE(rig.sync->sync_dirty());
  CHECK(rig.nft.full_writes == 1);
  CHECK(rig.nft.table() == rig.sync->desired_nft());
  CHECK(rig.kernel.destination_count() == 2);
}

TEST_CASE(
    "sync: a first sync writes a large table on a worker thread while IPVS is written, and a failure is "
    "retried",
    "[nft][sync]") {
  const auto populate = [](Rig& rig) {
    rig.ordering.check_order = false;
    for (int i = 0; i < 200; ++i) {
      const auto name = "svc-" + std::to_string(i);
      rig.add(test::make_service(name, "10.96.1." + std::to_string(i + 1)));
      rig.add(slice(name, {"10.244.0.5", "10.244.0.6"}));
    }
  };
  SECTION("written") {
    Rig rig;
    populate(rig);
    rig.start();
    CHECK(rig.kernel.service_count() == 200);
    CHECK(rig.nft.full_writes == 1);
    CHECK(rig.nft.table() == rig.sync->desired_nft());
    CHECK(rig.sync->written_nft() == rig.nft.table());
    CHECK(rig.observer.nft_ok == 1);
    CHECK(rig.nft.apply_threads.size() == 1);
    CHECK_FALSE(rig.nft.apply_threads.contains(std::this_thread::get_id()));

    // Element changes are small: written on this thread, before IPVS.
    rig.nft.apply_threads.clear();
    rig.add(test::make_service("new", "10.96.2.1"));
    rig.add(slice("new", {"10.244.0.8"}));
    REQUIRE(rig.sync->sync_dirty());
    CHECK(rig.nft.full_writes == 1);
    CHECK(rig.nft.table() == rig.sync->desired_nft());
    CHECK(rig.nft.apply_threads == std::set<std::thread::id>{std::this_thread::get_id()});
  }
  SECTION("failed, then retried") {
    Rig rig;
    populate(rig);
    rig.nft.fail_code = EOPNOTSUPP;
    rig.start();
    CHECK(rig.kernel.service_count() == 200);
    CHECK(rig.kernel.destination_count() == 400);
    CHECK(rig.observer.nft_failed == 1);
    CHECK(rig.observer.finished_failed == 1);
    CHECK(std::ranges::count_if(rig.logs, [](const std::string& line) {
            return line.find("nftables transaction failed (whole table)") != std::string::npos;
          }) == 1);
    CHECK_FALSE(rig.sync->written_nft().has_value());

    rig.nft.fail_code = 0;
    REQUIRE(rig.sync->sync_full());
    CHECK(rig.nft.full_writes == 1);
    CHECK(rig.nft.table() == rig.sync->desired_nft());
    CHECK(rig.observer.nft_ok == 1);
  }
}

TEST_CASE("sync: a removed UDP real server's conntrack entries are cleared, TCP ones are left",
          "[nft][sync]") {
  Rig rig;
  auto dns = test::make_service("dns", "10.96.0.53");
  dns.ports[0].protocol = k8s::Protocol::kUdp;
  rig.add(dns);
  rig.add(slice("dns", {"10.244.0.5", "10.244.0.6"}, "node-a", k8s::Protocol::kUdp));
  rig.add(test::make_service("web", "10.96.0.80"));
  rig.add(slice("web", {"10.244.0.5", "10.244.0.6"}));
  rig.start();
  CHECK(rig.conntrack.cleared.empty());

  rig.add(slice("dns", {"10.244.0.6"}, "node-a", k8s::Protocol::kUdp));
  rig.add(slice("web", {"10.244.0.6"}));
  REQUIRE(rig.sync->sync_dirty());
  REQUIRE(rig.conntrack.cleared.size() == 1);
  CHECK(rig.conntrack.cleared[0] == conntrack::ConntrackFlow{ip("10.96.0.53"), 80, ip("10.244.0.5"), 8080});

  // The whole Service goes: its last real server's entries too.
  rig.sync->service_changed(k8s::key_of(dns), nullptr);
  REQUIRE(rig.sync->sync_dirty());
  REQUIRE(rig.conntrack.cleared.size() == 2);
  CHECK(rig.conntrack.cleared[1] == conntrack::ConntrackFlow{ip("10.96.0.53"), 80, ip("10.244.0.6"), 8080});
}

TEST_CASE("sync: stale UDP entries of a Service that gets its first endpoint, and of every one at a resync",
          "[nft][sync]") {
  Rig rig;
  auto dns = test::make_service("dns", "10.96.0.53");
  dns.ports[0].protocol = k8s::Protocol::kUdp;
  dns.type = k8s::ServiceType::kNodePort;
  dns.ports[0].node_port = 30053;
  rig.add(dns);
  rig.add(
      slice("dns", {}, "node-a", k8s::Protocol::kUdp));  // no endpoint yet: clients' entries point nowhere
  rig.add(test::make_service("web", "10.96.0.80"));
  rig.add(slice("web", {"10.244.0.5"}));
  rig.start();
  // Nothing to sweep yet: no UDP service has an endpoint.
  CHECK(rig.conntrack.stale_cleanups.empty());
  CHECK(rig.conntrack.sweeps.empty());

  // The first endpoint: entries to the cluster IP and the node port that it
  // does not answer go (kube-proxy's CleanStaleEntries).
  rig.add(slice("dns", {"10.244.0.6"}, "node-a", k8s::Protocol::kUdp));
  REQUIRE(rig.sync->sync_dirty());
  REQUIRE(rig.conntrack.stale_cleanups.size() == 1);
  const std::set<conntrack::UdpEndpoint> server{{ip("10.244.0.6"), 8080}};
  CHECK(rig.conntrack.stale_cleanups[0] ==
        conntrack::UdpServing{{{ip("10.96.0.53"), 80}, server}, {{ip("192.168.0.10"), 30053}, server}});

  // A second endpoint is an ordinary change: no conntrack dump for it.
  rig.add(slice("dns", {"10.244.0.6", "10.244.0.7"}, "node-a", k8s::Protocol::kUdp));
  REQUIRE(rig.sync->sync_dirty());
  CHECK(rig.conntrack.stale_cleanups.size() == 1);

  // A resync sweeps every UDP service with endpoints, as kube-proxy's syncs
  // do: each UDP entry is checked against the Service it was sent to.
  const conntrack::ConntrackFlow answered{ip("10.96.0.53"), 80, ip("10.244.0.7"), 8080};
  const conntrack::ConntrackFlow unanswered{ip("10.96.0.53"), 80, ip("10.96.0.53"), 80};  // no server then
  const conntrack::ConntrackFlow old_server{ip("192.168.0.10"), 30053, ip("10.244.0.5"), 8080};
  const conntrack::ConntrackFlow other_port{ip("10.96.0.53"), 53, ip("10.244.0.9"), 53};   // not a Service's
  const conntrack::ConntrackFlow tcp_service{ip("10.96.0.80"), 80, ip("10.244.0.9"), 80};  // UDP to a TCP one
  rig.conntrack.table = {answered, unanswered, old_server, other_port, tcp_service};
  REQUIRE(rig.sync->sync_full());
  CHECK(rig.conntrack.stale_cleanups.size() == 1);  // no map of every service's servers
  REQUIRE(rig.conntrack.sweeps.size() == 1);
  CHECK(rig.conntrack.sweeps[0] == std::vector{ipvs::Family::kIPv4});
  CHECK(rig.conntrack.table == std::vector{answered, other_port, tcp_service});

  // A UDP Service without endpoints left: nothing of its to sweep, and no
  // dump when no UDP Service has one.
  rig.add(slice("dns", {}, "node-a", k8s::Protocol::kUdp));
  REQUIRE(rig.sync->sync_dirty());
  rig.conntrack.table = {answered};
  REQUIRE(rig.sync->sync_full());
  CHECK(rig.conntrack.sweeps.size() == 1);
  CHECK(rig.conntrack.table == std::vector{answered});
}

TEST_CASE("a failed nftables transaction shows in kipvs_nftables_failures_total", "[nft][metrics]") {
  boost::asio::io_context io;
  ipvs::FakeBackend kernel;
  nftables::FakeNftBackend nft;
  nft.fail_code = EPROTONOSUPPORT;
  address::FakeAddressBackend links;
  conntrack::NoConntrack no_conntrack;
  metrics::Metrics metrics;
  MetricsObserver observer(metrics, nullptr);
  SyncOptions options;
  options.facts = facts();
  options.log = [](std::string_view) {};
  Sync sync(io, kernel, links, observer, std::move(options), &nft, no_conntrack);
  const auto web = test::make_service("web", "10.96.0.10");
  sync.service_changed(k8s::key_of(web), &web);
  sync.synced(k8s::ResourceKind::kService);
  sync.synced(k8s::ResourceKind::kEndpointSlice);
  io.poll();
  CHECK(kernel.service_count() == 1);
  CHECK_THAT(metrics.serialize(), Catch::Contains("kipvs_nftables_failures_total 1"));
  CHECK_THAT(metrics.serialize(), Catch::Contains(R"(kipvs_nftables_transactions_total{scope="table"} 1)"));
}

TEST_CASE("flags: clusterCIDR, masqueradeAll and masqueradeBit shape the table", "[nft][agent]") {
  using Args = std::vector<std::string_view>;
  auto options = parse_agent_args(Args{"--manifests", "/nonexistent", "--cluster-cidr", "10.244.1.0/16",
                                       "--masquerade-all", "--iptables-masquerade-bit", "3"});
  REQUIRE(options.has_value());
  CHECK(options->sync.nft.cluster_cidrs == std::vector<std::string>{"10.244.0.0/16"});
  CHECK(options->sync.nft.masquerade_all);
  CHECK(options->sync.nft.masquerade_mark == 0x8);
}

TEST_CASE("flags: detect-local-mode and its interface shape the table", "[nft][agent]") {
  using Args = std::vector<std::string_view>;
  auto options = parse_agent_args(Args{"--manifests", "/nonexistent", "--cluster-cidr", "10.244.1.0/16",
                                       "--detect-local-mode", "InterfaceNamePrefix",
                                       "--pod-interface-name-prefix", "veth"});
  REQUIRE(options.has_value());
  CHECK(options->sync.nft.local_interface == "veth*");
  CHECK(options->sync.nft.cluster_cidrs.empty());
}

}  // namespace
}  // namespace kipvs::agent
