// The netlink backend against the real kernel (in the rig's guest). After
// every step the table that the independent tool `ipvsadm -Sn` prints must
// equal both what the test programmed and what the backend dumps.

#include <linux/capability.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "address/address_backend.h"
#include "ipvs/ipvsadm_format.h"
#include "ipvs/netlink_backend.h"
#include "ipvs/table.h"
#include "netns.h"
#include "test/support/builders.h"

namespace {

using kipvs::Error;
using kipvs::ipvs::Address;
using kipvs::ipvs::Destination;
using kipvs::ipvs::Family;
using kipvs::ipvs::Forwarding;
using kipvs::ipvs::NetlinkBackend;
using kipvs::ipvs::Operation;
using kipvs::ipvs::Protocol;
using kipvs::ipvs::Service;
using kipvs::ipvs::Table;
using kipvs::test::run;
using kipvs::test::run_ok;
namespace flags = kipvs::ipvs::flags;

using kipvs::test::ip;
using kipvs::test::real_server;
using kipvs::test::virtual_service;

std::unique_ptr<NetlinkBackend> open_backend() {
  auto backend = NetlinkBackend::open();
  INFO((backend ? std::string() : backend.error().message));
  REQUIRE(backend.has_value());
  return std::move(*backend);
}

Operation op(Operation::Kind kind, const Service& service, const Destination& destination = {}) {
  return Operation{kind, service, destination};
}

void apply_ok(NetlinkBackend& backend, std::vector<Operation> operations) {
  const auto results = backend.apply(operations);
  REQUIRE(results.size() == operations.size());
  for (std::size_t i = 0; i < results.size(); ++i) {
    INFO(describe(operations[i]) << " -> " << (results[i] ? "ok" : results[i].error().message));
    REQUIRE(results[i].has_value());
  }
}

// The three views of the table must agree: what we programmed, what the
// backend dumps, and what ipvsadm prints.
void check_agreement(NetlinkBackend& backend, const Table& programmed, const std::string& step) {
  INFO("step: " << step);
  const std::string by_ipvsadm = kipvs::test::ipvsadm_save();
  auto dump = backend.list_all();
  REQUIRE(dump.has_value());
  CHECK(kipvs::ipvs::table_from(*dump) == programmed);
  CHECK(kipvs::ipvs::format_ipvsadm_save(*dump) == by_ipvsadm);
  CHECK(kipvs::ipvs::format_ipvsadm_save(programmed) == by_ipvsadm);
}

struct Addresses {
  const char* vip;
  const char* backends[3];
};

Addresses addresses_for(Family family) {
  if (family == Family::kIPv4) return {"10.96.12.34", {"10.244.1.17", "10.244.2.5", "10.244.3.9"}};
  return {"fd00:10:96::10", {"fd00:10:244:1::17", "fd00:10:244:2::5", "fd00:10:244:3::9"}};
}

void lifecycle(Family family, Protocol protocol, const std::string& scheduler) {
  INFO("family " << (family == Family::kIPv4 ? "IPv4" : "IPv6") << ", protocol " << static_cast<int>(protocol)
                 << ", scheduler " << scheduler);
  auto backend = open_backend();
  const Addresses addrs = addresses_for(family);

  Service service;
  service.key.family = family;
  service.key.protocol = protocol;
  service.key.address = ip(addrs.vip);
  service.key.port = 80;
  service.scheduler = scheduler;
  service.netmask = family == Family::kIPv4 ? 0xffffffff : 128;
  Table programmed;

  apply_ok(*backend, {op(Operation::Kind::kAddService, service)});
  kipvs::ipvs::put(programmed, service);
  check_agreement(*backend, programmed, "service added");

  std::vector<Destination> destinations;
  std::vector<Operation> adds;
  for (int i = 0; i < 3; ++i) {
    Destination d;
    d.key.address = ip(addrs.backends[i]);
    d.key.port = static_cast<std::uint16_t>(8080 + i);
    d.weight = i + 1;
    destinations.push_back(d);
    adds.push_back(op(Operation::Kind::kAddDestination, service, d));
  }
  apply_ok(*backend, adds);
  kipvs::ipvs::put(programmed, service, destinations);
  check_agreement(*backend, programmed, "destinations added");

  service.flags = flags::kPersistent;
  service.timeout = 600;
  apply_ok(*backend, {op(Operation::Kind::kEditService, service)});
  programmed[service.key].service = service;
  check_agreement(*backend, programmed, "persistence on, 600 s");

  service.timeout = 10800;
  apply_ok(*backend, {op(Operation::Kind::kEditService, service)});
  programmed[service.key].service = service;
  check_agreement(*backend, programmed, "persistence timeout 10800 s");

  service.flags = 0;
  service.timeout = 0;
  service.scheduler = scheduler == "rr" ? "wlc" : "rr";
  apply_ok(*backend, {op(Operation::Kind::kEditService, service)});
  programmed[service.key].service = service;
  check_agreement(*backend, programmed, "persistence off, scheduler changed");

  destinations[1].weight = 0;  // a drain
  destinations[2].weight = 7;
  destinations[2].forwarding = Forwarding::kRoute;
  apply_ok(*backend, {op(Operation::Kind::kEditDestination, service, destinations[1]),
                      op(Operation::Kind::kEditDestination, service, destinations[2])});
  kipvs::ipvs::put(programmed, service, destinations);
  check_agreement(*backend, programmed, "destinations edited");

  apply_ok(*backend, {op(Operation::Kind::kDeleteDestination, service, destinations[0])});
  programmed[service.key].destinations.erase(destinations[0].key);
  check_agreement(*backend, programmed, "destination removed");

  apply_ok(*backend, {op(Operation::Kind::kDeleteService, service)});
  programmed.erase(service.key);
  check_agreement(*backend, programmed, "service deleted");
  CHECK(kipvs::test::ipvsadm_save().empty());
}

const std::vector<std::string> kSchedulers = {"rr", "wrr", "lc",  "wlc", "lblc", "lblcr",
                                              "dh", "sh",  "sed", "nq",  "mh"};

}  // namespace

