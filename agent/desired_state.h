#pragma once
// Services + EndpointSlices + node facts -> the IPVS table kipvs wants, the
// addresses to bind on the dummy interface, and what each virtual service is
// for. Pure: value types in, value types out; no kernel, no clock, no I/O.
//
// The rules are kube-proxy's IPVS mode (pkg/proxy in kubernetes/kubernetes):
// skips as in serviceport.go/util, endpoint merging as endpointslicecache.go,
// endpoint choice as topology.go's CategorizeEndpoints, programming as the
// IPVS proxier's syncService/syncEndpoint. kipvs's own additions are the
// annotations below and the hash affinity mode.
//
// Annotations on a Service:
//   kipvs.io/scheduler        one of rr wrr lc wlc lblc lblcr dh sh sed nq mh fo ovf twos
//   kipvs.io/scheduler-flags  comma list of sh-fallback, sh-port, mh-fallback,
//                             mh-port, one-packet ("" = none); sh-* only with
//                             sh, mh-* only with mh; one-packet on UDP ports only
//   kipvs.io/affinity         hash | persistence: how ClientIP affinity is
//                             implemented for this Service (overrides the mode)
// An invalid value is ignored and reported as a Problem.

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "agent/node_facts.h"
#include "ipvs/model.h"
#include "ipvs/table.h"
#include "k8s/objects.h"
#include "k8s/sink.h"

namespace kipvs::agent {

inline constexpr std::string_view kServiceNameLabel = "kubernetes.io/service-name";
inline constexpr std::string_view kServiceProxyNameLabel = "service.kubernetes.io/service-proxy-name";
inline constexpr std::string_view kSchedulerAnnotation = "kipvs.io/scheduler";
inline constexpr std::string_view kSchedulerFlagsAnnotation = "kipvs.io/scheduler-flags";
inline constexpr std::string_view kAffinityAnnotation = "kipvs.io/affinity";
inline constexpr std::uint32_t kDefaultAffinityTimeout = 10800;  // seconds, the API's default
inline constexpr std::uint32_t kMaxAffinityTimeout = 86400;      // the API's limit

// Problem reasons (metric label values).
inline constexpr std::string_view kReasonInvalidIp = "invalid_ip";
inline constexpr std::string_view kReasonInvalidPort = "invalid_port";
inline constexpr std::string_view kReasonInvalidAffinity = "invalid_affinity";
inline constexpr std::string_view kReasonInvalidAffinityTimeout = "invalid_affinity_timeout";
inline constexpr std::string_view kReasonInvalidScheduler = "invalid_scheduler";
inline constexpr std::string_view kReasonInvalidSchedulerFlags = "invalid_scheduler_flags";
inline constexpr std::string_view kReasonNoServiceName = "no_service_name";
inline constexpr std::string_view kReasonInvalidAddressType = "invalid_address_type";
inline constexpr std::string_view kReasonDuplicateVirtualService = "duplicate_virtual_service";

// Something in an object that was skipped or ignored; never fatal. reason is a
// short metric label (kReason*), message a log line naming the object and
// field.
struct Problem {
  k8s::ResourceKind kind = k8s::ResourceKind::kService;
  k8s::ObjectKey object;
  std::string reason;
  std::string message;
  friend bool operator==(const Problem&, const Problem&) = default;
};

// Why a virtual service exists: for metric labels and log lines.
struct ServiceOrigin {
  enum class Kind : std::uint8_t { kClusterIp, kExternalIp, kLoadBalancer, kNodePort };
  k8s::ObjectKey service;
  std::string port_name;
  Kind kind = Kind::kClusterIp;
  // For the nftables table (agent/nft_state.h): externalTrafficPolicy Local
  // on an external kind (the client's source is kept, no masquerade);
  // loadBalancerSourceRanges (load-balancer kind only; empty: everyone); the
  // destinations that run on this node (hairpin masquerade).
  bool external_local = false;
  std::vector<Cidr> source_ranges{};
  // A load balancer's health-check node port (externalTrafficPolicy Local):
  // its probe of LB_IP:port must get through the virtual IP's port filter.
  std::uint16_t health_check_node_port = 0;
  std::vector<ipvs::DestinationKey> local_endpoints{};
  friend bool operator==(const ServiceOrigin&, const ServiceOrigin&) = default;
};

// A LoadBalancer Service with externalTrafficPolicy Local: its health-check
// node port answers with the number of ready endpoints on this node (distinct
// IPs, as kube-proxy counts them).
struct HealthCheck {
  std::uint16_t node_port = 0;
  std::uint32_t local_endpoints = 0;
  friend bool operator==(const HealthCheck&, const HealthCheck&) = default;
};

// A Service whose traffic policy is Local for a family while it has
// endpoints, none of them on this node: kube-proxy's
// kubeproxy_sync_proxy_rules_no_local_endpoints_total counts these.
struct NoLocalEndpoints {
  ipvs::Family family = ipvs::Family::kIPv4;
  bool internal = false;  // internalTrafficPolicy: Local
  friend auto operator<=>(const NoLocalEndpoints&, const NoLocalEndpoints&) = default;
};

struct DesiredState {
  ipvs::Table table;
  std::set<ipvs::Address> bound_addresses;            // cluster, external and LB IPs for the dummy interface
  std::map<ipvs::ServiceKey, ServiceOrigin> origins;  // one per table entry
  std::map<k8s::ObjectKey, HealthCheck> health_checks;
  std::set<std::pair<k8s::ObjectKey, NoLocalEndpoints>> no_local_endpoints;
  std::vector<Problem> problems;

