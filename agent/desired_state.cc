#include "agent/desired_state.h"

#include <algorithm>
#include <array>
#include <optional>
#include <utility>

namespace kipvs::agent {

namespace {

using ipvs::Address;
using ipvs::Family;
using ipvs::Protocol;

constexpr std::array<std::string_view, 14> kSchedulers{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh",
                                                       "sh", "sed", "nq", "mh",  "fo",   "ovf",   "twos"};

std::string family_name(Family family) {
  return family == Family::kIPv4 ? "IPv4" : "IPv6";
}

std::string quoted(std::string_view text) {
  return "\"" + std::string(text) + "\"";
}

std::string object_name(const k8s::ObjectKey& key) {
  return key.namespace_ + "/" + key.name;
}

// The flag names of kipvs.io/scheduler-flags, and which scheduler they need.
struct FlagName {
  std::string_view name;
  std::uint32_t bits;
  std::string_view scheduler;  // "" = any
};
constexpr std::array<FlagName, 5> kFlagNames{{
    {"sh-fallback", ipvs::flags::kSchedShFallback, "sh"},
    {"sh-port", ipvs::flags::kSchedShPort, "sh"},
    {"mh-fallback", ipvs::flags::kSchedMhFallback, "mh"},
    {"mh-port", ipvs::flags::kSchedMhPort, "mh"},
    {"one-packet", ipvs::flags::kOnePacket, ""},
}};

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

// Calls visit(name) for each comma-separated, trimmed, non-empty item.
template <typename Visit>
void for_each_item(std::string_view text, Visit visit) {
  while (!text.empty()) {
    const auto comma = text.find(',');
    const auto item = trim(text.substr(0, comma));
    if (!item.empty()) visit(item);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
}

const FlagName* find_flag(std::string_view name) {
  const auto* it = std::ranges::find(kFlagNames, name, &FlagName::name);
  return it == kFlagNames.end() ? nullptr : it;
}

Protocol ipvs_protocol(k8s::Protocol protocol) {
  switch (protocol) {
    case k8s::Protocol::kUdp:
      return Protocol::kUdp;
    case k8s::Protocol::kSctp:
      return Protocol::kSctp;
    case k8s::Protocol::kTcp:
      break;
  }
  return Protocol::kTcp;
}

// One endpoint of one slice, parsed once per Service.
struct EndpointInfo {
  Address address;
  bool ready = true;
  bool serving = true;
  bool terminating = false;
  bool local = false;
  std::vector<std::string> zone_hints;
  std::vector<std::string> node_hints;
};

struct SlicePort {
  std::string name;
  Protocol protocol = Protocol::kTcp;
  std::uint16_t port = 0;
};

struct ParsedSlice {
  Family family = Family::kIPv4;
  std::vector<SlicePort> ports;
  std::vector<EndpointInfo> endpoints;
};

// An endpoint at one port, as a virtual service sees it.
struct Candidate {
  const EndpointInfo* endpoint = nullptr;
  std::uint16_t port = 0;
};
using CandidateSet = std::map<ipvs::DestinationKey, Candidate>;

bool has(const std::vector<std::string>& values, std::string_view value) {
  return !value.empty() && std::ranges::find(values, value) != values.end();
}

// The Service-wide IPVS settings: scheduler, flags, persistence.
struct Settings {
  std::string scheduler = "rr";
  std::uint32_t flags = 0;
  std::uint32_t timeout = 0;
};

// Builds one Service's part of the desired state.
class ServiceBuilder {
 public:
  ServiceBuilder(const k8s::Service& service, const NodeFacts& facts, DesiredState& out)
      : service_(service), key_(k8s::key_of(service)), facts_(facts), out_(out) {}

  void build(const std::vector<const k8s::EndpointSlice*>& slices);

 private:
  void problem(std::string_view reason, std::string message) {
    out_.problems.push_back(Problem{k8s::ResourceKind::kService, key_, std::string(reason),
                                    "Service " + object_name(key_) + ": " + std::move(message)});
  }
  void slice_problem(const k8s::EndpointSlice& slice, std::string_view reason, std::string message) {
    const auto key = k8s::key_of(slice);
    out_.problems.push_back(Problem{k8s::ResourceKind::kEndpointSlice, key, std::string(reason),
                                    "EndpointSlice " + object_name(key) + ": " + std::move(message)});
  }

  bool served_by_this_proxy() const;
  Settings resolve_settings();
  // Its parts; each reports what it ignores.
  [[nodiscard]] const std::string* annotation(std::string_view name) const;
  bool client_ip_affinity();
  AffinityMode affinity_mode();
  std::string scheduler(bool hash);
  std::optional<std::uint32_t> annotated_flags(const std::string& scheduler);
  std::uint32_t affinity_timeout();
  std::optional<ParsedSlice> parse_slice(const k8s::EndpointSlice& slice);
  CandidateSet candidates(Family family, const std::string& port_name, Protocol protocol) const;
  void add_virtual_service(const ipvs::ServiceKey& key, const std::vector<Candidate>& endpoints,
                           const std::string& port_name, ServiceOrigin::Kind kind, bool bind);
  // The addresses a Service port is served on.
  struct Targets {
    std::map<Family, Address> cluster_ips;  // one per family served
    std::vector<Address> external_ips;
    std::vector<Address> load_balancer_ips;
  };
  void add_port(std::size_t index, const Targets& targets);
  void add_health_check();
  void resolve_policies();
  std::vector<Cidr> source_ranges();
  std::vector<Address> load_balancer_ips();
  // The valid IPs of FIELD's list; each invalid one is a problem, ignored.
  std::vector<Address> addresses(const std::vector<std::string>& texts, std::string_view field);
  std::optional<Address> parse_ip(const std::string& text, const std::string& where);

  const k8s::Service& service_;
  k8s::ObjectKey key_;
  const NodeFacts& facts_;
  DesiredState& out_;
  Settings settings_;
  std::vector<ParsedSlice> slices_;
  bool external_local_ = false;
  bool internal_local_ = false;
  std::vector<Cidr> source_ranges_;
  std::uint16_t health_check_node_port_ = 0;  // LoadBalancer with externalTrafficPolicy Local
};

bool ServiceBuilder::served_by_this_proxy() const {
  const auto& labels = service_.meta.labels;
  const auto label = labels.find(std::string(kServiceProxyNameLabel));
  if (!facts_.proxy_name) return label == labels.end();
  return label != labels.end() && label->second == *facts_.proxy_name;
}

const std::string* ServiceBuilder::annotation(std::string_view name) const {
  const auto& annotations = service_.meta.annotations;
  auto it = annotations.find(std::string(name));
  return it == annotations.end() ? nullptr : &it->second;
}

bool ServiceBuilder::client_ip_affinity() {
  if (service_.session_affinity.is(k8s::SessionAffinity::kClientIP)) return true;
  if (!service_.session_affinity.known) {
    problem(kReasonInvalidAffinity, "spec.sessionAffinity " + quoted(service_.session_affinity.text) +
                                        " is not None or ClientIP; using None");
  }
  return false;
}

AffinityMode ServiceBuilder::affinity_mode() {
  const auto* value = annotation(kAffinityAnnotation);
  if (value == nullptr) return facts_.affinity_mode;
  if (*value == "hash") return AffinityMode::kHash;
  if (*value == "persistence") return AffinityMode::kPersistence;
  problem(kReasonInvalidAffinity,
          std::string(kAffinityAnnotation) + " " + quoted(*value) + " is not hash or persistence; ignored");
  return facts_.affinity_mode;
}

std::string ServiceBuilder::scheduler(bool hash) {
  const std::string default_scheduler = facts_.scheduler.empty() ? "rr" : facts_.scheduler;
  std::string scheduler = default_scheduler;
  const std::string* asked = annotation(kSchedulerAnnotation);
  if (asked != nullptr) {
    if (is_known_scheduler(*asked)) {
      scheduler = *asked;
    } else {
      problem(kReasonInvalidScheduler, std::string(kSchedulerAnnotation) + " " + quoted(*asked) +
                                           " is not a known IPVS scheduler; using " + default_scheduler);
      asked = nullptr;
    }
  }
  if (hash && scheduler != "mh" && scheduler != "sh") {
    // Only the hashing schedulers give affinity without persistence. Maglev
    // (mh) moves the fewest clients when endpoints change.
    if (asked != nullptr) {
      problem(kReasonInvalidScheduler, std::string(kSchedulerAnnotation) + " " + quoted(*asked) +
                                           " cannot give ClientIP affinity in hash mode; using mh");
    }
    scheduler = "mh";
  }
  return scheduler;
}

std::optional<std::uint32_t> ServiceBuilder::annotated_flags(const std::string& scheduler) {
  const auto* value = annotation(kSchedulerFlagsAnnotation);
  if (value == nullptr) return std::nullopt;
  const auto bits = parse_scheduler_flags(*value);
  if (!bits) {
    problem(kReasonInvalidSchedulerFlags, std::string(kSchedulerFlagsAnnotation) + " " + quoted(*value) +
                                              " names an unknown flag; ignored");
    return std::nullopt;
  }
  if (!flags_fit_scheduler(*value, scheduler)) {
    problem(kReasonInvalidSchedulerFlags, std::string(kSchedulerFlagsAnnotation) + " " + quoted(*value) +
                                              " does not fit scheduler " + scheduler + "; ignored");
    return std::nullopt;
  }
  return bits;
}

std::uint32_t ServiceBuilder::affinity_timeout() {
  if (!service_.affinity_timeout_seconds) return kDefaultAffinityTimeout;
  const auto requested = *service_.affinity_timeout_seconds;
  if (requested >= 1 && static_cast<std::uint32_t>(requested) <= kMaxAffinityTimeout) {
    return static_cast<std::uint32_t>(requested);
  }
  problem(kReasonInvalidAffinityTimeout,
          "sessionAffinityConfig.clientIP.timeoutSeconds " + std::to_string(requested) + " is outside 1.." +
              std::to_string(kMaxAffinityTimeout) + "; using " + std::to_string(kDefaultAffinityTimeout));
  return kDefaultAffinityTimeout;
}

Settings ServiceBuilder::resolve_settings() {
  const bool client_ip = client_ip_affinity();
  const AffinityMode mode = affinity_mode();
  const bool hash = client_ip && mode == AffinityMode::kHash;
  Settings settings;
  settings.scheduler = scheduler(hash);
  const auto flags = annotated_flags(settings.scheduler);
  if (flags) {
    settings.flags = *flags;
  } else if (settings.scheduler == (facts_.scheduler.empty() ? "rr" : facts_.scheduler)) {
    settings.flags = facts_.scheduler_flags;
  }
  if (!client_ip) return settings;

  const std::uint32_t timeout = affinity_timeout();
  if (hash) {
    // Hash on the client address alone: the port flag would mix in the
    // client's source port and give every connection its own choice. The
    // fallback flag sends a client whose backend is draining (weight 0)
    // elsewhere instead of dropping it.
    if (flags && (settings.flags & ipvs::flags::kSchedMhPort) != 0) {
      problem(kReasonInvalidSchedulerFlags,
              std::string(kSchedulerFlagsAnnotation) +
                  ": the port flag defeats ClientIP affinity in hash mode; dropped");
    }
    settings.flags &= ~ipvs::flags::kSchedMhPort;
    settings.flags |= ipvs::flags::kSchedMhFallback;
    settings.timeout = 0;
  } else {
    settings.flags |= ipvs::flags::kPersistent;
    settings.timeout = timeout;
  }
  return settings;
}

std::optional<ParsedSlice> ServiceBuilder::parse_slice(const k8s::EndpointSlice& slice) {
  ParsedSlice parsed;
  if (!slice.address_type.known) {
    slice_problem(slice, kReasonInvalidAddressType,
                  "addressType " + quoted(slice.address_type.text) + " is not IPv4, IPv6 or FQDN");
    return std::nullopt;
  }
  switch (*slice.address_type.known) {
    case k8s::AddressType::kIPv4:
      parsed.family = Family::kIPv4;
      break;
    case k8s::AddressType::kIPv6:
      parsed.family = Family::kIPv6;
      break;
    case k8s::AddressType::kFqdn:
      return std::nullopt;  // proxies ignore FQDN slices
  }
  if (!facts_.serves(parsed.family)) return std::nullopt;

  for (std::size_t i = 0; i < slice.ports.size(); ++i) {
    const auto& port = slice.ports[i];
    const std::string where = "ports[" + std::to_string(i) + "]";
    if (!port.name) {
      slice_problem(slice, kReasonInvalidPort, where + " has no name; ignored");
      continue;
    }
    if (!port.port || *port.port < 1 || *port.port > 65535) {
      slice_problem(slice, kReasonInvalidPort,
                    where + " (" + quoted(*port.name) + ") has no valid port number; ignored");
      continue;
    }
    const auto protocol = ipvs_protocol(port.protocol.value_or(k8s::Protocol::kTcp));
    parsed.ports.push_back(SlicePort{*port.name, protocol, static_cast<std::uint16_t>(*port.port)});
  }

  for (std::size_t i = 0; i < slice.endpoints.size(); ++i) {
    const auto& endpoint = slice.endpoints[i];
    const std::string where = "endpoints[" + std::to_string(i) + "]";
    if (endpoint.addresses.empty()) {
      slice_problem(slice, kReasonInvalidIp, where + " has no address; ignored");
      continue;
    }
    // Only the first address counts: the API requires exactly one.
    const auto address = Address::parse(endpoint.addresses.front());
    if (!address || address->family != parsed.family || endpoint.addresses.front().starts_with('[')) {
      slice_problem(slice, kReasonInvalidIp,
                    where + " address " + quoted(endpoint.addresses.front()) + " is not an " +
                        family_name(parsed.family) + " address; ignored");
      continue;
    }
    EndpointInfo info;
    info.address = *address;
    // Missing conditions mean ready and serving, not terminating (the API's
    // "unknown" is to be read as ready).
    info.ready = endpoint.conditions.ready.value_or(true);
    info.serving = endpoint.conditions.serving.value_or(true);
    info.terminating = endpoint.conditions.terminating.value_or(false);
    info.local = endpoint.node_name && !facts_.node_name.empty() && *endpoint.node_name == facts_.node_name;
    if (endpoint.hints) {
      info.zone_hints = endpoint.hints->for_zones;
      info.node_hints = endpoint.hints->for_nodes;
    }
    parsed.endpoints.push_back(std::move(info));
  }
  return parsed;
}

CandidateSet ServiceBuilder::candidates(Family family, const std::string& port_name,
                                        Protocol protocol) const {
  CandidateSet result;
  for (const auto& slice : slices_) {
    if (slice.family != family) continue;
    for (const auto& port : slice.ports) {
      if (port.name != port_name || port.protocol != protocol) continue;
      for (const auto& endpoint : slice.endpoints) {
        const ipvs::DestinationKey key{endpoint.address, port.port};
        auto [it, inserted] = result.try_emplace(key, Candidate{&endpoint, port.port});
        // An endpoint moving between slices can show up in both for a while:
        // the copy that is not terminating wins (kube-proxy does the same).
        if (!inserted && it->second.endpoint->terminating && !endpoint.terminating)
          it->second.endpoint = &endpoint;
      }
    }
  }
  return result;
}

// kube-proxy's CategorizeEndpoints, per virtual-service port and family.
struct Categorized {
  std::vector<Candidate> cluster;
  std::vector<Candidate> local;
};

Categorized categorize(const CandidateSet& set, const NodeFacts& facts) {
  enum class Topology { kNone, kSameNode, kSameZone };
  bool any_ready = false;
  bool all_node_hints = true;
  bool node_hinted = false;
  bool all_zone_hints = true;
  bool zone_hinted = false;
  for (const auto& [key, candidate] : set) {
    const auto& endpoint = *candidate.endpoint;
    if (!endpoint.ready) continue;
    any_ready = true;
    if (endpoint.node_hints.empty()) {
      all_node_hints = false;
    } else if (has(endpoint.node_hints, facts.node_name)) {
      node_hinted = true;
    }
    if (endpoint.zone_hints.empty()) {
      all_zone_hints = false;
    } else if (has(endpoint.zone_hints, facts.zone)) {
      zone_hinted = true;
    }
  }
  // Hints count only when every ready endpoint has them and one of them names
  // this node (or zone); otherwise they would black-hole or skew traffic.
  Topology topology = Topology::kNone;
  if (any_ready && all_node_hints && node_hinted) {
    topology = Topology::kSameNode;
  } else if (any_ready && all_zone_hints && zone_hinted) {
    topology = Topology::kSameZone;
  }
  const auto available = [&](const EndpointInfo& endpoint) {
    switch (topology) {
      case Topology::kSameNode:
        return has(endpoint.node_hints, facts.node_name);
      case Topology::kSameZone:
        return has(endpoint.zone_hints, facts.zone);
      case Topology::kNone:
        return true;
    }
    return true;
  };

  Categorized result;
  for (const auto& [key, candidate] : set) {
    if (candidate.endpoint->ready && available(*candidate.endpoint)) result.cluster.push_back(candidate);
  }
  // No ready endpoint anywhere: fall back to serving terminating ones, so
  // that a rollout of every pod at once does not drop traffic.
  if (result.cluster.empty()) {
    for (const auto& [key, candidate] : set) {
      if (candidate.endpoint->serving && candidate.endpoint->terminating) result.cluster.push_back(candidate);
    }
  }
  for (const auto& [key, candidate] : set) {
    if (candidate.endpoint->local && candidate.endpoint->ready) result.local.push_back(candidate);
  }
  if (result.local.empty()) {
    for (const auto& [key, candidate] : set) {
      const auto& endpoint = *candidate.endpoint;
      if (endpoint.local && endpoint.serving && endpoint.terminating) result.local.push_back(candidate);
    }
  }
  return result;
}

void ServiceBuilder::add_virtual_service(const ipvs::ServiceKey& key, const std::vector<Candidate>& endpoints,
                                         const std::string& port_name, ServiceOrigin::Kind kind, bool bind) {
  // The same address:port twice in one Service (an external IP equal to the
  // cluster IP, an ingress listed twice): the first one stays.
  if (out_.table.contains(key)) return;
  ipvs::TableEntry entry;
  entry.service.key = key;
  entry.service.scheduler = settings_.scheduler;
  entry.service.flags = settings_.flags;
  if (key.protocol != Protocol::kUdp) entry.service.flags &= ~ipvs::flags::kOnePacket;  // UDP only
  entry.service.timeout = settings_.timeout;
  entry.service.netmask = ipvs::default_netmask(key.family);
  for (const auto& candidate : endpoints) {
    const ipvs::DestinationKey destination_key{candidate.endpoint->address, candidate.port};
    entry.destinations.emplace(destination_key, ipvs::Destination{.key = destination_key,
                                                                  .forwarding = ipvs::Forwarding::kMasq,
                                                                  .weight = 1,
                                                                  .upper_threshold = 0,
                                                                  .lower_threshold = 0});
  }
  out_.table.emplace(key, std::move(entry));
  ServiceOrigin origin{key_, port_name, kind};
  origin.external_local = kind != ServiceOrigin::Kind::kClusterIp && external_local_;
  if (kind == ServiceOrigin::Kind::kLoadBalancer) {
    origin.source_ranges = source_ranges_;
    // The node's own connection to a load-balancer IP bound here leaves with
    // that IP as its source: let it in when a range admits one of the node's
    // addresses (kube-proxy's allowFromNode).
    const bool allow_from_node = std::ranges::any_of(source_ranges_, [&](const Cidr& range) {
      return std::ranges::any_of(facts_.node_ips, [&](const Address& ip) { return range.contains(ip); });
    });
    if (allow_from_node)
      origin.source_ranges.push_back(
          Cidr{key.address, static_cast<std::uint8_t>(key.family == Family::kIPv6 ? 128 : 32)});
    origin.health_check_node_port = health_check_node_port_;
  }
  for (const auto& candidate : endpoints) {
    if (candidate.endpoint->local)
      origin.local_endpoints.push_back({candidate.endpoint->address, candidate.port});
  }
  out_.origins.emplace(key, std::move(origin));
  if (bind) out_.bound_addresses.insert(key.address);
}

void ServiceBuilder::build(const std::vector<const k8s::EndpointSlice*>& slices) {
  if (service_.type.is(k8s::ServiceType::kExternalName)) return;
  if (!served_by_this_proxy()) return;
  // Headless: no virtual IP to serve.
  if (service_.cluster_ip.empty() || service_.cluster_ip == "None") return;

  // One cluster IP per family; spec.clusterIPs[0] == spec.clusterIP when set.
  std::map<Family, Address> cluster_ips;
  const auto& listed =
      service_.cluster_ips.empty() ? std::vector<std::string>{service_.cluster_ip} : service_.cluster_ips;
  for (const auto& address : addresses(listed, "spec.clusterIPs"))
    cluster_ips.try_emplace(address.family, address);
  std::erase_if(cluster_ips, [this](const auto& item) { return !facts_.serves(item.first); });
  if (cluster_ips.empty()) return;

  settings_ = resolve_settings();
  for (const auto* slice : slices) {
    if (auto parsed = parse_slice(*slice)) slices_.push_back(std::move(*parsed));
  }
  resolve_policies();
  source_ranges_ = source_ranges();
  const Targets targets{.cluster_ips = std::move(cluster_ips),
                        .external_ips = addresses(service_.external_ips, "spec.externalIPs"),
                        .load_balancer_ips = load_balancer_ips()};
  for (std::size_t i = 0; i < service_.ports.size(); ++i) add_port(i, targets);
  add_health_check();
}

std::vector<Address> ServiceBuilder::addresses(const std::vector<std::string>& texts,
                                               std::string_view field) {
  std::vector<Address> out;
  for (std::size_t i = 0; i < texts.size(); ++i) {
    if (auto address = parse_ip(texts[i], std::string(field) + "[" + std::to_string(i) + "]"))
      out.push_back(*address);
  }
  return out;
}

std::optional<Address> ServiceBuilder::parse_ip(const std::string& text, const std::string& where) {
  const auto address = Address::parse(text);
  if (!address || text.starts_with('[')) {
    problem(kReasonInvalidIp, where + " " + quoted(text) + " is not an IP address; ignored");
    return std::nullopt;
  }
  return address;
}

void ServiceBuilder::resolve_policies() {
  // externalTrafficPolicy matters only where traffic can come from outside.
  const bool load_balancer = service_.type.is(k8s::ServiceType::kLoadBalancer);
  const bool externally_accessible =
      service_.type.is(k8s::ServiceType::kNodePort) || load_balancer || !service_.external_ips.empty();
  external_local_ = externally_accessible && service_.external_traffic_policy.is(k8s::TrafficPolicy::kLocal);
  internal_local_ = service_.internal_traffic_policy.is(k8s::TrafficPolicy::kLocal);
  if (load_balancer && external_local_ && service_.health_check_node_port > 0 &&
      service_.health_check_node_port <= 65535)
    health_check_node_port_ = static_cast<std::uint16_t>(service_.health_check_node_port);
}

std::vector<Cidr> ServiceBuilder::source_ranges() {
  std::vector<Cidr> ranges;
  for (std::size_t i = 0; i < service_.load_balancer_source_ranges.size(); ++i) {
    // The API server trims spaces; a manifest may not have.
    auto text = service_.load_balancer_source_ranges[i];
    std::erase(text, ' ');
    const auto range = Cidr::parse(text);
    if (!range || text.find('/') == std::string::npos) {
      problem(kReasonInvalidIp, "spec.loadBalancerSourceRanges[" + std::to_string(i) + "] " + quoted(text) +
                                    " is not a CIDR; ignored");
      continue;
    }
    ranges.push_back(*range);
  }
  return ranges;
}

std::vector<Address> ServiceBuilder::load_balancer_ips() {
  std::vector<Address> out;
  for (std::size_t i = 0; i < service_.load_balancer_ingress.size(); ++i) {
    const auto& ingress = service_.load_balancer_ingress[i];
    // A hostname-only ingress has nothing to program; ipMode Proxy means the
    // load balancer delivers to the node, not to the VIP.
    if (ingress.ip.empty() || !ingress.ip_mode.is(k8s::IngressIpMode::kVip)) continue;
    if (auto address = parse_ip(ingress.ip, "status.loadBalancer.ingress[" + std::to_string(i) + "].ip"))
      out.push_back(*address);
  }
  return out;
}

void ServiceBuilder::add_port(std::size_t index, const Targets& targets) {
  const auto& port = service_.ports[index];
  const std::string where = "spec.ports[" + std::to_string(index) + "]";
  const auto protocol = ipvs_protocol(port.protocol);
  if (port.port < 1 || port.port > 65535) {
    problem(kReasonInvalidPort,
            where + " port " + std::to_string(port.port) + " is outside 1..65535; port ignored");
    return;
  }
  const auto service_port = static_cast<std::uint16_t>(port.port);
  std::uint16_t node_port = 0;
  if (port.node_port < 0 || port.node_port > 65535) {
    problem(kReasonInvalidPort, where + " nodePort " + std::to_string(port.node_port) +
                                    " is outside 1..65535; node port ignored");
  } else {
    node_port = static_cast<std::uint16_t>(port.node_port);
  }

  for (const auto& [family, cluster_ip] : targets.cluster_ips) {
    const auto endpoints = categorize(candidates(family, port.name, protocol), facts_);
    const auto& internal = internal_local_ ? endpoints.local : endpoints.cluster;
    const auto& external = external_local_ ? endpoints.local : endpoints.cluster;
    // kube-proxy counts a Service only when it has endpoints elsewhere.
    if (endpoints.local.empty() && !endpoints.cluster.empty()) {
      if (internal_local_) out_.no_local_endpoints.insert({key_, {family, true}});
      if (external_local_) out_.no_local_endpoints.insert({key_, {family, false}});
    }
    const auto make_key = [&](const Address& address, std::uint16_t number) {
      return ipvs::ServiceKey{
          .family = family, .protocol = protocol, .address = address, .port = number, .fwmark = 0};
    };

    add_virtual_service(make_key(cluster_ip, service_port), internal, port.name,
                        ServiceOrigin::Kind::kClusterIp, true);
    // An external or load-balancer IP that is one of the node's own
    // addresses is served but not bound: bound, it would become a virtual
    // IP whose other ports (SSH, the kubelet) the filter rejects.
    for (const auto& address : targets.external_ips) {
      if (address.family != family) continue;
      add_virtual_service(make_key(address, service_port), external, port.name,
                          ServiceOrigin::Kind::kExternalIp, !facts_.is_node_address(address));
    }
    for (const auto& address : targets.load_balancer_ips) {
      if (address.family != family) continue;
      add_virtual_service(make_key(address, service_port), external, port.name,
                          ServiceOrigin::Kind::kLoadBalancer, !facts_.is_node_address(address));
    }
    if (node_port != 0) {
      for (const auto& address : facts_.node_port_ips(family)) {
        add_virtual_service(make_key(address, node_port), external, port.name, ServiceOrigin::Kind::kNodePort,
                            false);
      }
    }
  }
}

void ServiceBuilder::add_health_check() {
  if (health_check_node_port_ == 0) return;
  // Distinct ready local IPs over all ports: a pod serving 80 and 443 is one
  // endpoint. Terminating ones do not count, so the node fails the check
  // while its last pod goes away.
  std::set<Address> local_ready;
  for (const auto& slice : slices_) {
    for (const auto& endpoint : slice.endpoints) {
      if (endpoint.local && endpoint.ready) local_ready.insert(endpoint.address);
    }
  }
  out_.health_checks.emplace(
      key_, HealthCheck{health_check_node_port_, static_cast<std::uint32_t>(local_ready.size())});
}

}  // namespace

void DesiredState::merge(DesiredState&& other) {
  for (auto& [key, entry] : other.table) {
    const auto& origin = other.origins.at(key);
    if (auto existing = origins.find(key); existing != origins.end()) {
      problems.push_back(Problem{
          k8s::ResourceKind::kService, origin.service, std::string(kReasonDuplicateVirtualService),
          "Service " + object_name(origin.service) + ": virtual service " + ipvs::to_string(key) +
              " is already served for Service " + object_name(existing->second.service) + "; ignored"});
      continue;
    }
    origins.emplace(key, origin);
    table.emplace(key, std::move(entry));
  }
  bound_addresses.merge(other.bound_addresses);
  health_checks.merge(other.health_checks);
  no_local_endpoints.merge(other.no_local_endpoints);
  problems.insert(problems.end(), std::make_move_iterator(other.problems.begin()),
                  std::make_move_iterator(other.problems.end()));
}

DesiredState desired_for_service(const k8s::Service& service,
                                 const std::vector<const k8s::EndpointSlice*>& slices,
                                 const NodeFacts& facts) {
  DesiredState state;
  ServiceBuilder(service, facts, state).build(slices);
  return state;
}

std::optional<k8s::ObjectKey> owning_service(const k8s::EndpointSlice& slice) {
  auto it = slice.meta.labels.find(std::string(kServiceNameLabel));
  if (it == slice.meta.labels.end() || it->second.empty()) return std::nullopt;
  return k8s::ObjectKey{slice.meta.namespace_, it->second};
}

DesiredState compute_desired_state(const ServiceMap& services, const EndpointSliceMap& slices,
                                   const NodeFacts& facts) {
  DesiredState state;
  std::map<k8s::ObjectKey, std::vector<const k8s::EndpointSlice*>> by_service;
  for (const auto& [key, slice] : slices) {
    if (auto owner = owning_service(slice)) {
      by_service[*owner].push_back(&slice);
    } else {
      state.problems.push_back(Problem{k8s::ResourceKind::kEndpointSlice, key,
                                       std::string(kReasonNoServiceName),
                                       "EndpointSlice " + object_name(key) + ": no " +
                                           std::string(kServiceNameLabel) + " label; ignored"});
    }
  }
  static const std::vector<const k8s::EndpointSlice*> kNoSlices;
  for (const auto& [key, service] : services) {
    auto it = by_service.find(key);
    state.merge(desired_for_service(service, it == by_service.end() ? kNoSlices : it->second, facts));
  }
  return state;
}

bool is_known_scheduler(std::string_view name) {
  return std::ranges::find(kSchedulers, name) != kSchedulers.end();
}

std::optional<std::uint32_t> parse_scheduler_flags(std::string_view text) {
  std::uint32_t bits = 0;
  bool ok = true;
  for_each_item(text, [&](std::string_view name) {
    if (const auto* flag = find_flag(name)) {
      bits |= flag->bits;
    } else {
      ok = false;
    }
  });
  if (!ok) return std::nullopt;
  return bits;
}

bool flags_fit_scheduler(std::string_view text, std::string_view scheduler) {
  bool fits = true;
  for_each_item(text, [&](std::string_view name) {
    const auto* flag = find_flag(name);
    if (flag == nullptr || (!flag->scheduler.empty() && flag->scheduler != scheduler)) fits = false;
  });
  return fits;
}

std::uint32_t default_scheduler_flags(std::string_view scheduler) {
  return scheduler == "mh" ? ipvs::flags::kSchedMhPort : 0;
}

bool owns_service(const ipvs::ServiceKey& key, const std::set<ipvs::Address>& bound_addresses,
                  const NodeFacts& facts) {
  if (key.fwmark != 0) return false;
  if (facts.is_excluded(key.address)) return false;
  if (bound_addresses.contains(key.address)) return true;
  if (key.port < facts.node_port_min || key.port > facts.node_port_max) return false;
  const auto node_port_ips = facts.node_port_ips(key.family);
  return std::ranges::find(node_port_ips, key.address) != node_port_ips.end();
}

}  // namespace kipvs::agent
