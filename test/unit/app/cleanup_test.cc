// --cleanup against the stateful fakes: kipvs's virtual services, addresses
// and interface go; a foreign service stays; a node kipvs never ran on is
// cleaned without error.

#include <algorithm>
#include <cerrno>
#include <string_view>

#include <catch2/catch.hpp>

#include "address/address_backend.h"
#include "address/fake_address_backend.h"
#include "app/agent.h"
#include "ipvs/fake_backend.h"
#include "test/support/builders.h"

namespace kipvs::app {
namespace {

using agent::NodeFacts;

using kipvs::test::ip;

ipvs::Operation add_service(std::string_view address, std::uint16_t port) {
  return {.kind = ipvs::Operation::Kind::kAddService,
          .service = {.key = {.family = ipvs::Family::kIPv4,
                              .protocol = ipvs::Protocol::kTcp,
                              .address = ip(address),
                              .port = port,
                              .fwmark = 0}},
          .destination = {}};
}

TEST_CASE("cleanup removes kipvs's services, addresses and interface, and nothing else", "[agent]") {
  ipvs::FakeBackend kernel;
  address::FakeAddressBackend addresses;
  REQUIRE(addresses.ensure_link("kube-ipvs0"));
  addresses.put("kube-ipvs0", ip("10.96.0.10"));
  addresses.put("kube-ipvs0", ip("10.96.0.20"));
  NodeFacts facts;
  facts.node_ips = {ip("192.168.1.5")};
  const ipvs::Operation setup[] = {
      add_service("10.96.0.10", 80),      // a cluster IP on the interface
      add_service("10.96.0.20", 53),      // another
      add_service("192.168.1.5", 30080),  // a node port
      add_service("172.16.0.1", 80),      // someone else's
      add_service("192.168.1.5", 22),     // on the node IP, not a node port: someone else's
  };
  for (const auto& result : kernel.apply(setup)) REQUIRE(result);

  auto done = cleanup(kernel, addresses, "kube-ipvs0", facts);
  REQUIRE(done);
  CHECK(done->errors.empty());
  CHECK(done->services_deleted == 3);
  CHECK(done->addresses_deleted == 2);
  CHECK(done->interface_deleted);
  CHECK_FALSE(addresses.has_link("kube-ipvs0"));
  CHECK(kernel.service_count() == 2);
  CHECK(kernel.has_service(setup[3].service.key));
  CHECK(kernel.has_service(setup[4].service.key));

  SECTION("a second run finds nothing left and succeeds") {
    auto again = cleanup(kernel, addresses, "kube-ipvs0", facts);
    REQUIRE(again);
    CHECK(again->errors.empty());
    CHECK(again->services_deleted == 0);
    CHECK_FALSE(again->interface_deleted);
    CHECK(kernel.service_count() == 2);
  }
}

TEST_CASE("cleanup on a node without the interface still removes kipvs's node ports", "[agent]") {
  ipvs::FakeBackend kernel;
  address::FakeAddressBackend addresses;
  NodeFacts facts;
  facts.node_ips = {ip("192.168.1.5")};
  const ipvs::Operation setup[] = {add_service("192.168.1.5", 31000), add_service("172.16.0.1", 80)};
  for (const auto& result : kernel.apply(setup)) REQUIRE(result);
  auto done = cleanup(kernel, addresses, "kube-ipvs0", facts);
  REQUIRE(done);
  CHECK(done->errors.empty());
  CHECK(done->services_deleted == 1);
  CHECK(kernel.has_service(setup[1].service.key));
}

TEST_CASE("cleanup reports a failed read instead of guessing", "[agent]") {
  ipvs::FakeBackend kernel;
  address::FakeAddressBackend addresses;
  REQUIRE(addresses.ensure_link("kube-ipvs0"));
  kernel.fail_reads(EPERM);
  auto done = cleanup(kernel, addresses, "kube-ipvs0", NodeFacts{});
  REQUIRE_FALSE(done);
  CHECK_THAT(done.error().text(), Catch::Contains("cannot list IPVS services"));
  CHECK(addresses.has_link("kube-ipvs0"));
}

TEST_CASE("host addresses: every interface's but the one named", "[agent]") {
  const auto loopback = ip("127.0.0.1");
  const auto all = host_addresses("kube-ipvs0");
  CHECK(std::ranges::find(all, loopback) != all.end());
  const auto without_lo = host_addresses("lo");
  CHECK(std::ranges::find(without_lo, loopback) == without_lo.end());
}

}  // namespace
}  // namespace kipvs::app
