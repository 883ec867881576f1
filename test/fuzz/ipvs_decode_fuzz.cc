// libFuzzer target for the IPVS netlink decoder (ipvs/netlink_codec.h).
// Beyond "does not crash or read out of bounds": whatever decodes must encode
// and decode again to the same value, so the decoder can never accept
// something it would misreport. Seeds: `ipvs_decode_seeds <dir>` writes
// encoder output (services, destinations, acks, dumps) to start from.
//
//   build-ipvs-fuzz/test/fuzz/ipvs_decode_seeds corpus/ipvs
//   build-ipvs-fuzz/test/fuzz/ipvs_decode_fuzz -max_total_time=60 corpus/ipvs

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "ipvs/netlink_codec.h"

namespace {

using namespace kipvs::ipvs;
using kipvs::Error;
namespace nl = kipvs::ipvs::netlink;

void check(bool condition) {
  if (!condition) std::abort();
}

nl::GenlMessage only_genl(const std::vector<std::uint8_t>& bytes, std::uint16_t family) {
  nl::MessageReader reader(bytes);
  auto message = reader.next();
  check(message.has_value() && message->has_value());
  auto genl = nl::decode_genl(**message, family);
  check(genl.has_value());
  return *genl;
}

void round_trip_service(const ServiceState& state, std::uint16_t family) {
  std::vector<std::uint8_t> bytes;
  nl::encode_service_answer(bytes, nl::Header{family, 1, nl::kFlagMulti}, state);
  auto again = nl::decode_service(only_genl(bytes, family));
  check(again.has_value());
  check(again->service == state.service);
  check(again->stats == state.stats);
}

void round_trip_destination(const DestinationState& state, Family service_family, std::uint16_t family) {
  std::vector<std::uint8_t> bytes;
  nl::encode_destination_answer(bytes, nl::Header{family, 1, nl::kFlagMulti}, state);
  auto again = nl::decode_destination(only_genl(bytes, family), service_family);
  check(again.has_value());
  check(again->destination == state.destination);
  check(again->stats == state.stats);
  check(again->active_connections == state.active_connections);
  check(again->inactive_connections == state.inactive_connections);
  check(again->persistent_connections == state.persistent_connections);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  nl::MessageReader reader(std::span<const std::uint8_t>(data, size));
  for (int guard = 0; guard < 4096; ++guard) {
    auto message = reader.next();
    if (!message || !message->has_value()) break;
    const nl::Message& m = **message;
    (void)nl::decode_ack(m);
    (void)nl::decode_done(m);
    // Treat any type as the IPVS family so every message reaches the
    // attribute decoders (the family id is dynamic in real kernels).
    auto genl = nl::decode_genl(m, m.type);
    if (!genl) continue;
    if (auto service = nl::decode_service(*genl)) round_trip_service(*service, m.type);
    if (auto key = nl::decode_service_key(*genl))
      check(key->fwmark != 0 || key->address.family == key->family);
    for (Family family : {Family::kIPv4, Family::kIPv6}) {
      if (auto destination = nl::decode_destination(*genl, family))
        round_trip_destination(*destination, family, m.type);
      (void)nl::decode_destination_key(*genl, family);
    }
    (void)nl::decode_config(*genl);
    (void)nl::decode_info(*genl);
  }
  return 0;
}
