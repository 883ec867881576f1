#include "ipvs/sockopt_reader.h"

#include <arpa/inet.h>
#include <linux/ip_vs.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>
#include <utility>

namespace kipvs::ipvs {

namespace {

// Destinations asked for per service; a service with more goes to netlink.
constexpr std::size_t kDestinationCapacity = 64;
// Room for services added between the count and the copy.
constexpr std::size_t kServiceSlack = 64;
// Marks a destination entry the kernel did not fill: it never reports a
// negative weight. (A service entry it fills always has a scheduler name.)
constexpr int kUnfilledWeight = -1;

Error system_error(int code, const std::string& what) {
  return Error{code, what + ": " + std::generic_category().message(code)};
}

}  // namespace

std::expected<SockoptReader, Error> SockoptReader::open() {
  // Any IPv4 socket reaches the options (ipvsadm's raw one would need
  // CAP_NET_RAW, which the chart does not grant); IPVS itself asks for
  // CAP_NET_ADMIN.
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, IPPROTO_UDP);
  if (fd < 0) return std::unexpected(system_error(errno, "open a socket for IPVS socket options"));
  return SockoptReader(fd);
}

SockoptReader::SockoptReader(SockoptReader&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), buffer_(std::move(other.buffer_)) {}

SockoptReader& SockoptReader::operator=(SockoptReader&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    buffer_ = std::move(other.buffer_);
  }
  return *this;
}

SockoptReader::~SockoptReader() {
  if (fd_ >= 0) ::close(fd_);
}

std::expected<std::uint32_t, Error> SockoptReader::service_count() {
  ip_vs_getinfo info{};
  socklen_t length = sizeof(info);
  if (::getsockopt(fd_, IPPROTO_IP, IP_VS_SO_GET_INFO, &info, &length) != 0) {
    return std::unexpected(system_error(errno, "get IPVS info"));
  }
  return info.num_services;
}

std::expected<std::optional<std::vector<ServiceState>>, Error> SockoptReader::ipv4_services() {
  // The same count of IPv4 services before and after, all of it copied:
  // nothing changed in between.
  const auto before = service_count();
  if (!before) return std::unexpected(before.error());
  const std::size_t capacity = *before + kServiceSlack;
  // The kernel wants the exact length for num_services entries.
  const std::size_t size = sizeof(ip_vs_get_services) + capacity * sizeof(ip_vs_service_entry);
  buffer_.assign(size, 0);
  // Plain C structures, built in place in a buffer the allocator aligned.
  auto* request = reinterpret_cast<ip_vs_get_services*>(buffer_.data());
  request->num_services = static_cast<unsigned>(capacity);
  auto length = static_cast<socklen_t>(size);
  if (::getsockopt(fd_, IPPROTO_IP, IP_VS_SO_GET_SERVICES, request, &length) != 0) {
    return std::unexpected(system_error(errno, "list IPVS services"));
  }
  std::size_t filled = 0;
  while (filled < capacity && request->entrytable[filled].sched_name[0] != '\0') ++filled;
  const auto after = service_count();
  if (!after) return std::unexpected(after.error());
  if (filled != *before || *after != *before) return std::nullopt;

  std::vector<ServiceState> services(filled);
  for (std::size_t i = 0; i < filled; ++i) {
    const ip_vs_service_entry& entry = request->entrytable[i];
    Service& service = services[i].service;
    service.key.family = Family::kIPv4;
    service.key.address.family = Family::kIPv4;
    if (entry.fwmark != 0) {
      // As netlink reports one: TCP, no address, no port.
      service.key.fwmark = entry.fwmark;
      service.key.protocol = Protocol::kTcp;
    } else {
      service.key.protocol = static_cast<Protocol>(entry.protocol);
      std::memcpy(service.key.address.bytes.data(), &entry.addr, sizeof(entry.addr));
      service.key.port = ntohs(entry.port);
    }
    service.scheduler.assign(entry.sched_name, strnlen(entry.sched_name, sizeof(entry.sched_name)));
    service.flags = entry.flags & ~flags::kHashed;
    service.timeout = entry.timeout;
    service.netmask = ntohl(entry.netmask);
  }
  return services;
}

std::expected<std::optional<std::vector<DestinationState>>, Error> SockoptReader::destinations(
    const ServiceKey& key) {
  if (key.family != Family::kIPv4) return std::nullopt;
  const std::size_t size = sizeof(ip_vs_get_dests) + kDestinationCapacity * sizeof(ip_vs_dest_entry);
  buffer_.assign(size, 0);
  auto* request = reinterpret_cast<ip_vs_get_dests*>(buffer_.data());
  request->protocol = static_cast<std::uint16_t>(key.protocol);
  if (key.fwmark != 0) {
    request->fwmark = key.fwmark;
  } else {
    std::memcpy(&request->addr, key.address.bytes.data(), sizeof(request->addr));
    request->port = htons(key.port);
  }
  request->num_dests = kDestinationCapacity;
  for (std::size_t i = 0; i < kDestinationCapacity; ++i) request->entrytable[i].weight = kUnfilledWeight;

  auto length = static_cast<socklen_t>(size);
  if (::getsockopt(fd_, IPPROTO_IP, IP_VS_SO_GET_DESTS, request, &length) != 0) {
    return std::unexpected(system_error(errno, "list destinations of " + to_string(key)));
  }
  std::size_t filled = 0;
  while (filled < kDestinationCapacity && request->entrytable[filled].weight != kUnfilledWeight) ++filled;
  if (filled == kDestinationCapacity) return std::nullopt;  // maybe cut short
  std::vector<DestinationState> destinations(filled);
  for (std::size_t i = 0; i < filled; ++i) {
    const ip_vs_dest_entry& entry = request->entrytable[i];
    DestinationState& state = destinations[i];
    Destination& destination = state.destination;
    destination.key.address.family = Family::kIPv4;
    std::memcpy(destination.key.address.bytes.data(), &entry.addr, sizeof(entry.addr));
    destination.key.port = ntohs(entry.port);
    destination.forwarding = static_cast<Forwarding>(entry.conn_flags & IP_VS_CONN_F_FWD_MASK);
    destination.weight = entry.weight;
    destination.upper_threshold = entry.u_threshold;
    destination.lower_threshold = entry.l_threshold;
    state.active_connections = entry.activeconns;
    state.inactive_connections = entry.inactconns;
    state.persistent_connections = entry.persistconns;
  }
  return destinations;
}

bool sockopt_refusal_lasts(int code) {
  switch (code) {
    case EPERM:
    case EACCES:
    case ENOPROTOOPT:
    case EOPNOTSUPP:
    case EINVAL:
    case EFAULT:
      return true;
    default:
      return false;
  }
}

}  // namespace kipvs::ipvs
