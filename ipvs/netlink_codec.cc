#include "ipvs/netlink_codec.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>

namespace kipvs::ipvs::netlink {
namespace {

// Attribute numbers from linux/ip_vs.h, kept local so the codec does not
// depend on the build machine's kernel headers.
namespace cmd_attr {
constexpr std::uint16_t kService = 1;
constexpr std::uint16_t kDest = 2;
constexpr std::uint16_t kTimeoutTcp = 4;
constexpr std::uint16_t kTimeoutTcpFin = 5;
constexpr std::uint16_t kTimeoutUdp = 6;
constexpr std::uint16_t kMax = 6;
}  // namespace cmd_attr

namespace svc_attr {
constexpr std::uint16_t kAf = 1;
constexpr std::uint16_t kProtocol = 2;
constexpr std::uint16_t kAddr = 3;
constexpr std::uint16_t kPort = 4;
constexpr std::uint16_t kFwmark = 5;
constexpr std::uint16_t kSchedName = 6;
constexpr std::uint16_t kFlags = 7;
constexpr std::uint16_t kTimeout = 8;
constexpr std::uint16_t kNetmask = 9;
constexpr std::uint16_t kStats = 10;
constexpr std::uint16_t kStats64 = 12;
constexpr std::uint16_t kMax = 12;
}  // namespace svc_attr

namespace dest_attr {
constexpr std::uint16_t kAddr = 1;
constexpr std::uint16_t kPort = 2;
constexpr std::uint16_t kFwdMethod = 3;
constexpr std::uint16_t kWeight = 4;
constexpr std::uint16_t kUThresh = 5;
constexpr std::uint16_t kLThresh = 6;
constexpr std::uint16_t kActiveConns = 7;
constexpr std::uint16_t kInactConns = 8;
constexpr std::uint16_t kPersistConns = 9;
constexpr std::uint16_t kStats = 10;
constexpr std::uint16_t kAddrFamily = 11;
constexpr std::uint16_t kStats64 = 12;
constexpr std::uint16_t kMax = 15;
}  // namespace dest_attr

namespace stats_attr {
constexpr std::uint16_t kConns = 1;
constexpr std::uint16_t kInPkts = 2;
constexpr std::uint16_t kOutPkts = 3;
constexpr std::uint16_t kInBytes = 4;
constexpr std::uint16_t kOutBytes = 5;
constexpr std::uint16_t kCps = 6;
constexpr std::uint16_t kInPps = 7;
constexpr std::uint16_t kOutPps = 8;
constexpr std::uint16_t kInBps = 9;
constexpr std::uint16_t kOutBps = 10;
constexpr std::uint16_t kMax = 11;  // 11 is PAD, ignored
}  // namespace stats_attr

namespace info_attr {
constexpr std::uint16_t kVersion = 1;
constexpr std::uint16_t kConnTabSize = 2;
constexpr std::uint16_t kMax = 2;
}  // namespace info_attr

constexpr std::uint8_t kGenlVersion = 1;         // IPVS_GENL_VERSION
constexpr std::size_t kAttrHeaderSize = 4;       // sizeof(struct nlattr)
constexpr std::size_t kAddressAttrSize = 16;     // sizeof(union nf_inet_addr)
constexpr std::size_t kSchedNameMax = 16;        // IP_VS_SCHEDNAME_MAXLEN, with the NUL
constexpr std::uint16_t kAttrTypeMask = 0x3fff;  // strips NLA_F_NESTED, NLA_F_NET_BYTEORDER
constexpr std::uint32_t kFwdMask = 0x0007;       // IP_VS_CONN_F_FWD_MASK

constexpr std::size_t align4(std::size_t n) {
  return (n + 3U) & ~std::size_t{3};
}

// ---- Writing ----------------------------------------------------------------

// Appends one message to a buffer; lengths are patched when a message or a
// nest is closed.
class Writer {
 public:
  Writer(std::vector<std::uint8_t>& out, std::uint16_t type, std::uint16_t flags, std::uint32_t sequence,
         std::uint32_t port_id)
      : out_(out), start_(out.size()) {
    out_.resize(start_ + kHeaderSize, 0);
    store(start_ + 4, type);
    store(start_ + 6, flags);
    store(start_ + 8, sequence);
    store(start_ + 12, port_id);
  }

  void genl(Command command) {
    const std::array<std::uint8_t, kGenlHeaderSize> header{static_cast<std::uint8_t>(command), kGenlVersion,
                                                           0, 0};
    out_.insert(out_.end(), header.begin(), header.end());
  }

  void raw(std::span<const std::uint8_t> bytes) { out_.insert(out_.end(), bytes.begin(), bytes.end()); }

  void attr(std::uint16_t type, std::span<const std::uint8_t> payload) {
    const std::size_t at = out_.size();
    out_.resize(at + align4(kAttrHeaderSize + payload.size()), 0);
    store(at, static_cast<std::uint16_t>(kAttrHeaderSize + payload.size()));
    store(at + 2, type);
    std::copy(payload.begin(), payload.end(),
              out_.begin() + static_cast<std::ptrdiff_t>(at + kAttrHeaderSize));
  }