TEST_CASE("every protocol, address family and scheduler: a full lifecycle agrees with ipvsadm", "[kernel]") {
  const auto family = GENERATE(Family::kIPv4, Family::kIPv6);
  const auto protocol = GENERATE(Protocol::kTcp, Protocol::kUdp, Protocol::kSctp);
  const auto scheduler = GENERATE(from_range(kSchedulers));
  INFO((family == Family::kIPv4 ? "IPv4 " : "IPv6 ")
       << kipvs::ipvs::protocol_name(protocol) << " " << scheduler);
  lifecycle(family, protocol, scheduler);
}

TEST_CASE("scheduler flags, one-packet and firewall-mark services agree with ipvsadm", "[kernel]") {
  auto backend = open_backend();
  Service sh = virtual_service("10.96.0.20", 443);
  sh.scheduler = "sh";
  sh.flags = flags::kSchedShFallback | flags::kSchedShPort;
  Service mh = sh;
  mh.key.port = 444;
  mh.scheduler = "mh";
  mh.flags = flags::kSchedMhFallback;
  Service udp_ops = sh;
  udp_ops.key.protocol = Protocol::kUdp;
  udp_ops.key.port = 53;
  udp_ops.scheduler = "rr";
  udp_ops.flags = flags::kOnePacket;
  Service fwmark;
  fwmark.key.fwmark = 42;
  fwmark.key.port = 0;
  fwmark.key.address = Address{};
  fwmark.scheduler = "rr";
  fwmark.flags = flags::kPersistent;
  fwmark.timeout = 300;
  const Destination d = real_server("10.244.0.9", 0);
  apply_ok(*backend, {op(Operation::Kind::kAddService, sh), op(Operation::Kind::kAddService, mh),
                      op(Operation::Kind::kAddService, udp_ops), op(Operation::Kind::kAddService, fwmark),
                      op(Operation::Kind::kAddDestination, fwmark, d)});
  Table programmed;
  kipvs::ipvs::put(programmed, sh);
  kipvs::ipvs::put(programmed, mh);
  kipvs::ipvs::put(programmed, udp_ops);
  kipvs::ipvs::put(programmed, fwmark, {d});
  check_agreement(*backend, programmed, "flagged services");
}

