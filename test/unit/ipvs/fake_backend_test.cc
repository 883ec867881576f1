// The fake backend answers like the kernel (ip_vs_ctl.c), counts operations
// and injects failures.

#include "ipvs/fake_backend.h"

#include <catch2/catch.hpp>
#include <cerrno>

namespace {

using namespace kipvs::ipvs;
using kipvs::Error;
using Kind = Operation::Kind;

Service service(const char* address = "10.96.0.10", std::uint16_t port = 80, const char* scheduler = "rr") {
  Service s;
  s.key.address = *Address::parse(address);
  s.key.family = s.key.address.family;
  s.key.port = port;
  s.scheduler = scheduler;
  s.netmask = default_netmask(s.key.family);
  return s;
}

Destination destination(const char* address = "10.244.1.17", std::uint16_t port = 8080,
                        std::int32_t weight = 1) {
  Destination d;
  d.key.address = *Address::parse(address);
  d.key.port = port;
  d.forwarding = Forwarding::kMasq;
  d.weight = weight;
  return d;
}

Operation op(Kind kind, const Service& s, const Destination& d = destination()) {
  Operation o;
  o.kind = kind;
  o.service = s;
  o.destination = d;
  return o;
}

// Applies one operation; 0 on success, else its errno.
int apply_one(FakeBackend& fake, const Operation& operation) {
  auto results = fake.apply(std::span(&operation, 1));
  REQUIRE(results.size() == 1);
  return results[0] ? 0 : results[0].error().code;
}

}  // namespace

TEST_CASE("the fake answers with the kernel's errno", "[fake]") {
  FakeBackend fake;
  const Service s = service();
  const Destination d = destination();
  REQUIRE(apply_one(fake, op(Kind::kAddService, s)) == 0);
  REQUIRE(apply_one(fake, op(Kind::kAddDestination, s, d)) == 0);

  const Service missing = service("10.96.0.99");
  Service bad_scheduler = s;
  bad_scheduler.scheduler = "nope";
  Service v6_bad_mask = service("fd00::10");
  v6_bad_mask.netmask = 0xffffffffU;
  Destination negative = d;
  negative.weight = -1;
  Destination thresholds = d;
  thresholds.lower_threshold = 10;
  thresholds.upper_threshold = 5;
  const Destination other = destination("10.244.2.2");
  Destination mixed = destination("fd00::2");

  const auto [operation, expected] = GENERATE_COPY(table<Operation, int>({
      {op(Kind::kAddService, s), EEXIST},
      {op(Kind::kEditService, missing), ESRCH},
      {op(Kind::kDeleteService, missing), ESRCH},
      {op(Kind::kAddDestination, missing, d), ESRCH},
      {op(Kind::kEditDestination, missing, d), ESRCH},
      {op(Kind::kDeleteDestination, missing, d), ESRCH},
      {op(Kind::kAddDestination, s, d), EEXIST},
      {op(Kind::kEditDestination, s, other), ENOENT},
      {op(Kind::kDeleteDestination, s, other), ENOENT},
      {op(Kind::kAddService, service("10.96.0.11", 80, "nope")), ENOENT},
      {op(Kind::kEditService, bad_scheduler), ENOENT},
      {op(Kind::kAddService, v6_bad_mask), EINVAL},
      {op(Kind::kAddDestination, s, negative), ERANGE},
      {op(Kind::kEditDestination, s, thresholds), ERANGE},
      {op(Kind::kAddDestination, s, mixed), EINVAL},
  }));
  INFO(describe(operation));
  CHECK(apply_one(fake, operation) == expected);
  // A failure changes nothing.
  CHECK(fake.service_count() == 1);
  CHECK(fake.destination_count() == 1);
}

TEST_CASE("errors name the operation, the service and the errno", "[fake]") {
  FakeBackend fake;
  const Service s = service();
  const Operation add = op(Kind::kAddDestination, s);
  REQUIRE(apply_one(fake, op(Kind::kAddService, s)) == 0);
  REQUIRE(apply_one(fake, add) == 0);
  auto results = fake.apply(std::span(&add, 1));
  REQUIRE_FALSE(results[0].has_value());
  CHECK(results[0].error().message == "add destination 10.244.1.17:8080 to TCP 10.96.0.10:80: File exists");
}

TEST_CASE("one failure does not stop the rest of a batch", "[fake]") {
  FakeBackend fake;
  const Service s = service();
  const std::vector<Operation> batch{
      op(Kind::kAddService, s),
      op(Kind::kAddDestination, s, destination("10.244.1.1")),
      op(Kind::kAddDestination, s, destination("10.244.1.1")),  // duplicate
      op(Kind::kAddDestination, s, destination("10.244.1.2")),
  };
  auto results = fake.apply(batch);
  REQUIRE(results.size() == 4);
  CHECK(results[0].has_value());
  CHECK(results[1].has_value());
  REQUIRE_FALSE(results[2].has_value());
  CHECK(results[2].error().code == EEXIST);
  CHECK(results[3].has_value());
  CHECK(fake.destination_count() == 2);
}

