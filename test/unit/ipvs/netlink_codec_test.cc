// The IPVS netlink codec: every attribute round-trips, the bytes match the
// kernel's layout, and malformed or truncated answers are errors.

#include "ipvs/netlink_codec.h"

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstring>

namespace {

using namespace kipvs::ipvs;
using kipvs::Error;
namespace nl = kipvs::ipvs::netlink;

constexpr std::uint16_t kFamily = 0x1d;

Address addr(const char* text) {
  return *Address::parse(text);
}

Service make_service(Protocol protocol, Family family, const std::string& scheduler, std::uint32_t flags) {
  Service s;
  s.key.family = family;
  s.key.protocol = protocol;
  s.key.address = family == Family::kIPv4 ? addr("10.96.12.34") : addr("fd00:10:96::10");
  s.key.port = 8443;
  s.scheduler = scheduler;
  s.flags = flags;
  s.timeout = (flags & flags::kPersistent) != 0 ? 600 : 0;
  s.netmask = family == Family::kIPv4 ? 0xffffff00U : 64U;
  return s;
}

// Reads exactly one message out of a buffer.
nl::Message only_message(const std::vector<std::uint8_t>& bytes) {
  nl::MessageReader reader(bytes);
  auto first = reader.next();
  REQUIRE(first.has_value());
  REQUIRE(first->has_value());
  auto rest = reader.next();
  REQUIRE(rest.has_value());
  REQUIRE_FALSE(rest->has_value());
  return **first;
}

nl::GenlMessage genl_of(const nl::Message& message) {
  auto genl = nl::decode_genl(message, kFamily);
  REQUIRE(genl.has_value());
  return *genl;
}

Stats big_stats() {
  Stats s;
  s.connections = 0x1'0000'0005ULL;  // beyond 32 bits: only STATS64 keeps it
  s.packets_in = 7;
  s.packets_out = 8;
  s.bytes_in = 0x2'0000'0009ULL;
  s.bytes_out = 10;
  s.connection_rate = 11;
  s.packet_rate_in = 12;
  s.packet_rate_out = 13;
  s.byte_rate_in = 14;
  s.byte_rate_out = 15;
  return s;
}

}  // namespace

TEST_CASE("service requests round-trip every attribute", "[codec]") {
  const auto protocol = GENERATE(Protocol::kTcp, Protocol::kUdp, Protocol::kSctp);
  const auto family = GENERATE(Family::kIPv4, Family::kIPv6);
  const auto scheduler = GENERATE(as<std::string>{}, "rr", "wlc", "sh", "mh", "none");
  const auto flag_bits =
      GENERATE(0U, flags::kPersistent, flags::kOnePacket, flags::kSchedShFallback | flags::kSchedShPort,
               flags::kPersistent | flags::kOnePacket | flags::kSchedMhPort);
  const Service service = make_service(protocol, family, scheduler, flag_bits);
  const auto command = GENERATE(nl::Command::kNewService, nl::Command::kSetService);

  std::vector<std::uint8_t> bytes;
  nl::encode_service_request(bytes, nl::Header{kFamily, 77, nl::kFlagRequest | nl::kFlagAck, 0}, command,
                             service);
  const nl::Message message = only_message(bytes);
  CHECK(message.type == kFamily);
  CHECK(message.sequence == 77);
  CHECK(message.flags == (nl::kFlagRequest | nl::kFlagAck));
  const nl::GenlMessage genl = genl_of(message);
  CHECK(genl.command == command);

  auto decoded = nl::decode_service(genl);
  REQUIRE(decoded.has_value());
  CHECK(decoded->service == service);
  CHECK(decoded->stats == Stats{});
}

