// `ipvsadm -Sn` text: printed exactly as ipvsadm 1.31 prints it, in its
// order, and parsed back.

#include "ipvs/ipvsadm_format.h"

#include <catch2/catch.hpp>
#include <cerrno>

namespace {

using namespace kipvs::ipvs;
using kipvs::Error;

ServiceWithDestinations entry(Protocol protocol, const char* address, std::uint16_t port,
                              const char* scheduler,
                              std::vector<std::pair<const char*, std::uint16_t>> destinations = {}) {
  ServiceWithDestinations e;
  Service& s = e.service.service;
  s.key.protocol = protocol;
  s.key.address = *Address::parse(address);
  s.key.family = s.key.address.family;
  s.key.port = port;
  s.scheduler = scheduler;
  s.netmask = default_netmask(s.key.family);
  for (const auto& [daddr, dport] : destinations) {
    DestinationState d;
    d.destination.key.address = *Address::parse(daddr);
    d.destination.key.port = dport;
    d.destination.forwarding = Forwarding::kMasq;
    d.destination.weight = 1;
    e.destinations.push_back(d);
  }
  return e;
}

ServiceWithDestinations fwmark(std::uint32_t mark, Family family, const char* scheduler) {
  ServiceWithDestinations e;
  Service& s = e.service.service;
  s.key.family = family;
  s.key.address = Address{family, {}};
  s.key.fwmark = mark;
  s.scheduler = scheduler;
  s.netmask = default_netmask(family);
  return e;
}

}  // namespace

TEST_CASE("service lines match ipvsadm -Sn", "[ipvsadm]") {
  auto with = [](ServiceWithDestinations e, auto change) {
    change(e.service.service);
    return format_service_rule(e.service.service);
  };
  const auto tcp = entry(Protocol::kTcp, "10.96.12.34", 80, "rr");
  CHECK(format_service_rule(tcp.service.service) == "-A -t 10.96.12.34:80 -s rr");
  CHECK(with(tcp, [](Service& s) {
          s.flags = flags::kPersistent;
          s.timeout = 600;
        }) == "-A -t 10.96.12.34:80 -s rr -p 600");
  CHECK(with(tcp, [](Service& s) {
          s.flags = flags::kPersistent;
          s.timeout = 600;
          s.netmask = 0xffffff00U;
        }) == "-A -t 10.96.12.34:80 -s rr -p 600 -M 255.255.255.0");
  // A timeout without persistence is not printed.
  CHECK(with(tcp, [](Service& s) { s.timeout = 600; }) == "-A -t 10.96.12.34:80 -s rr");
  CHECK(with(tcp, [](Service& s) { s.flags = flags::kOnePacket; }) == "-A -t 10.96.12.34:80 -s rr -o");
  CHECK(with(tcp, [](Service& s) {
          s.scheduler = "sh";
          s.flags = flags::kSchedShFallback | flags::kSchedShPort;
        }) == "-A -t 10.96.12.34:80 -s sh -b sh-fallback,sh-port");
  CHECK(with(tcp, [](Service& s) {
          s.scheduler = "mh";
          s.flags = flags::kSchedMhPort;
        }) == "-A -t 10.96.12.34:80 -s mh -b mh-port");
  CHECK(with(tcp, [](Service& s) { s.flags = flags::kSchedShFallback; }) ==
        "-A -t 10.96.12.34:80 -s rr -b flag-1");
  CHECK(with(tcp, [](Service& s) {
          s.flags = flags::kPersistent | flags::kOnePacket | flags::kSchedShPort;
          s.timeout = 10800;
          s.scheduler = "sh";
        }) == "-A -t 10.96.12.34:80 -s sh -p 10800 -o -b sh-port");

  CHECK(format_service_rule(entry(Protocol::kUdp, "fd00:10:96::10", 53, "rr").service.service) ==
        "-A -u [fd00:10:96::10]:53 -s rr");
  CHECK(with(entry(Protocol::kUdp, "fd00:10:96::10", 53, "rr"), [](Service& s) {
          s.flags = flags::kPersistent;
          s.timeout = 300;
          s.netmask = 64;
        }) == "-A -u [fd00:10:96::10]:53 -s rr -p 300 -M 64");
  CHECK(format_service_rule(entry(Protocol::kSctp, "10.0.0.1", 9, "wlc").service.service) ==
        "-A --sctp-service 10.0.0.1:9 -s wlc");
  CHECK(format_service_rule(fwmark(42, Family::kIPv4, "rr").service.service) == "-A -f 42 -s rr");
  CHECK(format_service_rule(fwmark(42, Family::kIPv6, "rr").service.service) == "-A -f 42 -6 -s rr");
}

