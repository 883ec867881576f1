// The diff and the drain policy: deltas between tables, checked by size and
// by content (Katran style: the same table twice yields no delta).

#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <vector>

#include "ipvs/diff.h"
#include "ipvs/table.h"
#include "test/support/builders.h"

namespace kipvs::ipvs {
namespace {

using Kind = Operation::Kind;

using kipvs::test::ip;

using kipvs::test::service_key;

Service service(const ServiceKey& key, std::string scheduler = "rr", std::uint32_t flags = 0,
                std::uint32_t timeout = 0) {
  return Service{.key = key,
                 .scheduler = std::move(scheduler),
                 .flags = flags,
                 .timeout = timeout,
                 .netmask = 0xffffffff};
}

Destination real(const char* address, std::uint16_t port, std::int32_t weight = 1) {
  return Destination{.key = {ip(address), port},
                     .forwarding = Forwarding::kMasq,
                     .weight = weight,
                     .upper_threshold = 0,
                     .lower_threshold = 0};
}

// A small cluster: two TCP services and one UDP service.
Table cluster() {
  Table table;
  put(table, service(service_key("10.96.0.1", 443)), {real("192.168.0.10", 6443)});
  put(table, service(service_key("10.96.0.10", 53, Protocol::kUdp)),
      {real("10.244.1.2", 53), real("10.244.2.2", 53)});
  put(table, service(service_key("10.96.0.20", 80)), {real("10.244.1.5", 8080), real("10.244.2.5", 8080)});
  return table;
}

const Ownership kOwnsAll = [](const ServiceKey&) { return true; };

std::vector<Kind> kinds(const Plan& plan) {
  std::vector<Kind> result;
  for (const auto& operation : plan.operations) result.push_back(operation.kind);
  return result;
}

TEST_CASE("diff of a table with itself is empty", "[diff]") {
  const Table table = cluster();
  CHECK(diff(table, table, kOwnsAll).empty());
  CHECK(diff(Table{}, Table{}, kOwnsAll).empty());
}

TEST_CASE("diff ignores the kernel's hashed flag", "[diff]") {
  const Table desired = cluster();
  Table observed = desired;
  for (auto& [key, entry] : observed) entry.service.flags |= flags::kHashed;
  CHECK(diff(desired, observed, kOwnsAll).empty());
}

TEST_CASE("diff from an empty kernel adds every service before its destinations", "[diff]") {
  const Table desired = cluster();
  const Plan plan = diff(desired, Table{}, kOwnsAll);
  CHECK(plan.count(Kind::kAddService) == 3);
  CHECK(plan.count(Kind::kAddDestination) == 5);
  CHECK(plan.size() == 8);
  // Each destination add follows the add of its own service.
  std::vector<ServiceKey> added;
  for (const auto& operation : plan.operations) {
    if (operation.kind == Kind::kAddService) added.push_back(operation.service.key);
    if (operation.kind == Kind::kAddDestination) {
      REQUIRE_FALSE(added.empty());
      CHECK(added.back() == operation.service.key);
    }
  }
}

TEST_CASE("diff to an empty table deletes owned services only, without destination deletes", "[diff]") {
  const Table observed = cluster();
  const Plan plan = diff(Table{}, observed, kOwnsAll);
  CHECK(kinds(plan) == std::vector<Kind>{Kind::kDeleteService, Kind::kDeleteService, Kind::kDeleteService});
}

TEST_CASE("diff never touches services it does not own", "[diff]") {
  Table observed = cluster();
  // keepalived's service on a foreign address, with a stale-looking destination.
  const ServiceKey foreign = service_key("192.0.2.1", 80);
  put(observed, service(foreign, "wlc"), {real("198.51.100.7", 80, 3)});
  const Ownership owns_cluster_ips = [](const ServiceKey& key) {
    return key.address.bytes[0] == 10;  // 10.96.0.0/12 lives in the first byte here
  };

  SECTION("an unchanged cluster leaves the foreign service alone") {
    CHECK(diff(cluster(), observed, owns_cluster_ips).empty());
  }
  SECTION("an empty desired table deletes only owned services") {
    const Plan plan = diff(Table{}, observed, owns_cluster_ips);
    CHECK(plan.count(Kind::kDeleteService) == 3);
    for (const auto& operation : plan.operations) CHECK_FALSE(operation.service.key == foreign);
  }
  SECTION("no ownership predicate owns nothing") {
    CHECK(diff(Table{}, observed, Ownership{}).empty());
  }
}

TEST_CASE("a changed service setting is an edit in place, never delete and add", "[diff]") {
  const ServiceKey key = service_key("10.96.0.20", 80);
  struct Change {
    const char* what;
    Service before;
    Service after;
  };
  const auto change = GENERATE_COPY(values<Change>({
      {"persistence timeout", service(key, "rr", flags::kPersistent, 10800),
       service(key, "rr", flags::kPersistent, 600)},
      {"scheduler", service(key, "rr"), service(key, "mh")},
      {"flags", service(key, "sh"), service(key, "sh", flags::kSchedShFallback | flags::kSchedShPort)},
      {"persistence on", service(key), service(key, "rr", flags::kPersistent, 10800)},
      {"netmask", service(key, "rr", flags::kPersistent, 60),
       [&] {
         Service s = service(key, "rr", flags::kPersistent, 60);
         s.netmask = 0xffffff00;
         return s;
       }()},
  }));
  CAPTURE(change.what);
  Table observed;
  put(observed, change.before, {real("10.244.1.5", 8080)});
  Table desired;
  put(desired, change.after, {real("10.244.1.5", 8080)});

  const Plan plan = diff(desired, observed, kOwnsAll);
  REQUIRE(kinds(plan) == std::vector<Kind>{Kind::kEditService});
  CHECK(plan.operations[0].service == change.after);
}

TEST_CASE("destination changes: add, edit, delete in make-before-break order", "[diff]") {
  const ServiceKey key = service_key("10.96.0.20", 80);
  Table observed;
  put(observed, service(key),
      {real("10.244.1.5", 8080), real("10.244.2.5", 8080, 0), real("10.244.3.5", 8080)});
  Table desired;
  put(desired, service(key), {real("10.244.1.5", 8080), real("10.244.2.5", 8080), real("10.244.4.5", 8080)});

  const Plan plan = diff(desired, observed, kOwnsAll);
  REQUIRE(kinds(plan) ==
          std::vector<Kind>{Kind::kAddDestination, Kind::kEditDestination, Kind::kDeleteDestination});
  CHECK(plan.operations[0].destination.key == real("10.244.4.5", 8080).key);
  CHECK(plan.operations[1].destination == real("10.244.2.5", 8080));  // weight 0 restored to 1
  CHECK(plan.operations[2].destination.key == real("10.244.3.5", 8080).key);
  for (const auto& operation : plan.operations) CHECK(operation.service.key == key);
}

TEST_CASE("destination edits cover forwarding, weight and thresholds", "[diff]") {
  const ServiceKey key = service_key("10.96.0.20", 80);
  Destination changed = real("10.244.1.5", 8080);
  const int field = GENERATE(0, 1, 2, 3);
  switch (field) {
    case 0:
      changed.forwarding = Forwarding::kRoute;
      break;
    case 1:
      changed.weight = 5;
      break;
    case 2:
      changed.upper_threshold = 100;
      break;
    default:
      changed.lower_threshold = 10;
      break;
  }
  Table observed;
  put(observed, service(key), {changed});
  Table desired;
  put(desired, service(key), {real("10.244.1.5", 8080)});
  CHECK(kinds(diff(desired, observed, kOwnsAll)) == std::vector<Kind>{Kind::kEditDestination});
}

TEST_CASE("whole-service deletes come after every add", "[diff]") {
  // A Service moved from one cluster IP to another: the new address is
  // programmed before the old one goes, whatever their key order.
  const char* old_ip = GENERATE("10.96.0.5", "10.96.0.50");
  CAPTURE(old_ip);
  Table observed;
  put(observed, service(service_key(old_ip, 80)), {real("10.244.1.5", 8080)});
  Table desired;
  put(desired, service(service_key("10.96.0.20", 80)), {real("10.244.1.5", 8080)});
  CHECK(kinds(diff(desired, observed, kOwnsAll)) ==
        std::vector<Kind>{Kind::kAddService, Kind::kAddDestination, Kind::kDeleteService});
}

TEST_CASE("one endpoint added to one of 10,000 services costs one destination add", "[diff]") {
  Table observed;
  for (int i = 0; i < 10000; ++i) {
    const std::string address = "10.96." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1);
    put(observed, service(service_key(address.c_str(), 80)),
        {real("10.244.1.5", 8080), real("10.244.2.5", 8080)});
  }
  Table desired = observed;
  auto& entry = desired.at(service_key("10.96.2.17", 80));
  const Destination added = real("10.244.3.5", 8080);
  entry.destinations.emplace(added.key, added);

