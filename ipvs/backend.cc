#include "ipvs/backend.h"

#include <system_error>

namespace kipvs::ipvs {

std::string to_string(Operation::Kind kind) {
  switch (kind) {
    case Operation::Kind::kAddService:
      return "add service";
    case Operation::Kind::kEditService:
      return "edit service";
    case Operation::Kind::kDeleteService:
      return "delete service";
    case Operation::Kind::kAddDestination:
      return "add destination";
    case Operation::Kind::kEditDestination:
      return "edit destination";
    case Operation::Kind::kDeleteDestination:
      return "delete destination";
  }
  return "unknown operation";
}

namespace {

// The kernel may report protocols kipvs never uses (AH, ESP): by number.
std::string protocol_text(Protocol protocol) {
  const auto name = protocol_name(protocol);
  if (name == "unknown") return "proto-" + std::to_string(static_cast<unsigned>(protocol));
  return std::string(name);
}

std::string address_port(const Address& address, std::uint16_t port) {
  if (address.family == Family::kIPv6) return "[" + address.to_string() + "]:" + std::to_string(port);
  return address.to_string() + ":" + std::to_string(port);
}

}  // namespace

std::string to_string(const ServiceKey& key) {
  if (key.fwmark != 0) {
    return "FWM " + std::to_string(key.fwmark) + (key.family == Family::kIPv6 ? " IPv6" : "");
  }
  return protocol_text(key.protocol) + " " + address_port(key.address, key.port);
}

std::string to_string(const DestinationKey& key) {
  return address_port(key.address, key.port);
}

std::string describe(const Operation& operation) {
  const std::string service = to_string(operation.service.key);
  const std::string destination = to_string(operation.destination.key);
  switch (operation.kind) {
    case Operation::Kind::kAddService:
    case Operation::Kind::kEditService:
    case Operation::Kind::kDeleteService:
      return to_string(operation.kind) + " " + service;
    case Operation::Kind::kAddDestination:
      return "add destination " + destination + " to " + service;
    case Operation::Kind::kEditDestination:
      return "edit destination " + destination + " in " + service;
    case Operation::Kind::kDeleteDestination:
      return "delete destination " + destination + " from " + service;
  }
  return to_string(operation.kind) + " " + service;
}

Error operation_error(const Operation& operation, int code) {
  return Error{code, describe(operation) + ": " + std::generic_category().message(code)};
}

}  // namespace kipvs::ipvs