TEST_CASE("edits replace, deletes cascade, flush clears", "[fake]") {
  FakeBackend fake;
  Service s = service();
  REQUIRE(apply_one(fake, op(Kind::kAddService, s)) == 0);
  REQUIRE(apply_one(fake, op(Kind::kAddDestination, s, destination("10.244.1.1"))) == 0);

  s.scheduler = "wlc";
  s.flags = flags::kPersistent | flags::kHashed;  // HASHED is the kernel's, never stored
  s.timeout = 600;
  REQUIRE(apply_one(fake, op(Kind::kEditService, s)) == 0);
  REQUIRE(apply_one(fake, op(Kind::kEditDestination, s, destination("10.244.1.1", 8080, 0))) == 0);
  auto all = fake.list_all();
  REQUIRE(all.has_value());
  REQUIRE(all->size() == 1);
  CHECK((*all)[0].service.service.scheduler == "wlc");
  CHECK((*all)[0].service.service.flags == flags::kPersistent);
  REQUIRE((*all)[0].destinations.size() == 1);
  CHECK((*all)[0].destinations[0].destination.weight == 0);

  REQUIRE(apply_one(fake, op(Kind::kDeleteService, s)) == 0);
  CHECK(fake.destination_count() == 0);
  REQUIRE(apply_one(fake, op(Kind::kAddService, s)) == 0);
  REQUIRE(fake.flush().has_value());
  CHECK(fake.service_count() == 0);
}

TEST_CASE("listing a missing service's destinations is empty, like the kernel's dump", "[fake]") {
  FakeBackend fake;
  auto listed = fake.list_destinations(service().key);
  REQUIRE(listed.has_value());
  CHECK(listed->empty());
}

TEST_CASE("the fake counts operations by kind", "[fake]") {
  FakeBackend fake;
  const Service s = service();
  std::vector<Operation> batch{op(Kind::kAddService, s),
                               op(Kind::kAddDestination, s, destination("10.244.1.1")),
                               op(Kind::kAddDestination, s, destination("10.244.1.2")),
                               op(Kind::kAddDestination, s, destination("10.244.1.2"))};
  (void)fake.apply(batch);
  CHECK(fake.count(Kind::kAddService) == 1);
  CHECK(fake.count(Kind::kAddDestination) == 3);  // the failed duplicate counts too
  CHECK(fake.count(Kind::kDeleteDestination) == 0);
  CHECK(fake.total_operations() == 4);
  CHECK(fake.apply_calls() == 1);
  fake.reset_counts();
  CHECK(fake.total_operations() == 0);
}

TEST_CASE("injected failures hit the next N operations of one kind", "[fake]") {
  FakeBackend fake;
  const Service s = service();
  REQUIRE(apply_one(fake, op(Kind::kAddService, s)) == 0);
  fake.fail_next(Kind::kAddDestination, EIO, 2);
  CHECK(apply_one(fake, op(Kind::kDeleteService, service("10.1.1.1"))) == ESRCH);  // other kinds unaffected
  CHECK(apply_one(fake, op(Kind::kAddDestination, s, destination("10.244.1.1"))) == EIO);
  CHECK(apply_one(fake, op(Kind::kAddDestination, s, destination("10.244.1.1"))) == EIO);
  CHECK(fake.destination_count() == 0);
  CHECK(apply_one(fake, op(Kind::kAddDestination, s, destination("10.244.1.1"))) == 0);

  fake.fail_reads(ETIMEDOUT);
  auto listed = fake.list_all();
  REQUIRE_FALSE(listed.has_value());
  CHECK(listed.error().code == ETIMEDOUT);
  fake.fail_reads(0);
  CHECK(fake.list_all().has_value());
}

TEST_CASE("timeouts: zero leaves a value unchanged", "[fake]") {
  FakeBackend fake;
  CHECK(fake.get_timeouts().value() == Timeouts{900, 120, 300});
  REQUIRE(fake.set_timeouts(Timeouts{0, 30, 0}).has_value());
  CHECK(fake.get_timeouts().value() == Timeouts{900, 30, 300});
  CHECK(fake.set_timeouts(Timeouts{0xffffffffU, 0, 0}).error().code == EINVAL);
}

TEST_CASE("connection counts and stats can be arranged", "[fake]") {
  FakeBackend fake;
  const Service s = service();
  REQUIRE(apply_one(fake, op(Kind::kAddService, s)) == 0);
  REQUIRE(apply_one(fake, op(Kind::kAddDestination, s)) == 0);
  CHECK(fake.set_connections(s.key, destination().key, 3, 4));
  CHECK_FALSE(fake.set_connections(s.key, destination("10.9.9.9").key, 1, 1));
  auto listed = fake.list_destinations(s.key);
  REQUIRE(listed.has_value());
  REQUIRE(listed->size() == 1);
  CHECK((*listed)[0].active_connections == 3);
  CHECK((*listed)[0].inactive_connections == 4);
}
