#pragma once
// Reads of the IPv4 part of the IPVS table through the socket options
// ipvsadm used before generic netlink (IP_VS_SO_GET_SERVICES, _GET_DESTS).
// The kernel copies one fixed-size entry per service or destination: no
// dump to start, no attributes to build and parse, and the service table is
// walked once (a netlink dump walks it again for every datagram). Measured
// in the guest at 5,000 services x 10 destinations: 0.08 s for every
// destination, where the netlink dumps take seconds.
//
// What it cannot show, the caller reads with netlink: IPv6 services (not
// even their number: the kernel counts IPv4 services only), and
// answers that may be cut short (the kernel copies what fits and says
// nothing of the rest). Its counters are 32 bits: they are left zero here,
// and the scrape reads netlink's. An IPv6 destination of an IPv4 service
// (tunnel mode; kipvs makes none) is not shown either.

#include <cstdint>
#include <expected>
#include <optional>
#include <vector>

#include "base/error.h"
#include "ipvs/backend.h"
#include "ipvs/model.h"

namespace kipvs::ipvs {

class SockoptReader {
 public:
  // A UDP socket in the caller's network namespace (never bound).
  [[nodiscard]] static std::expected<SockoptReader, Error> open();
  SockoptReader(SockoptReader&& other) noexcept;
  SockoptReader& operator=(SockoptReader&& other) noexcept;
  SockoptReader(const SockoptReader&) = delete;
  SockoptReader& operator=(const SockoptReader&) = delete;
  ~SockoptReader();

  // Every IPv4 service (the others are not shown); nullopt when the table
  // changed while it was read.
  [[nodiscard]] std::expected<std::optional<std::vector<ServiceState>>, Error> ipv4_services();
  // The service's destinations; nullopt when this interface cannot tell
  // (not IPv4, or the answer may be cut short). ESRCH: no such service.
  [[nodiscard]] std::expected<std::optional<std::vector<DestinationState>>, Error> destinations(
      const ServiceKey& key);

 private:
  explicit SockoptReader(int fd) : fd_(fd) {}
  [[nodiscard]] std::expected<std::uint32_t, Error> service_count();
  int fd_ = -1;
  std::vector<std::uint8_t> buffer_;
};

// Whether a refusal of the socket options will last (a kernel without them,
// no permission, a request it does not take): the reader is then given up
// for netlink. Others (EINTR from the kernel's interruptible lock, ENOMEM)
// fall back to netlink for that one read.
[[nodiscard]] bool sockopt_refusal_lasts(int code);

}  // namespace kipvs::ipvs
