// The sync loop against the fake backends: operation counts,
// adoption after a restart, drift repair, ownership,
// per-operation errors, graceful termination and coalescing.

#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
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
#include "agent/sync.h"
#include "app/agent.h"
#include "app/service_names.h"
#include "app/sysctl.h"
#include "ipvs/fake_backend.h"
#include "test/support/builders.h"

namespace kipvs::agent {
namespace {

using Kind = ipvs::Operation::Kind;
using namespace std::chrono_literals;
using app::apply_sysctls;
using app::format_operation;
using app::kube_proxy_sysctls;
using app::node_name;
using app::parse_agent_args;
using app::parse_go_duration;
using app::ServiceNames;
using app::set_ipvs_timeouts;

using kipvs::test::ip;

using kipvs::test::destination_key;
using kipvs::test::service_key;

ipvs::ServiceKey fwmark42() {
  ipvs::ServiceKey key;
  key.fwmark = 42;
  return key;
}

k8s::Service service(const std::string& name, const std::string& cluster_ip,
                     k8s::Protocol protocol = k8s::Protocol::kTcp) {
  return test::make_service(name, cluster_ip, test::with_protocol(protocol));
}

k8s::EndpointSlice slice(const std::string& service_name, const std::vector<std::string>& addresses,
                         k8s::Protocol protocol = k8s::Protocol::kTcp) {
  return test::make_slice(service_name, addresses, test::with_protocol(protocol));
}

std::string cluster_ip(int i) {
  return "10.96." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1);
}
std::string name(int i) {
  return "svc-" + std::to_string(i);
}

// Records what the metrics layer would hear.
struct RecordingObserver final : SyncObserver {
  std::map<std::pair<Kind, OperationOutcome>, int> outcomes;
  std::vector<std::chrono::duration<double>> latencies;
  std::vector<std::string> skipped;
  int started = 0;
  int finished_ok = 0;
  int finished_failed = 0;
  std::size_t drains = 0;
  std::size_t pending_services = 0;

  void sync_started(SyncKind) override { ++started; }
  void sync_finished(SyncKind, std::chrono::nanoseconds, bool ok) override {
    ++(ok ? finished_ok : finished_failed);
  }
  void operation_applied(Kind kind, OperationOutcome outcome, std::uint64_t count) override {
    outcomes[{kind, outcome}] += count;
  }
  void object_skipped(k8s::ResourceKind, std::string_view reason) override { skipped.emplace_back(reason); }
  void network_programming_latency(ipvs::Family, std::chrono::duration<double> latency) override {
    latencies.push_back(latency);
  }
  void drains_in_progress(std::size_t count) override { drains = count; }
  void pending_changes(std::size_t services, std::size_t) override { pending_services = services; }
  std::size_t address_successes = 0;
  std::size_t address_failures = 0;
  void address_operation(bool add, bool ok) override {
    if (add) ++(ok ? address_successes : address_failures);
  }
  void no_local_endpoints(ipvs::Family family, std::size_t internal, std::size_t external) override {
    no_local[family] = {internal, external};
  }
  std::map<ipvs::Family, std::pair<std::size_t, std::size_t>> no_local;
};

// The node: its kernel table and dummy interface outlive a Sync, so a test
// can restart the agent over them.
// The fake kernel, with the order of the operations it was given.
struct Kernel : ipvs::FakeBackend {
  std::vector<std::pair<Kind, ipvs::ServiceKey>> applied;
  const address::FakeAddressBackend* links = nullptr;  // the node's, when set
  std::vector<ipvs::ServiceKey> added_already_bound;   // services whose address was local first
  std::vector<ipvs::OperationResult> apply(std::span<const ipvs::Operation> operations) override {
    for (const auto& operation : operations) {
      applied.emplace_back(operation.kind, operation.service.key);
      if (links != nullptr && operation.kind == Kind::kAddService &&
          links->addresses("kube-ipvs0").contains(operation.service.key.address))
        added_already_bound.push_back(operation.service.key);
    }
    apply_threads.insert(std::this_thread::get_id());
    return FakeBackend::apply(operations);
  }
  std::set<std::thread::id> apply_threads;
  std::size_t destination_reads = 0;
  std::optional<ipvs::ServiceKey> fail_destinations_of;  // EIO for this service's destinations
  std::expected<std::vector<ipvs::DestinationState>, Error> list_destinations(
      const ipvs::ServiceKey& key) override {
    ++destination_reads;
    if (key == fail_destinations_of) return std::unexpected(Error{EIO, "injected read failure"});
    return FakeBackend::list_destinations(key);
  }
  [[nodiscard]] bool has_destination(const ipvs::ServiceKey& key, const ipvs::DestinationKey& destination) {
    auto listed = FakeBackend::list_destinations(key);
    return listed && std::ranges::any_of(*listed, [&](const ipvs::DestinationState& state) {
             return state.destination.key == destination;
           });
  }
};

struct Node {
  Kernel kernel;
  address::FakeAddressBackend links;

  // Writes a table into the kernel behind kipvs's back (an operator's, or
  // one a previous run left).
  void put(const ipvs::Table& table) {
    REQUIRE(std::ranges::all_of(kernel.apply(ipvs::diff(table, {}, {}).operations),
                                [](const auto& result) { return result.has_value(); }));
  }
  // One operation behind kipvs's back.
  void change(const ipvs::Operation& operation) { REQUIRE(kernel.apply(std::span(&operation, 1))[0]); }
  void delete_service(const ipvs::ServiceKey& service) {
    change({.kind = Kind::kDeleteService, .service = {.key = service}, .destination = {}});
  }
  void delete_destination(const ipvs::ServiceKey& service, const ipvs::DestinationKey& destination) {
    change(
        {.kind = Kind::kDeleteDestination, .service = {.key = service}, .destination = {.key = destination}});
  }
};

struct Agent {
  boost::asio::io_context io;
  RecordingObserver observer;
  ipvs::DrainClock::time_point now = ipvs::DrainClock::time_point{} + 1000h;
  std::vector<std::string> logs;
  conntrack::NoConntrack no_conntrack;
  std::unique_ptr<Sync> sync;

  explicit Agent(Node& node, SyncOptions options = {}) {
    options.facts.node_name = "node-a";
    options.facts.node_ips = {ip("192.168.0.10")};
    options.clock = [this] { return now; };
    options.log = [this](std::string_view line) { logs.emplace_back(line); };
    sync = std::make_unique<Sync>(io, node.kernel, node.links, observer, std::move(options), nullptr,
                                  no_conntrack);
    source = std::make_unique<test::SourceCache>(*sync);
  }