  const Plan plan = diff(desired, observed, kOwnsAll);
  REQUIRE(plan.size() == 1);
  CHECK(plan.operations[0].kind == Kind::kAddDestination);
  CHECK(plan.operations[0].service.key == service_key("10.96.2.17", 80));
  CHECK(plan.operations[0].destination == added);
}

TEST_CASE("diff_service matches the whole-table diff for one service", "[diff]") {
  const Table desired = cluster();
  Table observed = cluster();
  const ServiceKey key = service_key("10.96.0.20", 80);
  observed.at(key).destinations.erase(real("10.244.2.5", 8080).key);

  const Plan whole = diff(desired, observed, kOwnsAll);
  const Plan one = diff_service(key, &desired.at(key), &observed.at(key));
  REQUIRE(one.size() == 1);
  CHECK(one.operations[0].kind == Kind::kAddDestination);
  CHECK(whole.size() == one.size());
  CHECK(whole.operations[0].destination == one.operations[0].destination);

  CHECK(diff_service(key, nullptr, nullptr).empty());
  CHECK(kinds(diff_service(key, nullptr, &observed.at(key))) == std::vector<Kind>{Kind::kDeleteService});
  CHECK(diff_service(key, &desired.at(key), &desired.at(key)).empty());
}

TEST_CASE("table_from converts a backend dump and drops counters", "[diff]") {
  std::vector<ServiceWithDestinations> dump;
  ServiceWithDestinations item;
  item.service.service = service(service_key("fd00::10", 53, Protocol::kUdp), "mh", flags::kSchedMhFallback);
  item.service.stats.connections = 99;
  DestinationState state;
  state.destination = real("fd00:244::5", 5353);
  state.active_connections = 4;
  item.destinations.push_back(state);
  DestinationState idle;
  idle.destination = real("fd00:244::6", 5353);
  item.destinations.push_back(idle);
  dump.push_back(item);

  const Table table = table_from(dump);
  REQUIRE(table.size() == 1);
  const auto& entry = table.at(service_key("fd00::10", 53, Protocol::kUdp));
  CHECK(entry.service.scheduler == "mh");
  REQUIRE(entry.destinations.size() == 2);
  CHECK(entry.destinations.begin()->second == real("fd00:244::5", 5353));

  const ConnectionTable connections = connections_from(dump);  // the busy one only
  REQUIRE(connections.size() == 1);
  CHECK(connections.begin()->second.active == 4);
}

// ---------------------------------------------------------------------------
// Drain policy.

using namespace std::chrono_literals;

struct DrainFixture {
  ServiceKey key = service_key("10.96.0.20", 80);
  Destination leaving = real("10.244.3.5", 8080);
  Table observed;
  Table desired;
  DrainClock::time_point t0{std::chrono::hours{1}};