TEST_CASE("firewall-mark services carry only family and mark", "[codec]") {
  const auto family = GENERATE(Family::kIPv4, Family::kIPv6);
  Service service;
  service.key.family = family;
  service.key.address = Address{family, {}};
  service.key.fwmark = 42;
  service.netmask = default_netmask(family);

  std::vector<std::uint8_t> bytes;
  nl::encode_service_request(bytes, nl::Header{kFamily, 1}, nl::Command::kNewService, service);
  auto decoded = nl::decode_service(genl_of(only_message(bytes)));
  REQUIRE(decoded.has_value());
  CHECK(decoded->service == service);
  // protocol/address/port are not sent: 16 (nlmsghdr) + 4 (genl) + 4 (nest)
  // + AF 8 + FWMARK 8 + sched "rr\0" 8 + flags 12 + timeout 8 + netmask 8.
  CHECK(bytes.size() == 16 + 4 + 4 + 8 + 8 + 8 + 12 + 8 + 8);
}

TEST_CASE("a NEW_SERVICE request has the kernel's exact layout", "[codec]") {
  Service service;
  service.key.address = addr("10.96.0.10");
  service.key.port = 80;
  service.scheduler = "rr";
  service.flags = flags::kPersistent;
  service.timeout = 600;
  service.netmask = 0xffffff00U;  // /24

  std::vector<std::uint8_t> bytes;
  nl::encode_service_request(bytes, nl::Header{0x1d, 0x01020304, nl::kFlagRequest | nl::kFlagAck, 0x99},
                             nl::Command::kNewService, service);
  // clang-format off
  const std::vector<std::uint8_t> expected{
      0x68, 0, 0, 0,  0x1d, 0,  0x05, 0,  0x04, 0x03, 0x02, 0x01,  0x99, 0, 0, 0,  // nlmsghdr
      1, 1, 0, 0,                                // genl: NEW_SERVICE, version 1
      0x54, 0, 1, 0,                             // IPVS_CMD_ATTR_SERVICE nest
      6, 0, 1, 0,  2, 0, 0, 0,                   // AF = AF_INET
      6, 0, 2, 0,  6, 0, 0, 0,                   // PROTOCOL = TCP
      20, 0, 3, 0,  10, 96, 0, 10,  0, 0, 0, 0,  0, 0, 0, 0,  0, 0, 0, 0,  // ADDR, 16 bytes
      6, 0, 4, 0,  0, 80, 0, 0,                  // PORT, network order
      7, 0, 6, 0,  'r', 'r', 0, 0,               // SCHED_NAME "rr\0"
      12, 0, 7, 0,  1, 0, 0, 0,  0xff, 0xff, 0xff, 0xff,  // FLAGS {persistent, mask ~0}
      8, 0, 8, 0,  0x58, 0x02, 0, 0,             // TIMEOUT 600
      8, 0, 9, 0,  0xff, 0xff, 0xff, 0x00,       // NETMASK as __be32 255.255.255.0
  };
  // clang-format on
  CHECK(bytes == expected);
}

TEST_CASE("an IPv6 netmask goes out as a host-order prefix length", "[codec]") {
  Service service = make_service(Protocol::kTcp, Family::kIPv6, "rr", flags::kPersistent);
  service.netmask = 64;
  std::vector<std::uint8_t> bytes;
  nl::encode_service_request(bytes, nl::Header{kFamily, 1}, nl::Command::kNewService, service);
  // The netmask attribute is the last one.
  std::uint32_t raw = 0;
  std::memcpy(&raw, bytes.data() + bytes.size() - 4, 4);
  CHECK(raw == 64);
}

TEST_CASE("DEL_SERVICE names the service only", "[codec]") {
  const Service service = make_service(Protocol::kUdp, Family::kIPv4, "rr", 0);
  std::vector<std::uint8_t> bytes;
  nl::encode_service_request(bytes, nl::Header{kFamily, 1}, nl::Command::kDelService, service);
  const nl::GenlMessage genl = genl_of(only_message(bytes));
  CHECK(genl.command == nl::Command::kDelService);
  auto key = nl::decode_service_key(genl);
  REQUIRE(key.has_value());
  CHECK(*key == service.key);
  auto full = nl::decode_service(genl);
  REQUIRE_FALSE(full.has_value());
  CHECK(full.error().code == EBADMSG);
  CHECK_THAT(full.error().message, Catch::Contains("scheduler"));
}

