#include "agent/node_facts.h"

#include <algorithm>
#include <charconv>

namespace kipvs::agent {

namespace {

bool is_loopback(const ipvs::Address& address) {
  if (address.family == ipvs::Family::kIPv4) return address.bytes[0] == 127;
  static constexpr std::array<std::uint8_t, 16> kLoopback6{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  return address.bytes == kLoopback6;
}

// 169.254.0.0/16, fe80::/10: kube-proxy serves no node port there.
bool is_link_local(const ipvs::Address& address) {
  if (address.family == ipvs::Family::kIPv4) return address.bytes[0] == 169 && address.bytes[1] == 254;
  return address.bytes[0] == 0xfe && (address.bytes[1] & 0xc0) == 0x80;
}

}  // namespace

std::optional<Cidr> Cidr::parse(std::string_view text) {
  const auto slash = text.find('/');
  auto address = ipvs::Address::parse(text.substr(0, slash));
  if (!address) return std::nullopt;
  const unsigned max = address->family == ipvs::Family::kIPv4 ? 32 : 128;
  unsigned length = max;
  if (slash != std::string_view::npos) {
    const auto digits = text.substr(slash + 1);
    if (digits.empty() || digits.size() > 3) return std::nullopt;
    const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), length);
    if (error != std::errc{} || end != digits.data() + digits.size() || length > max) return std::nullopt;
  }
  return Cidr{*address, static_cast<std::uint8_t>(length)};
}

bool Cidr::contains(const ipvs::Address& other) const {
  if (other.family != address.family) return false;
  const unsigned whole = prefix_length / 8;
  const unsigned rest = prefix_length % 8;
  if (!std::equal(address.bytes.begin(), address.bytes.begin() + whole, other.bytes.begin())) return false;
  if (rest == 0) return true;
  const auto mask = static_cast<std::uint8_t>(0xff << (8 - rest));
  return (address.bytes[whole] & mask) == (other.bytes[whole] & mask);
}

std::string Cidr::to_string() const {
  return address.to_string() + "/" + std::to_string(prefix_length);
}

bool NodeFacts::is_excluded(const ipvs::Address& address) const {
  return std::ranges::any_of(exclude_cidrs, [&](const Cidr& cidr) { return cidr.contains(address); });
}

bool NodeFacts::is_node_address(const ipvs::Address& address) const {
  return std::ranges::find(node_ips, address) != node_ips.end() ||
         std::ranges::find(local_addresses, address) != local_addresses.end();
}

std::vector<ipvs::Family> NodeFacts::families() const {
  std::vector<ipvs::Family> result;
  const auto add = [&result](ipvs::Family family) {
    if (std::ranges::find(result, family) == result.end()) result.push_back(family);
  };
  if (!ip_families.empty()) {
    for (auto family : ip_families) add(family);
    return result;
  }
  // kube-proxy runs both families whenever the kernel has both, "regardless
  // of whether the node is actually configured as dual-stack": a node
  // without IPv6 addresses still serves IPv6 cluster IPs to its pods.
  add(ipvs::Family::kIPv4);
  add(ipvs::Family::kIPv6);
  return result;
}

bool NodeFacts::serves(ipvs::Family family) const {
  const auto served = families();
  return std::ranges::find(served, family) != served.end();
}

std::vector<ipvs::Address> NodeFacts::node_port_ips(ipvs::Family family) const {
  std::vector<ipvs::Address> result;
  for (const auto* list : {&node_ips, &local_addresses}) {
    for (const auto& ip : *list) {
      if (ip.family != family || is_loopback(ip) || is_link_local(ip)) continue;
      if (!node_port_addresses.empty() &&
          std::ranges::none_of(node_port_addresses, [&ip](const Cidr& cidr) { return cidr.contains(ip); })) {
        continue;
      }
      if (std::ranges::find(result, ip) == result.end()) result.push_back(ip);
    }
  }
  return result;
}

std::optional<std::vector<ipvs::Address>> NodeFacts::health_check_ips() const {
  if (node_port_addresses.empty() ||
      std::ranges::any_of(node_port_addresses, [](const Cidr& cidr) { return cidr.prefix_length == 0; }))
    return std::nullopt;
  std::vector<ipvs::Address> result;
  for (const auto* list : {&node_ips, &local_addresses}) {
    for (const auto& ip : *list) {
      if (std::ranges::none_of(node_port_addresses, [&ip](const Cidr& cidr) { return cidr.contains(ip); }))
        continue;
      if (std::ranges::find(result, ip) == result.end()) result.push_back(ip);
    }
  }
  std::ranges::sort(result);
  return result;
}

std::vector<ipvs::Address> node_ips_of(const k8s::Node& node) {
  std::vector<ipvs::Address> ips;
  for (const auto& address : node.addresses) {
    if (!address.type.is(k8s::NodeAddressType::kInternalIP) &&
        !address.type.is(k8s::NodeAddressType::kExternalIP))
      continue;
    if (auto ip = ipvs::Address::parse(address.address)) ips.push_back(*ip);
  }
  return ips;
}

}  // namespace kipvs::agent