  // Adds another state (another Service's part). A virtual service already
  // present keeps its first owner; the clash is reported as a Problem.
  void merge(DesiredState&& other);
};

using ServiceMap = std::map<k8s::ObjectKey, k8s::Service>;
using EndpointSliceMap = std::map<k8s::ObjectKey, k8s::EndpointSlice>;

// One Service's part of the desired state, from the slices that belong to it
// (labelled with its name, in its namespace; the caller groups them). For
// incremental syncs: recompute only the Services whose objects changed.
[[nodiscard]] DesiredState desired_for_service(const k8s::Service& service,
                                               const std::vector<const k8s::EndpointSlice*>& slices,
                                               const NodeFacts& facts);

// Which Service a slice belongs to: its namespace and kubernetes.io/service-name
// label; nullopt without the label.
[[nodiscard]] std::optional<k8s::ObjectKey> owning_service(const k8s::EndpointSlice& slice);

// The whole desired state. Slices without the service-name label are
// reported; slices of unknown Services are ignored.
[[nodiscard]] DesiredState compute_desired_state(const ServiceMap& services, const EndpointSliceMap& slices,
                                                 const NodeFacts& facts);

// Scheduler names and flags as the annotations and the configuration spell them.
[[nodiscard]] bool is_known_scheduler(std::string_view name);
// "sh-fallback,sh-port" -> flag bits; nullopt when a name is unknown.
[[nodiscard]] std::optional<std::uint32_t> parse_scheduler_flags(std::string_view text);
// The flags a node-wide scheduler gets when none are configured: mh hashes
// on the client's port too, as kube-proxy sets it on every service (without
// it one busy client lands on one endpoint).
[[nodiscard]] std::uint32_t default_scheduler_flags(std::string_view scheduler);
// Whether flags make sense with scheduler: sh-* bits only for sh, mh-* only
// for mh (the kernel shares the bits, so this is a name check).
[[nodiscard]] bool flags_fit_scheduler(std::string_view text, std::string_view scheduler);

// Whether kipvs may remove an observed virtual service that it no longer
// wants: it sits on an address kipvs binds (bound_addresses: what is on the
// dummy interface now, plus the desired set), or it is a node port (port in
// the node-port range) on a node-port address; never inside excludeCIDRs.
// Firewall-mark services are never kipvs's.
[[nodiscard]] bool owns_service(const ipvs::ServiceKey& key, const std::set<ipvs::Address>& bound_addresses,
                                const NodeFacts& facts);

}  // namespace kipvs::agent