TEST_CASE("service answers round-trip stats, 64-bit preferred", "[codec]") {
  ServiceState state;
  state.service = make_service(Protocol::kTcp, Family::kIPv4, "wrr", flags::kPersistent);
  state.stats = big_stats();

  SECTION("both nests: STATS64 wins") {
    std::vector<std::uint8_t> bytes;
    nl::encode_service_answer(bytes, nl::Header{kFamily, 5, nl::kFlagMulti}, state,
                              nl::StatsAttributes::kBoth);
    auto decoded = nl::decode_service(genl_of(only_message(bytes)));
    REQUIRE(decoded.has_value());
    CHECK(decoded->service == state.service);  // the kernel's HASHED bit is masked off
    CHECK(decoded->stats == state.stats);
  }
  SECTION("only the old nest: counters as the kernel truncated them") {
    std::vector<std::uint8_t> bytes;
    nl::encode_service_answer(bytes, nl::Header{kFamily, 5, nl::kFlagMulti}, state,
                              nl::StatsAttributes::kOnly32);
    auto decoded = nl::decode_service(genl_of(only_message(bytes)));
    REQUIRE(decoded.has_value());
    CHECK(decoded->stats.connections == 5);              // u32 in the old nest
    CHECK(decoded->stats.bytes_in == 0x2'0000'0009ULL);  // bytes were always u64
    CHECK(decoded->stats.byte_rate_out == 15);
  }
  SECTION("no stats at all") {
    std::vector<std::uint8_t> bytes;
    nl::encode_service_answer(bytes, nl::Header{kFamily, 5, nl::kFlagMulti}, state,
                              nl::StatsAttributes::kNone);
    auto decoded = nl::decode_service(genl_of(only_message(bytes)));
    REQUIRE(decoded.has_value());
    CHECK(decoded->stats == Stats{});
  }
}

TEST_CASE("destination requests and answers round-trip every attribute", "[codec]") {
  const auto service_family = GENERATE(Family::kIPv4, Family::kIPv6);
  const auto forwarding =
      GENERATE(Forwarding::kMasq, Forwarding::kTunnel, Forwarding::kRoute, Forwarding::kLocal);
  const auto weight = GENERATE(0, 1, 65535);
  Destination destination;
  destination.key.address = service_family == Family::kIPv4 ? addr("10.244.1.17") : addr("fd00:244::17");
  destination.key.port = 8080;
  destination.forwarding = forwarding;
  destination.weight = weight;
  destination.upper_threshold = 1000;
  destination.lower_threshold = 10;
  const ServiceKey key = make_service(Protocol::kTcp, service_family, "rr", 0).key;

  std::vector<std::uint8_t> bytes;
  nl::encode_destination_request(bytes, nl::Header{kFamily, 9}, nl::Command::kNewDest, key, destination);
  const nl::GenlMessage request = genl_of(only_message(bytes));
  CHECK(request.command == nl::Command::kNewDest);
  auto service_key = nl::decode_service_key(request);
  REQUIRE(service_key.has_value());
  CHECK(*service_key == key);
  auto decoded = nl::decode_destination(request, service_family);
  REQUIRE(decoded.has_value());
  CHECK(decoded->destination == destination);

  DestinationState state;
  state.destination = destination;
  state.active_connections = 3;
  state.inactive_connections = 4;
  state.persistent_connections = 5;
  state.stats = big_stats();
  bytes.clear();
  nl::encode_destination_answer(bytes, nl::Header{kFamily, 9, nl::kFlagMulti}, state);
  auto answer = nl::decode_destination(genl_of(only_message(bytes)), service_family);
  REQUIRE(answer.has_value());
  CHECK(answer->destination == destination);
  CHECK(answer->active_connections == 3);
  CHECK(answer->inactive_connections == 4);
  CHECK(answer->persistent_connections == 5);
  CHECK(answer->stats == state.stats);
}