  void pump() {
    io.restart();
    io.poll();
  }
  std::unique_ptr<test::SourceCache> source;
  void add(const k8s::Service& object) { source->add(object); }
  void add(const k8s::EndpointSlice& object) { source->add(object); }
  // The lists are done: the first sync runs (and may fail).
  void lists_synced() {
    source->synced();
    pump();
  }
  void start() {
    lists_synced();
    REQUIRE(sync->initial_sync_done());
  }
  // The lists are done: the loop runs until the first sync has ended, not
  // the work that sync posts after it.
  void first_sync_only() {
    source->synced();
    io.restart();
    while (!sync->initial_sync_done()) REQUIRE(io.poll_one() == 1);
  }
  // Runs the loop until `done` holds or `deadline` passes.
  void run_until(const std::function<bool()>& done, std::chrono::steady_clock::time_point deadline) {
    while (!done() && std::chrono::steady_clock::now() < deadline) {
      io.restart();
      io.run_for(5ms);
    }
  }
};

// Whether a full resync finds the kernel as it should be: no writes.
bool resync_writes_nothing(Node& node, Agent& agent) {
  node.kernel.reset_counts();
  REQUIRE(agent.sync->sync_full());
  return node.kernel.total_operations() == 0;
}

void populate(Agent& agent, int services) {
  for (int i = 0; i < services; ++i) {
    agent.add(service(name(i), cluster_ip(i)));
    agent.add(slice(name(i), {"10.244.1.5", "10.244.2.5"}));
  }
}

TEST_CASE("operation counts: one endpoint of 10,000 services, idle resync, restart", "[sync][acceptance]") {
  constexpr int kServices = 10000;
  Node node;
  {
    Agent agent(node);
    populate(agent, kServices);
    agent.start();
    REQUIRE(node.kernel.service_count() == kServices);
    REQUIRE(node.kernel.destination_count() == 2 * kServices);
    REQUIRE(node.links.addresses("kube-ipvs0").size() == kServices);

    // One endpoint added to one Service.
    node.kernel.reset_counts();
    agent.add(slice(name(4321), {"10.244.1.5", "10.244.2.5", "10.244.3.5"}));
    REQUIRE(agent.sync->sync_dirty());
    const auto add_one = node.kernel.total_operations();
    std::cout << "sync acceptance: one endpoint added to one of " << kServices << " services: " << add_one
              << " operation(s), " << node.kernel.count(Kind::kAddDestination) << " destination add(s), "
              << node.kernel.list_all_calls() << " kernel dump(s)\n";
    CHECK(add_one == 1);
    CHECK(node.kernel.count(Kind::kAddDestination) == 1);
    CHECK(node.kernel.list_all_calls() == 0);

    // An idle resync: one dump, no writes.
    node.kernel.reset_counts();
    const auto address_writes = node.links.adds + node.links.deletes;
    REQUIRE(agent.sync->sync_full());
    std::cout << "sync acceptance: idle resync: " << node.kernel.total_operations() << " writes, "
              << node.kernel.list_all_calls() << " dump(s)\n";
    CHECK(node.kernel.total_operations() == 0);
    CHECK(node.kernel.list_all_calls() == 1);
    CHECK(node.links.adds + node.links.deletes == address_writes);
  }

  // A restart: a new agent over the same kernel, the cluster unchanged.
  node.kernel.reset_counts();
  const auto address_writes = node.links.adds + node.links.deletes;
  Agent restarted(node);
  populate(restarted, kServices);
  restarted.add(slice(name(4321), {"10.244.1.5", "10.244.2.5", "10.244.3.5"}));
  restarted.start();
  std::cout << "sync acceptance: restart with an unchanged cluster: " << node.kernel.total_operations()
            << " writes, " << node.links.adds + node.links.deletes - address_writes << " address writes\n";
  CHECK(node.kernel.total_operations() == 0);
  CHECK(node.links.adds + node.links.deletes == address_writes);
  CHECK(restarted.sync->observed() == restarted.sync->desired());
}

TEST_CASE("a full sync plans and applies in pieces, and a moved Service is added before its old address goes",
          "[sync]") {
  // 12,000 operations: a cold start's piece during "the lists", then more
  // than one piece in the first sync.
  constexpr int kServices = 4000;
  Node node;
  {
    Agent agent(node);
    populate(agent, kServices);
    agent.start();
    CHECK(node.kernel.apply_calls() >= 2);
    CHECK(node.kernel.service_count() == kServices);
    CHECK(node.kernel.destination_count() == 2 * kServices);
    // The pieces were written on a worker thread while the next was planned.
    CHECK_FALSE(node.kernel.apply_threads.contains(std::this_thread::get_id()));
    CHECK(agent.sync->observed() == agent.sync->desired());
    // One change is written here.
    node.kernel.apply_threads.clear();
    agent.add(slice(name(7), {"10.244.1.5"}));
    REQUIRE(agent.sync->sync_dirty());
    CHECK(node.kernel.apply_threads == std::set<std::thread::id>{std::this_thread::get_id()});
    agent.add(slice(name(7), {"10.244.1.5", "10.244.2.5"}));
    REQUIRE(agent.sync->sync_dirty());
  }
  // The first Service (first in key order) moves past the last one's address.
  node.kernel.applied.clear();
  Agent restarted(node);
  populate(restarted, kServices);
  restarted.add(service(name(0), cluster_ip(kServices + 10)));
  restarted.start();
  const auto at = [&](Kind kind, const ipvs::ServiceKey& key) {
    return std::ranges::find(node.kernel.applied, std::pair{kind, key}) - node.kernel.applied.begin();
  };
  const auto added = at(Kind::kAddService, service_key(cluster_ip(kServices + 10), 80));
  const auto deleted = at(Kind::kDeleteService, service_key(cluster_ip(0), 80));
  REQUIRE(added < std::ssize(node.kernel.applied));
  REQUIRE(deleted < std::ssize(node.kernel.applied));
  CHECK(added < deleted);
  CHECK(node.kernel.applied.size() == 4);  // the add, its two destinations, the delete
  CHECK(restarted.sync->observed() == restarted.sync->desired());
}

TEST_CASE("the first sync waits for every kind", "[sync]") {
  Node node;
  // Not a cold start: someone's virtual service is there, so nothing is
  // written before the first sync has read the kernel.
  ipvs::Service theirs;
  theirs.key = service_key("192.0.2.1", 80);
  theirs.scheduler = "rr";
  node.change({.kind = Kind::kAddService, .service = theirs, .destination = {}});
  Agent agent(node);
  populate(agent, 3);
  agent.sync->synced(k8s::ResourceKind::kService);
  agent.pump();
  CHECK_FALSE(agent.sync->initial_sync_done());
  CHECK(node.kernel.service_count() == 1);
  agent.sync->synced(k8s::ResourceKind::kEndpointSlice);
  agent.pump();
  CHECK(agent.sync->initial_sync_done());
  CHECK(node.kernel.service_count() == 4);
  // Its log line says where the time went, phase by phase.
  REQUIRE_FALSE(agent.logs.empty());
  CHECK_THAT(agent.logs.back(), Catch::StartsWith("sync full: 3 virtual services, 9 operations") &&
                                    Catch::Contains(" ms (read ") && Catch::Contains(", ipvs ") &&
                                    Catch::EndsWith(" ms)"));
}

TEST_CASE("a cold start writes the cluster IPs' services as the lists arrive, then reads no dump", "[sync]") {
  Node node;
  Agent agent(node);
  populate(agent, 20);
  // A NodePort Service's node-port services wait for the first sync: they
  // are reachable at once, and their masquerade rules come with it.
  k8s::Service exposed = service("exposed", "10.96.9.9");
  exposed.type = k8s::ServiceType::kNodePort;
  exposed.ports[0].node_port = 30080;
  agent.add(exposed);
  agent.add(slice("exposed", {"10.244.1.9"}));
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  agent.run_until([&] { return !agent.sync->cold_start_writing() && node.kernel.service_count() >= 21; },
                  deadline);
  CHECK_FALSE(agent.sync->initial_sync_done());
  CHECK(node.kernel.service_count() == 21);  // every cluster IP, no node port yet
  CHECK(node.kernel.destination_count() == 41);
  CHECK(node.links.addresses("kube-ipvs0").empty());  // bound by the first sync
  // Written on a worker thread: the loop went on receiving meanwhile.
  CHECK_FALSE(node.kernel.apply_threads.contains(std::this_thread::get_id()));
  const std::size_t early = node.kernel.total_operations();
  CHECK(early == 21 + 41);

  agent.start();
  CHECK(node.kernel.list_all_calls() == 0);  // kipvs wrote all of it: nothing to read
  auto dump = node.kernel.list_all();
  REQUIRE(dump);
  CHECK(ipvs::table_from(*dump) == agent.sync->desired());
  CHECK(node.kernel.total_operations() == early + agent.sync->desired().size() - 21 + 1);
  CHECK(node.links.addresses("kube-ipvs0").size() == 21);
  // Its line counts the early writes with its own.
  CHECK_THAT(
      agent.logs.back(),
      Catch::StartsWith("sync full: " + std::to_string(agent.sync->desired().size()) + " virtual services, " +
                        std::to_string(node.kernel.total_operations()) + " operations"));
}

TEST_CASE(
    "a cold start's first sync compares what the early writes left: what failed, what changed since, what "
    "is not written yet",
    "[sync]") {
  Node node;
  Agent agent(node);
  populate(agent, 20);
  // Two destination adds refused.
  node.kernel.fail_next(Kind::kAddDestination, ENOMEM, 2);
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  agent.run_until([&] { return !agent.sync->cold_start_writing() && node.kernel.service_count() >= 20; },
                  deadline);
  REQUIRE_FALSE(agent.sync->initial_sync_done());
  CHECK(node.kernel.service_count() == 20);
  CHECK(node.kernel.destination_count() == 38);
  // A slice that changes after its Service was written, and a Service that
  // comes after the last early write.
  agent.add(slice(name(5), {"10.244.1.5", "10.244.2.5", "10.244.3.5"}));
  agent.add(service(name(20), cluster_ip(20)));
  agent.add(slice(name(20), {"10.244.1.5"}));
  node.kernel.reset_counts();
  agent.start();
  auto dump = node.kernel.list_all();
  REQUIRE(dump);
  CHECK(ipvs::table_from(*dump) == agent.sync->desired());
  CHECK(node.kernel.destination_count() == 40 + 1 + 1);
  CHECK(node.kernel.count(Kind::kAddDestination) == 2 + 1 + 1);
  CHECK(node.kernel.count(Kind::kAddService) == 1);
  CHECK(node.kernel.total_operations() == 5);
}

TEST_CASE("a cold start's first sync compares the changes recomputed during the lists and not yet written",
          "[sync]") {
  constexpr int kServices = 1000;
  Node node;
  Agent agent(node);
  populate(agent, kServices);
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  agent.run_until(
      [&] { return !agent.sync->cold_start_writing() && node.kernel.service_count() >= kServices; },
      deadline);
  REQUIRE(node.kernel.destination_count() == 2 * kServices);
  // Every slice gains an endpoint: more than one early piece's worth, so
  // the first sync finds most still waiting to be written.
  for (int i = 0; i < kServices; ++i) agent.add(slice(name(i), {"10.244.1.5", "10.244.2.5", "10.244.3.5"}));
  agent.start();
  CHECK(node.kernel.destination_count() == 3 * kServices);
  auto dump = node.kernel.list_all();
  REQUIRE(dump);
  CHECK(ipvs::table_from(*dump) == agent.sync->desired());
}

TEST_CASE("a destination deleted behind kipvs's back comes back at the resync", "[sync]") {
  Node node;
  Agent agent(node);
  populate(agent, 5);
  agent.start();
  node.delete_destination(service_key(cluster_ip(2), 80), destination_key("10.244.2.5", 8080));
  // An edited scheduler too.
  ipvs::Service edited = agent.sync->observed().at(service_key(cluster_ip(3), 80)).service;
  edited.scheduler = "wlc";
  node.change({.kind = Kind::kEditService, .service = edited, .destination = {}});
  node.kernel.reset_counts();

  REQUIRE(agent.sync->sync_dirty());  // nothing changed in the cluster: no write, no dump
  CHECK(node.kernel.total_operations() == 0);

  REQUIRE(agent.sync->sync_full());
  CHECK(node.kernel.count(Kind::kAddDestination) == 1);
  CHECK(node.kernel.count(Kind::kEditService) == 1);
  CHECK(node.kernel.total_operations() == 2);
  auto dump = node.kernel.list_all();
  REQUIRE(dump);
  CHECK(ipvs::table_from(*dump) == agent.sync->desired());
}

// The kernel lists IPv4 services faster; IPv6 ones matter on a node that
// serves IPv6 or has seen an IPv6 service.
TEST_CASE("the periodic resync lists IPv4 services alone only where no IPv6 service can matter", "[sync]") {
  const auto resync_asks_ipv4_only = [](Node& node, SyncOptions options) {
    Agent agent(node, options);
    populate(agent, 3);
    agent.start();
    REQUIRE(agent.sync->start_resync());
    agent.io.restart();
    while (agent.sync->resync_reading()) REQUIRE(agent.io.poll_one() == 1);
    REQUIRE(node.kernel.last_settings_ipv4_only().has_value());
    return *node.kernel.last_settings_ipv4_only();
  };
  SyncOptions ipv4;
  ipv4.facts.ip_families = {ipvs::Family::kIPv4};
  SyncOptions dual_stack;
  dual_stack.facts.ip_families = {ipvs::Family::kIPv4, ipvs::Family::kIPv6};
  {
    Node node;
    CHECK(resync_asks_ipv4_only(node, ipv4));
  }
  {
    Node node;
    CHECK_FALSE(resync_asks_ipv4_only(node, dual_stack));
  }
  {
    // Someone else's IPv6 service, there before kipvs started.
    Node node;
    ipvs::Table foreign;
    ipvs::put(foreign, ipvs::Service{.key = service_key("fd00::10", 443), .netmask = 128});
    node.put(foreign);
    CHECK_FALSE(resync_asks_ipv4_only(node, ipv4));
  }
}

TEST_CASE("foreign services are never touched, stale owned ones are removed", "[sync]") {
  Node node;
  // keepalived's service on a node address, and an operator's fwmark service.
  ipvs::Table foreign;
  ipvs::put(foreign, ipvs::Service{.key = service_key("192.168.0.10", 443), .scheduler = "wlc"},
            {ipvs::Destination{.key = destination_key("192.168.0.20", 443)}});
  ipvs::put(foreign, ipvs::Service{.key = fwmark42(), .scheduler = "rr"});
  // Left by a previous run of kipvs: on an address of kube-ipvs0.
  ipvs::Table stale;
  ipvs::put(stale, ipvs::Service{.key = service_key("10.96.200.1", 80)},
            {ipvs::Destination{.key = destination_key("10.244.9.9", 80)}});
  // On kube-ipvs0 but inside excludeCIDRs.
  ipvs::put(stale, ipvs::Service{.key = service_key("10.250.0.1", 80)});
  node.put(foreign);
  node.put(stale);
  node.links.put("kube-ipvs0", ip("10.96.200.1"));
  node.links.put("kube-ipvs0", ip("10.250.0.1"));

  SyncOptions options;
  options.facts.exclude_cidrs = {*Cidr::parse("10.250.0.0/16")};
  Agent agent(node, options);
  populate(agent, 2);
  agent.start();

  CHECK(node.kernel.has_service(service_key("192.168.0.10", 443)));
  CHECK(node.kernel.has_service(fwmark42()));
  CHECK(node.kernel.has_service(service_key("10.250.0.1", 80)));
  CHECK_FALSE(node.kernel.has_service(service_key("10.96.200.1", 80)));
  CHECK(node.kernel.count(Kind::kDeleteService) == 1);
  CHECK(node.kernel.count(Kind::kEditService) == 0);
  CHECK(node.links.addresses("kube-ipvs0") ==
        std::set<ipvs::Address>{ip(cluster_ip(0)), ip(cluster_ip(1)), ip("10.250.0.1")});

  // And at every resync.
  CHECK(resync_writes_nothing(node, agent));
  CHECK(node.kernel.has_service(service_key("192.168.0.10", 443)));

  // The periodic resync, piece by piece, keeps the same rules: a service
  // that turned up on an address of kube-ipvs0 goes, the foreign ones stay.
  node.links.put("kube-ipvs0", ip("10.96.200.2"));
  ipvs::Table late;
  ipvs::put(late, ipvs::Service{.key = service_key("10.96.200.2", 80)});
  node.put(late);
  node.kernel.reset_counts();
  REQUIRE(agent.sync->start_resync());
  agent.io.restart();
  while (agent.sync->resync_reading()) REQUIRE(agent.io.poll_one() == 1);
  CHECK_FALSE(node.kernel.has_service(service_key("10.96.200.2", 80)));
  CHECK(node.kernel.count(Kind::kDeleteService) == 1);
  CHECK(node.kernel.total_operations() == 1);
  CHECK(node.kernel.has_service(service_key("192.168.0.10", 443)));
  CHECK(node.kernel.has_service(fwmark42()));
  CHECK(node.kernel.has_service(service_key("10.250.0.1", 80)));
  CHECK_FALSE(node.links.addresses("kube-ipvs0").contains(ip("10.96.200.2")));
}

TEST_CASE("an external IP that is a node address is served, never bound, and its neighbours stay foreign",
          "[sync]") {
  Node node;
  // An operator's service on the node address, another port.
  ipvs::Table foreign;
  ipvs::put(foreign, ipvs::Service{.key = service_key("192.168.0.10", 443), .scheduler = "wlc"},
            {ipvs::Destination{.key = destination_key("192.168.0.20", 443)}});
  node.put(foreign);
  Agent agent(node);
  auto web = service("web", "10.96.0.10");
  web.external_ips = {"192.168.0.10"};
  agent.add(web);
  agent.add(slice("web", {"10.244.1.5"}));
  agent.start();

  CHECK(node.kernel.has_service(service_key("192.168.0.10", 80)));
  CHECK(node.links.addresses("kube-ipvs0") == std::set<ipvs::Address>{ip("10.96.0.10")});
  CHECK(node.kernel.has_service(service_key("192.168.0.10", 443)));

  // The external IP goes: its virtual service goes (kipvs made it), the
  // operator's stays, at once and at the next resync.
  web.external_ips.clear();
  agent.add(web);
  REQUIRE(agent.sync->sync_dirty());
  CHECK_FALSE(node.kernel.has_service(service_key("192.168.0.10", 80)));
  CHECK(node.kernel.has_service(service_key("192.168.0.10", 443)));
  CHECK(resync_writes_nothing(node, agent));
  CHECK(node.kernel.has_service(service_key("192.168.0.10", 443)));
}

TEST_CASE("node ports outside the default range are kipvs's while it runs, and by the configured range after",
          "[sync]") {
  Node node;
  auto web = service("web", "10.96.0.10");
  web.type = k8s::ServiceType::kNodePort;
  web.ports[0].node_port = 40080;  // an API server with --service-node-port-range 40000-40999
  {
    Agent agent(node);
    agent.add(web);
    agent.add(slice("web", {"10.244.1.5"}));
    agent.start();
    REQUIRE(node.kernel.has_service(service_key("192.168.0.10", 40080)));
    // The Service stops being a NodePort: its node port goes.
    auto cluster_only = web;
    cluster_only.type = k8s::ServiceType::kClusterIP;
    cluster_only.ports[0].node_port = 0;
    agent.add(cluster_only);
    REQUIRE(agent.sync->sync_dirty());
    CHECK_FALSE(node.kernel.has_service(service_key("192.168.0.10", 40080)));
    agent.add(web);
    REQUIRE(agent.sync->sync_dirty());
    REQUIRE(node.kernel.has_service(service_key("192.168.0.10", 40080)));
  }
  // kipvs restarts and the Service was deleted meanwhile: with the default
  // range 40080 is not known as a node port, so it stays (it could be
  // anyone's); with the API server's range configured it goes.
  SECTION("default range: left alone") {
    Agent agent(node);
    agent.start();
    CHECK(node.kernel.has_service(service_key("192.168.0.10", 40080)));
  }
  SECTION("nodePortRange 40000-40999: removed") {
    SyncOptions options;
    options.facts.node_port_min = 40000;
    options.facts.node_port_max = 40999;
    Agent agent(node, options);
    agent.start();
    CHECK_FALSE(node.kernel.has_service(service_key("192.168.0.10", 40080)));
  }
}

TEST_CASE("EEXIST on an add adopts what the kernel has", "[sync]") {
  Node node;
  Agent agent(node);
  populate(agent, 1);
  agent.start();

  // Someone adds our future Service's virtual service first, with another
  // scheduler and a destination of their own.
  ipvs::Table theirs;
  ipvs::put(theirs, ipvs::Service{.key = service_key(cluster_ip(7), 80), .scheduler = "wlc"},
            {ipvs::Destination{.key = destination_key("10.244.7.7", 8080)}});
  REQUIRE(node.kernel.apply(ipvs::diff(theirs, {}, {}).operations)[0]);
  node.kernel.reset_counts();

  agent.add(service(name(7), cluster_ip(7)));
  agent.add(slice(name(7), {"10.244.1.5"}));
  REQUIRE(agent.sync->sync_dirty());
  CHECK(agent.observer.outcomes[{Kind::kAddService, OperationOutcome::kExists}] == 1);
  CHECK(node.kernel.count(Kind::kEditService) == 1);
  auto dump = node.kernel.list_all();
  REQUIRE(dump);
  CHECK(ipvs::table_from(*dump).at(service_key(cluster_ip(7), 80)) ==
        agent.sync->desired().at(service_key(cluster_ip(7), 80)));
  CHECK(agent.sync->observed() == agent.sync->desired());

  SECTION("EEXIST on a destination add is an adoption too") {
    node.kernel.fail_next(Kind::kAddDestination, EEXIST);
    agent.add(slice(name(7), {"10.244.1.5", "10.244.1.6"}));
    REQUIRE(agent.sync->sync_dirty());
    CHECK(agent.observer.outcomes[{Kind::kAddDestination, OperationOutcome::kExists}] == 1);
    auto after = node.kernel.list_all();
    REQUIRE(after);
    CHECK(ipvs::table_from(*after) == agent.sync->desired());
  }
}

TEST_CASE("ESRCH and ENOENT on a delete mean already gone", "[sync]") {
  Node node;
  Agent agent(node);
  populate(agent, 2);
  agent.start();

  // The whole virtual service of svc-0 vanished; then svc-0 is deleted.
  node.delete_service(service_key(cluster_ip(0), 80));
  // One destination of svc-1 vanished; then it leaves the slice (UDP-free,
  // idle: a plain delete).
  node.delete_destination(service_key(cluster_ip(1), 80), destination_key("10.244.2.5", 8080));

  agent.sync->service_changed({"default", name(0)}, nullptr);
  agent.add(slice(name(1), {"10.244.1.5"}));
  REQUIRE(agent.sync->sync_dirty());
  CHECK(agent.observer.outcomes[{Kind::kDeleteService, OperationOutcome::kMissing}] == 1);
  CHECK(agent.observer.outcomes[{Kind::kDeleteDestination, OperationOutcome::kMissing}] == 1);
  CHECK(agent.observer.finished_failed == 0);
  CHECK(agent.sync->observed() == agent.sync->desired());
  CHECK(node.links.addresses("kube-ipvs0") == std::set<ipvs::Address>{ip(cluster_ip(1))});
}

TEST_CASE("an ESRCH on a destination add re-creates the service", "[sync]") {
  Node node;
  Agent agent(node);
  populate(agent, 1);
  agent.start();
  node.delete_service(service_key(cluster_ip(0), 80));

  agent.add(slice(name(0), {"10.244.1.5", "10.244.2.5", "10.244.3.5"}));
  REQUIRE(agent.sync->sync_dirty());
  CHECK(agent.observer.outcomes[{Kind::kAddDestination, OperationOutcome::kMissing}] == 1);
  auto dump = node.kernel.list_all();
  REQUIRE(dump);
  CHECK(ipvs::table_from(*dump) == agent.sync->desired());
  CHECK(node.kernel.destination_count() == 3);
}

TEST_CASE("other failures retry with backoff", "[sync]") {
  Node node;
  SyncOptions options;
  options.retry_min = 5ms;
  Agent agent(node, options);
  populate(agent, 1);
  agent.start();

  node.kernel.fail_next(Kind::kAddDestination, ENOMEM);
  agent.add(slice(name(0), {"10.244.1.5", "10.244.2.5", "10.244.3.5"}));
  CHECK_FALSE(agent.sync->sync_dirty());
  CHECK(agent.observer.outcomes[{Kind::kAddDestination, OperationOutcome::kFailed}] == 1);
  CHECK(node.kernel.destination_count() == 2);

  agent.io.restart();
  agent.io.run_for(200ms);
  CHECK(node.kernel.destination_count() == 3);
  CHECK(agent.sync->observed() == agent.sync->desired());
}

TEST_CASE(
    "a periodic resync reads and repairs the kernel in pieces, and a change made meanwhile is applied at "
    "once",
    "[sync]") {
  Node node;
  SyncOptions options;
  options.resync_read_piece = 0ms;  // one service per turn of the loop
  Agent agent(node, options);
  populate(agent, 20);
  agent.start();
  const auto first = service_key(cluster_ip(0), 80);  // read first: the smallest key
  const auto second = service_key(cluster_ip(1), 80);
  const auto last = service_key(cluster_ip(19), 80);
  const auto gone = service_key(cluster_ip(7), 80);
  // Someone else deletes a destination of the second and of the last
  // service, and a whole virtual service.
  node.delete_destination(second, destination_key("10.244.2.5", 8080));
  node.delete_destination(last, destination_key("10.244.2.5", 8080));
  node.delete_service(gone);
  node.kernel.reset_counts();
  node.kernel.destination_reads = 0;
  const auto logs_before = agent.logs.size();

  REQUIRE(agent.sync->start_resync());
  agent.io.restart();
  for (int i = 0; i < 5; ++i) REQUIRE(agent.io.poll_one() == 1);
  REQUIRE(agent.sync->resync_reading());
  CHECK(node.kernel.destination_reads == 5);
  // Repaired as soon as it was read, not after the whole table.
  CHECK(node.kernel.has_destination(second, destination_key("10.244.2.5", 8080)));
  CHECK(node.kernel.total_operations() == 1);

  // A change to a service already read: applied now, not after the read.
  agent.add(slice(name(0), {"10.244.1.5", "10.244.2.5", "10.244.3.5"}));
  REQUIRE(agent.sync->sync_dirty());
  CHECK(node.kernel.has_destination(first, destination_key("10.244.3.5", 8080)));
  CHECK(agent.sync->resync_reading());
  CHECK(node.kernel.total_operations() == 2);

  while (agent.sync->resync_reading()) REQUIRE(agent.io.poll_one() == 1);
  CHECK(node.kernel.destination_reads == 19);  // the deleted one is not listed
  // The read of the first service was older than the change: what kipvs
  // wrote since is kept, so nothing is added twice. The other deletions are
  // repaired: the virtual service the kernel no longer listed at the end.
  CHECK(node.kernel.count(Kind::kAddDestination) == 5);
  CHECK(node.kernel.count(Kind::kAddService) == 1);
  CHECK(node.kernel.total_operations() == 6);
  CHECK(node.kernel.has_destination(last, destination_key("10.244.2.5", 8080)));
  CHECK(node.kernel.has_destination(gone, destination_key("10.244.1.5", 8080)));
  CHECK(agent.sync->observed() == agent.sync->desired());
  const std::vector<std::string> new_logs(agent.logs.begin() + static_cast<std::ptrdiff_t>(logs_before),
                                          agent.logs.end());
  CHECK(std::ranges::none_of(new_logs, [](const std::string& line) {
    return line.find("the kernel differs") != std::string::npos;
  }));
  CHECK(std::ranges::count_if(new_logs, [](const std::string& line) {
          return line.starts_with("sync full: 20 virtual services, 5 operations");
        }) == 1);

  // A read that fails part way: no write, and the next resync is sooner.
  node.kernel.fail_destinations_of = service_key(cluster_ip(10), 80);
  node.kernel.reset_counts();
  const auto failed_before = agent.observer.finished_failed;
  REQUIRE(agent.sync->start_resync());
  while (agent.sync->resync_reading()) REQUIRE(agent.io.poll_one() == 1);
  CHECK(agent.observer.finished_failed == failed_before + 1);
  CHECK(node.kernel.total_operations() == 0);
  CHECK(std::ranges::any_of(agent.logs, [](const std::string& line) {
    return line.starts_with("cannot read the IPVS table: injected read failure");
  }));
}

TEST_CASE("a failed first dump writes nothing and is retried with backoff, not after a whole sync period",
          "[sync]") {
  Node node;
  SyncOptions options;
  options.sync_period = 1h;
  options.retry_min = 5ms;
  options.retry_max = 20ms;
  Agent agent(node, options);
  node.kernel.fail_reads(EIO);  // the cold-start check cannot read either: nothing is written early
  populate(agent, 1);
  agent.lists_synced();
  CHECK_FALSE(agent.sync->initial_sync_done());
  CHECK(node.kernel.total_operations() == 0);
  CHECK(agent.observer.finished_failed == 1);
  // Retries at 5, 10, 20, 20 ms... well within the hour-long sync period.
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  agent.run_until([&] { return agent.observer.finished_failed >= 3; }, deadline);
  CHECK(agent.observer.finished_failed >= 3);
  CHECK(node.kernel.total_operations() == 0);
  node.kernel.fail_reads(0);
  agent.run_until([&] { return agent.sync->initial_sync_done(); }, deadline);
  CHECK(agent.sync->initial_sync_done());
  CHECK(node.kernel.service_count() == 1);
}

TEST_CASE("graceful termination: weight 0 while connections last, then removed", "[sync]") {
  Node node;
  SyncOptions options;
  options.grace_period = 60s;
  options.drain_check_period = 2ms;
  Agent agent(node, options);
  populate(agent, 1);
  const auto key = service_key(cluster_ip(0), 80);
  const auto leaving = destination_key("10.244.2.5", 8080);
  agent.start();
  REQUIRE(node.kernel.set_connections(key, leaving, 3, 1));

  agent.add(slice(name(0), {"10.244.1.5"}));
  REQUIRE(agent.sync->sync_dirty());
  CHECK(node.kernel.count(Kind::kEditDestination) == 1);
  CHECK(node.kernel.count(Kind::kDeleteDestination) == 0);
  CHECK(agent.sync->observed().at(key).destinations.at(leaving).weight == 0);
  CHECK(agent.sync->draining().size() == 1);
  CHECK(agent.observer.drains == 1);

  SECTION("removed once its connections end (drain check)") {
    node.kernel.reset_counts();
    agent.io.restart();
    agent.io.run_for(30ms);  // checks while busy: nothing written
    CHECK(node.kernel.total_operations() == 0);
    REQUIRE(node.kernel.set_connections(key, leaving, 0, 0));
    agent.io.restart();
    agent.io.run_for(30ms);
    CHECK(node.kernel.count(Kind::kDeleteDestination) == 1);
    CHECK(agent.sync->draining().empty());
    CHECK_FALSE(agent.sync->observed().at(key).destinations.contains(leaving));
  }
  SECTION("removed after the grace period even with connections") {
    agent.now += 61s;
    REQUIRE(agent.sync->sync_full());
    CHECK(node.kernel.count(Kind::kDeleteDestination) == 1);
    CHECK(agent.sync->draining().empty());
  }
  SECTION("an endpoint that comes back gets its weight back") {
    node.kernel.reset_counts();
    agent.add(slice(name(0), {"10.244.1.5", "10.244.2.5"}));
    REQUIRE(agent.sync->sync_dirty());
    CHECK(node.kernel.count(Kind::kEditDestination) == 1);
    CHECK(agent.sync->observed().at(key).destinations.at(leaving).weight == 1);
    CHECK(agent.sync->draining().empty());
  }
  SECTION("a restart keeps draining and restores nothing it should not") {
    agent.sync.reset();
    node.kernel.reset_counts();
    Agent restarted(node, options);
    populate(restarted, 1);
    restarted.add(slice(name(0), {"10.244.1.5"}));
    restarted.start();
    CHECK(node.kernel.total_operations() == 0);  // still weight 0, still busy
    CHECK(restarted.sync->draining().size() == 1);
  }
}

TEST_CASE("UDP and SCTP destinations are removed at once", "[sync]") {
  const auto [name, protocol] = GENERATE(std::pair{k8s::Protocol::kUdp, ipvs::Protocol::kUdp},
                                         std::pair{k8s::Protocol::kSctp, ipvs::Protocol::kSctp});
  INFO(k8s::to_string(name));
  Node node;
  Agent agent(node);
  agent.add(service("dns", "10.96.0.10", name));
  agent.add(slice("dns", {"10.244.1.5", "10.244.2.5"}, name));
  agent.start();
  REQUIRE(node.kernel.set_connections(service_key("10.96.0.10", 80, protocol),
                                      destination_key("10.244.2.5", 8080), 3, 5));
  agent.add(slice("dns", {"10.244.1.5"}, name));
  REQUIRE(agent.sync->sync_dirty());
  CHECK(node.kernel.count(Kind::kDeleteDestination) == 1);
  CHECK(agent.sync->draining().empty());
}

TEST_CASE("a restart restores weights a previous drain left at 0", "[sync]") {
  Node node;
  {
    Agent agent(node);
    populate(agent, 1);
    agent.start();
  }
  node.change({.kind = Kind::kEditDestination,
               .service = {.key = service_key(cluster_ip(0), 80)},
               .destination = {.key = destination_key("10.244.2.5", 8080), .weight = 0}});
  node.kernel.reset_counts();

  Agent restarted(node);
  populate(restarted, 1);
  restarted.start();
  CHECK(node.kernel.total_operations() == 1);
  CHECK(node.kernel.count(Kind::kEditDestination) == 1);
  auto dump = node.kernel.list_all();
  REQUIRE(dump);
  CHECK(ipvs::table_from(*dump)
            .at(service_key(cluster_ip(0), 80))
            .destinations.at(destination_key("10.244.2.5", 8080))
            .weight == 1);
}

TEST_CASE("changes within min_sync_period are coalesced into one sync", "[sync]") {
  Node node;
  SyncOptions options;
  options.min_sync_period = 50ms;
  Agent agent(node, options);
  populate(agent, 5);
  agent.start();
  node.kernel.reset_counts();
  const auto before = agent.sync->stats().incremental_syncs;
  for (int i = 0; i < 5; ++i) agent.add(slice(name(i), {"10.244.1.5", "10.244.2.5", "10.244.3.5"}));
  CHECK(agent.observer.pending_services == 5);
  agent.io.restart();
  agent.io.run_for(150ms);
  CHECK(agent.sync->stats().incremental_syncs == before + 1);
  CHECK(node.kernel.apply_calls() == 1);
  CHECK(node.kernel.count(Kind::kAddDestination) == 5);
  CHECK(agent.observer.pending_services == 0);
}

TEST_CASE("addresses follow the Services: link created, stale ones removed", "[sync]") {
  Node node;
  node.links.put("kube-ipvs0", ip("10.96.99.99"));  // left by a previous run, no service on it
  Agent agent(node);
  populate(agent, 2);
  agent.start();
  CHECK(node.links.addresses("kube-ipvs0") == std::set<ipvs::Address>{ip(cluster_ip(0)), ip(cluster_ip(1))});
  agent.sync->service_changed({"default", name(1)}, nullptr);
  REQUIRE(agent.sync->sync_dirty());
  CHECK(node.links.addresses("kube-ipvs0") == std::set<ipvs::Address>{ip(cluster_ip(0))});
  CHECK_FALSE(node.kernel.has_service(service_key(cluster_ip(1), 80)));
}

TEST_CASE(
    "a periodic resync binds again an address removed behind kipvs's back, and leaves the link alone "
    "when nothing changed",
    "[sync]") {
  Node node;
  Agent agent(node);
  populate(agent, 3);
  agent.start();
  const std::set<ipvs::Address> all{ip(cluster_ip(0)), ip(cluster_ip(1)), ip(cluster_ip(2))};
  REQUIRE(node.links.addresses("kube-ipvs0") == all);
  const auto resync = [&] {
    REQUIRE(agent.sync->start_resync());
    agent.io.restart();
    while (agent.sync->resync_reading()) REQUIRE(agent.io.poll_one() == 1);
  };

  // Someone removes one and binds one of their own.
  REQUIRE(node.links.delete_address("kube-ipvs0", ip(cluster_ip(1))));
  node.links.put("kube-ipvs0", ip("10.96.99.98"));
  const auto adds = node.links.adds;
  const auto deletes = node.links.deletes;
  resync();
  CHECK(node.links.addresses("kube-ipvs0") == all);
  CHECK(node.links.adds == adds + 1);
  CHECK(node.links.deletes == deletes + 1);
  // The address rebound still makes its service kipvs's: a Service that
  // goes takes its virtual service along.
  agent.sync->service_changed({"default", name(1)}, nullptr);
  REQUIRE(agent.sync->sync_dirty());
  CHECK_FALSE(node.kernel.has_service(service_key(cluster_ip(1), 80)));
  CHECK(node.links.addresses("kube-ipvs0") == std::set<ipvs::Address>{ip(cluster_ip(0)), ip(cluster_ip(2))});

  // Nothing changed since: the resync binds and unbinds nothing.
  resync();
  CHECK(node.links.adds == adds + 1);
  CHECK(node.links.deletes == deletes + 2);
  CHECK(node.links.addresses("kube-ipvs0") == std::set<ipvs::Address>{ip(cluster_ip(0)), ip(cluster_ip(2))});
}

TEST_CASE("a new Service's address is bound only once its virtual service is there", "[sync]") {
  // Bound first, the cluster IP answers SYNs with a reset meanwhile: what a
  // client saw while kube-proxy handed a Service over by its label.
  Node node;
  node.kernel.links = &node.links;
  Agent agent(node);
  populate(agent, 1);
  agent.start();
  node.kernel.added_already_bound.clear();  // a first sync binds on a worker thread meanwhile
  agent.add(service(name(1), cluster_ip(1)));
  agent.add(slice(name(1), {"10.244.1.5"}));
  REQUIRE(agent.sync->sync_dirty());
  CHECK(node.kernel.has_service(service_key(cluster_ip(1), 80)));
  CHECK(node.links.addresses("kube-ipvs0").contains(ip(cluster_ip(1))));
  CHECK(node.kernel.added_already_bound.empty());
}

TEST_CASE("a first sync binds many addresses on a worker thread, and a failed bind is tried again",
          "[sync]") {
  Node node;
  Agent agent(node);
  populate(agent, 200);
  node.links.fail_writes = EPERM;
  agent.start();
  // The IPVS rules do not wait for the addresses.
  CHECK(node.kernel.service_count() == 200);
  CHECK(node.links.addresses("kube-ipvs0").empty());
  CHECK(node.links.add_threads.size() == 1);
  CHECK_FALSE(node.links.add_threads.contains(std::this_thread::get_id()));
  CHECK(std::ranges::count_if(agent.logs, [](const std::string& line) {
          return line.find("add address (injected failure)") != std::string::npos;
        }) == 200);
  CHECK(agent.observer.address_failures == 200);

  node.links.fail_writes = 0;
  REQUIRE(agent.sync->sync_full());
  CHECK(node.links.addresses("kube-ipvs0").size() == 200);
  CHECK(agent.observer.address_failures == 200);
  CHECK(agent.observer.address_successes == 200);

  // A few come and go on this thread.
  node.links.add_threads.clear();
  agent.add(service(name(200), cluster_ip(200)));
  REQUIRE(agent.sync->sync_dirty());
  CHECK(node.links.addresses("kube-ipvs0").size() == 201);
  CHECK(node.links.add_threads == std::set<std::thread::id>{std::this_thread::get_id()});
}

TEST_CASE(
    "binding addresses routes first: a first sync makes its many IPs local with routes, and they are "
    "swapped for addresses after it, a piece at a time",
    "[sync]") {
  Node node;
  SyncOptions options;
  options.routes_first = true;
  Agent agent(node, options);
  populate(agent, 200);
  agent.first_sync_only();
  // The first sync ends with every IP local, by a route made on the worker.
  CHECK(node.kernel.service_count() == 200);
  CHECK(node.links.local_routes("kube-ipvs0").size() == 200);
  CHECK(node.links.addresses("kube-ipvs0").empty());
  CHECK_FALSE(node.links.add_threads.contains(std::this_thread::get_id()));

  // The swap: a piece per turn of the loop, so a change gets in between.
  while (node.links.promotions == 0) REQUIRE(agent.io.poll_one() == 1);
  CHECK(node.links.promotions <= 64);
  CHECK(node.links.addresses("kube-ipvs0").size() == node.links.promotions);
  CHECK(node.links.local_routes("kube-ipvs0").size() == 200 - node.links.promotions);
  agent.add(service(name(200), cluster_ip(200)));
  REQUIRE(agent.sync->sync_dirty());
  CHECK(node.links.promotions < 200);
  agent.pump();
  CHECK(node.links.promotions == 200);
  CHECK(node.links.local_routes("kube-ipvs0").empty());
  CHECK(node.links.addresses("kube-ipvs0").size() == 201);  // the new one bound as an address at once
  CHECK(std::ranges::count(agent.logs, std::string("bound 200 addresses to kube-ipvs0 in place of their "
                                                   "local routes, in 0 ms")) == 1);
  CHECK(agent.observer.address_failures == 0);

  // Nothing is left to swap: a resync lists the link and writes nothing.
  const auto adds = node.links.adds;
  REQUIRE(agent.sync->sync_full());
  agent.pump();
  CHECK(node.links.promotions == 200);
  CHECK(node.links.adds == adds);
  CHECK(node.links.route_adds == 200);
}

TEST_CASE(
    "binding addresses routes first: a restart finishes a swap left half done, and a route no longer "
    "wanted is deleted, not swapped",
    "[sync]") {
  Node node;
  REQUIRE(node.links.ensure_link("kube-ipvs0"));
  // A previous run bound 0..99 with routes and swapped 0..49; svc-99 has gone since.
  std::vector<ipvs::Address> routes;
  for (int i = 0; i < 100; ++i) routes.push_back(ip(cluster_ip(i)));
  for (const auto& added : node.links.add_local_routes("kube-ipvs0", routes)) REQUIRE(added);
  for (int i = 0; i < 50; ++i) REQUIRE(node.links.promote("kube-ipvs0", ip(cluster_ip(i))));
  SyncOptions options;
  options.routes_first = true;
  Agent agent(node, options);
  populate(agent, 99);
  agent.start();
  CHECK(node.links.local_routes("kube-ipvs0").empty());
  std::set<ipvs::Address> wanted(routes.begin(), routes.end() - 1);
  CHECK(node.links.addresses("kube-ipvs0") == wanted);
  CHECK(node.links.promotions == 50 + 49);
  CHECK(node.links.route_adds == 100);  // none made again
}

TEST_CASE("binding addresses routes first: a swap that fails leaves the route, and a full sync tries again",
          "[sync]") {
  Node node;
  SyncOptions options;
  options.routes_first = true;
  Agent agent(node, options);
  populate(agent, 100);
  agent.first_sync_only();
  REQUIRE(node.links.local_routes("kube-ipvs0").size() == 100);
  node.links.fail_writes = EPERM;
  agent.pump();
  // Still local, by its route; each failure logged and counted.
  CHECK(node.links.local_routes("kube-ipvs0").size() == 100);
  CHECK(agent.observer.address_failures == 100);
  CHECK(std::ranges::count(agent.logs, std::string("promote (injected failure)")) == 100);
  CHECK(std::ranges::count(agent.logs, std::string("bound 0 addresses to kube-ipvs0 in place of their local "
                                                   "routes, in 0 ms (100 could not be: still local routes, "
                                                   "tried again at the next full sync)")) == 1);

  node.links.fail_writes = 0;
  REQUIRE(agent.sync->sync_full());
  agent.pump();
  CHECK(node.links.local_routes("kube-ipvs0").empty());
  CHECK(node.links.addresses("kube-ipvs0").size() == 100);
}

TEST_CASE("a missing dummy interface is created", "[sync]") {
  Node node;
  Agent agent(node);
  populate(agent, 1);
  CHECK_FALSE(node.links.has_link("kube-ipvs0"));
  agent.start();
  CHECK(node.links.links_created == 1);
  CHECK(node.links.addresses("kube-ipvs0") == std::set<ipvs::Address>{ip(cluster_ip(0))});
}

TEST_CASE("Services with a Local policy and no local endpoints are counted after each sync", "[sync]") {
  Node node;
  Agent agent(node);
  auto internal = service("internal", cluster_ip(0));
  internal.internal_traffic_policy = k8s::TrafficPolicy::kLocal;
  auto external = service("external", cluster_ip(1));
  external.type = k8s::ServiceType::kNodePort;
  external.ports[0].node_port = 30080;
  external.external_traffic_policy = k8s::TrafficPolicy::kLocal;
  auto empty = service("empty", cluster_ip(2));  // Local, but no endpoints at all: not counted
  empty.internal_traffic_policy = k8s::TrafficPolicy::kLocal;
  agent.add(internal);
  agent.add(slice("internal", {"10.244.1.5"}));  // on no node: not local
  agent.add(external);
  agent.add(slice("external", {"10.244.2.5"}));
  agent.add(empty);
  agent.start();
  CHECK(agent.observer.no_local[ipvs::Family::kIPv4] == std::pair<std::size_t, std::size_t>{1, 1});

  auto local = slice("internal", {"10.244.1.5"});
  local.endpoints[0].node_name = "node-a";
  agent.add(local);
  REQUIRE(agent.sync->sync_dirty());
  CHECK(agent.observer.no_local[ipvs::Family::kIPv4] == std::pair<std::size_t, std::size_t>{0, 1});

  agent.sync->service_changed(k8s::key_of(external), nullptr);
  REQUIRE(agent.sync->sync_dirty());
  CHECK(agent.observer.no_local[ipvs::Family::kIPv4] == std::pair<std::size_t, std::size_t>{0, 0});
}

TEST_CASE("a slice moving between Services dirties both", "[sync]") {
  Node node;
  Agent agent(node);
  agent.add(service("a", "10.96.0.1"));
  agent.add(service("b", "10.96.0.2"));
  auto moving = slice("a", {"10.244.1.5"});
  agent.add(moving);
  agent.start();
  CHECK(node.kernel.destination_count() == 1);
  moving.meta.labels[std::string(kServiceNameLabel)] = "b";
  agent.add(moving);
  REQUIRE(agent.sync->sync_dirty());
  auto dump = node.kernel.list_all();
  REQUIRE(dump);
  const auto table = ipvs::table_from(*dump);
  CHECK(table.at(service_key("10.96.0.1", 80)).destinations.empty());
  CHECK(table.at(service_key("10.96.0.2", 80)).destinations.size() == 1);
}

TEST_CASE("network programming latency from the slice's trigger time", "[sync]") {
  Node node;
  SyncOptions options;
  std::chrono::system_clock::time_point wall = std::chrono::sys_days{std::chrono::year{2026} / 11 / 27} + 10h;
  options.wall_clock = [&wall] { return wall; };
  Agent agent(node, options);
  auto old_slice = slice(name(0), {"10.244.1.5"});
  old_slice.meta.annotations[std::string(kLastChangeTriggerTimeAnnotation)] =
      "2026-11-26T10:00:00Z";  // before start
  agent.add(service(name(0), cluster_ip(0)));
  agent.add(old_slice);
  agent.start();
  CHECK(agent.observer.latencies.empty());

  auto changed = slice(name(0), {"10.244.1.5", "10.244.2.5"});
  changed.meta.annotations[std::string(kLastChangeTriggerTimeAnnotation)] = "2026-11-27T10:00:01.500Z";
  wall += 1s;
  agent.add(changed);
  wall += 2s;
  REQUIRE(agent.sync->sync_dirty());
  REQUIRE(agent.observer.latencies.size() == 1);
  CHECK(agent.observer.latencies[0].count() == Approx(1.5));
}

TEST_CASE("parse_rfc3339", "[sync]") {
  using std::chrono::system_clock;
  const auto base = system_clock::time_point(std::chrono::sys_days{std::chrono::year{2026} / 11 / 27});
  CHECK(parse_rfc3339("2026-11-27T00:00:00Z") == base);
  CHECK(parse_rfc3339("2026-11-27T00:00:01.123456789Z") == base + 1s + 123456789ns);
  CHECK(parse_rfc3339("2026-11-27T02:00:00+02:00") == base);
  CHECK(parse_rfc3339("2026-11-26T22:30:00-01:30") == base);
  CHECK_FALSE(parse_rfc3339("2026-11-27 00:00:00Z"));
  CHECK_FALSE(parse_rfc3339("2026-13-27T00:00:00Z"));
  CHECK_FALSE(parse_rfc3339("2026-11-27T00:00:00"));
  CHECK_FALSE(parse_rfc3339("yesterday"));
}

TEST_CASE("sysctls: written where they differ, warned where they cannot be", "[sysctl]") {
  const auto root = std::filesystem::temp_directory_path() / ("kipvs-sysctl-" + std::to_string(::getpid()));
  std::filesystem::remove_all(root);
  std::filesystem::create_directories(root / "net/ipv4/vs");
  std::filesystem::create_directories(root / "net/ipv4/conf/all");
  auto write = [&](const std::string& name, const std::string& value) {
    std::ofstream(root / name) << value << '\n';
  };
  auto read = [&](const std::string& name) {
    std::string value;
    std::ifstream in(root / name);
    std::getline(in, value);
    return value;
  };
  write("net/ipv4/vs/conntrack", "0");
  write("net/ipv4/vs/expire_nodest_conn", "1");
  write("net/ipv4/ip_forward", "0");
  write("net/ipv4/conf/all/arp_ignore", "0");
  write("net/ipv4/conf/all/arp_announce", "0");
  // expire_quiescent_template is missing: a kernel without it.

  CHECK(kube_proxy_sysctls(false, "6.1.0-57-amd64").size() == 4);
  const auto report = apply_sysctls(root, kube_proxy_sysctls(true, "6.1.0-57-amd64"));
  CHECK(read("net/ipv4/vs/conntrack") == "1");
  CHECK(read("net/ipv4/ip_forward") == "1");
  CHECK(read("net/ipv4/conf/all/arp_ignore") == "1");
  CHECK(read("net/ipv4/conf/all/arp_announce") == "2");
  CHECK(report.changed.size() == 4);  // expire_nodest_conn was right already
  REQUIRE(report.warnings.size() == 1);
  CHECK(report.warnings[0].find("expire_quiescent_template") != std::string::npos);
  CHECK(apply_sysctls(root, kube_proxy_sysctls(true, "6.1.0-57-amd64")).changed.empty());
  // The rate estimator is left as the node has it unless it is disabled.
  write("net/ipv4/vs/run_estimation", "1");
  CHECK(read("net/ipv4/vs/run_estimation") == "1");
  const auto disabled = apply_sysctls(root, kube_proxy_sysctls(true, "6.1.0-57-amd64", true));
  CHECK(read("net/ipv4/vs/run_estimation") == "0");
  REQUIRE(disabled.changed.size() == 1);
  CHECK(disabled.changed[0] == "net/ipv4/vs/run_estimation: 1 -> 0");
  std::filesystem::remove_all(root);
}

TEST_CASE("IPVS timeouts the kernel refuses are a warning's text, not a failure", "[agent]") {
  ipvs::FakeBackend kernel;
  CHECK(set_ipvs_timeouts(kernel, {}));  // none configured: nothing sent
  CHECK(set_ipvs_timeouts(kernel, {.tcp = 600, .tcp_fin = 0, .udp = 0}));
  CHECK(kernel.get_timeouts()->tcp == 600);
  kernel.fail_reads(EPERM);
  const auto failed = set_ipvs_timeouts(kernel, {.tcp = 700, .tcp_fin = 0, .udp = 0});
  REQUIRE_FALSE(failed);
  CHECK(failed.error().code == EPERM);
  CHECK_THAT(failed.error().message, Catch::Contains("set timeouts"));
}

TEST_CASE("sysctls: conn_reuse_mode 0 on kernels 4.1 to 5.8 only", "[sysctl]") {
  const auto reuse_mode = [](std::string_view release) -> std::optional<std::string> {
    for (const auto& setting : kube_proxy_sysctls(false, release)) {
      if (setting.name == "net/ipv4/vs/conn_reuse_mode") return setting.value;
    }
    return std::nullopt;
  };
  CHECK(reuse_mode("4.18.0-553.el8_10.x86_64") == "0");  // RHEL 8
  CHECK(reuse_mode("5.4.0-100-generic") == "0");         // Ubuntu 20.04
  CHECK(reuse_mode("4.1.0") == "0");
  CHECK(reuse_mode("5.8.18") == "0");
  CHECK(reuse_mode("5.9.0") == std::nullopt);
  CHECK(reuse_mode("6.1.0-57-amd64") == std::nullopt);
  CHECK(reuse_mode("4.0.9") == std::nullopt);
  CHECK(reuse_mode("3.10.0-1160.el7.x86_64") == std::nullopt);
  CHECK(reuse_mode("garbage") == std::nullopt);
}

TEST_CASE(
    "the Service names published for the scraper's thread follow the Services, and are kept while "
    "nothing changed",
    "[sync][metrics]") {
  Node node;
  Agent agent(node);
  populate(agent, 2);
  agent.start();
  ServiceNames names;
  CHECK(names.latest()->empty());
  names.refresh(*agent.sync);
  const auto first = names.latest();
  REQUIRE(first->size() == 2);
  const auto& labels = first->at(service_key(cluster_ip(1), 80));
  CHECK(labels.namespace_name == "default");
  CHECK(labels.name == name(1));
  CHECK(labels.port_name == "http");

  // Nothing changed: the same copy, not a new one.
  REQUIRE(agent.sync->sync_full());
  names.refresh(*agent.sync);
  CHECK(names.latest() == first);

  agent.add(service(name(7), cluster_ip(7)));
  agent.add(slice(name(7), {"10.244.1.7"}));
  REQUIRE(agent.sync->sync_dirty());
  names.refresh(*agent.sync);
  const auto second = names.latest();
  CHECK(second != first);
  CHECK(second->size() == 3);
  CHECK(second->at(service_key(cluster_ip(7), 80)).name == name(7));
  CHECK(first->size() == 2);  // a reader holding the old copy keeps it whole

  // Between scrapes the built names are dropped; the next reader gets them
  // built again from the maps last taken, with nothing refreshed.
  names.forget();
  const auto rebuilt = names.latest();
  CHECK(rebuilt != second);
  CHECK(*rebuilt == *second);
}

TEST_CASE(
    "a service added but never bound before a crash stays kipvs's through the record, and goes once its "
    "Service is deleted",
    "[sync][ownership]") {
  static int case_number = 0;
  const auto dir = std::filesystem::temp_directory_path() /
                   ("kipvs-owned-" + std::to_string(::getpid()) + "-" + std::to_string(++case_number));
  std::filesystem::remove_all(dir);
  const OwnedServicesFile record(dir / "services");
  Node node;
  {
    SyncOptions options;
    options.owned_services = record;
    Agent first(node, options);
    populate(first, 3);
    first.start();
    auto keys = record.load();
    REQUIRE(keys.has_value());
    CHECK(keys->size() == 3);
    CHECK(keys->contains(service_key(cluster_ip(1), 80)));
    // Services added later are appended to the record's text, one sync at
    // a time; a removal renders it again.
    first.add(service(name(3), cluster_ip(3)));
    REQUIRE(first.sync->sync_dirty());
    first.add(service(name(4), cluster_ip(4)));
    REQUIRE(first.sync->sync_dirty());
    CHECK(record.load().value().size() == 5);
    first.sync->service_changed({"default", name(4)}, nullptr);
    REQUIRE(first.sync->sync_dirty());
    first.add(service(name(5), cluster_ip(5)));
    REQUIRE(first.sync->sync_dirty());
    keys = record.load();
    REQUIRE(keys.has_value());
    CHECK(keys->size() == 5);
    CHECK_FALSE(keys->contains(service_key(cluster_ip(4), 80)));
    CHECK(keys->contains(service_key(cluster_ip(5), 80)));
  }
  // The crash came before svc-1's address was bound; svc-1 is deleted
  // while kipvs is down.
  REQUIRE(node.links.delete_address("kube-ipvs0", ip(cluster_ip(1))));
  SECTION("with the record, the restart deletes it") {
    SyncOptions options;
    options.owned_services = record;
    Agent second(node, options);
    second.add(service(name(0), cluster_ip(0)));
    second.add(service(name(2), cluster_ip(2)));
    second.start();
    CHECK_FALSE(node.kernel.has_service(service_key(cluster_ip(1), 80)));
    CHECK(node.kernel.has_service(service_key(cluster_ip(0), 80)));
    CHECK(record.load().value().size() == 2);
  }
  SECTION("without it, nothing says it is kipvs's: it stays for good") {
    Agent second(node);
    second.add(service(name(0), cluster_ip(0)));
    second.add(service(name(2), cluster_ip(2)));
    second.start();
    CHECK(node.kernel.has_service(service_key(cluster_ip(1), 80)));
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE(
    "the record of kipvs's services: written whole, read back, and a foreign file refused with its line",
    "[ownership]") {
  const auto dir = std::filesystem::temp_directory_path() / ("kipvs-record-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  const OwnedServicesFile record(dir / "services");
  CHECK(record.load().value().empty());  // no file yet
  const std::set<ipvs::ServiceKey> keys{service_key("10.96.0.1", 443),
                                        service_key("10.96.0.10", 53, ipvs::Protocol::kUdp),
                                        ipvs::ServiceKey{.family = ipvs::Family::kIPv6,
                                                         .protocol = ipvs::Protocol::kSctp,
                                                         .address = ip("fd00::a"),
                                                         .port = 9,
                                                         .fwmark = 0}};
  REQUIRE(record.store_text(OwnedServicesFile::render(keys)));
  CHECK(record.load().value() == keys);
  std::ofstream(dir / "services", std::ios::app) << "TCP 10.96.0.300 80\n";
  const auto bad = record.load();
  REQUIRE_FALSE(bad.has_value());
  CHECK_THAT(bad.error().text(),
             Catch::Contains("services:5: \"TCP 10.96.0.300 80\" is not \"PROTOCOL ADDRESS PORT\""));
  REQUIRE(record.remove());
  CHECK(record.load().value().empty());
  CHECK_FALSE(OwnedServicesFile().enabled());
  CHECK(OwnedServicesFile::for_this_namespace("").value().path().empty());
  CHECK(OwnedServicesFile::for_this_namespace("/run/kipvs")
            .value()
            .path()
            .string()
            .starts_with("/run/kipvs/services-"));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kipvs::agent

namespace kipvs::agent {
namespace {

TEST_CASE("operations print in ipvsadm's command syntax", "[agent]") {
  const ipvs::Service service{.key = service_key("10.96.0.1", 80),
                              .scheduler = "rr",
                              .flags = ipvs::flags::kPersistent,
                              .timeout = 600};
  const ipvs::Destination destination{.key = destination_key("10.244.1.5", 8080), .weight = 0};
  auto line = [&](Kind kind) {
    return format_operation(ipvs::Operation{.kind = kind, .service = service, .destination = destination});
  };
  CHECK(line(Kind::kAddService) == "-A -t 10.96.0.1:80 -s rr -p 600");
  CHECK(line(Kind::kEditService) == "-E -t 10.96.0.1:80 -s rr -p 600");
  CHECK(line(Kind::kDeleteService) == "-D -t 10.96.0.1:80");
  CHECK(line(Kind::kAddDestination) == "-a -t 10.96.0.1:80 -r 10.244.1.5:8080 -m -w 0");
  CHECK(line(Kind::kEditDestination) == "-e -t 10.96.0.1:80 -r 10.244.1.5:8080 -m -w 0");
  CHECK(line(Kind::kDeleteDestination) == "-d -t 10.96.0.1:80 -r 10.244.1.5:8080");
}

TEST_CASE("Go durations", "[agent]") {
  CHECK(parse_go_duration("30s") == 30s);
  CHECK(parse_go_duration("500ms") == 500ms);
  CHECK(parse_go_duration("1m30s") == 90s);
  CHECK(parse_go_duration("1.5s") == 1500ms);
  CHECK(parse_go_duration("2h") == 7200s);
  CHECK(parse_go_duration("0") == 0ms);
  CHECK_FALSE(parse_go_duration(""));
  CHECK_FALSE(parse_go_duration("30"));
  CHECK_FALSE(parse_go_duration("-1s"));
  CHECK_FALSE(parse_go_duration("1d"));
}

TEST_CASE("agent flags", "[agent]") {
  using Args = std::vector<std::string_view>;
  auto parse = [](Args args) { return parse_agent_args(args); };
  auto options = parse({"--manifests", "/m", "--hostname-override=n1", "--node-ip", "10.0.0.1,fd00::1",
                        "--ipvs-sync-period", "10s", "--ipvs-min-sync-period=1s", "--ipvs-strict-arp",
                        "--ipvs-scheduler", "wlc", "--graceful-termination-period", "2m"});
  REQUIRE(options);
  CHECK(options->manifests == "/m");
  CHECK_FALSE(options->use_api);
  CHECK(options->sync.facts.node_name == "n1");
  CHECK(options->sync.facts.node_ips.size() == 2);
  CHECK_FALSE(options->sync.node_ips_from_node);
  CHECK(options->sync.zone_from_node);
  CHECK(options->sync.sync_period == 10s);
  CHECK(options->sync.min_sync_period == 1s);
  CHECK(options->sync.grace_period == std::chrono::seconds{120});
  CHECK(options->sync.facts.scheduler == "wlc");
  CHECK(options->strict_arp);

  CHECK(parse({"run", "--kubeconfig", "/k"})->use_api);
  CHECK_FALSE(parse({}));                                           // no source
  CHECK_FALSE(parse({"--manifests", "/m", "--kubeconfig", "/k"}));  // two sources
  CHECK_FALSE(parse({"--manifests", "/m", "--ipvs-sync-period", "0"}));
  CHECK_FALSE(parse({"--manifests", "/m", "--ipvs-scheduler", "fastest"}));
  CHECK_FALSE(parse({"--manifests", "/m", "--node-ip", "node-a"}));
  CHECK_FALSE(parse({"--manifests", "/m", "--frobnicate", "1"}));

  // The node name as kube-proxy derives it: endpoints name "node-1", not
  // " Node-1 ".
  CHECK(parse({"--manifests", "/m", "--hostname-override", " Node-1\n"})->sync.facts.node_name == "node-1");
  CHECK(node_name("Worker-7.Example.COM") == "worker-7.example.com");
  CHECK_FALSE(parse({"--manifests", "/m", "--hostname-override", "  "}));
  // ipvs.scheduler mh with no flags gets kube-proxy's mh-port; given flags win.
  CHECK(parse({"--manifests", "/m", "--ipvs-scheduler", "mh"})->sync.facts.scheduler_flags ==
        ipvs::flags::kSchedMhPort);
  CHECK(parse({"--manifests", "/m", "--ipvs-scheduler", "mh", "--ipvs-scheduler-flags", "mh-fallback"})
            ->sync.facts.scheduler_flags == ipvs::flags::kSchedMhFallback);
  CHECK(parse({"--manifests", "/m", "--ipvs-scheduler", "sh"})->sync.facts.scheduler_flags == 0);
}

}  // namespace
}  // namespace kipvs::agent