// What the reads without counters say must be what the netlink dumps say:
// through the socket options for IPv4 services when the caller wants those
// alone, through netlink for every family and for a service too large for
// one socket option answer.
void check_settings_agree(NetlinkBackend& backend, const Table& programmed, bool through_sockopt) {
  const auto before = backend.counters().sockopt_reads;
  auto settings = backend.list_service_settings(/*ipv4_only=*/through_sockopt);
  REQUIRE(settings.has_value());
  CHECK(backend.counters().sockopt_reads - before == (through_sockopt ? 1 : 0));
  auto listed = backend.list_services();
  REQUIRE(listed.has_value());
  REQUIRE(listed->size() == programmed.size());
  REQUIRE(settings->size() == programmed.size());
  std::vector<Service> from_settings;
  std::vector<Service> from_netlink;
  for (const auto& state : *settings) from_settings.push_back(state.service);
  for (const auto& state : *listed) from_netlink.push_back(state.service);
  std::ranges::sort(from_settings, {}, &Service::key);
  std::ranges::sort(from_netlink, {}, &Service::key);
  CHECK(from_settings == from_netlink);
  for (const auto& service : from_settings) CHECK(programmed.at(service.key).service == service);
}

// The chart grants CAP_NET_ADMIN alone: the socket options must not need
// CAP_NET_RAW (a raw socket would). Dropped from the effective set, it can be
// raised again from the permitted one.
class WithoutNetRaw {
 public:
  WithoutNetRaw() { set(false); }
  ~WithoutNetRaw() { set(true); }
  WithoutNetRaw(const WithoutNetRaw&) = delete;
  WithoutNetRaw& operator=(const WithoutNetRaw&) = delete;

 private:
  static void set(bool on) {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    std::array<__user_cap_data_struct, 2> data{};
    REQUIRE(::syscall(SYS_capget, &header, data.data()) == 0);
    const auto bit = 1U << (CAP_NET_RAW % 32);
    auto& effective = data[CAP_NET_RAW / 32].effective;
    effective = on ? (effective | bit) : (effective & ~bit);
    REQUIRE(::syscall(SYS_capset, &header, data.data()) == 0);
  }
};

TEST_CASE("reads through the socket options agree with the netlink dumps", "[kernel]") {
  const WithoutNetRaw without_net_raw;
  const int raw = ::socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
  if (raw >= 0) ::close(raw);
  REQUIRE(raw < 0);  // the capability is gone
  auto backend = open_backend();
  std::vector<Operation> operations;
  Table programmed;
  auto add = [&](const Service& service, const std::vector<Destination>& destinations) {
    operations.push_back(op(Operation::Kind::kAddService, service));
    for (const auto& d : destinations) operations.push_back(op(Operation::Kind::kAddDestination, service, d));
    kipvs::ipvs::put(programmed, service, destinations);
  };
  Destination masq = real_server("10.244.1.1", 8080);
  Destination route = real_server("10.244.1.2", 8080);
  route.forwarding = Forwarding::kRoute;
  route.weight = 0;
  Destination tunnel = real_server("10.244.1.3", 8080);
  tunnel.forwarding = Forwarding::kTunnel;
  tunnel.weight = 5;
  tunnel.upper_threshold = 100;
  tunnel.lower_threshold = 10;
  Service tcp = virtual_service("10.96.5.1", 80);
  tcp.flags = flags::kPersistent;
  tcp.timeout = 10800;
  tcp.netmask = 0xffffff00;
  add(tcp, {masq, route, tunnel});
  Service udp = virtual_service("10.96.5.1", 53);
  udp.key.protocol = Protocol::kUdp;
  udp.flags = flags::kOnePacket;
  add(udp, {real_server("10.244.1.4", 53)});
  Service sctp = virtual_service("10.96.5.1", 7777);
  sctp.key.protocol = Protocol::kSctp;
  sctp.scheduler = "sh";
  sctp.flags = flags::kSchedShFallback | flags::kSchedShPort;
  add(sctp, {real_server("10.244.1.5", 7777)});
  Service fwmark;
  fwmark.key.fwmark = 7;
  fwmark.key.address = Address{};
  add(fwmark, {real_server("10.244.1.6", 0)});
  add(virtual_service("10.96.5.2", 80), {});
  // 63 fit one answer; 70 do not, and go to netlink.
  for (const auto& [address, count] : {std::pair{"10.96.5.3", 63}, std::pair{"10.96.5.4", 70}}) {
    std::vector<Destination> many;
    for (int i = 0; i < count; ++i) many.push_back(real_server("10.245.0." + std::to_string(i + 1), 80));
    add(virtual_service(address, 80), many);
  }
  apply_ok(*backend, operations);
  check_settings_agree(*backend, programmed, /*through_sockopt=*/true);

  // With an IPv6 service: every family, through netlink.
  Service v6 = virtual_service("fd00:10:96::5", 80);
  v6.netmask = kipvs::ipvs::default_netmask(Family::kIPv6);
  operations.clear();
  add(v6, {real_server("fd00:10:244::1", 80), real_server("fd00:10:244::2", 80)});
  apply_ok(*backend, operations);
  check_settings_agree(*backend, programmed, /*through_sockopt=*/false);
  auto ipv4 = backend->list_service_settings(/*ipv4_only=*/true);
  REQUIRE(ipv4.has_value());
  CHECK(ipv4->size() == programmed.size() - 1);
  CHECK(std::ranges::none_of(*ipv4, [&v6](const auto& state) { return state.service.key == v6.key; }));

  auto dump = backend->list_all();
  REQUIRE(dump.has_value());
  REQUIRE(kipvs::ipvs::table_from(*dump) == programmed);
  const auto before = backend->counters().sockopt_reads;
  for (const auto& read : *dump) {
    INFO(kipvs::ipvs::to_string(read.service.service.key));
    auto listed = backend->list_destinations(read.service.service.key);
    REQUIRE(listed.has_value());
    REQUIRE(listed->size() == read.destinations.size());
    for (std::size_t i = 0; i < listed->size(); ++i) {
      CHECK((*listed)[i].destination == read.destinations[i].destination);
      CHECK((*listed)[i].active_connections == read.destinations[i].active_connections);
      CHECK((*listed)[i].inactive_connections == read.destinations[i].inactive_connections);
    }
  }
  // Every IPv4 service but the one with 70 destinations.
  CHECK(backend->counters().sockopt_reads - before == 6);

  const auto missing = backend->list_destinations(virtual_service("10.96.5.9", 80).key);
  REQUIRE_FALSE(missing.has_value());
  CHECK(missing.error().code == ESRCH);
  CHECK_THAT(missing.error().message, Catch::Contains("10.96.5.9:80"));
}