  DrainFixture() {
    put(observed, service(key), {real("10.244.1.5", 8080), leaving});
    put(desired, service(key), {real("10.244.1.5", 8080)});
  }
  ConnectionTable busy(std::uint32_t active, std::uint32_t inactive) const {
    return {{DestinationRef{key, leaving.key}, Connections{active, inactive}}};
  }
};

TEST_CASE("a leaving destination with connections drains at weight 0", "[diff][drain]") {
  DrainFixture f;
  const Plan plan = diff(f.desired, f.observed, kOwnsAll);
  REQUIRE(kinds(plan) == std::vector<Kind>{Kind::kDeleteDestination});

  const auto [active, inactive] = GENERATE(std::pair{1U, 0U}, std::pair{0U, 1U}, std::pair{3U, 7U});
  const DrainResult first = apply_drain_policy(plan, f.observed, f.busy(active, inactive), {}, f.t0);
  REQUIRE(kinds(first.plan) == std::vector<Kind>{Kind::kEditDestination});
  Destination zeroed = f.leaving;
  zeroed.weight = 0;
  CHECK(first.plan.operations[0].destination == zeroed);
  REQUIRE(first.draining.size() == 1);
  CHECK(first.draining.begin()->second == f.t0);

  // Next sync: the kernel now shows weight 0; nothing to write, drain kept
  // with its original start time.
  f.observed.at(f.key).destinations.at(f.leaving.key).weight = 0;
  const Plan again = diff(f.desired, f.observed, kOwnsAll);
  const DrainResult second =
      apply_drain_policy(again, f.observed, f.busy(active, inactive), first.draining, f.t0 + 60s);
  CHECK(second.plan.empty());
  CHECK(second.draining == first.draining);

  // Connections gone: deleted, and out of the drain set.
  const DrainResult third = apply_drain_policy(again, f.observed, f.busy(0, 0), second.draining, f.t0 + 120s);
  CHECK(kinds(third.plan) == std::vector<Kind>{Kind::kDeleteDestination});
  CHECK(third.draining.empty());
}

TEST_CASE("idle and UDP destinations are deleted at once", "[diff][drain]") {
  DrainFixture f;
  SECTION("idle TCP") {
    const DrainResult result =
        apply_drain_policy(diff(f.desired, f.observed, kOwnsAll), f.observed, f.busy(0, 0), {}, f.t0);
    CHECK(kinds(result.plan) == std::vector<Kind>{Kind::kDeleteDestination});
    CHECK(result.draining.empty());
  }
  SECTION("busy UDP") {
    Table observed;
    Table desired;
    const ServiceKey udp = service_key("10.96.0.10", 53, Protocol::kUdp);
    put(observed, service(udp), {real("10.244.1.2", 53), f.leaving});
    put(desired, service(udp), {real("10.244.1.2", 53)});
    const ConnectionTable counts{{DestinationRef{udp, f.leaving.key}, Connections{0, 12}}};
    const DrainResult result =
        apply_drain_policy(diff(desired, observed, kOwnsAll), observed, counts, {}, f.t0);
    CHECK(kinds(result.plan) == std::vector<Kind>{Kind::kDeleteDestination});
    CHECK(result.draining.empty());
  }
}

TEST_CASE("the grace period bounds a drain", "[diff][drain]") {
  DrainFixture f;
  const Plan plan = diff(f.desired, f.observed, kOwnsAll);
  const DrainSet draining{{DestinationRef{f.key, f.leaving.key}, f.t0}};
  const DrainOptions options{.grace_period = 300s};

  CHECK(kinds(apply_drain_policy(plan, f.observed, f.busy(5, 0), draining, f.t0 + 299s, options).plan) ==
        std::vector<Kind>{Kind::kEditDestination});
  const DrainResult late = apply_drain_policy(plan, f.observed, f.busy(5, 0), draining, f.t0 + 300s, options);
  CHECK(kinds(late.plan) == std::vector<Kind>{Kind::kDeleteDestination});
  CHECK(late.draining.empty());
  // Unbounded: still draining a day later.
  const DrainResult forever = apply_drain_policy(plan, f.observed, f.busy(5, 0), draining, f.t0 + 24h,
                                                 DrainOptions{.grace_period = std::nullopt});
  CHECK(forever.draining.size() == 1);
}

TEST_CASE("an endpoint that comes back while draining gets its weight back", "[diff][drain]") {
  DrainFixture f;
  f.observed.at(f.key).destinations.at(f.leaving.key).weight = 0;
  const DrainSet draining{{DestinationRef{f.key, f.leaving.key}, f.t0}};
  put(f.desired, service(f.key), {f.leaving});  // wanted again

  const Plan plan = diff(f.desired, f.observed, kOwnsAll);
  const DrainResult result = apply_drain_policy(plan, f.observed, f.busy(2, 0), draining, f.t0 + 10s);
  REQUIRE(kinds(result.plan) == std::vector<Kind>{Kind::kEditDestination});
  CHECK(result.plan.operations[0].destination.weight == 1);
  CHECK(result.draining.empty());
}

TEST_CASE("deleting a service ends its drains, prune_drains forgets vanished destinations", "[diff][drain]") {
  DrainFixture f;
  const DrainSet draining{{DestinationRef{f.key, f.leaving.key}, f.t0}};
  const DrainResult result =
      apply_drain_policy(diff(Table{}, f.observed, kOwnsAll), f.observed, f.busy(9, 9), draining, f.t0);
  CHECK(kinds(result.plan) == std::vector<Kind>{Kind::kDeleteService});
  CHECK(result.draining.empty());

  CHECK(prune_drains(draining, f.observed) == draining);
  f.observed.at(f.key).destinations.erase(f.leaving.key);
  CHECK(prune_drains(draining, f.observed).empty());
}

}  // namespace
}  // namespace kipvs::ipvs
