#pragma once
// The one interface between kipvs and the kernel's IPVS table. The generic
// netlink backend talks to the kernel; the fake is an in-memory table with the
// kernel's rules, for unit tests of the layers above.

#include <cstdint>
#include <expected>
#include <span>
#include <string>
#include <vector>

#include "base/error.h"
#include "ipvs/model.h"

namespace kipvs::ipvs {

// Failures carry the errno (kipvs::Error::code). EEXIST, ENOENT and ESRCH
// are ordinary answers the reconciler handles per operation.

struct Operation {
  enum class Kind : std::uint8_t {
    kAddService,
    kEditService,
    kDeleteService,
    kAddDestination,
    kEditDestination,
    kDeleteDestination,
  };
  Kind kind = Kind::kAddService;
  Service service;          // for destination operations only service.key is used
  Destination destination;  // used by destination operations only
};

std::string to_string(Operation::Kind kind);

// "TCP 10.96.0.10:80", "UDP [fd00::10]:53", "FWM 42", "FWM 42 IPv6".
std::string to_string(const ServiceKey& key);
// "10.244.1.17:8080", "[fd00::17]:8080".
std::string to_string(const DestinationKey& key);
// What an operation does, for error messages and logs, e.g.
// "add destination 10.244.1.17:8080 to TCP 10.96.0.10:80".
std::string describe(const Operation& operation);
// The error for a failed operation: "<describe(operation)>: <strerror(code)>".
Error operation_error(const Operation& operation, int code);

using OperationResult = std::expected<void, Error>;

struct ServiceWithDestinations {
  ServiceState service;
  std::vector<DestinationState> destinations;
};

class Backend {
 public:
  virtual ~Backend() = default;

  // Applies the operations in order, batched. results[i] is operations[i]'s
  // outcome; one failure does not stop the others.
  [[nodiscard]] virtual std::vector<OperationResult> apply(std::span<const Operation> operations) = 0;

  [[nodiscard]] virtual std::expected<std::vector<ServiceState>, Error> list_services() = 0;
  // The services for a comparison: their counters (stats) may be left zero,
  // and with ipv4_only the services of other families may be left out,
  // which lets a backend answer faster than list_services().
  [[nodiscard]] virtual std::expected<std::vector<ServiceState>, Error> list_service_settings(
      bool /*ipv4_only*/) {
    return list_services();
  }
  // A service's destinations with their connection counts; the counters
  // (stats) may be left zero: list_all() has them.
  [[nodiscard]] virtual std::expected<std::vector<DestinationState>, Error> list_destinations(
      const ServiceKey& service) = 0;
  // Every service with its destinations, as fast as the backend can.
  [[nodiscard]] virtual std::expected<std::vector<ServiceWithDestinations>, Error> list_all() = 0;

  [[nodiscard]] virtual std::expected<Timeouts, Error> get_timeouts() = 0;
  [[nodiscard]] virtual std::expected<void, Error> set_timeouts(const Timeouts& timeouts) = 0;
  [[nodiscard]] virtual std::expected<Info, Error> get_info() = 0;
  // Removes every service in the kernel: for an explicit cleanup only.
  [[nodiscard]] virtual std::expected<void, Error> flush() = 0;
};

}  // namespace kipvs::ipvs
