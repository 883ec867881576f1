#include "ipvs/model.h"

#include <arpa/inet.h>

#include <cstring>

namespace kipvs::ipvs {

std::string_view protocol_name(Protocol protocol) {
  switch (protocol) {
    case Protocol::kTcp:
      return "TCP";
    case Protocol::kUdp:
      return "UDP";
    case Protocol::kSctp:
      return "SCTP";
  }
  return "unknown";
}

std::optional<Address> Address::parse(std::string_view text) {
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']') text = text.substr(1, text.size() - 2);
  std::string copy(text);  // inet_pton needs a terminated string
  Address address;
  if (inet_pton(AF_INET, copy.c_str(), address.bytes.data()) == 1) {
    address.family = Family::kIPv4;
    return address;
  }
  if (inet_pton(AF_INET6, copy.c_str(), address.bytes.data()) == 1) {
    address.family = Family::kIPv6;
    return address;
  }
  return std::nullopt;
}

std::string Address::to_string() const {
  char buffer[INET6_ADDRSTRLEN] = {};
  const int af = family == Family::kIPv4 ? AF_INET : AF_INET6;
  if (inet_ntop(af, bytes.data(), buffer, sizeof buffer) == nullptr) return "?";
  return buffer;
}

}  // namespace kipvs::ipvs