TEST_CASE("kernel errors come back per operation with errno and a message naming it", "[kernel]") {
  auto backend = open_backend();
  const Service service = virtual_service("10.96.0.30", 80);
  const Destination present = real_server("10.244.0.1", 80);
  const Destination missing = real_server("10.244.0.2", 80);
  Service unknown_scheduler = service;
  unknown_scheduler.key.port = 81;
  unknown_scheduler.scheduler = "nosuchsched";
  Service absent = service;
  absent.key.port = 82;

  const std::vector<Operation> batch = {
      op(Operation::Kind::kAddService, service),
      op(Operation::Kind::kAddService, service),  // duplicate
      op(Operation::Kind::kAddDestination, service, present),
      op(Operation::Kind::kDeleteDestination, service, missing),
      op(Operation::Kind::kAddService, unknown_scheduler),
      op(Operation::Kind::kEditService, absent),
      op(Operation::Kind::kAddDestination, absent, present),
  };
  const auto results = backend->apply(batch);
  REQUIRE(results.size() == batch.size());
  CHECK(results[0].has_value());
  REQUIRE_FALSE(results[1].has_value());
  CHECK(results[1].error().code == EEXIST);
  CHECK_THAT(results[1].error().message, Catch::Contains("add service") && Catch::Contains("10.96.0.30:80"));
  CHECK(results[2].has_value());  // the failure before it did not stop it
  REQUIRE_FALSE(results[3].has_value());
  CHECK(results[3].error().code == ENOENT);
  CHECK_THAT(results[3].error().message,
             Catch::Contains("delete destination") && Catch::Contains("10.244.0.2"));
  REQUIRE_FALSE(results[4].has_value());
  CHECK(results[4].error().code == ENOENT);
  CHECK_THAT(results[4].error().message, Catch::Contains("10.96.0.30:81"));
  REQUIRE_FALSE(results[5].has_value());
  CHECK(results[5].error().code == ESRCH);
  REQUIRE_FALSE(results[6].has_value());
  CHECK(results[6].error().code == ESRCH);

  CHECK(kipvs::test::ipvsadm_save() ==
        "-A -t 10.96.0.30:80 -s rr\n"
        "-a -t 10.96.0.30:80 -r 10.244.0.1:80 -m -w 1\n");

  // Only a batch's last request asks for an answer: a failure before a
  // success still comes back, and the success after it is one.
  const std::vector<Operation> ending_well = {
      op(Operation::Kind::kAddDestination, service, present),  // duplicate
      op(Operation::Kind::kAddDestination, service, missing),
  };
  const auto second = backend->apply(ending_well);
  REQUIRE(second.size() == 2);
  REQUIRE_FALSE(second[0].has_value());
  CHECK(second[0].error().code == EEXIST);
  CHECK(second[1].has_value());
  CHECK(kipvs::test::ipvsadm_save() ==
        "-A -t 10.96.0.30:80 -s rr\n"
        "-a -t 10.96.0.30:80 -r 10.244.0.1:80 -m -w 1\n"
        "-a -t 10.96.0.30:80 -r 10.244.0.2:80 -m -w 1\n");
}