TEST_CASE("a destination's own family wins over the service's", "[codec]") {
  // An IPv4 real server behind an IPv6 service (tunnelling only).
  Destination destination;
  destination.key.address = addr("192.0.2.7");
  destination.key.port = 80;
  destination.forwarding = Forwarding::kTunnel;
  std::vector<std::uint8_t> bytes;
  nl::encode_destination_request(bytes, nl::Header{kFamily, 1}, nl::Command::kNewDest,
                                 make_service(Protocol::kTcp, Family::kIPv6, "rr", 0).key, destination);
  auto decoded = nl::decode_destination(genl_of(only_message(bytes)), Family::kIPv6);
  REQUIRE(decoded.has_value());
  CHECK(decoded->destination.key.address.family == Family::kIPv4);
  CHECK(decoded->destination == destination);
}

TEST_CASE("DEL_DEST names the destination only", "[codec]") {
  Destination destination;
  destination.key.address = addr("10.244.1.17");
  destination.key.port = 8080;
  std::vector<std::uint8_t> bytes;
  nl::encode_destination_request(bytes, nl::Header{kFamily, 1}, nl::Command::kDelDest,
                                 make_service(Protocol::kTcp, Family::kIPv4, "rr", 0).key, destination);
  const nl::GenlMessage genl = genl_of(only_message(bytes));
  auto key = nl::decode_destination_key(genl, Family::kIPv4);
  REQUIRE(key.has_value());
  CHECK(*key == destination.key);
  CHECK_FALSE(nl::decode_destination(genl, Family::kIPv4).has_value());
}

TEST_CASE("operations map to their commands", "[codec]") {
  using K = Operation::Kind;
  const auto [kind, command] = GENERATE(table<K, nl::Command>({
      {K::kAddService, nl::Command::kNewService},
      {K::kEditService, nl::Command::kSetService},
      {K::kDeleteService, nl::Command::kDelService},
      {K::kAddDestination, nl::Command::kNewDest},
      {K::kEditDestination, nl::Command::kSetDest},
      {K::kDeleteDestination, nl::Command::kDelDest},
  }));
  Operation op;
  op.kind = kind;
  op.service = make_service(Protocol::kTcp, Family::kIPv4, "rr", 0);
  op.destination.key.address = addr("10.0.0.1");
  std::vector<std::uint8_t> bytes;
  nl::encode_operation(bytes, nl::Header{kFamily, 3}, op);
  CHECK(genl_of(only_message(bytes)).command == command);
}

TEST_CASE("config, info, flush and dump requests", "[codec]") {
  std::vector<std::uint8_t> bytes;
  nl::encode_set_config(bytes, nl::Header{kFamily, 1}, Timeouts{900, 120, 300});
  auto set = nl::decode_config(genl_of(only_message(bytes)));
  REQUIRE(set.has_value());
  CHECK(*set == Timeouts{900, 120, 300});

  bytes.clear();
  nl::encode_config_answer(bytes, nl::Header{kFamily, 2}, Timeouts{1, 2, 3});
  auto config = nl::decode_config(genl_of(only_message(bytes)));
  REQUIRE(config.has_value());
  CHECK(*config == Timeouts{1, 2, 3});

  bytes.clear();
  nl::encode_info_answer(bytes, nl::Header{kFamily, 3}, Info{0x010201, 4096});
  auto info = nl::decode_info(genl_of(only_message(bytes)));
  REQUIRE(info.has_value());
  CHECK(info->version == 0x010201);
  CHECK(info->connection_table_size == 4096);

  bytes.clear();
  nl::encode_dump_services(bytes, nl::Header{kFamily, 4});
  const nl::Message dump = only_message(bytes);
  CHECK((dump.flags & nl::kFlagDump) == nl::kFlagDump);
  CHECK(genl_of(dump).command == nl::Command::kGetService);

  bytes.clear();
  const ServiceKey key = make_service(Protocol::kSctp, Family::kIPv6, "rr", 0).key;
  nl::encode_dump_destinations(bytes, nl::Header{kFamily, 5}, key);
  const nl::GenlMessage dests = genl_of(only_message(bytes));
  CHECK(dests.command == nl::Command::kGetDest);
  CHECK(nl::decode_service_key(dests).value() == key);

  for (auto encode : {nl::encode_get_config, nl::encode_get_info, nl::encode_flush}) {
    bytes.clear();
    encode(bytes, nl::Header{kFamily, 6});
    CHECK(bytes.size() == nl::kHeaderSize + nl::kGenlHeaderSize);
  }
}

