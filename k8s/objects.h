#pragma once
// The parts of Kubernetes API objects that kipvs reads: Services,
// EndpointSlices (discovery.k8s.io/v1) and Nodes. Decoded from JSON (API) or
// YAML/JSON files (static manifests) into these plain values; fields kipvs
// does not use are dropped. Optional fields stay optional so the desired-state
// rules can tell "unset" from "false".

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace kipvs::k8s {

// The words the API uses for a few fields, decoded once into enums.
enum class Protocol : std::uint8_t { kTcp, kUdp, kSctp };
enum class ServiceType : std::uint8_t { kClusterIP, kNodePort, kLoadBalancer, kExternalName };
enum class SessionAffinity : std::uint8_t { kNone, kClientIP };
enum class TrafficPolicy : std::uint8_t { kCluster, kLocal };
enum class AddressType : std::uint8_t { kIPv4, kIPv6, kFqdn };
enum class IngressIpMode : std::uint8_t { kVip, kProxy };
enum class NodeAddressType : std::uint8_t { kHostname, kInternalIP, kExternalIP, kInternalDNS, kExternalDNS };

// Each enum's words, in the API's spelling.
template <typename E>
struct Words;
template <>
struct Words<Protocol> {
  static constexpr std::array<std::pair<Protocol, std::string_view>, 3> kAll{
      {{Protocol::kTcp, "TCP"}, {Protocol::kUdp, "UDP"}, {Protocol::kSctp, "SCTP"}}};
};
template <>
struct Words<ServiceType> {
  static constexpr std::array<std::pair<ServiceType, std::string_view>, 4> kAll{
      {{ServiceType::kClusterIP, "ClusterIP"},
       {ServiceType::kNodePort, "NodePort"},
       {ServiceType::kLoadBalancer, "LoadBalancer"},
       {ServiceType::kExternalName, "ExternalName"}}};
};
template <>
struct Words<SessionAffinity> {
  static constexpr std::array<std::pair<SessionAffinity, std::string_view>, 2> kAll{
      {{SessionAffinity::kNone, "None"}, {SessionAffinity::kClientIP, "ClientIP"}}};
};
template <>
struct Words<TrafficPolicy> {
  static constexpr std::array<std::pair<TrafficPolicy, std::string_view>, 2> kAll{
      {{TrafficPolicy::kCluster, "Cluster"}, {TrafficPolicy::kLocal, "Local"}}};
};
template <>
struct Words<AddressType> {
  static constexpr std::array<std::pair<AddressType, std::string_view>, 3> kAll{
      {{AddressType::kIPv4, "IPv4"}, {AddressType::kIPv6, "IPv6"}, {AddressType::kFqdn, "FQDN"}}};
};
template <>
struct Words<IngressIpMode> {
  static constexpr std::array<std::pair<IngressIpMode, std::string_view>, 2> kAll{
      {{IngressIpMode::kVip, "VIP"}, {IngressIpMode::kProxy, "Proxy"}}};
};
template <>
struct Words<NodeAddressType> {
  static constexpr std::array<std::pair<NodeAddressType, std::string_view>, 5> kAll{
      {{NodeAddressType::kHostname, "Hostname"},
       {NodeAddressType::kInternalIP, "InternalIP"},
       {NodeAddressType::kExternalIP, "ExternalIP"},
       {NodeAddressType::kInternalDNS, "InternalDNS"},
       {NodeAddressType::kExternalDNS, "ExternalDNS"}}};
};

template <typename E>
requires std::is_enum_v<E>
[[nodiscard]] constexpr std::string_view to_string(E value) {
  for (const auto& [known, word] : Words<E>::kAll) {
    if (known == value) return word;
  }
  return "?";
}

template <typename E>
[[nodiscard]] constexpr std::optional<E> from_word(std::string_view word) {
  for (const auto& [known, spelled] : Words<E>::kAll) {
    if (spelled == word) return known;
  }
  return std::nullopt;
}

// A field that holds one of an enum's words. One kipvs does not know (an
// API newer than kipvs, a typo in a manifest) is kept as text, so the
// desired-state rules can say what they ignored; is() never matches it.
template <typename E>
struct Word {
  std::optional<E> known;
  std::string text;  // as given; "" when the field was unset

  Word() = default;
  Word(E value) : known(value), text(to_string(value)) {}  // NOLINT: a Word is its value
  [[nodiscard]] static Word parse(std::string_view word) {
    Word parsed;
    parsed.known = from_word<E>(word);
    parsed.text = word;
    return parsed;
  }
  [[nodiscard]] bool is(E value) const { return known == value; }
  friend bool operator==(const Word&, const Word&) = default;
  friend bool operator==(const Word& word, E value) { return word.is(value); }
};

struct ObjectMeta {
  std::string name;
  std::string namespace_;  // "namespace" is a keyword
  std::string uid;
  std::string resource_version;
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> annotations;
  bool being_deleted = false;  // metadata.deletionTimestamp is set

  friend bool operator==(const ObjectMeta&, const ObjectMeta&) = default;
};

struct ServicePort {
  std::string name;
  Protocol protocol = Protocol::kTcp;
  std::int32_t port = 0;
  std::int32_t node_port = 0;  // 0 when unset
  friend bool operator==(const ServicePort&, const ServicePort&) = default;
};

struct LoadBalancerIngress {
  std::string ip;
  std::string hostname;
  Word<IngressIpMode> ip_mode = IngressIpMode::kVip;  // unset is VIP
  friend bool operator==(const LoadBalancerIngress&, const LoadBalancerIngress&) = default;
};

struct Service {
  ObjectMeta meta;
  Word<ServiceType> type = ServiceType::kClusterIP;
  std::string cluster_ip;                // spec.clusterIP ("None" for headless)
  std::vector<std::string> cluster_ips;  // spec.clusterIPs (dual-stack)
  std::vector<std::string> ip_families;  // spec.ipFamilies
  std::vector<ServicePort> ports;
  std::vector<std::string> external_ips;
  std::vector<std::string> load_balancer_source_ranges;
  Word<SessionAffinity> session_affinity = SessionAffinity::kNone;
  std::optional<std::int32_t> affinity_timeout_seconds;  // sessionAffinityConfig.clientIP.timeoutSeconds
  Word<TrafficPolicy> external_traffic_policy = TrafficPolicy::kCluster;
  Word<TrafficPolicy> internal_traffic_policy = TrafficPolicy::kCluster;
  std::int32_t health_check_node_port = 0;
  std::optional<std::string> traffic_distribution;  // spec.trafficDistribution
  std::string external_name;
  std::vector<LoadBalancerIngress> load_balancer_ingress;  // status.loadBalancer.ingress

  friend bool operator==(const Service&, const Service&) = default;
};

struct EndpointConditions {
  std::optional<bool> ready;
  std::optional<bool> serving;
  std::optional<bool> terminating;
  friend bool operator==(const EndpointConditions&, const EndpointConditions&) = default;
};

struct EndpointHints {
  std::vector<std::string> for_zones;  // hints.forZones[].name
  std::vector<std::string> for_nodes;  // hints.forNodes[].name
  friend bool operator==(const EndpointHints&, const EndpointHints&) = default;
};

struct Endpoint {
  std::vector<std::string> addresses;
  EndpointConditions conditions;
  std::optional<std::string> node_name;
  std::optional<std::string> zone;
  std::optional<EndpointHints> hints;
  friend bool operator==(const Endpoint&, const Endpoint&) = default;
};

struct EndpointPort {
  std::optional<std::string> name;
  std::optional<Protocol> protocol;  // unset means TCP
  std::optional<std::int32_t> port;
  friend bool operator==(const EndpointPort&, const EndpointPort&) = default;
};

struct EndpointSlice {
  ObjectMeta meta;
  Word<AddressType> address_type;
  std::vector<Endpoint> endpoints;
  std::vector<EndpointPort> ports;
  friend bool operator==(const EndpointSlice&, const EndpointSlice&) = default;
};

struct NodeAddress {
  Word<NodeAddressType> type;
  std::string address;
  friend bool operator==(const NodeAddress&, const NodeAddress&) = default;
};

struct Taint {
  std::string key;
  std::string value;
  std::string effect;
  friend bool operator==(const Taint&, const Taint&) = default;
};

struct Node {
  ObjectMeta meta;
  std::vector<NodeAddress> addresses;
  std::vector<Taint> taints;
  friend bool operator==(const Node&, const Node&) = default;
};

// Where an object lives: namespace/name ("" namespace for cluster-scoped).
struct ObjectKey {
  std::string namespace_;
  std::string name;
  friend auto operator<=>(const ObjectKey&, const ObjectKey&) = default;
};

template <typename Object>
ObjectKey key_of(const Object& object) {
  return {object.meta.namespace_, object.meta.name};
}

}  // namespace kipvs::k8s