TEST_CASE("timeouts, info and an explicit flush", "[kernel]") {
  auto backend = open_backend();
  auto info = backend->get_info();
  REQUIRE(info.has_value());
  CHECK(info->version >= 0x010200);  // 1.2.x
  CHECK(info->connection_table_size > 0);

  REQUIRE(backend->set_timeouts({900, 60, 120}).has_value());
  auto timeouts = backend->get_timeouts();
  REQUIRE(timeouts.has_value());
  CHECK(*timeouts == kipvs::ipvs::Timeouts{900, 60, 120});
  CHECK_THAT(run_ok("ipvsadm -L --timeout"), Catch::Contains("900 60 120"));

  run_ok("ipvsadm -A -t 10.1.1.1:80 && ipvsadm -A -u 10.1.1.1:53");
  REQUIRE(backend->flush().has_value());
  CHECK(kipvs::test::ipvsadm_save().empty());
}

TEST_CASE("real traffic through a virtual service raises the dumped counters", "[kernel]") {
  using kipvs::test::PeerNamespace;
  auto backend = open_backend();
  PeerNamespace server("backend");
  // The node (this namespace) reaches the backend over a veth pair; the
  // virtual IP sits on a dummy interface, as kipvs binds it.
  run_ok("ip link add kt-node type veth peer name kt-pod netns " + server.name());
  run_ok("ip addr add 10.244.0.1/24 dev kt-node && ip link set kt-node up");
  run_ok(server.exec() + "ip addr add 10.244.0.2/24 dev kt-pod");
  run_ok(server.exec() + "ip link set kt-pod up");
  run_ok(server.exec() + "ip route add default via 10.244.0.1");
  run_ok("ip link add kube-ipvs0 type dummy && ip addr add 10.96.0.50/32 dev kube-ipvs0");
  run_ok(server.exec() +
         "bash -c 'python3 -m http.server 8080 --bind 10.244.0.2 >/dev/null 2>&1 & "
         "for i in $(seq 100); do (echo > /dev/tcp/10.244.0.2/8080) 2>/dev/null && exit 0; "
         "sleep 0.1; done; exit 1' ");

  const Service service = virtual_service("10.96.0.50", 80);
  const Destination d = real_server("10.244.0.2", 8080);
  apply_ok(*backend,
           {op(Operation::Kind::kAddService, service), op(Operation::Kind::kAddDestination, service, d)});

  auto before = backend->list_all();
  REQUIRE(before.has_value());
  REQUIRE(before->size() == 1);
  CHECK(before->front().service.stats.connections == 0);

  for (int i = 0; i < 3; ++i) run_ok("curl -sf -o /dev/null --max-time 10 http://10.96.0.50/");

  // The kernel folds its per-CPU counters into what it reports only when its
  // rate estimator runs, every 2 s: wait for the third connection to show.
  std::expected<std::vector<kipvs::ipvs::ServiceWithDestinations>, Error> after;
  for (int attempt = 0; attempt < 50; ++attempt) {
    after = backend->list_all();
    REQUIRE(after.has_value());
    REQUIRE(after->size() == 1);
    if (after->front().service.stats.connections >= 3) break;
    run("sleep 0.2");
  }
  const auto& stats = after->front().service.stats;
  CHECK(stats.connections == 3);
  CHECK(stats.packets_in > 0);
  CHECK(stats.packets_out > 0);
  CHECK(stats.bytes_in > 0);
  CHECK(stats.bytes_out > stats.bytes_in);  // the pages served are larger than the requests
  REQUIRE(after->front().destinations.size() == 1);
  CHECK(after->front().destinations.front().stats.connections == 3);
  CHECK(after->front().destinations.front().stats.bytes_out == stats.bytes_out);
  // The finished connections wait in TIME_WAIT (two minutes): the socket
  // option's counts are the dump's.
  auto listed = backend->list_destinations(service.key);
  REQUIRE(listed.has_value());
  REQUIRE(listed->size() == 1);
  CHECK(listed->front().inactive_connections == 3);
  CHECK(listed->front().inactive_connections == after->front().destinations.front().inactive_connections);
  CHECK(backend->counters().sockopt_reads == 1);
  run(server.exec() + "pkill -f 'http.server 8080'");
}

