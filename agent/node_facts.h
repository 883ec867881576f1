#pragma once
// What the desired-state computation needs to know about this node and the
// configuration, as plain values: the node's name, zone and addresses, the
// default scheduler, the affinity mode, node-port addresses, excludeCIDRs.
// Filled by main from the config, flags and the Node object; tests build it
// by hand.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ipvs/model.h"
#include "k8s/objects.h"

namespace kipvs::agent {

// An address prefix such as 10.0.0.0/8 or fd00::/64. Host bits may be set
// ("10.1.2.3/8" parses), as Go's net.ParseCIDR accepts them.
struct Cidr {
  ipvs::Address address;
  std::uint8_t prefix_length = 0;

  // "a.b.c.d/n" or "x::y/n"; a bare address is a host prefix (/32, /128).
  [[nodiscard]] static std::optional<Cidr> parse(std::string_view text);
  [[nodiscard]] bool contains(const ipvs::Address& address) const;
  [[nodiscard]] std::string to_string() const;
  friend bool operator==(const Cidr&, const Cidr&) = default;
};

// How `sessionAffinity: ClientIP` is implemented.
enum class AffinityMode {
  // kube-proxy's way: the persistent flag with the Service's timeout. One
  // connection template per client in the kernel; exact stickiness for the
  // timeout, then a new choice.
  kPersistence,
  // kipvs's alternative: the mh (Maglev hashing) scheduler on the client
  // address. No template per client, so it scales to any number of clients
  // and survives a template flush; no timeout, and a few clients move when
  // the set of endpoints changes.
  kHash,
};

struct NodeFacts {
  std::string node_name;
  std::string zone;  // topology.kubernetes.io/zone of this node ("" if none)
  // Addresses node ports are served on, before the nodePortAddresses filter:
  // the node's own addresses of every family (not kipvs's virtual IPs).
  std::vector<ipvs::Address> node_ips;
  // Every address this host has on an interface other than kipvs's dummy
  // one (read from the kernel; tests and `render` leave it empty). With
  // node_ips these are the node's own addresses: kipvs never binds one on
  // the dummy interface nor filters its other ports (kube-proxy's
  // shouldBind), and never claims the foreign services on one.
  std::vector<ipvs::Address> local_addresses;
  // Families served; empty means both (kube-proxy's way on a kernel with
  // both). The agent leaves out IPv6 when the kernel has no IPv6.
  std::vector<ipvs::Family> ip_families;

  std::string scheduler = "rr";       // ipvs.scheduler ("" means rr)
  std::uint32_t scheduler_flags = 0;  // ipvs::flags bits applied with that scheduler
  // service.kubernetes.io/service-proxy-name: unset serves the Services
  // without the label; set serves exactly the Services labelled with it.
  std::optional<std::string> proxy_name;
  AffinityMode affinity_mode = AffinityMode::kPersistence;

  std::vector<Cidr> node_port_addresses;  // empty: every node IP
  // IPVS services on these addresses are never cleaned up (kube-proxy's
  // ipvs.excludeCIDRs). Not a desired-state filter: the sync layer asks.
  std::vector<Cidr> exclude_cidrs;
  // Node ports the API server hands out (its --service-node-port-range;
  // kipvs.nodePortRange): a service on a node-port address in this range is
  // taken as kipvs's after a restart. While kipvs runs, every virtual service
  // it has wanted is known as its own, whatever the port.
  std::uint16_t node_port_min = 30000;
  std::uint16_t node_port_max = 32767;

  [[nodiscard]] bool is_excluded(const ipvs::Address& address) const;
  // In node_ips or local_addresses.
  [[nodiscard]] bool is_node_address(const ipvs::Address& address) const;
  [[nodiscard]] bool serves(ipvs::Family family) const;
  [[nodiscard]] std::vector<ipvs::Family> families() const;
  // The addresses of one family that carry node ports, as kube-proxy picks
  // them: the node IPs and every local address (a second NIC's too),
  // filtered by node_port_addresses; never loopback (IPVS cannot serve it)
  // nor link-local; no duplicates.
  [[nodiscard]] std::vector<ipvs::Address> node_port_ips(ipvs::Family family) const;
  // Where health-check node ports listen (kube-proxy's nodeAddressHandler):
  // nullopt for every address (no nodePortAddresses, or a /0 among them),
  // else the node's own addresses (node_ips and local_addresses) inside
  // them, which may be none.
  [[nodiscard]] std::optional<std::vector<ipvs::Address>> health_check_ips() const;
};

// The Node object's InternalIP and ExternalIP addresses, in its order: the
// node's own addresses (host names and unparsable ones are left out).
[[nodiscard]] std::vector<ipvs::Address> node_ips_of(const k8s::Node& node);

}  // namespace kipvs::agent