  template <typename T>
  void attr_value(std::uint16_t type, T value) {
    std::array<std::uint8_t, sizeof(T)> bytes{};
    std::memcpy(bytes.data(), &value, sizeof(T));
    attr(type, bytes);
  }

  void attr_string(std::uint16_t type, std::string_view text) {
    std::vector<std::uint8_t> bytes(text.begin(), text.end());
    bytes.push_back(0);  // NLA_NUL_STRING
    attr(type, bytes);
  }

  std::size_t begin_nest(std::uint16_t type) {
    const std::size_t at = out_.size();
    out_.resize(at + kAttrHeaderSize, 0);
    store(at + 2, type);
    return at;
  }

  void end_nest(std::size_t at) { store(at, static_cast<std::uint16_t>(out_.size() - at)); }

  void finish() { store(start_, static_cast<std::uint32_t>(out_.size() - start_)); }

 private:
  template <typename T>
  void store(std::size_t at, T value) {
    std::memcpy(out_.data() + at, &value, sizeof(T));
  }

  std::vector<std::uint8_t>& out_;
  std::size_t start_;
};

std::uint16_t to_be16(std::uint16_t v) {
  return std::endian::native == std::endian::big ? v : std::byteswap(v);
}
std::uint32_t to_be32(std::uint32_t v) {
  return std::endian::native == std::endian::big ? v : std::byteswap(v);
}

std::array<std::uint8_t, kAddressAttrSize> address_bytes(const Address& address) {
  std::array<std::uint8_t, kAddressAttrSize> bytes{};
  const std::size_t n = address.family == Family::kIPv4 ? 4 : 16;
  std::copy_n(address.bytes.begin(), n, bytes.begin());
  return bytes;
}

// The nested identity of a service; what every service-naming request needs.
void put_service_key(Writer& w, const ServiceKey& key) {
  w.attr_value<std::uint16_t>(svc_attr::kAf, static_cast<std::uint16_t>(key.family));
  if (key.fwmark != 0) {
    w.attr_value<std::uint32_t>(svc_attr::kFwmark, key.fwmark);
    return;
  }
  w.attr_value<std::uint16_t>(svc_attr::kProtocol, static_cast<std::uint16_t>(key.protocol));
  // The kernel reads a full union nf_inet_addr (16 bytes); IPv4 sits in the
  // first four.
  w.attr(svc_attr::kAddr, address_bytes(key.address));
  w.attr_value<std::uint16_t>(svc_attr::kPort, to_be16(key.port));  // nla_get_be16
}

std::uint32_t netmask_on_wire(const Service& service) {
  // The kernel stores the netmask attribute as a raw __be32: a real mask for
  // IPv4, but for IPv6 it reinterprets the same bits as a host-order prefix
  // length (ip_vs_add_service: plen = (__force __u32) u->netmask).
  if (service.key.family == Family::kIPv6) return service.netmask;
  return to_be32(service.netmask);
}

void put_service_options(Writer& w, const Service& service) {
  w.attr_string(svc_attr::kSchedName, service.scheduler);
  // struct ip_vs_flags {flags, mask}: the kernel keeps the bits outside mask
  // from the existing service on SET_SERVICE; an all-ones mask replaces them.
  // HASHED is kernel-internal: never ask for it.
  const std::array<std::uint32_t, 2> flags{service.flags & ~flags::kHashed, 0xffffffffU};
  std::array<std::uint8_t, 8> bytes{};
  std::memcpy(bytes.data(), flags.data(), bytes.size());
  w.attr(svc_attr::kFlags, bytes);
  w.attr_value<std::uint32_t>(svc_attr::kTimeout, service.timeout);
  w.attr_value<std::uint32_t>(svc_attr::kNetmask, netmask_on_wire(service));
}

void put_stats(Writer& w, std::uint16_t nest_type, const Stats& stats, bool wide) {
  const std::size_t nest = w.begin_nest(nest_type);
  auto counter = [&](std::uint16_t type, std::uint64_t value, bool always_wide) {
    if (wide || always_wide) {
      w.attr_value<std::uint64_t>(type, value);
    } else {
      w.attr_value<std::uint32_t>(type, static_cast<std::uint32_t>(value));
    }
  };
  // In the 32-bit nest only the byte counters are 64-bit (ip_vs_genl_fill_stats).
  counter(stats_attr::kConns, stats.connections, false);
  counter(stats_attr::kInPkts, stats.packets_in, false);
  counter(stats_attr::kOutPkts, stats.packets_out, false);
  counter(stats_attr::kInBytes, stats.bytes_in, true);
  counter(stats_attr::kOutBytes, stats.bytes_out, true);
  counter(stats_attr::kCps, stats.connection_rate, false);
  counter(stats_attr::kInPps, stats.packet_rate_in, false);
  counter(stats_attr::kOutPps, stats.packet_rate_out, false);
  counter(stats_attr::kInBps, stats.byte_rate_in, false);
  counter(stats_attr::kOutBps, stats.byte_rate_out, false);
  w.end_nest(nest);
}

void put_stats_pair(Writer& w, std::uint16_t type32, std::uint16_t type64, const Stats& stats,
                    StatsAttributes which) {
  if (which == StatsAttributes::kBoth || which == StatsAttributes::kOnly32)
    put_stats(w, type32, stats, false);
  if (which == StatsAttributes::kBoth || which == StatsAttributes::kOnly64) put_stats(w, type64, stats, true);
}

void put_destination(Writer& w, const Destination& destination, bool full) {
  const std::size_t nest = w.begin_nest(cmd_attr::kDest);
  w.attr(dest_attr::kAddr, address_bytes(destination.key.address));
  w.attr_value<std::uint16_t>(dest_attr::kPort, to_be16(destination.key.port));
  // Without ADDR_FAMILY the kernel assumes the service's family; send it so
  // the destination's own family is never guessed.
  w.attr_value<std::uint16_t>(dest_attr::kAddrFamily,
                              static_cast<std::uint16_t>(destination.key.address.family));
  if (full) {
    w.attr_value<std::uint32_t>(dest_attr::kFwdMethod, static_cast<std::uint32_t>(destination.forwarding));
    w.attr_value<std::uint32_t>(dest_attr::kWeight, static_cast<std::uint32_t>(destination.weight));
    w.attr_value<std::uint32_t>(dest_attr::kUThresh, destination.upper_threshold);
    w.attr_value<std::uint32_t>(dest_attr::kLThresh, destination.lower_threshold);
  }
  w.end_nest(nest);
}

void encode_simple(std::vector<std::uint8_t>& out, const Header& header, Command command,
                   std::uint16_t extra_flags) {
  Writer w(out, header.family_id, static_cast<std::uint16_t>(header.flags | kFlagRequest | extra_flags),
           header.sequence, header.port_id);
  w.genl(command);
  w.finish();
}

// ---- Reading ----------------------------------------------------------------

Error malformed(std::string what) {
  return Error{EBADMSG, "malformed netlink answer: " + what};
}

template <typename T>
T load(std::span<const std::uint8_t> bytes, std::size_t at = 0) {
  T value{};
  std::memcpy(&value, bytes.data() + at, sizeof(T));
  return value;
}

// Attributes of one level, indexed by type; the last of duplicates wins, as
// in the kernel's nla_parse. Types above Max are ignored.
template <std::uint16_t Max>
struct Attributes {
  std::array<std::optional<std::span<const std::uint8_t>>, Max + 1> by_type{};