namespace {

// Binds 600 IPv4 addresses (two batches of the backend's 512), one of them
// twice, at the end of the first batch, and two IPv6 ones: each answered,
// the duplicate refused with `refusal` in its message. Returns them.
std::vector<Address> bind_batches(kipvs::address::NetlinkAddressBackend& links, const std::string& refusal) {
  std::vector<Address> addresses;
  for (int i = 0; i < 600; ++i) {
    addresses.push_back(
        *Address::parse("10.96." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1)));
  }
  addresses.insert(addresses.begin() + 511, addresses[3]);
  addresses.push_back(*Address::parse("fd00::a"));
  addresses.push_back(*Address::parse("fd00::b"));
  const auto results = links.add_addresses("kube-ipvs0", addresses);
  REQUIRE(results.size() == addresses.size());
  for (std::size_t i = 0; i < results.size(); ++i) {
    CAPTURE(i);
    if (i == 511) {
      REQUIRE_FALSE(results[i].has_value());
      CHECK(results[i].error().code == EEXIST);
      CHECK_THAT(results[i].error().message, Catch::Contains(refusal));
    } else {
      CHECK(results[i].has_value());
    }
  }
  return addresses;
}

}  // namespace

TEST_CASE("addresses bound in batches: each answered, a duplicate refused, the rest on the link",
          "[kernel]") {
  auto opened = kipvs::address::NetlinkAddressBackend::open();
  REQUIRE(opened.has_value());
  auto& links = **opened;
  REQUIRE(links.ensure_link("kube-ipvs0"));
  const auto addresses = bind_batches(links, "add address 10.96.0.4 to kube-ipvs0");
  const auto listed = links.list_addresses("kube-ipvs0");
  REQUIRE(listed.has_value());
  CHECK(*listed == std::set<Address>(addresses.begin(), addresses.end()));
  CHECK(listed->size() == 602);
  // What `ip` sees: /32 and /128, the IPv6 ones without duplicate address
  // detection (not "tentative").
  const std::string shown = kipvs::test::run_ok("ip -o addr show dev kube-ipvs0");
  CHECK_THAT(shown, Catch::Contains("inet 10.96.2.100/32") && Catch::Contains("inet6 fd00::b/128"));
  CHECK_THAT(shown, !Catch::Contains("tentative"));
}

