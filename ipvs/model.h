#pragma once
// Value types for the kernel's IPVS table: what a virtual service and a
// destination are, independent of how they reach the kernel. Pure data with
// ordering and equality, so desired and observed tables can be diffed.

#include <array>
#include <bit>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <expected>
#include <optional>
#include <string>
#include <string_view>

namespace kipvs::ipvs {

enum class Family : std::uint16_t { kIPv4 = 2, kIPv6 = 10 };  // AF_INET, AF_INET6

enum class Protocol : std::uint16_t { kTcp = 6, kUdp = 17, kSctp = 132 };  // IPPROTO_*
// "TCP", "UDP", "SCTP": Kubernetes' spelling.
[[nodiscard]] std::string_view protocol_name(Protocol protocol);

// An IPv4 or IPv6 address. IPv4 uses the first 4 bytes; the rest are zero.
struct Address {
  Family family = Family::kIPv4;
  std::array<std::uint8_t, 16> bytes{};

  static std::optional<Address> parse(std::string_view text);
  std::string to_string() const;  // 10.0.0.1, fd00::1 (no brackets)
  // Family, then the bytes in order. As two big-endian words: the maps keyed
  // by services compare addresses more than anything else in a resync, and a
  // memcmp call costs more than the comparison.
  friend std::strong_ordering operator<=>(const Address& a, const Address& b) {
    if (a.family != b.family) return a.family <=> b.family;
    if (const auto high = a.word(0) <=> b.word(0); high != 0) return high;
    return a.word(1) <=> b.word(1);
  }
  friend bool operator==(const Address&, const Address&) = default;

 private:
  [[nodiscard]] std::uint64_t word(std::size_t index) const {
    std::uint64_t value = 0;
    std::memcpy(&value, bytes.data() + index * sizeof(value), sizeof(value));
    return std::endian::native == std::endian::little ? std::byteswap(value) : value;
  }
};

// Service flags as the kernel defines them (linux/ip_vs.h).
namespace flags {
inline constexpr std::uint32_t kPersistent = 0x0001;
inline constexpr std::uint32_t kHashed = 0x0002;  // set by the kernel, never by us
inline constexpr std::uint32_t kOnePacket = 0x0004;
inline constexpr std::uint32_t kSchedShFallback = 0x0008;  // SCHED1
inline constexpr std::uint32_t kSchedShPort = 0x0010;      // SCHED2
inline constexpr std::uint32_t kSchedMhFallback = 0x0008;  // SCHED1
inline constexpr std::uint32_t kSchedMhPort = 0x0010;      // SCHED2
inline constexpr std::uint32_t kSched3 = 0x0020;           // unused by any scheduler yet
}  // namespace flags

// The netmask the kernel uses when persistence has no -M: all ones for IPv4,
// a /128 prefix for IPv6 (the kernel rejects an IPv6 prefix outside 1..128).
constexpr std::uint32_t default_netmask(Family family) {
  return family == Family::kIPv6 ? 128U : 0xffffffffU;
}

// Identity of a virtual service: either (family, protocol, address, port) or
// (family, firewall mark) when fwmark != 0. A firewall-mark service is
// reported by the kernel as protocol kTcp, the zero address of its family and
// port 0; build desired keys the same way so they compare equal.
struct ServiceKey {
  Family family = Family::kIPv4;
  Protocol protocol = Protocol::kTcp;
  Address address;
  std::uint16_t port = 0;
  std::uint32_t fwmark = 0;

  friend auto operator<=>(const ServiceKey&, const ServiceKey&) = default;
};

struct Service {
  ServiceKey key;
  std::string scheduler = "rr";
  std::uint32_t flags = 0;    // flags:: bits; kHashed is masked off on decode
  std::uint32_t timeout = 0;  // persistence timeout, seconds
  // Persistence netmask. IPv4: a host-order mask (0xffffff00 is /24); IPv6: a
  // prefix length 1..128 (use default_netmask(family)).
  std::uint32_t netmask = 0xffffffff;

  friend bool operator==(const Service&, const Service&) = default;
};

enum class Forwarding : std::uint32_t { kMasq = 0, kLocal = 1, kTunnel = 2, kRoute = 3 };

struct DestinationKey {
  Address address;
  std::uint16_t port = 0;
  friend auto operator<=>(const DestinationKey&, const DestinationKey&) = default;
};

struct Destination {
  DestinationKey key;
  Forwarding forwarding = Forwarding::kMasq;
  std::int32_t weight = 1;
  std::uint32_t upper_threshold = 0;
  std::uint32_t lower_threshold = 0;

  friend bool operator==(const Destination&, const Destination&) = default;
};

// Kernel counters (the 64-bit set where the kernel has it). Rates are per
// second, as estimated by the kernel.
struct Stats {
  std::uint64_t connections = 0;
  std::uint64_t packets_in = 0;
  std::uint64_t packets_out = 0;
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
  std::uint64_t connection_rate = 0;
  std::uint64_t packet_rate_in = 0;
  std::uint64_t packet_rate_out = 0;
  std::uint64_t byte_rate_in = 0;
  std::uint64_t byte_rate_out = 0;
  friend bool operator==(const Stats&, const Stats&) = default;
};

struct ServiceState {
  Service service;
  Stats stats;
};

struct DestinationState {
  Destination destination;
  Stats stats;
  std::uint32_t active_connections = 0;
  std::uint32_t inactive_connections = 0;
  std::uint32_t persistent_connections = 0;
};

// Global connection timeouts, seconds; 0 in a set request leaves one unchanged.
struct Timeouts {
  std::uint32_t tcp = 0;
  std::uint32_t tcp_fin = 0;
  std::uint32_t udp = 0;
  friend bool operator==(const Timeouts&, const Timeouts&) = default;
};

struct Info {
  std::uint32_t version = 0;  // major << 16 | minor << 8 | patch
  std::uint32_t connection_table_size = 0;
};

}  // namespace kipvs::ipvs