TEST_CASE("acknowledgements and dump ends carry errno and sequence", "[codec]") {
  const int error = GENERATE(0, EEXIST, ENOENT, ESRCH);
  std::vector<std::uint8_t> bytes;
  nl::encode_ack(bytes, nl::Header{kFamily, 4242}, error);
  const nl::Message message = only_message(bytes);
  CHECK(message.type == nl::kMsgError);
  auto ack = nl::decode_ack(message);
  REQUIRE(ack.has_value());
  CHECK(ack->sequence == 4242);
  CHECK(ack->error == error);

  bytes.clear();
  nl::encode_done(bytes, nl::Header{kFamily, 4243}, error);
  auto done = nl::decode_done(only_message(bytes));
  REQUIRE(done.has_value());
  CHECK(*done == error);
}

TEST_CASE("a multi-part dump reads message by message", "[codec]") {
  std::vector<std::uint8_t> bytes;
  for (std::uint16_t port = 1; port <= 3; ++port) {
    ServiceState state;
    state.service = make_service(Protocol::kTcp, Family::kIPv4, "rr", 0);
    state.service.key.port = port;
    nl::encode_service_answer(bytes, nl::Header{kFamily, 7, nl::kFlagMulti}, state);
  }
  nl::encode_done(bytes, nl::Header{kFamily, 7});

  nl::MessageReader reader(bytes);
  std::vector<std::uint16_t> ports;
  bool done = false;
  while (true) {
    auto next = reader.next();
    REQUIRE(next.has_value());
    if (!next->has_value()) break;
    if ((*next)->type == nl::kMsgDone) {
      done = true;
      continue;
    }
    auto service = nl::decode_service(genl_of(**next));
    REQUIRE(service.has_value());
    ports.push_back(service->service.key.port);
  }
  CHECK(done);
  CHECK(ports == std::vector<std::uint16_t>{1, 2, 3});
}

TEST_CASE("every truncation of an answer is an error, never a crash", "[codec]") {
  ServiceState state;
  state.service = make_service(Protocol::kTcp, Family::kIPv6, "sh", flags::kSchedShPort);
  state.stats = big_stats();
  std::vector<std::uint8_t> full;
  nl::encode_service_answer(full, nl::Header{kFamily, 1, nl::kFlagMulti}, state);

  for (std::size_t length = 1; length < full.size(); ++length) {
    const std::vector<std::uint8_t> cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(length));
    nl::MessageReader reader(cut);
    auto next = reader.next();
    INFO("length " << length);
    REQUIRE_FALSE(next.has_value());
    CHECK(next.error().code == EBADMSG);
    // The reader gives up on the rest.
    auto after = reader.next();
    REQUIRE(after.has_value());
    CHECK_FALSE(after->has_value());
  }
}

TEST_CASE("a message whose attributes are cut short is an error", "[codec]") {
  ServiceState state;
  state.service = make_service(Protocol::kUdp, Family::kIPv4, "rr", 0);
  std::vector<std::uint8_t> full;
  nl::encode_service_answer(full, nl::Header{kFamily, 1, nl::kFlagMulti}, state);
  // Shrink the nlmsghdr length so the message ends inside its attributes;
  // every cut point must fail cleanly (or, at an attribute boundary, miss a
  // mandatory attribute).
  std::size_t failures = 0;
  for (std::size_t length = nl::kHeaderSize; length < full.size(); ++length) {
    std::vector<std::uint8_t> cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(length));
    const auto len32 = static_cast<std::uint32_t>(length);
    std::memcpy(cut.data(), &len32, 4);
    nl::MessageReader reader(cut);
    auto next = reader.next();
    REQUIRE(next.has_value());
    REQUIRE(next->has_value());
    auto genl = nl::decode_genl(**next, kFamily);
    if (!genl) {
      ++failures;
      continue;
    }
    auto service = nl::decode_service(*genl);
    INFO("length " << length);
    CHECK_FALSE(service.has_value());
    if (!service) ++failures;
  }
  CHECK(failures == full.size() - nl::kHeaderSize);
}