TEST_CASE("destination lines match ipvsadm -Sn", "[ipvsadm]") {
  const ServiceKey key = entry(Protocol::kTcp, "10.96.12.34", 80, "rr").service.service.key;
  Destination d;
  d.key.address = *Address::parse("10.244.1.17");
  d.key.port = 8080;
  d.weight = 1;
  const auto [forwarding, expected] = GENERATE(table<Forwarding, std::string>({
      {Forwarding::kMasq, "-a -t 10.96.12.34:80 -r 10.244.1.17:8080 -m -w 1"},
      {Forwarding::kRoute, "-a -t 10.96.12.34:80 -r 10.244.1.17:8080 -g -w 1"},
      {Forwarding::kLocal, "-a -t 10.96.12.34:80 -r 10.244.1.17:8080 -g -w 1"},
      {Forwarding::kTunnel, "-a -t 10.96.12.34:80 -r 10.244.1.17:8080 -i -w 1 --tun-type ipip"},
  }));
  d.forwarding = forwarding;
  CHECK(format_destination_rule(key, d) == expected);

  // Thresholds are not part of the save format.
  d.forwarding = Forwarding::kMasq;
  d.weight = 0;
  d.upper_threshold = 100;
  CHECK(format_destination_rule(key, d) == "-a -t 10.96.12.34:80 -r 10.244.1.17:8080 -m -w 0");

  Destination v6;
  v6.key.address = *Address::parse("fd00:244::17");
  v6.key.port = 53;
  v6.weight = 3;
  CHECK(format_destination_rule(fwmark(7, Family::kIPv6, "rr").service.service.key, v6) ==
        "-a -f 7 -6 -r [fd00:244::17]:53 -m -w 3");
}

TEST_CASE("the table prints in ipvsadm's order", "[ipvsadm]") {
  // In the kernel's (hash) order; ipvsadm sorts by fwmark, family, protocol,
  // address, port, with its wrapped 32-bit differences: 192.168.x sorts
  // before 10.96.x.
  const std::vector<ServiceWithDestinations> dump{
      entry(Protocol::kUdp, "10.96.0.10", 53, "rr", {{"10.244.2.5", 53}, {"10.244.1.9", 53}}),
      fwmark(5, Family::kIPv4, "rr"),
      entry(Protocol::kTcp, "10.96.0.10", 53, "rr"),
      entry(Protocol::kTcp, "10.96.0.1", 443, "rr", {{"192.168.0.2", 6443}}),
      entry(Protocol::kTcp, "192.168.0.2", 30080, "rr"),
      entry(Protocol::kTcp, "fd00::1", 80, "rr"),
      entry(Protocol::kTcp, "10.96.0.10", 9153, "rr"),
  };
  const std::string expected =
      "-A -t 192.168.0.2:30080 -s rr\n"
      "-A -t 10.96.0.1:443 -s rr\n"
      "-a -t 10.96.0.1:443 -r 192.168.0.2:6443 -m -w 1\n"
      "-A -t 10.96.0.10:53 -s rr\n"
      "-A -t 10.96.0.10:9153 -s rr\n"
      "-A -u 10.96.0.10:53 -s rr\n"
      "-a -u 10.96.0.10:53 -r 10.244.1.9:53 -m -w 1\n"
      "-a -u 10.96.0.10:53 -r 10.244.2.5:53 -m -w 1\n"
      "-A -t [fd00::1]:80 -s rr\n"
      "-A -f 5 -s rr\n";
  CHECK(format_ipvsadm_save(dump) == expected);

  // The same rules from a Table print the same.
  Table table;
  for (const auto& e : dump) {
    std::vector<Destination> destinations;
    for (const auto& d : e.destinations) destinations.push_back(d.destination);
    put(table, e.service.service, destinations);
  }
  CHECK(format_ipvsadm_save(table) == expected);
}

TEST_CASE("a non-transitive order is replayed from the starting order", "[ipvsadm]") {
  // 10.x < 100.x < 200.x < 10.x under ipvsadm's comparison: a cycle. The
  // result follows glibc's merge sort from the order given.
  std::vector<ServiceWithDestinations> dump{
      entry(Protocol::kTcp, "200.0.0.1", 80, "rr"),
      entry(Protocol::kTcp, "10.0.0.1", 80, "rr"),
      entry(Protocol::kTcp, "100.0.0.1", 80, "rr"),
  };
  // msort: [200] | [10, 100] -> [10, 100]; merge 200 vs 10: 200 < 10 -> 200
  // first, then 10, 100.
  sort_like_ipvsadm(dump);
  std::vector<std::string> order;
  for (const auto& e : dump) order.push_back(e.service.service.key.address.to_string());
  CHECK(order == std::vector<std::string>{"200.0.0.1", "10.0.0.1", "100.0.0.1"});
}