  const std::optional<std::span<const std::uint8_t>>& operator[](std::uint16_t type) const {
    return by_type[type];
  }
};

template <std::uint16_t Max>
std::expected<Attributes<Max>, Error> parse_attributes(std::span<const std::uint8_t> bytes,
                                                       std::string_view where) {
  Attributes<Max> attrs;
  while (!bytes.empty()) {
    if (bytes.size() < kAttrHeaderSize)
      return std::unexpected(malformed(std::string(where) + ": truncated attribute"));
    const auto length = load<std::uint16_t>(bytes, 0);
    const auto type = static_cast<std::uint16_t>(load<std::uint16_t>(bytes, 2) & kAttrTypeMask);
    if (length < kAttrHeaderSize || length > bytes.size()) {
      return std::unexpected(malformed(std::string(where) + ": attribute length " + std::to_string(length) +
                                       " outside its buffer"));
    }
    if (type <= Max) attrs.by_type[type] = bytes.subspan(kAttrHeaderSize, length - kAttrHeaderSize);
    // The last attribute may omit its padding.
    bytes = bytes.subspan(std::min(align4(length), bytes.size()));
  }
  return attrs;
}

template <typename T>
std::expected<T, Error> fixed(const std::optional<std::span<const std::uint8_t>>& attr,
                              std::string_view name) {
  if (!attr) return std::unexpected(malformed("missing " + std::string(name)));
  // Like the kernel's policy checks: at least the value's size.
  if (attr->size() < sizeof(T)) return std::unexpected(malformed(std::string(name) + " too short"));
  return load<T>(*attr);
}

template <typename T>
std::expected<T, Error> fixed_or(const std::optional<std::span<const std::uint8_t>>& attr,
                                 std::string_view name, T fallback) {
  if (!attr) return fallback;
  return fixed<T>(attr, name);
}

// A counter is u32 in the old stats nest and u64 in STATS64; accept either.
std::expected<std::uint64_t, Error> counter(const std::optional<std::span<const std::uint8_t>>& attr,
                                            std::string_view name) {
  if (!attr) return std::uint64_t{0};  // a kernel without a counter reports none
  if (attr->size() == 8) return load<std::uint64_t>(*attr);
  if (attr->size() == 4) return std::uint64_t{load<std::uint32_t>(*attr)};
  return std::unexpected(
      malformed("stats counter " + std::string(name) + " has length " + std::to_string(attr->size())));
}

std::expected<Stats, Error> parse_stats(std::span<const std::uint8_t> nest) {
  auto attrs = parse_attributes<stats_attr::kMax>(nest, "stats");
  if (!attrs) return std::unexpected(attrs.error());
  Stats stats;
  struct Field {
    std::uint16_t type;
    std::uint64_t Stats::*member;
    std::string_view name;
  };
  static constexpr std::array<Field, 10> kFields{{
      {stats_attr::kConns, &Stats::connections, "conns"},
      {stats_attr::kInPkts, &Stats::packets_in, "inpkts"},
      {stats_attr::kOutPkts, &Stats::packets_out, "outpkts"},
      {stats_attr::kInBytes, &Stats::bytes_in, "inbytes"},
      {stats_attr::kOutBytes, &Stats::bytes_out, "outbytes"},
      {stats_attr::kCps, &Stats::connection_rate, "cps"},
      {stats_attr::kInPps, &Stats::packet_rate_in, "inpps"},
      {stats_attr::kOutPps, &Stats::packet_rate_out, "outpps"},
      {stats_attr::kInBps, &Stats::byte_rate_in, "inbps"},
      {stats_attr::kOutBps, &Stats::byte_rate_out, "outbps"},
  }};
  for (const Field& field : kFields) {
    auto value = counter((*attrs)[field.type], field.name);
    if (!value) return std::unexpected(value.error());
    stats.*field.member = *value;
  }
  return stats;
}

// Prefer the 64-bit nest (Linux 4.1+); the old one wraps its packet counters.
std::expected<Stats, Error> pick_stats(const std::optional<std::span<const std::uint8_t>>& stats64,
                                       const std::optional<std::span<const std::uint8_t>>& stats32) {
  if (stats64) return parse_stats(*stats64);
  if (stats32) return parse_stats(*stats32);
  return Stats{};
}

std::expected<Family, Error> family_from(std::uint16_t value) {
  if (value == static_cast<std::uint16_t>(Family::kIPv4)) return Family::kIPv4;
  if (value == static_cast<std::uint16_t>(Family::kIPv6)) return Family::kIPv6;
  return std::unexpected(malformed("unknown address family " + std::to_string(value)));
}

std::expected<Address, Error> address_from(const std::optional<std::span<const std::uint8_t>>& attr,
                                           Family family, std::string_view name) {
  if (!attr) return std::unexpected(malformed("missing " + std::string(name)));
  const std::size_t need = family == Family::kIPv4 ? 4 : 16;
  if (attr->size() < need) return std::unexpected(malformed(std::string(name) + " too short"));
  Address address;
  address.family = family;
  // Only the family's bytes count; the kernel's union may carry anything after
  // an IPv4 address, and the model keeps those bytes zero.
  std::copy_n(attr->begin(), need, address.bytes.begin());
  return address;
}

std::expected<Attributes<cmd_attr::kMax>, Error> top_level(const GenlMessage& message) {
  return parse_attributes<cmd_attr::kMax>(message.attributes, "message");
}

std::expected<Attributes<svc_attr::kMax>, Error> service_nest(const GenlMessage& message) {
  auto top = top_level(message);
  if (!top) return std::unexpected(top.error());
  if (!(*top)[cmd_attr::kService]) return std::unexpected(malformed("no service attribute"));
  return parse_attributes<svc_attr::kMax>(*(*top)[cmd_attr::kService], "service");
}

std::expected<ServiceKey, Error> key_from(const Attributes<svc_attr::kMax>& attrs) {
  auto af = fixed<std::uint16_t>(attrs[svc_attr::kAf], "service family");
  if (!af) return std::unexpected(af.error());
  auto family = family_from(*af);
  if (!family) return std::unexpected(family.error());
  ServiceKey key;
  key.family = *family;
  key.address.family = *family;
  if (attrs[svc_attr::kFwmark]) {
    auto mark = fixed<std::uint32_t>(attrs[svc_attr::kFwmark], "fwmark");
    if (!mark) return std::unexpected(mark.error());
    // The kernel treats a fwmark service as TCP with no address or port
    // (ip_vs_genl_parse_service) and dumps only the mark.
    key.fwmark = *mark;
    key.protocol = Protocol::kTcp;
    if (key.fwmark != 0) return key;
  }
  auto protocol = fixed<std::uint16_t>(attrs[svc_attr::kProtocol], "protocol");
  if (!protocol) return std::unexpected(protocol.error());
  auto address = address_from(attrs[svc_attr::kAddr], *family, "service address");
  if (!address) return std::unexpected(address.error());
  auto port = fixed<std::uint16_t>(attrs[svc_attr::kPort], "service port");
  if (!port) return std::unexpected(port.error());
  key.protocol = static_cast<Protocol>(*protocol);
  key.address = *address;
  key.port = to_be16(*port);
  return key;
}

std::expected<Attributes<dest_attr::kMax>, Error> destination_nest(const GenlMessage& message) {
  auto top = top_level(message);
  if (!top) return std::unexpected(top.error());
  if (!(*top)[cmd_attr::kDest]) return std::unexpected(malformed("no destination attribute"));
  return parse_attributes<dest_attr::kMax>(*(*top)[cmd_attr::kDest], "destination");
}

std::expected<DestinationKey, Error> destination_key_from(const Attributes<dest_attr::kMax>& attrs,
                                                          Family service_family) {
  auto af = fixed_or<std::uint16_t>(attrs[dest_attr::kAddrFamily], "destination family",
                                    static_cast<std::uint16_t>(service_family));
  if (!af) return std::unexpected(af.error());
  auto family = family_from(*af);
  if (!family) return std::unexpected(family.error());
  auto address = address_from(attrs[dest_attr::kAddr], *family, "destination address");
  if (!address) return std::unexpected(address.error());
  auto port = fixed<std::uint16_t>(attrs[dest_attr::kPort], "destination port");
  if (!port) return std::unexpected(port.error());
  return DestinationKey{*address, to_be16(*port)};
}

}  // namespace

// ---- Requests -------------------------------------------------------------------

void encode_service_request(std::vector<std::uint8_t>& out, const Header& header, Command command,
                            const Service& service) {
  Writer w(out, header.family_id, static_cast<std::uint16_t>(header.flags | kFlagRequest), header.sequence,
           header.port_id);
  w.genl(command);
  const std::size_t nest = w.begin_nest(cmd_attr::kService);
  put_service_key(w, service.key);
  // The kernel demands sched name, flags, timeout and netmask for NEW and SET
  // (full_entry) and ignores them otherwise.
  if (command == Command::kNewService || command == Command::kSetService) put_service_options(w, service);
  w.end_nest(nest);
  w.finish();
}

void encode_destination_request(std::vector<std::uint8_t>& out, const Header& header, Command command,
                                const ServiceKey& service, const Destination& destination) {
  Writer w(out, header.family_id, static_cast<std::uint16_t>(header.flags | kFlagRequest), header.sequence,
           header.port_id);
  w.genl(command);
  // Destination commands find their service by identity only.
  const std::size_t nest = w.begin_nest(cmd_attr::kService);
  put_service_key(w, service);
  w.end_nest(nest);
  put_destination(w, destination, command != Command::kDelDest);
  w.finish();
}

void encode_operation(std::vector<std::uint8_t>& out, const Header& header, const Operation& operation) {
  switch (operation.kind) {
    case Operation::Kind::kAddService:
      return encode_service_request(out, header, Command::kNewService, operation.service);
    case Operation::Kind::kEditService:
      return encode_service_request(out, header, Command::kSetService, operation.service);
    case Operation::Kind::kDeleteService:
      return encode_service_request(out, header, Command::kDelService, operation.service);
    case Operation::Kind::kAddDestination:
      return encode_destination_request(out, header, Command::kNewDest, operation.service.key,
                                        operation.destination);
    case Operation::Kind::kEditDestination:
      return encode_destination_request(out, header, Command::kSetDest, operation.service.key,
                                        operation.destination);
    case Operation::Kind::kDeleteDestination:
      return encode_destination_request(out, header, Command::kDelDest, operation.service.key,
                                        operation.destination);
  }
}

void encode_dump_services(std::vector<std::uint8_t>& out, const Header& header) {
  encode_simple(out, header, Command::kGetService, kFlagDump);
}

void encode_dump_destinations(std::vector<std::uint8_t>& out, const Header& header,
                              const ServiceKey& service) {
  Writer w(out, header.family_id, static_cast<std::uint16_t>(header.flags | kFlagRequest | kFlagDump),
           header.sequence, header.port_id);
  w.genl(Command::kGetDest);
  const std::size_t nest = w.begin_nest(cmd_attr::kService);
  put_service_key(w, service);
  w.end_nest(nest);
  w.finish();
}

void encode_get_config(std::vector<std::uint8_t>& out, const Header& header) {
  encode_simple(out, header, Command::kGetConfig, 0);
}

void encode_set_config(std::vector<std::uint8_t>& out, const Header& header, const Timeouts& timeouts) {
  Writer w(out, header.family_id, static_cast<std::uint16_t>(header.flags | kFlagRequest), header.sequence,
           header.port_id);
  w.genl(Command::kSetConfig);
  // A zero leaves the kernel's value unchanged (ip_vs_set_timeout).
  w.attr_value<std::uint32_t>(cmd_attr::kTimeoutTcp, timeouts.tcp);
  w.attr_value<std::uint32_t>(cmd_attr::kTimeoutTcpFin, timeouts.tcp_fin);
  w.attr_value<std::uint32_t>(cmd_attr::kTimeoutUdp, timeouts.udp);
  w.finish();
}

void encode_get_info(std::vector<std::uint8_t>& out, const Header& header) {
  encode_simple(out, header, Command::kGetInfo, 0);
}

void encode_flush(std::vector<std::uint8_t>& out, const Header& header) {
  encode_simple(out, header, Command::kFlush, 0);
}

// ---- Answers ----------------------------------------------------------------------

void encode_service_answer(std::vector<std::uint8_t>& out, const Header& header, const ServiceState& state,
                           StatsAttributes stats) {
  Writer w(out, header.family_id, header.flags, header.sequence, header.port_id);
  w.genl(Command::kNewService);
  const std::size_t nest = w.begin_nest(cmd_attr::kService);
  put_service_key(w, state.service.key);
  Service service = state.service;
  service.flags |= flags::kHashed;  // the kernel always reports its hashed bit
  w.attr_string(svc_attr::kSchedName, service.scheduler);
  const std::array<std::uint32_t, 2> flag_pair{service.flags, 0xffffffffU};
  std::array<std::uint8_t, 8> bytes{};
  std::memcpy(bytes.data(), flag_pair.data(), bytes.size());
  w.attr(svc_attr::kFlags, bytes);
  w.attr_value<std::uint32_t>(svc_attr::kTimeout, service.timeout);
  w.attr_value<std::uint32_t>(svc_attr::kNetmask, netmask_on_wire(service));
  put_stats_pair(w, svc_attr::kStats, svc_attr::kStats64, state.stats, stats);
  w.end_nest(nest);
  w.finish();
}

void encode_destination_answer(std::vector<std::uint8_t>& out, const Header& header,
                               const DestinationState& state, StatsAttributes stats) {
  Writer w(out, header.family_id, header.flags, header.sequence, header.port_id);
  w.genl(Command::kNewDest);
  const std::size_t nest = w.begin_nest(cmd_attr::kDest);
  const Destination& d = state.destination;
  w.attr(dest_attr::kAddr, address_bytes(d.key.address));
  w.attr_value<std::uint16_t>(dest_attr::kPort, to_be16(d.key.port));
  w.attr_value<std::uint32_t>(dest_attr::kFwdMethod, static_cast<std::uint32_t>(d.forwarding));
  w.attr_value<std::uint32_t>(dest_attr::kWeight, static_cast<std::uint32_t>(d.weight));
  w.attr_value<std::uint8_t>(13, 0);   // TUN_TYPE
  w.attr_value<std::uint16_t>(14, 0);  // TUN_PORT
  w.attr_value<std::uint16_t>(15, 0);  // TUN_FLAGS
  w.attr_value<std::uint32_t>(dest_attr::kUThresh, d.upper_threshold);
  w.attr_value<std::uint32_t>(dest_attr::kLThresh, d.lower_threshold);
  w.attr_value<std::uint32_t>(dest_attr::kActiveConns, state.active_connections);
  w.attr_value<std::uint32_t>(dest_attr::kInactConns, state.inactive_connections);
  w.attr_value<std::uint32_t>(dest_attr::kPersistConns, state.persistent_connections);
  w.attr_value<std::uint16_t>(dest_attr::kAddrFamily, static_cast<std::uint16_t>(d.key.address.family));
  put_stats_pair(w, dest_attr::kStats, dest_attr::kStats64, state.stats, stats);
  w.end_nest(nest);
  w.finish();
}

void encode_config_answer(std::vector<std::uint8_t>& out, const Header& header, const Timeouts& timeouts) {
  Writer w(out, header.family_id, header.flags, header.sequence, header.port_id);
  w.genl(Command::kSetConfig);
  w.attr_value<std::uint32_t>(cmd_attr::kTimeoutTcp, timeouts.tcp);
  w.attr_value<std::uint32_t>(cmd_attr::kTimeoutTcpFin, timeouts.tcp_fin);
  w.attr_value<std::uint32_t>(cmd_attr::kTimeoutUdp, timeouts.udp);
  w.finish();
}

void encode_info_answer(std::vector<std::uint8_t>& out, const Header& header, const Info& info) {
  Writer w(out, header.family_id, header.flags, header.sequence, header.port_id);
  w.genl(Command::kSetInfo);
  w.attr_value<std::uint32_t>(info_attr::kVersion, info.version);
  w.attr_value<std::uint32_t>(info_attr::kConnTabSize, info.connection_table_size);
  w.finish();
}

void add_flags(std::vector<std::uint8_t>& out, std::size_t offset, std::uint16_t flags) {
  constexpr std::size_t kFlagsOffset = 6;  // nlmsghdr: len (4), type (2), flags (2)
  if (offset + kHeaderSize > out.size()) return;
  std::uint16_t now = 0;
  std::memcpy(&now, out.data() + offset + kFlagsOffset, 2);
  now |= flags;
  std::memcpy(out.data() + offset + kFlagsOffset, &now, 2);
}

void encode_ack(std::vector<std::uint8_t>& out, const Header& request, int error) {
  // struct nlmsgerr: the (negative) error, then the request's header. With
  // NETLINK_CAP_ACK the kernel never echoes the request's payload.
  Writer w(out, kMsgError, 0, request.sequence, request.port_id);
  std::array<std::uint8_t, 4 + kHeaderSize> body{};
  const std::int32_t negative = -error;
  std::memcpy(body.data(), &negative, 4);
  const std::uint32_t length = kHeaderSize;
  std::memcpy(body.data() + 4, &length, 4);
  std::memcpy(body.data() + 8, &request.family_id, 2);
  std::memcpy(body.data() + 10, &request.flags, 2);
  std::memcpy(body.data() + 12, &request.sequence, 4);
  std::memcpy(body.data() + 16, &request.port_id, 4);
  w.raw(body);
  w.finish();
}

void encode_done(std::vector<std::uint8_t>& out, const Header& request, int error) {
  Writer w(out, kMsgDone, kFlagMulti, request.sequence, request.port_id);
  const std::int32_t negative = -error;
  std::array<std::uint8_t, 4> body{};
  std::memcpy(body.data(), &negative, 4);
  w.raw(body);
  w.finish();
}

// ---- Decoding -----------------------------------------------------------------------

std::expected<std::optional<Message>, Error> MessageReader::next() {
  if (rest_.empty()) return std::optional<Message>{};
  if (rest_.size() < kHeaderSize) {
    rest_ = {};
    return std::unexpected(malformed("truncated message header"));
  }
  const auto length = load<std::uint32_t>(rest_, 0);
  if (length < kHeaderSize || length > rest_.size()) {
    rest_ = {};
    return std::unexpected(malformed("message length " + std::to_string(length) + " outside its buffer"));
  }
  Message message;
  message.type = load<std::uint16_t>(rest_, 4);
  message.flags = load<std::uint16_t>(rest_, 6);
  message.sequence = load<std::uint32_t>(rest_, 8);
  message.port_id = load<std::uint32_t>(rest_, 12);
  message.payload = rest_.subspan(kHeaderSize, length - kHeaderSize);
  rest_ = rest_.subspan(std::min<std::size_t>(align4(length), rest_.size()));
  return std::optional<Message>{message};
}

std::expected<Ack, Error> decode_ack(const Message& message) {
  if (message.type != kMsgError) return std::unexpected(malformed("not an error message"));
  // nlmsgerr = int error + the request's nlmsghdr (payload and extended-ack
  // TLVs may follow and are not needed).
  if (message.payload.size() < 4 + kHeaderSize) return std::unexpected(malformed("truncated error message"));
  const auto error = load<std::int32_t>(message.payload, 0);
  if (error > 0) return std::unexpected(malformed("positive error " + std::to_string(error)));
  Ack ack;
  ack.sequence = load<std::uint32_t>(message.payload, 4 + 8);
  // -INT_MIN overflows; no errno is that large anyway.
  ack.error = error == INT32_MIN ? EINVAL : -error;
  return ack;
}

std::expected<int, Error> decode_done(const Message& message) {
  if (message.type != kMsgDone) return std::unexpected(malformed("not a done message"));
  // Old kernels may send NLMSG_DONE without its int.
  if (message.payload.size() < 4) return 0;
  const auto error = load<std::int32_t>(message.payload, 0);
  if (error > 0) return std::unexpected(malformed("positive error in done message"));
  return error == INT32_MIN ? EINVAL : -error;
}

std::expected<GenlMessage, Error> decode_genl(const Message& message, std::uint16_t family_id) {
  if (message.type != family_id) {
    return std::unexpected(
        malformed("message type " + std::to_string(message.type) + " is not the IPVS family"));
  }
  if (message.payload.size() < kGenlHeaderSize)
    return std::unexpected(malformed("truncated genetlink header"));
  GenlMessage genl;
  genl.command = static_cast<Command>(message.payload[0]);
  genl.attributes = message.payload.subspan(kGenlHeaderSize);
  return genl;
}

std::expected<ServiceKey, Error> decode_service_key(const GenlMessage& message) {
  auto attrs = service_nest(message);
  if (!attrs) return std::unexpected(attrs.error());
  return key_from(*attrs);
}

std::expected<ServiceState, Error> decode_service(const GenlMessage& message) {
  auto attrs = service_nest(message);
  if (!attrs) return std::unexpected(attrs.error());
  auto key = key_from(*attrs);
  if (!key) return std::unexpected(key.error());
  ServiceState state;
  state.service.key = *key;

  const auto& sched = (*attrs)[svc_attr::kSchedName];
  if (!sched) return std::unexpected(malformed("missing scheduler name"));
  // NLA_NUL_STRING: stop at the first NUL, and never trust a missing one.
  const auto nul = std::find(sched->begin(), sched->end(), std::uint8_t{0});
  if (nul == sched->end()) return std::unexpected(malformed("scheduler name without NUL"));
  if (static_cast<std::size_t>(nul - sched->begin()) >= kSchedNameMax) {
    return std::unexpected(malformed("scheduler name too long"));
  }
  state.service.scheduler.assign(sched->begin(), nul);

  const auto& flag_attr = (*attrs)[svc_attr::kFlags];
  if (!flag_attr) return std::unexpected(malformed("missing service flags"));
  if (flag_attr->size() < 8) return std::unexpected(malformed("service flags too short"));
  const auto flag_bits = load<std::uint32_t>(*flag_attr, 0);
  const auto flag_mask = load<std::uint32_t>(*flag_attr, 4);
  // HASHED only says the kernel has the service in its table; it would make
  // every observed service differ from the desired one.
  state.service.flags = flag_bits & flag_mask & ~flags::kHashed;

  auto timeout = fixed<std::uint32_t>((*attrs)[svc_attr::kTimeout], "service timeout");
  if (!timeout) return std::unexpected(timeout.error());
  state.service.timeout = *timeout;
  auto netmask = fixed<std::uint32_t>((*attrs)[svc_attr::kNetmask], "service netmask");
  if (!netmask) return std::unexpected(netmask.error());
  state.service.netmask = key->family == Family::kIPv6 ? *netmask : to_be32(*netmask);

  auto stats = pick_stats((*attrs)[svc_attr::kStats64], (*attrs)[svc_attr::kStats]);
  if (!stats) return std::unexpected(stats.error());
  state.stats = *stats;
  return state;
}

std::expected<DestinationKey, Error> decode_destination_key(const GenlMessage& message,
                                                            Family service_family) {
  auto attrs = destination_nest(message);
  if (!attrs) return std::unexpected(attrs.error());
  return destination_key_from(*attrs, service_family);
}

std::expected<DestinationState, Error> decode_destination(const GenlMessage& message, Family service_family) {
  auto attrs = destination_nest(message);
  if (!attrs) return std::unexpected(attrs.error());
  auto key = destination_key_from(*attrs, service_family);
  if (!key) return std::unexpected(key.error());
  DestinationState state;
  state.destination.key = *key;

  auto forwarding = fixed<std::uint32_t>((*attrs)[dest_attr::kFwdMethod], "forwarding method");
  auto weight = fixed<std::uint32_t>((*attrs)[dest_attr::kWeight], "weight");
  auto upper = fixed<std::uint32_t>((*attrs)[dest_attr::kUThresh], "upper threshold");
  auto lower = fixed<std::uint32_t>((*attrs)[dest_attr::kLThresh], "lower threshold");
  // Connection counts are absent from requests; answers always carry them.
  auto active = fixed_or<std::uint32_t>((*attrs)[dest_attr::kActiveConns], "active connections", 0);
  auto inactive = fixed_or<std::uint32_t>((*attrs)[dest_attr::kInactConns], "inactive connections", 0);
  auto persistent = fixed_or<std::uint32_t>((*attrs)[dest_attr::kPersistConns], "persistent connections", 0);
  for (const auto* field : {&forwarding, &weight, &upper, &lower, &active, &inactive, &persistent}) {
    if (!*field) return std::unexpected(field->error());
  }
  // Only the low bits name the method; the kernel keeps other connection
  // flags (NOOUTPUT, INACTIVE) in the same word.
  state.destination.forwarding = static_cast<Forwarding>(*forwarding & kFwdMask);
  state.destination.weight = static_cast<std::int32_t>(*weight);
  state.destination.upper_threshold = *upper;
  state.destination.lower_threshold = *lower;
  state.active_connections = *active;
  state.inactive_connections = *inactive;
  state.persistent_connections = *persistent;

  auto stats = pick_stats((*attrs)[dest_attr::kStats64], (*attrs)[dest_attr::kStats]);
  if (!stats) return std::unexpected(stats.error());
  state.stats = *stats;
  return state;
}

std::expected<Timeouts, Error> decode_config(const GenlMessage& message) {
  auto top = top_level(message);
  if (!top) return std::unexpected(top.error());
  // A kernel built without TCP or UDP support omits that protocol's values.
  auto tcp = fixed_or<std::uint32_t>((*top)[cmd_attr::kTimeoutTcp], "tcp timeout", 0);
  auto tcp_fin = fixed_or<std::uint32_t>((*top)[cmd_attr::kTimeoutTcpFin], "tcp fin timeout", 0);
  auto udp = fixed_or<std::uint32_t>((*top)[cmd_attr::kTimeoutUdp], "udp timeout", 0);
  if (!tcp) return std::unexpected(tcp.error());
  if (!tcp_fin) return std::unexpected(tcp_fin.error());
  if (!udp) return std::unexpected(udp.error());
  return Timeouts{*tcp, *tcp_fin, *udp};
}

std::expected<Info, Error> decode_info(const GenlMessage& message) {
  // GET_INFO answers with IPVS_INFO_ATTR_* at the top level.
  auto attrs = parse_attributes<info_attr::kMax>(message.attributes, "info");
  if (!attrs) return std::unexpected(attrs.error());
  auto version = fixed<std::uint32_t>((*attrs)[info_attr::kVersion], "version");
  if (!version) return std::unexpected(version.error());
  auto size = fixed<std::uint32_t>((*attrs)[info_attr::kConnTabSize], "connection table size");
  if (!size) return std::unexpected(size.error());
  return Info{*version, *size};
}

}  // namespace kipvs::ipvs::netlink