TEST_CASE(
    "local routes bound in batches: listed with the link's addresses, deleted either way, no one else's "
    "touched",
    "[kernel]") {
  using kipvs::address::Binding;
  using kipvs::address::NetlinkAddressBackend;
  auto opened = NetlinkAddressBackend::open(Binding::kLocalRoute);
  REQUIRE(opened.has_value());
  auto& links = **opened;
  REQUIRE(links.ensure_link("kube-ipvs0"));
  // Bound the other way before (kube-proxy, or kipvs with addresses), and
  // someone else's local route through the same link.
  run_ok("ip addr add 10.97.0.1/32 dev kube-ipvs0 && ip addr add 10.97.0.2/32 dev kube-ipvs0");
  run_ok("ip route add local 10.98.0.1/32 dev kube-ipvs0 table local proto static");
  const auto addresses = bind_batches(links, "add local route 10.96.0.4 through kube-ipvs0");
  REQUIRE(links.add_address("kube-ipvs0", *Address::parse("10.96.9.9")));
  std::set<Address> expected(addresses.begin(), addresses.end());
  expected.insert(*Address::parse("10.96.9.9"));
  expected.insert(*Address::parse("10.97.0.1"));
  expected.insert(*Address::parse("10.97.0.2"));
  const auto listed = links.list_addresses("kube-ipvs0");
  REQUIRE(listed.has_value());
  CHECK(*listed == expected);
  CHECK(listed->size() == 605);
  // What `ip` sees: routes of kipvs's protocol, not addresses.
  CHECK(run_ok("ip -4 route show table local dev kube-ipvs0 proto 107 | grep -c '^local 10.96'") == "601\n");
  CHECK_THAT(run_ok("ip -6 route show table local dev kube-ipvs0 proto 107"),
             Catch::Contains("local fd00::a ") && Catch::Contains("local fd00::b "));
  CHECK_THAT(run_ok("ip -o addr show dev kube-ipvs0"), !Catch::Contains("10.96."));

  // Deleted whichever way each was bound; someone else's route is not kipvs's.
  CHECK(links.delete_address("kube-ipvs0", *Address::parse("10.96.0.1")));
  CHECK(links.delete_address("kube-ipvs0", *Address::parse("fd00::a")));
  CHECK(links.delete_address("kube-ipvs0", *Address::parse("10.97.0.1")));
  const auto foreign = links.delete_address("kube-ipvs0", *Address::parse("10.98.0.1"));
  REQUIRE_FALSE(foreign.has_value());
  CHECK(foreign.error().code == EADDRNOTAVAIL);
  CHECK_THAT(run_ok("ip route show table local dev kube-ipvs0 proto static"),
             Catch::Contains("local 10.98.0.1"));
  const auto gone = links.delete_address("kube-ipvs0", *Address::parse("10.96.0.1"));
  REQUIRE_FALSE(gone.has_value());
  CHECK(gone.error().code == EADDRNOTAVAIL);
  // The link's last IPv4 address: the kernel drops every IPv4 route through
  // the link with it (someone else's too); kipvs's are put back.
  CHECK(links.delete_address("kube-ipvs0", *Address::parse("10.97.0.2")));
  CHECK(run_ok("ip -4 route show table local dev kube-ipvs0 proto 107 | grep -c '^local 10.96'") == "600\n");
  const auto after = links.list_addresses("kube-ipvs0");
  REQUIRE(after.has_value());
  CHECK(after->size() == 601);
  CHECK_FALSE(after->contains(*Address::parse("10.96.0.1")));
  CHECK_FALSE(after->contains(*Address::parse("10.97.0.1")));
  CHECK_FALSE(after->contains(*Address::parse("10.97.0.2")));

  // A backend that binds addresses reads the routes as bound too, and
  // deletes one.
  auto by_address = NetlinkAddressBackend::open(Binding::kAddress);
  REQUIRE(by_address.has_value());
  const auto seen = (*by_address)->list_addresses("kube-ipvs0");
  REQUIRE(seen.has_value());
  CHECK(*seen == *after);
  CHECK((*by_address)->delete_address("kube-ipvs0", *Address::parse("fd00::b")));
  CHECK_THAT(run_ok("ip -6 route show table local dev kube-ipvs0"), !Catch::Contains("fd00::b"));
  // And when it deletes the link's last IPv4 address, kipvs's routes come
  // back too.
  run_ok("ip addr add 10.97.0.3/32 dev kube-ipvs0");
  CHECK((*by_address)->delete_address("kube-ipvs0", *Address::parse("10.97.0.3")));
  CHECK(run_ok("ip -4 route show table local dev kube-ipvs0 proto 107 | grep -c '^local 10.96'") == "600\n");
}