TEST_CASE("malformed attributes are rejected", "[codec]") {
  ServiceState state;
  state.service = make_service(Protocol::kTcp, Family::kIPv4, "rr", 0);
  std::vector<std::uint8_t> good;
  nl::encode_service_answer(good, nl::Header{kFamily, 1, nl::kFlagMulti}, state, nl::StatsAttributes::kNone);
  // Offsets: 16 nlmsghdr, 4 genl, nest header at 20, AF attr at 24.
  constexpr std::size_t kNest = 20;
  constexpr std::size_t kAf = 24;

  auto decode = [](std::vector<std::uint8_t> bytes) {
    nl::MessageReader reader(bytes);
    auto message = reader.next();
    REQUIRE(message.has_value());
    auto genl = nl::decode_genl(**message, kFamily);
    REQUIRE(genl.has_value());
    return nl::decode_service(*genl);
  };
  REQUIRE(decode(good).has_value());

  SECTION("nest longer than the message") {
    auto bytes = good;
    bytes[kNest] = 0xff;
    bytes[kNest + 1] = 0x0f;
    CHECK_FALSE(decode(bytes).has_value());
  }
  SECTION("attribute length below its header") {
    auto bytes = good;
    bytes[kAf] = 2;
    CHECK_FALSE(decode(bytes).has_value());
  }
  SECTION("unknown address family") {
    auto bytes = good;
    bytes[kAf + 4] = 99;
    auto decoded = decode(bytes);
    REQUIRE_FALSE(decoded.has_value());
    CHECK_THAT(decoded.error().message, Catch::Contains("family"));
  }
  SECTION("scheduler name without its NUL") {
    // Find "rr\0" and overwrite the NUL.
    auto bytes = good;
    for (std::size_t i = 0; i + 2 < bytes.size(); ++i) {
      if (bytes[i] == 'r' && bytes[i + 1] == 'r' && bytes[i + 2] == 0) {
        bytes[i + 2] = 'x';
        break;
      }
    }
    CHECK_FALSE(decode(bytes).has_value());
  }
  SECTION("wrong message type") {
    nl::MessageReader reader(good);
    auto message = reader.next();
    REQUIRE(message.has_value());
    CHECK_FALSE(nl::decode_genl(**message, kFamily + 1).has_value());
    CHECK_FALSE(nl::decode_ack(**message).has_value());
  }
  SECTION("every single-byte corruption decodes or fails cleanly") {
    std::size_t rejected = 0;
    for (std::size_t i = 0; i < good.size(); ++i) {
      auto bytes = good;
      bytes[i] ^= 0xff;
      nl::MessageReader reader(bytes);
      auto message = reader.next();
      if (!message || !message->has_value()) {
        ++rejected;
        continue;
      }
      auto genl = nl::decode_genl(**message, kFamily);
      if (!genl || !nl::decode_service(*genl)) ++rejected;
    }
    // Corrupting any header or length byte must be caught.
    CHECK(rejected >= 20);
  }
}

TEST_CASE("a short error message is rejected", "[codec]") {
  std::vector<std::uint8_t> bytes;
  nl::encode_ack(bytes, nl::Header{kFamily, 1}, EEXIST);
  // Keep nlmsghdr + the error int, drop the echoed header.
  bytes.resize(nl::kHeaderSize + 4);
  const auto len32 = static_cast<std::uint32_t>(bytes.size());
  std::memcpy(bytes.data(), &len32, 4);
  nl::MessageReader reader(bytes);
  auto message = reader.next();
  REQUIRE(message.has_value());
  CHECK_FALSE(nl::decode_ack(**message).has_value());
}
