#pragma once
// The one interface between kipvs and the kernel's IPVS table. The generic
// netlink backend talks to the kernel; the fake is an in-memory table with the
// kernel's rules, for unit tests of the layers above.

#include <cstdint>
#include <expected>
#include <span>
#include <string>
#include <vector>

#include "ipvs/model.h"

namespace kipvs::ipvs {

// errno-style failure. EEXIST, ENOENT and ESRCH are ordinary answers the
// reconciler handles per operation.
struct Error {
  int code = 0;         // errno value (positive)
  std::string message;  // names the operation and the service
};

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