TEST_CASE(
    "a virtual IP bound as a local route carries traffic, and still does once swapped for its address, IPv4 "
    "and IPv6",
    "[kernel]") {
  using kipvs::test::PeerNamespace;
  auto backend = open_backend();
  auto links = kipvs::address::NetlinkAddressBackend::open(kipvs::address::Binding::kLocalRoute);
  REQUIRE(links.has_value());
  PeerNamespace server("backend");
  run_ok("ip link add kt-node type veth peer name kt-pod netns " + server.name());
  run_ok("ip addr add 10.244.0.1/24 dev kt-node && ip addr add fd00:244::1/64 dev kt-node nodad");
  run_ok("ip link set kt-node up");
  run_ok(server.exec() + "ip addr add 10.244.0.2/24 dev kt-pod");
  run_ok(server.exec() + "ip addr add fd00:244::2/64 dev kt-pod nodad");
  run_ok(server.exec() + "ip link set kt-pod up");
  run_ok(server.exec() + "ip route add default via 10.244.0.1");
  run_ok(server.exec() + "ip -6 route add default via fd00:244::1");
  REQUIRE((*links)->ensure_link("kube-ipvs0"));
  const std::vector<Address> vips{*Address::parse("10.96.0.60"), *Address::parse("fd00:96::60")};
  for (const auto& result : (*links)->add_addresses("kube-ipvs0", vips)) CHECK(result.has_value());
  run_ok(server.exec() +
         "bash -c 'python3 -m http.server 8080 --bind :: >/dev/null 2>&1 & "
         "for i in $(seq 100); do (echo > /dev/tcp/10.244.0.2/8080) 2>/dev/null && exit 0; "
         "sleep 0.1; done; exit 1' ");
  const Service v4 = virtual_service("10.96.0.60", 80);
  Service v6 = virtual_service("fd00:96::60", 80);
  v6.netmask = kipvs::ipvs::default_netmask(Family::kIPv6);
  apply_ok(*backend, {op(Operation::Kind::kAddService, v4),
                      op(Operation::Kind::kAddDestination, v4, real_server("10.244.0.2", 8080)),
                      op(Operation::Kind::kAddService, v6),
                      op(Operation::Kind::kAddDestination, v6, real_server("fd00:244::2", 8080))});
  // No address of the node is a virtual IP: only the routes make them local.
  CHECK_THAT(run_ok("ip -o addr"), !Catch::Contains("10.96.0.60") && !Catch::Contains("fd00:96::60"));
  run_ok("curl -sf -o /dev/null --max-time 10 http://10.96.0.60/");
  run_ok("curl -sf -o /dev/null --max-time 10 -g 'http://[fd00:96::60]/'");
  auto listed = backend->list_all();
  REQUIRE(listed.has_value());
  REQUIRE(listed->size() == 2);
  for (const auto& entry : *listed) {
    CAPTURE(entry.service.service.key.address.to_string());
    REQUIRE(entry.destinations.size() == 1);
    // The rate estimator folds per-CPU counts in every 2 s: the connection
    // count is read from the socket option instead.
    auto destinations = backend->list_destinations(entry.service.service.key);
    REQUIRE(destinations.has_value());
    REQUIRE(destinations->size() == 1);
    CHECK(destinations->front().active_connections + destinations->front().inactive_connections == 1);
  }

  // Swapped for addresses (what binding addresses does after a first sync):
  // the address and its own local route come first, then kipvs's route goes.
  for (const auto& vip : vips) CHECK((*links)->promote("kube-ipvs0", vip));
  CHECK((*links)->local_routes("kube-ipvs0").empty());
  CHECK(run_ok("ip route show table all proto 107").empty());
  CHECK_THAT(run_ok("ip -o addr show dev kube-ipvs0"),
             Catch::Contains("10.96.0.60/32") && Catch::Contains("fd00:96::60/128"));
  CHECK_THAT(run_ok("ip route show table local dev kube-ipvs0"),
             Catch::Contains("local 10.96.0.60 proto kernel"));
  CHECK_THAT(run_ok("ip -6 route show table local dev kube-ipvs0"),
             Catch::Contains("local fd00:96::60 proto kernel"));
  run_ok("curl -sf -o /dev/null --max-time 10 http://10.96.0.60/");
  run_ok("curl -sf -o /dev/null --max-time 10 -g 'http://[fd00:96::60]/'");
  // Listed as bound still; a swap done already is no error.
  const auto bound = (*links)->list_addresses("kube-ipvs0");
  REQUIRE(bound.has_value());
  CHECK(*bound == std::set<Address>(vips.begin(), vips.end()));
  CHECK((*links)->promote("kube-ipvs0", vips.front()));
  run(server.exec() + "pkill -f 'http.server 8080'");
}
