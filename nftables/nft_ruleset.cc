#include "nftables/nft_ruleset.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <sstream>

namespace kipvs::nftables {

namespace {

constexpr std::array kFamilies{ipvs::Family::kIPv4, ipvs::Family::kIPv6};

struct SetShape {
  std::string_view base;
  bool endpoint_suffix;  // a fourth address field
  bool interval;
  bool address_only;
};

constexpr std::array kSets{
    SetShape{nft_set::kVipAddresses, false, false, true},
    SetShape{nft_set::kVipPorts, false, false, false},
    SetShape{nft_set::kClusterPorts, false, false, false},
    SetShape{nft_set::kMasqueradePorts, false, false, false},
    SetShape{nft_set::kHairpin, true, false, false},
    SetShape{nft_set::kFirewallPorts, false, false, false},
    SetShape{nft_set::kFirewallAllow, true, true, false},
};

std::string_view nft_protocol(ipvs::Protocol protocol) {
  switch (protocol) {
    case ipvs::Protocol::kTcp:
      return "tcp";
    case ipvs::Protocol::kUdp:
      return "udp";
    case ipvs::Protocol::kSctp:
      return "sctp";
  }
  return "tcp";
}

std::string hex(std::uint32_t value) {
  char text[16];
  std::snprintf(text, sizeof text, "%#x", value);
  return text;
}

std::string_view address_type(ipvs::Family family) {
  return family == ipvs::Family::kIPv6 ? "ipv6_addr" : "ipv4_addr";
}

std::string match(ipvs::Family family) {
  return family == ipvs::Family::kIPv6 ? "ip6" : "ip";
}

std::string table_name() {
  return std::string(kNftFamily) + " " + std::string(kNftTable);
}

const std::set<std::string>& elements_of(const NftState& state, const std::string& name) {
  static const std::set<std::string> kEmpty;
  auto it = state.elements.find(name);
  return it == state.elements.end() ? kEmpty : it->second;
}

std::string join(const std::set<std::string>& elements) {
  std::string out;
  for (const auto& element : elements) {
    if (!out.empty()) out += ", ";
    out += element;
  }
  return out;
}

void render_set(std::ostringstream& out, const NftState& state, const SetShape& shape, ipvs::Family family) {
  const auto name = nft_set_name(shape.base, family);
  const auto type = address_type(family);
  out << "  set " << name << " {\n    type " << type;
  if (!shape.address_only) out << " . inet_proto . inet_service";
  if (shape.endpoint_suffix) out << " . " << type;
  out << "\n";
  if (shape.interval) out << "    flags interval\n";
  if (const auto& elements = elements_of(state, name); !elements.empty())
    out << "    elements = { " << join(elements) << " }\n";
  out << "  }\n";
}

// Rules of one family. The cluster CIDRs are the family's own.
void render_rules(std::ostringstream& nat_pre, std::ostringstream& nat_out, std::ostringstream& nat_post,
                  std::ostringstream& filter_in, std::ostringstream& filter_out, const NftConfig& config,
                  ipvs::Family family) {
  const auto ip = match(family);
  const auto set = [family](std::string_view base) { return "@" + nft_set_name(base, family); };
  const auto vip = ip + " daddr . meta l4proto . th dport";
  const auto mark = "meta mark set meta mark or " + hex(config.masquerade_mark);

  std::vector<std::string> cidrs;
  for (const auto& cidr : config.cluster_cidrs) {
    if ((cidr.find(':') != std::string::npos) == (family == ipvs::Family::kIPv6)) cidrs.push_back(cidr);
  }
  if (config.masquerade_all) {
    nat_pre << "    " << vip << " " << set(nft_set::kClusterPorts) << " " << mark << "\n";
  } else if (!config.local_interface.empty()) {
    nat_pre << "    " << vip << " " << set(nft_set::kClusterPorts) << " iifname != \""
            << config.local_interface << "\" " << mark << "\n";
  } else if (!cidrs.empty()) {
    std::string list;
    for (const auto& cidr : cidrs) list += (list.empty() ? "" : ", ") + cidr;
    nat_pre << "    " << vip << " " << set(nft_set::kClusterPorts) << " " << ip << " saddr != { " << list
            << " } " << mark << "\n";
  }
  nat_pre << "    " << vip << " " << set(nft_set::kMasqueradePorts) << " " << mark << "\n";
  // The node's own connections to a cluster IP leave with the virtual IP (or
  // another local address) as source, which a backend cannot answer: always
  // masqueraded.
  nat_out << "    " << vip << " " << set(nft_set::kClusterPorts) << " " << mark << "\n";
  nat_out << "    " << vip << " " << set(nft_set::kMasqueradePorts) << " " << mark << "\n";

  nat_post << "    " << vip << " . " << ip << " saddr " << set(nft_set::kHairpin)
           << " masquerade fully-random\n";

  const auto firewall = "    " + vip + " " + set(nft_set::kFirewallPorts) + " " + vip + " . " + ip +
                        " saddr != " + set(nft_set::kFirewallAllow) + " drop\n";
  filter_in << firewall;
  filter_out << firewall;
  // Only new connections: replies to the node's own masqueraded connections
  // come back to a virtual IP on an ephemeral port.
  filter_in << "    ct state new " << ip << " daddr " << set(nft_set::kVipAddresses)
            << " meta l4proto { tcp, udp, sctp } " << vip << " != " << set(nft_set::kVipPorts) << " reject\n";
}

void render_elements(std::ostringstream& out, std::string_view verb,
                     const std::vector<NftElementChange>& changes) {
  std::map<std::string, std::set<std::string>> by_set;
  for (const auto& change : changes) by_set[change.set].insert(change.element);
  for (const auto& [set, elements] : by_set)
    out << verb << " element " << table_name() << " " << set << " { " << join(elements) << " }\n";
}

}  // namespace

std::string nft_set_name(std::string_view base, ipvs::Family family) {
  return std::string(base) + (family == ipvs::Family::kIPv6 ? "_v6" : "_v4");
}

std::vector<std::string> nft_set_names() {
  std::vector<std::string> names;
  for (auto family : kFamilies) {
    for (const auto& shape : kSets) names.push_back(nft_set_name(shape.base, family));
  }
  return names;
}

std::string nft_element(const ipvs::Address& address) {
  return address.to_string();
}

std::string nft_element(const ipvs::Address& address, ipvs::Protocol protocol, std::uint16_t port) {
  return address.to_string() + " . " + std::string(nft_protocol(protocol)) + " . " + std::to_string(port);
}

std::string nft_hairpin_element(const ipvs::Address& endpoint, ipvs::Protocol protocol, std::uint16_t port) {
  return nft_element(endpoint, protocol, port) + " . " + endpoint.to_string();
}

std::string nft_range_element(const ipvs::Address& address, ipvs::Protocol protocol, std::uint16_t port,
                              const ipvs::Address& prefix, std::uint8_t prefix_length) {
  return nft_element(address, protocol, port) + " . " + prefix.to_string() + "/" +
         std::to_string(prefix_length);
}

NftUpdate nft_diff(const std::optional<NftState>& current, const NftState& desired) {
  NftUpdate update;
  if (!current || current->config != desired.config) {
    update.full = desired;
    return update;
  }
  for (const auto& name : nft_set_names()) {
    const auto& have = elements_of(*current, name);
    const auto& want = elements_of(desired, name);
    for (const auto& element : have) {
      if (!want.contains(element)) update.removed.push_back({name, element});
    }
    for (const auto& element : want) {
      if (!have.contains(element)) update.added.push_back({name, element});
    }
  }
  return update;
}

std::string render_nft_table(const NftState& state) {
  std::ostringstream out;
  out << "table " << table_name() << "\n";
  out << "delete table " << table_name() << "\n";
  out << "table " << table_name() << " {\n";
  for (auto family : kFamilies) {
    for (const auto& shape : kSets) render_set(out, state, shape, family);
  }
  std::ostringstream pre;
  std::ostringstream output;
  std::ostringstream post;
  std::ostringstream input;
  std::ostringstream local_output;
  for (auto family : kFamilies) render_rules(pre, output, post, input, local_output, state.config, family);
  // Before IPVS (LOCAL_OUT at NF_IP_PRI_NAT_DST + 1, LOCAL_IN at
  // NF_IP_PRI_NAT_SRC - 2), so the marks and the filter see the virtual IP.
  out << "  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n"
      << pre.str() << "  }\n";
  out << "  chain output {\n    type nat hook output priority -100; policy accept;\n"
      << output.str() << "  }\n";
  // Clears the bit before masquerading, as kube-proxy does, so a packet that
  // comes through again is not masqueraded twice.
  const auto mark = hex(state.config.masquerade_mark);
  out << "  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n"
      << post.str() << "    meta mark and " << mark << " == " << mark << " meta mark set meta mark xor "
      << mark << " masquerade fully-random\n  }\n";
  out << "  chain input {\n    type filter hook input priority filter; policy accept;\n"
      << input.str() << "  }\n";
  // Before IPVS's LOCAL_OUT hook too, so it sees the virtual IP.
  out << "  chain local_output {\n    type filter hook output priority -150; policy accept;\n"
      << local_output.str() << "  }\n";
  out << "}\n";
  return out.str();
}

std::string render_nft_update(const NftUpdate& update) {
  if (update.full) return render_nft_table(*update.full);
  std::ostringstream out;
  render_elements(out, "delete", update.removed);
  render_elements(out, "add", update.added);
  return out.str();
}

std::string render_nft_delete_table() {
  return "delete table " + table_name() + "\n";
}

}  // namespace kipvs::nftables
