#pragma once
// The parts of Kubernetes API objects that kipvs reads: Services,
// EndpointSlices (discovery.k8s.io/v1) and Nodes. Decoded from JSON (API) or
// YAML/JSON files (static manifests) into these plain values; fields kipvs
// does not use are dropped. Optional fields stay optional so the desired-state
// rules can tell "unset" from "false".

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace kipvs::k8s {

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
  std::string protocol = "TCP";  // TCP, UDP, SCTP
  std::int32_t port = 0;
  std::int32_t node_port = 0;  // 0 when unset
  friend bool operator==(const ServicePort&, const ServicePort&) = default;
};

struct LoadBalancerIngress {
  std::string ip;
  std::string hostname;
  std::optional<std::string> ip_mode;  // "VIP" or "Proxy"
  friend bool operator==(const LoadBalancerIngress&, const LoadBalancerIngress&) = default;
};

struct Service {
  ObjectMeta meta;
  std::string type = "ClusterIP";        // ClusterIP, NodePort, LoadBalancer, ExternalName
  std::string cluster_ip;                // spec.clusterIP ("None" for headless)
  std::vector<std::string> cluster_ips;  // spec.clusterIPs (dual-stack)
  std::vector<std::string> ip_families;  // spec.ipFamilies
  std::vector<ServicePort> ports;
  std::vector<std::string> external_ips;
  std::vector<std::string> load_balancer_source_ranges;
  std::string session_affinity = "None";                 // None, ClientIP
  std::optional<std::int32_t> affinity_timeout_seconds;  // sessionAffinityConfig.clientIP.timeoutSeconds
  std::string external_traffic_policy;                   // Cluster, Local ("" = Cluster)
  std::string internal_traffic_policy;                   // Cluster, Local ("" = Cluster)
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
  std::optional<std::string> protocol;  // unset means TCP
  std::optional<std::int32_t> port;
  friend bool operator==(const EndpointPort&, const EndpointPort&) = default;
};

struct EndpointSlice {
  ObjectMeta meta;
  std::string address_type;  // IPv4, IPv6, FQDN
  std::vector<Endpoint> endpoints;
  std::vector<EndpointPort> ports;
  friend bool operator==(const EndpointSlice&, const EndpointSlice&) = default;
};

struct NodeAddress {
  std::string type;  // InternalIP, ExternalIP, Hostname, ...
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
