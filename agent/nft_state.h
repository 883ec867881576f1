#pragma once
// The desired state's part for kipvs's nftables table (nftables/nft_ruleset.h):
// which virtual services need source NAT, which virtual IPs must not expose
// other ports, which local endpoints can hairpin, and which load balancers
// take only some sources. Pure, like desired_state.h.

#include <cstdint>
#include <map>
#include <set>
#include <vector>

#include "agent/desired_state.h"
#include "agent/node_facts.h"
#include "ipvs/model.h"
#include "nftables/nft_ruleset.h"

namespace kipvs::agent {

// origins: one per desired virtual service; bound: the virtual IPs on the
// dummy interface (cluster, external, load-balancer IPs).
[[nodiscard]] nftables::NftState nft_state(const std::map<ipvs::ServiceKey, ServiceOrigin>& origins,
                                           const std::set<ipvs::Address>& bound,
                                           const nftables::NftConfig& config);

// The prefix with its host bits cleared (10.1.2.3/8 -> 10.0.0.0/8): the
// kernel stores intervals, and lists them that way.
[[nodiscard]] Cidr network_of(const Cidr& cidr);

}  // namespace kipvs::agent