TEST_CASE("printed rules parse back to the same table", "[ipvsadm]") {
  std::vector<ServiceWithDestinations> dump{
      entry(Protocol::kTcp, "10.96.12.34", 80, "rr", {{"10.244.1.17", 8080}, {"10.244.2.3", 8080}}),
      entry(Protocol::kUdp, "fd00:10:96::10", 53, "sh", {{"fd00:244::5", 53}}),
      entry(Protocol::kSctp, "10.0.0.1", 9, "wlc"),
      fwmark(42, Family::kIPv6, "mh"),
  };
  dump[0].service.service.flags = flags::kPersistent;
  dump[0].service.service.timeout = 600;
  dump[0].service.service.netmask = 0xffff0000U;
  dump[0].destinations[1].destination.forwarding = Forwarding::kTunnel;
  dump[0].destinations[1].destination.weight = 0;
  dump[1].service.service.flags = flags::kSchedShFallback | flags::kSchedShPort | flags::kOnePacket;
  dump[1].destinations[0].destination.forwarding = Forwarding::kRoute;
  dump[3].service.service.flags = flags::kPersistent | flags::kSchedMhFallback;
  dump[3].service.service.timeout = 30;
  dump[3].service.service.netmask = 96;

  const std::string text = format_ipvsadm_save(dump);
  auto parsed = parse_ipvsadm_save(text);
  REQUIRE(parsed.has_value());
  CHECK(format_ipvsadm_save(*parsed) == text);
  Table expected;
  for (const auto& e : dump) {
    std::vector<Destination> destinations;
    for (const auto& d : e.destinations) destinations.push_back(d.destination);
    put(expected, e.service.service, destinations);
  }
  CHECK(table_from(*parsed) == expected);
}

TEST_CASE("parsing follows ipvsadm's defaults", "[ipvsadm]") {
  auto parsed = parse_ipvsadm_save(
      "# saved\n"
      "\n"
      "-A -t 10.0.0.1:80 -p\n"
      "-a -t 10.0.0.1:80 -r 10.0.0.2 -x 50 -y 5\n");
  REQUIRE(parsed.has_value());
  REQUIRE(parsed->size() == 1);
  const Service& s = (*parsed)[0].service.service;
  CHECK(s.scheduler == "wlc");
  CHECK(s.flags == flags::kPersistent);
  CHECK(s.timeout == 300);
  CHECK(s.netmask == 0xffffffffU);
  REQUIRE((*parsed)[0].destinations.size() == 1);
  const Destination& d = (*parsed)[0].destinations[0].destination;
  CHECK(d.key.port == 80);  // the service's port when -r has none
  CHECK(d.forwarding == Forwarding::kRoute);
  CHECK(d.weight == 1);
  CHECK(d.upper_threshold == 50);
  CHECK(d.lower_threshold == 5);
}

TEST_CASE("bad rules are errors that name the line", "[ipvsadm]") {
  const auto [text, fragment] = GENERATE(table<std::string, std::string>({
      {"-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.9:80 -r 10.1.1.1:80 -m\n", "line 2: destination for a service"},
      {"-A -t nowhere:80 -s rr\n", "line 1: bad service address"},
      {"-A -t 10.0.0.1:80 -s\n", "line 1: -s needs a value"},
      {"-A -t 10.0.0.1:80 --pe sip\n", "unsupported option --pe"},
      {"-A -t 10.0.0.1:80\n-A -t 10.0.0.1:80\n", "line 2: service defined twice"},
      {"-A -u [fd00::1]:53 -p 10 -M 200\n", "bad IPv6 netmask"},
      {"-A -t 10.0.0.1:80\n-a -t 10.0.0.1:80 -r 10.1.1.1 -w 70000\n", "weight out of range"},
      {"-E -t 10.0.0.1:80\n", "unsupported command -E"},
      {"-A -6 -f 3\n", "-6 used before -f"},
  }));
  auto parsed = parse_ipvsadm_save(text);
  REQUIRE_FALSE(parsed.has_value());
  CHECK(parsed.error().code == EINVAL);
  CHECK_THAT(parsed.error().message, Catch::Contains(fragment));
}
