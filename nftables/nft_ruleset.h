#pragma once
// kipvs's one nftables table, `inet kipvs`: the source NAT and the filtering
// that IPVS alone cannot do, as kube-proxy's IPVS mode does them with
// iptables and ipsets (pkg/proxy/ipvs/proxier.go writeIptablesRules).
//
// The rules are fixed; what a Service adds or removes is an element of a
// named set. So a sync writes either the whole table in one transaction (the
// first time, or when the rules' shape changes: cluster CIDRs, masqueradeAll,
// the mark) or set-element commands only. Pure: values in, nft script text
// out; the backends (nft_backend.h) run the text.
//
// Masquerading is fully random in its port choice (kube-proxy's
// --random-fully), and uses kube-proxy's mark bit: the nat prerouting and output
// chains set it on the first packet of a connection to a virtual service
// that needs SNAT (before IPVS rewrites the destination at LOCAL_IN /
// LOCAL_OUT), and nat postrouting masquerades marked packets after IPVS has
// chosen the real server. This needs net.ipv4.vs.conntrack=1, which kipvs
// sets. Hairpin traffic (an endpoint reaching itself) is matched directly in
// postrouting, where source and destination are both the endpoint.
//
// loadBalancerSourceRanges are checked twice: at input for connections from
// elsewhere, and at output for the node's own, which IPVS takes at LOCAL_OUT
// so they never reach input.

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "ipvs/model.h"

namespace kipvs::nftables {

inline constexpr std::string_view kNftFamily = "inet";
inline constexpr std::string_view kNftTable = "kipvs";

// The rules' shape: a change rewrites the whole table.
struct NftConfig {
  // Pod CIDRs ("10.244.0.0/16"); traffic to a cluster IP from outside them is
  // masqueraded. Without one for a family (and without masquerade_all), only
  // the node's own traffic to cluster IPs is.
  std::vector<std::string> cluster_cidrs;
  // detectLocalMode BridgeInterface / InterfaceNamePrefix: an iifname
  // pattern ("cni0", "veth*"); set, it tells the pods' traffic instead of
  // the cluster CIDRs.
  std::string local_interface;
  bool masquerade_all = false;
  std::uint32_t masquerade_mark = 0x4000;  // 1 << iptables.masqueradeBit
  friend bool operator==(const NftConfig&, const NftConfig&) = default;
};

// Set names, without the family suffix (set_name adds "_v4" / "_v6").
namespace nft_set {
// address: every virtual IP kipvs binds (cluster, external, load balancer).
inline constexpr std::string_view kVipAddresses = "vip_addrs";
// address . protocol . port: every virtual service on those addresses; new
// connections to a virtual IP on any other port are rejected.
inline constexpr std::string_view kVipPorts = "vip_ports";
// address . protocol . port: cluster IPs (masqueraded from outside the
// cluster CIDR, and always from the node itself).
inline constexpr std::string_view kClusterPorts = "cluster_ports";
// address . protocol . port: external, load-balancer and node-port virtual
// services of externalTrafficPolicy Cluster (always masqueraded).
inline constexpr std::string_view kMasqueradePorts = "masq_ports";
// endpoint . protocol . port . endpoint: local endpoints (hairpin).
inline constexpr std::string_view kHairpin = "hairpin";
// address . protocol . port: load-balancer virtual services with
// loadBalancerSourceRanges; only sources in fw_allow get in.
inline constexpr std::string_view kFirewallPorts = "fw_ports";
// address . protocol . port . source prefix (an interval set).
inline constexpr std::string_view kFirewallAllow = "fw_allow";
}  // namespace nft_set

// "vip_ports_v4", "vip_ports_v6".
[[nodiscard]] std::string nft_set_name(std::string_view base, ipvs::Family family);

// Element texts in nft syntax.
[[nodiscard]] std::string nft_element(const ipvs::Address& address);  // "10.96.0.1", "fd00::1"
[[nodiscard]] std::string nft_element(const ipvs::Address& address, ipvs::Protocol protocol,
                                      std::uint16_t port);  // "10.96.0.1 . tcp . 80"
// "10.244.0.5 . tcp . 8080 . 10.244.0.5"
[[nodiscard]] std::string nft_hairpin_element(const ipvs::Address& endpoint, ipvs::Protocol protocol,
                                              std::uint16_t port);
// "203.0.113.10 . tcp . 80 . 192.0.2.0/24"; prefix is a network address
// (host bits clear), as the kernel stores intervals.
[[nodiscard]] std::string nft_range_element(const ipvs::Address& address, ipvs::Protocol protocol,
                                            std::uint16_t port, const ipvs::Address& prefix,
                                            std::uint8_t prefix_length);

// The whole table as kipvs wants it.
struct NftState {
  NftConfig config;
  // nft_set_name(...) -> elements. Missing names are empty sets.
  std::map<std::string, std::set<std::string>> elements;
  friend bool operator==(const NftState&, const NftState&) = default;
};

struct NftElementChange {
  std::string set;
  std::string element;
  friend auto operator<=>(const NftElementChange&, const NftElementChange&) = default;
};

// What one sync writes: the whole table, or element changes, or nothing.
struct NftUpdate {
  std::optional<NftState> full;
  std::vector<NftElementChange> removed;
  std::vector<NftElementChange> added;
  [[nodiscard]] bool empty() const { return !full && removed.empty() && added.empty(); }
};

// current: what the kernel holds (nullopt: unknown or absent, so write all).
[[nodiscard]] NftUpdate nft_diff(const std::optional<NftState>& current, const NftState& desired);

// One transaction: creates the table if missing, deletes it, and declares it
// again with its sets, elements and chains, so a table left by an earlier
// run is replaced atomically.
[[nodiscard]] std::string render_nft_table(const NftState& state);
// The update as one script (one transaction): deletions, then additions.
[[nodiscard]] std::string render_nft_update(const NftUpdate& update);
[[nodiscard]] std::string render_nft_delete_table();

// The set names every table declares, both families.
[[nodiscard]] std::vector<std::string> nft_set_names();

}  // namespace kipvs::nftables
