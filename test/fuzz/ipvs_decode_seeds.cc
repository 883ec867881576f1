// Writes a seed corpus for ipvs_decode_fuzz: kernel-shaped answers made by
// the encoder (a service dump with stats, destinations of both families, a
// fwmark service, acks, config, info). Usage: ipvs_decode_seeds <directory>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "ipvs/netlink_codec.h"

namespace {

using namespace kipvs::ipvs;
using kipvs::Error;
namespace nl = kipvs::ipvs::netlink;
constexpr std::uint16_t kFamily = 0x1d;

void write(const std::string& dir, const std::string& name, const std::vector<std::uint8_t>& bytes) {
  std::ofstream out(dir + "/" + name, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <directory>\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const nl::Header answer{kFamily, 7, nl::kFlagMulti, 1234};

  ServiceState v4;
  v4.service.key.address = *Address::parse("10.96.0.10");
  v4.service.key.port = 53;
  v4.service.key.protocol = Protocol::kUdp;
  v4.service.scheduler = "sh";
  v4.service.flags = flags::kPersistent | flags::kSchedShPort;
  v4.service.timeout = 10800;
  v4.stats.connections = 5;
  v4.stats.bytes_in = 1ULL << 40;
  ServiceState v6 = v4;
  v6.service.key.family = Family::kIPv6;
  v6.service.key.address = *Address::parse("fd00:10:96::a");
  v6.service.netmask = 64;
  ServiceState mark;
  mark.service.key.fwmark = 42;
  mark.service.scheduler = "rr";

  std::vector<std::uint8_t> bytes;
  nl::encode_service_answer(bytes, answer, v4);
  nl::encode_service_answer(bytes, answer, v6, nl::StatsAttributes::kOnly32);
  nl::encode_service_answer(bytes, answer, mark, nl::StatsAttributes::kOnly64);
  nl::encode_done(bytes, answer);
  write(dir, "services_dump", bytes);

  DestinationState d4;
  d4.destination.key.address = *Address::parse("10.244.1.17");
  d4.destination.key.port = 8080;
  d4.active_connections = 3;
  DestinationState d6 = d4;
  d6.destination.key.address = *Address::parse("fd00:244::17");
  d6.destination.forwarding = Forwarding::kTunnel;
  bytes.clear();
  nl::encode_destination_answer(bytes, answer, d4);
  nl::encode_destination_answer(bytes, answer, d6, nl::StatsAttributes::kNone);
  nl::encode_done(bytes, answer);
  write(dir, "destinations_dump", bytes);

  bytes.clear();
  nl::encode_ack(bytes, answer, 0);
  nl::encode_ack(bytes, answer, 17);
  nl::encode_done(bytes, answer, 90);
  write(dir, "acks", bytes);

  bytes.clear();
  nl::encode_config_answer(bytes, answer, Timeouts{900, 120, 300});
  nl::encode_info_answer(bytes, answer, Info{0x010201, 4096});
  write(dir, "config_info", bytes);

  bytes.clear();
  Operation op;
  op.kind = Operation::Kind::kAddDestination;
  op.service = v6.service;
  op.destination = d6.destination;
  nl::encode_operation(bytes, nl::Header{kFamily, 9, nl::kFlagRequest | nl::kFlagAck}, op);
  write(dir, "request", bytes);
  return 0;
}
