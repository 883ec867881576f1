#include "agent/nft_state.h"

namespace kipvs::agent {

using nftables::NftState;
namespace nft_set = nftables::nft_set;

Cidr network_of(const Cidr& cidr) {
  Cidr out = cidr;
  const std::size_t size = cidr.address.family == ipvs::Family::kIPv6 ? 16 : 4;
  for (std::size_t i = 0; i < size; ++i) {
    const int bits = static_cast<int>(cidr.prefix_length) - static_cast<int>(i * 8);
    if (bits >= 8) continue;
    const auto mask = bits <= 0 ? std::uint8_t{0} : static_cast<std::uint8_t>(0xff << (8 - bits));
    out.address.bytes[i] &= mask;
  }
  return out;
}

NftState nft_state(const std::map<ipvs::ServiceKey, ServiceOrigin>& origins,
                   const std::set<ipvs::Address>& bound, const nftables::NftConfig& config) {
  NftState state;
  state.config = config;
  const auto add = [&state](std::string_view set, ipvs::Family family, std::string element) {
    state.elements[nftables::nft_set_name(set, family)].insert(std::move(element));
  };
  for (const auto& address : bound)
    add(nft_set::kVipAddresses, address.family, nftables::nft_element(address));
  for (const auto& [key, origin] : origins) {
    if (key.fwmark != 0) continue;
    const auto element = nftables::nft_element(key.address, key.protocol, key.port);
    if (bound.contains(key.address)) {
      add(nft_set::kVipPorts, key.family, element);
      // kube-proxy's KUBE-HEALTH-CHECK-NODE-PORT: the health check is served
      // on the node's addresses, and a load balancer probes its own IP.
      if (origin.health_check_node_port != 0)
        add(nft_set::kVipPorts, key.family,
            nftables::nft_element(key.address, ipvs::Protocol::kTcp, origin.health_check_node_port));
    }
    if (origin.kind == ServiceOrigin::Kind::kClusterIp) {
      add(nft_set::kClusterPorts, key.family, element);
    } else if (!origin.external_local) {
      add(nft_set::kMasqueradePorts, key.family, element);
    }
    if (origin.kind == ServiceOrigin::Kind::kLoadBalancer && !origin.source_ranges.empty()) {
      add(nft_set::kFirewallPorts, key.family, element);
      for (const auto& range : origin.source_ranges) {
        if (range.address.family != key.family) continue;
        const auto network = network_of(range);
        add(nft_set::kFirewallAllow, key.family,
            nftables::nft_range_element(key.address, key.protocol, key.port, network.address,
                                        network.prefix_length));
      }
    }
    for (const auto& endpoint : origin.local_endpoints) {
      if (endpoint.address.family != key.family) continue;
      add(nft_set::kHairpin, key.family,
          nftables::nft_hairpin_element(endpoint.address, key.protocol, endpoint.port));
    }
  }
  return state;
}

}  // namespace kipvs::agent
