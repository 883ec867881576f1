#include "k8s/decode.h"

#include <map>
#include <string>

#include <boost/json.hpp>
#include <catch2/catch.hpp>

namespace kipvs::k8s {
namespace {

namespace json = boost::json;

// A dual-stack LoadBalancer Service as the API server returns it from a
// watch (kind/apiVersion set, managedFields and unknown fields present).
constexpr const char* kDualStackService = R"({
  "kind": "Service",
  "apiVersion": "v1",
  "metadata": {
    "name": "web",
    "namespace": "shop",
    "uid": "4c1c1a6e-7f0a-4c43-9b0e-1d2b3c4d5e6f",
    "resourceVersion": "81723",
    "creationTimestamp": "2024-05-01T10:00:00Z",
    "labels": {"app": "web", "tier": "front"},
    "annotations": {"kipvs.io/scheduler": "mh"},
    "managedFields": [{"manager": "kubectl", "operation": "Update",
                       "fieldsV1": {"f:spec": {"f:ports": {"k:{\"port\":80}": {".": {}}}}}}]
  },
  "spec": {
    "type": "LoadBalancer",
    "clusterIP": "10.96.12.34",
    "clusterIPs": ["10.96.12.34", "fd00:10:96::1234"],
    "ipFamilies": ["IPv4", "IPv6"],
    "ipFamilyPolicy": "PreferDualStack",
    "ports": [
      {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": 30080},
      {"name": "dns", "protocol": "UDP", "port": 53, "targetPort": "dns", "nodePort": 30053},
      {"port": 9000, "targetPort": 9000}
    ],
    "selector": {"app": "web"},
    "externalIPs": ["192.0.2.10"],
    "loadBalancerSourceRanges": ["198.51.100.0/24"],
    "sessionAffinity": "ClientIP",
    "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}},
    "externalTrafficPolicy": "Local",
    "internalTrafficPolicy": "Cluster",
    "healthCheckNodePort": 31234,
    "trafficDistribution": "PreferClose",
    "allocateLoadBalancerNodePorts": true
  },
  "status": {
    "loadBalancer": {
      "ingress": [
        {"ip": "203.0.113.7", "ipMode": "VIP"},
        {"ip": "203.0.113.8", "ipMode": "Proxy", "ports": [{"port": 80, "protocol": "TCP"}]},
        {"hostname": "lb.example.com"}
      ]
    },
    "conditions": []
  }
})";

constexpr const char* kEndpointSlice = R"({
  "kind": "EndpointSlice",
  "apiVersion": "discovery.k8s.io/v1",
  "metadata": {
    "name": "web-abc12",
    "namespace": "shop",
    "resourceVersion": "81800",
    "labels": {"kubernetes.io/service-name": "web", "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
    "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": "2024-05-01T10:00:01.123456789Z"},
    "ownerReferences": [{"kind": "Service", "name": "web"}]
  },
  "addressType": "IPv4",
  "endpoints": [
    {"addresses": ["10.244.1.17"],
     "conditions": {"ready": true, "serving": true, "terminating": false},
     "nodeName": "node-a", "zone": "zone-1",
     "targetRef": {"kind": "Pod", "name": "web-1"},
     "hints": {"forZones": [{"name": "zone-1"}], "forNodes": [{"name": "node-a"}]}},
    {"addresses": ["10.244.2.5"],
     "conditions": {"ready": false, "serving": true, "terminating": true},
     "nodeName": "node-b", "zone": "zone-2"},
    {"addresses": ["10.244.3.9"], "conditions": {}}
  ],
  "ports": [
    {"name": "http", "protocol": "TCP", "port": 8080, "appProtocol": "http"},
    {"name": "", "port": 9000}
  ]
})";

constexpr const char* kNode = R"({
  "kind": "Node",
  "apiVersion": "v1",
  "metadata": {
    "name": "node-a",
    "uid": "0b8e9f3a",
    "resourceVersion": "500",
    "labels": {"topology.kubernetes.io/zone": "zone-1", "kubernetes.io/hostname": "node-a"}
  },
  "spec": {
    "podCIDR": "10.244.1.0/24",
    "taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule", "timeAdded": "2024-05-01T10:00:00Z"},
               {"key": "dedicated", "value": "lb", "effect": "NoExecute"}]
  },
  "status": {
    "addresses": [{"type": "InternalIP", "address": "192.168.1.10"},
                  {"type": "InternalIP", "address": "fd00::10"},
                  {"type": "Hostname", "address": "node-a"}],
    "capacity": {"cpu": "2"}
  }
})";

TEST_CASE("decode_service reads a dual-stack LoadBalancer Service", "[k8s][decode]") {
  auto decoded = decode_service(json::parse(kDualStackService));
  REQUIRE(decoded.has_value());
  const Service& s = *decoded;
  CHECK(s.meta.name == "web");
  CHECK(s.meta.namespace_ == "shop");
  CHECK(s.meta.uid == "4c1c1a6e-7f0a-4c43-9b0e-1d2b3c4d5e6f");
  CHECK(s.meta.resource_version == "81723");
  CHECK(s.meta.labels == std::map<std::string, std::string>{{"app", "web"}, {"tier", "front"}});
  CHECK(s.meta.annotations.at("kipvs.io/scheduler") == "mh");
  CHECK_FALSE(s.meta.being_deleted);
  CHECK(s.type == ServiceType::kLoadBalancer);
  CHECK(s.cluster_ip == "10.96.12.34");
  CHECK(s.cluster_ips == std::vector<std::string>{"10.96.12.34", "fd00:10:96::1234"});
  CHECK(s.ip_families == std::vector<std::string>{"IPv4", "IPv6"});
  REQUIRE(s.ports.size() == 3);
  CHECK(s.ports[0] == ServicePort{"http", Protocol::kTcp, 80, 30080});
  CHECK(s.ports[1] == ServicePort{"dns", Protocol::kUdp, 53, 30053});
  CHECK(s.ports[2] == ServicePort{"", Protocol::kTcp, 9000, 0});  // protocol defaults to TCP
  CHECK(s.external_ips == std::vector<std::string>{"192.0.2.10"});
  CHECK(s.load_balancer_source_ranges == std::vector<std::string>{"198.51.100.0/24"});
  CHECK(s.session_affinity == SessionAffinity::kClientIP);
  CHECK(s.affinity_timeout_seconds == 600);
  CHECK(s.external_traffic_policy == TrafficPolicy::kLocal);
  CHECK(s.internal_traffic_policy == TrafficPolicy::kCluster);
  CHECK(s.health_check_node_port == 31234);
  CHECK(s.traffic_distribution == "PreferClose");
  REQUIRE(s.load_balancer_ingress.size() == 3);
  CHECK(s.load_balancer_ingress[0] == LoadBalancerIngress{"203.0.113.7", "", IngressIpMode::kVip});
  CHECK(s.load_balancer_ingress[1] == LoadBalancerIngress{"203.0.113.8", "", IngressIpMode::kProxy});
  // Unset is the API's default, VIP.
  CHECK(s.load_balancer_ingress[2] == LoadBalancerIngress{"", "lb.example.com", IngressIpMode::kVip});
}

TEST_CASE("decode_service applies the API defaults to a minimal list item", "[k8s][decode]") {
  // List items carry no kind/apiVersion; nulls count as absent.
  auto decoded = decode_service(json::parse(R"({
    "metadata": {"name": "db", "namespace": "default", "labels": null, "deletionTimestamp": "2024-05-01T10:00:00Z"},
    "spec": {"clusterIP": "None", "clusterIPs": null, "ports": [{"port": 5432}], "sessionAffinityConfig": null},
    "status": {}
  })"));
  REQUIRE(decoded.has_value());
  CHECK(decoded->meta.being_deleted);
  CHECK(decoded->meta.labels.empty());
  CHECK(decoded->type == ServiceType::kClusterIP);
  CHECK(decoded->cluster_ip == "None");
  CHECK(decoded->cluster_ips.empty());
  CHECK(decoded->session_affinity == SessionAffinity::kNone);
  CHECK_FALSE(decoded->affinity_timeout_seconds.has_value());
  CHECK_FALSE(decoded->traffic_distribution.has_value());
  CHECK(decoded->ports == std::vector<ServicePort>{{"", Protocol::kTcp, 5432, 0}});
}

TEST_CASE("kubectl's last-applied-configuration annotation is not kept", "[k8s][decode]") {
  // A copy of the whole object on every `kubectl apply`d Service and slice.
  auto decoded = decode_service(json::parse(R"({
    "metadata": {"name": "web", "namespace": "default", "annotations": {
      "kubectl.kubernetes.io/last-applied-configuration": "{\"apiVersion\":\"v1\",\"kind\":\"Service\"}",
      "kipvs.io/scheduler": "wlc"}},
    "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}
  })"));
  REQUIRE(decoded.has_value());
  CHECK(decoded->meta.annotations == std::map<std::string, std::string>{{"kipvs.io/scheduler", "wlc"}});
}

TEST_CASE("decode_service keeps an ExternalName Service and IPs as given", "[k8s][decode]") {
  auto decoded = decode_service(json::parse(R"({
    "metadata": {"name": "ext", "namespace": "default"},
    "spec": {"type": "ExternalName", "externalName": "db.example.com", "externalIPs": ["not-an-ip"]}
  })"));
  REQUIRE(decoded.has_value());
  CHECK(decoded->type == ServiceType::kExternalName);
  CHECK(decoded->external_name == "db.example.com");
  // IP syntax is the desired-state layer's business (it counts what it skips).
  CHECK(decoded->external_ips == std::vector<std::string>{"not-an-ip"});
}

TEST_CASE("decode_endpoint_slice reads conditions, hints and ports", "[k8s][decode]") {
  auto decoded = decode_endpoint_slice(json::parse(kEndpointSlice));
  REQUIRE(decoded.has_value());
  const EndpointSlice& slice = *decoded;
  CHECK(slice.meta.name == "web-abc12");
  CHECK(slice.meta.labels.at("kubernetes.io/service-name") == "web");
  CHECK(slice.meta.annotations.at("endpoints.kubernetes.io/last-change-trigger-time") ==
        "2024-05-01T10:00:01.123456789Z");
  CHECK(slice.address_type == AddressType::kIPv4);
  REQUIRE(slice.endpoints.size() == 3);

  const Endpoint& a = slice.endpoints[0];
  CHECK(a.addresses == std::vector<std::string>{"10.244.1.17"});
  CHECK(a.conditions == EndpointConditions{true, true, false});
  CHECK(a.node_name == "node-a");
  CHECK(a.zone == "zone-1");
  REQUIRE(a.hints.has_value());
  CHECK(a.hints->for_zones == std::vector<std::string>{"zone-1"});
  CHECK(a.hints->for_nodes == std::vector<std::string>{"node-a"});

  const Endpoint& b = slice.endpoints[1];
  CHECK(b.conditions == EndpointConditions{false, true, true});
  CHECK_FALSE(b.hints.has_value());

  // Missing conditions stay unset: "unset" means ready to the proxy, which
  // must be able to tell it from false.
  const Endpoint& c = slice.endpoints[2];
  CHECK(c.conditions == EndpointConditions{});
  CHECK_FALSE(c.node_name.has_value());
  CHECK_FALSE(c.zone.has_value());

  REQUIRE(slice.ports.size() == 2);
  CHECK(slice.ports[0] == EndpointPort{"http", Protocol::kTcp, 8080});
  CHECK(slice.ports[1] == EndpointPort{"", std::nullopt, 9000});
}

TEST_CASE("decode_endpoint_slice keeps a port without a number or with port 0", "[k8s][decode]") {
  // kube-proxy skips such a port, not the slice.
  auto decoded = decode_endpoint_slice(json::parse(R"({
    "metadata": {"name": "s", "namespace": "ns"},
    "addressType": "IPv6",
    "endpoints": null,
    "ports": [{"name": "any"}, {"name": "zero", "port": 0}]
  })"));
  REQUIRE(decoded.has_value());
  CHECK(decoded->endpoints.empty());
  REQUIRE(decoded->ports.size() == 2);
  CHECK_FALSE(decoded->ports[0].port.has_value());
  CHECK(decoded->ports[1].port == 0);
}

TEST_CASE("decode_node reads addresses, taints and labels", "[k8s][decode]") {
  auto decoded = decode_node(json::parse(kNode));
  REQUIRE(decoded.has_value());
  CHECK(decoded->meta.name == "node-a");
  CHECK(decoded->meta.namespace_.empty());
  CHECK(decoded->meta.labels.at("topology.kubernetes.io/zone") == "zone-1");
  CHECK(decoded->addresses == std::vector<NodeAddress>{{NodeAddressType::kInternalIP, "192.168.1.10"},
                                                       {NodeAddressType::kInternalIP, "fd00::10"},
                                                       {NodeAddressType::kHostname, "node-a"}});
  CHECK(decoded->taints == std::vector<Taint>{{"node.kubernetes.io/unschedulable", "", "NoSchedule"},
                                              {"dedicated", "lb", "NoExecute"}});
}

TEST_CASE("decode_object picks the decoder by kind", "[k8s][decode]") {
  auto service = decode_object(json::parse(kDualStackService));
  REQUIRE(service.has_value());
  CHECK(kind_of(*service) == ResourceKind::kService);
  CHECK(key_of(*service) == ObjectKey{"shop", "web"});

  auto slice = decode_object(json::parse(kEndpointSlice));
  REQUIRE(slice.has_value());
  CHECK(kind_of(*slice) == ResourceKind::kEndpointSlice);
  CHECK(std::get<EndpointSlice>(*slice).endpoints.size() == 3);

  auto node = decode_object(json::parse(kNode));
  REQUIRE(node.has_value());
  CHECK(kind_of(*node) == ResourceKind::kNode);
  CHECK(key_of(*node) == ObjectKey{"", "node-a"});
}

struct ErrorCase {
  const char* what;
  const char* json;
  const char* object;
  std::string_view reason;
  const char* message_part;  // the field path (and more) the message must name
};

// Service documents, each with one thing wrong.
TEST_CASE("decode_service refuses values that would mislead the proxy", "[k8s][decode]") {
  const ErrorCase c = GENERATE(values<ErrorCase>({
      {"port too large",
       R"({"metadata":{"name":"a","namespace":"n"},"spec":{"ports":[{"port":80},{"port":65536}]}})", "n/a",
       kReasonBadPort, "spec.ports[1].port: expected an integer in 1..65535, got 65536"},
      {"port zero", R"({"metadata":{"name":"a","namespace":"n"},"spec":{"ports":[{"port":0}]}})", "n/a",
       kReasonBadPort, "spec.ports[0].port"},
      {"negative port", R"({"metadata":{"name":"a","namespace":"n"},"spec":{"ports":[{"port":-80}]}})", "n/a",
       kReasonBadPort, "got -80"},
      {"string port", R"({"metadata":{"name":"a","namespace":"n"},"spec":{"ports":[{"port":"80"}]}})", "n/a",
       kReasonBadPort, "spec.ports[0].port: expected an integer in 1..65535, got \"80\""},
      {"fractional port", R"({"metadata":{"name":"a","namespace":"n"},"spec":{"ports":[{"port":80.5}]}})",
       "n/a", kReasonBadPort, "spec.ports[0].port"},
      {"huge port",
       R"({"metadata":{"name":"a","namespace":"n"},"spec":{"ports":[{"port":18446744073709551615}]}})", "n/a",
       kReasonBadPort, "spec.ports[0].port"},
      {"missing port", R"({"metadata":{"name":"a","namespace":"n"},"spec":{"ports":[{"name":"http"}]}})",
       "n/a", kReasonBadPort, "spec.ports[0].port: a service port needs a port number"},
      {"bad nodePort",
       R"({"metadata":{"name":"a","namespace":"n"},"spec":{"ports":[{"port":80,"nodePort":70000}]}})", "n/a",
       kReasonBadPort, "spec.ports[0].nodePort"},
      {"bad healthCheckNodePort",
       R"({"metadata":{"name":"a","namespace":"n"},"spec":{"healthCheckNodePort":true}})", "n/a",
       kReasonBadPort, "spec.healthCheckNodePort"},
      {"unknown protocol",
       R"({"metadata":{"name":"a","namespace":"n"},"spec":{"ports":[{"port":80,"protocol":"tcp"}]}})", "n/a",
       kReasonBadProtocol, "spec.ports[0].protocol: expected TCP, UDP or SCTP, got \"tcp\""},
      {"negative timeout",
       R"({"metadata":{"name":"a","namespace":"n"},"spec":{"sessionAffinity":"ClientIP","sessionAffinityConfig":{"clientIP":{"timeoutSeconds":-1}}}})",
       "n/a", kReasonBadTimeout, "spec.sessionAffinityConfig.clientIP.timeoutSeconds"},
      {"timeout above a day",
       R"({"metadata":{"name":"a","namespace":"n"},"spec":{"sessionAffinityConfig":{"clientIP":{"timeoutSeconds":86401}}}})",
       "n/a", kReasonBadTimeout, "timeoutSeconds"},
      {"string timeout",
       R"({"metadata":{"name":"a","namespace":"n"},"spec":{"sessionAffinityConfig":{"clientIP":{"timeoutSeconds":"10"}}}})",
       "n/a", kReasonBadTimeout, "timeoutSeconds"},
      {"ports not an array", R"({"metadata":{"name":"a","namespace":"n"},"spec":{"ports":{"port":80}}})",
       "n/a", kReasonBadType, "spec.ports: expected an array, got an object"},
      {"port entry not an object", R"({"metadata":{"name":"a","namespace":"n"},"spec":{"ports":[80]}})",
       "n/a", kReasonBadType, "spec.ports[0]: expected an object"},
      {"spec not an object", R"({"metadata":{"name":"a","namespace":"n"},"spec":"x"})", "n/a", kReasonBadType,
       "spec: expected an object, got a string"},
      {"clusterIPs not strings",
       R"({"metadata":{"name":"a","namespace":"n"},"spec":{"clusterIPs":["10.0.0.1",7]}})", "n/a",
       kReasonBadType, "spec.clusterIPs[1]: expected a string, got 7"},
      {"clusterIP a number", R"({"metadata":{"name":"a","namespace":"n"},"spec":{"clusterIP":10}})", "n/a",
       kReasonBadType, "spec.clusterIP: expected a string"},
      {"label value a number", R"({"metadata":{"name":"a","namespace":"n","labels":{"version":1}}})", "n/a",
       kReasonBadType, "metadata.labels.version: expected a string, got 1"},
      {"ingress not an array",
       R"({"metadata":{"name":"a","namespace":"n"},"status":{"loadBalancer":{"ingress":"1.2.3.4"}}})", "n/a",
       kReasonBadType, "status.loadBalancer.ingress"},
      {"missing name", R"({"metadata":{"namespace":"n"},"spec":{}})", "?", kReasonMissingName,
       "metadata.name"},
      {"no metadata", R"({"spec":{}})", "?", kReasonMissingName, "metadata.name"},
      {"name a number", R"({"metadata":{"name":5}})", "?", kReasonBadType,
       "metadata.name: expected a string"},
      {"wrong kind", R"({"kind":"Node","apiVersion":"v1","metadata":{"name":"a"}})", "a", kReasonWrongKind,
       "kind: expected Service"},
      {"wrong apiVersion", R"({"kind":"Service","apiVersion":"v2","metadata":{"name":"a","namespace":"n"}})",
       "n/a", kReasonWrongKind, "apiVersion"},
      {"not an object", R"([1,2])", "?", kReasonBadType, "expected a JSON object, got an array"},
  }));
  INFO(c.what);
  auto decoded = decode_service(json::parse(c.json));
  REQUIRE_FALSE(decoded.has_value());
  CHECK(decoded.error().object == c.object);
  CHECK(decoded.error().reason == c.reason);
  CHECK_THAT(decoded.error().message, Catch::Contains(c.message_part));
}

TEST_CASE("decode_endpoint_slice refuses malformed slices", "[k8s][decode]") {
  const ErrorCase c = GENERATE(values<ErrorCase>({
      {"port too large", R"({"metadata":{"name":"s","namespace":"n"},"ports":[{"port":70000}]})", "n/s",
       kReasonBadPort, "ports[0].port: expected an integer in 0..65535"},
      {"negative port", R"({"metadata":{"name":"s","namespace":"n"},"ports":[{"port":-1}]})", "n/s",
       kReasonBadPort, "ports[0].port"},
      {"string port", R"({"metadata":{"name":"s","namespace":"n"},"ports":[{"port":"http"}]})", "n/s",
       kReasonBadPort, "ports[0].port"},
      {"unknown protocol",
       R"({"metadata":{"name":"s","namespace":"n"},"ports":[{"port":80,"protocol":"ICMP"}]})", "n/s",
       kReasonBadProtocol, "ports[0].protocol"},
      {"ready a string",
       R"({"metadata":{"name":"s","namespace":"n"},"endpoints":[{"addresses":["10.0.0.1"]},{"addresses":["10.0.0.2"],"conditions":{"ready":"true"}}]})",
       "n/s", kReasonBadType, "endpoints[1].conditions.ready: expected a boolean, got \"true\""},
      {"addresses a string",
       R"({"metadata":{"name":"s","namespace":"n"},"endpoints":[{"addresses":"10.0.0.1"}]})", "n/s",
       kReasonBadType, "endpoints[0].addresses: expected an array"},
      {"endpoints an object", R"({"metadata":{"name":"s","namespace":"n"},"endpoints":{}})", "n/s",
       kReasonBadType, "endpoints: expected an array"},
      {"hint not an object",
       R"({"metadata":{"name":"s","namespace":"n"},"endpoints":[{"addresses":["10.0.0.1"],"hints":{"forZones":["zone-1"]}}]})",
       "n/s", kReasonBadType, "endpoints[0].hints.forZones[0]: expected an object"},
      {"v1beta1",
       R"({"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1beta1","metadata":{"name":"s","namespace":"n"}})",
       "n/s", kReasonWrongKind, "apiVersion: expected discovery.k8s.io/v1"},
  }));
  INFO(c.what);
  auto decoded = decode_endpoint_slice(json::parse(c.json));
  REQUIRE_FALSE(decoded.has_value());
  CHECK(decoded.error().object == c.object);
  CHECK(decoded.error().reason == c.reason);
  CHECK_THAT(decoded.error().message, Catch::Contains(c.message_part));
}

TEST_CASE("decode_node refuses malformed nodes", "[k8s][decode]") {
  const ErrorCase c = GENERATE(values<ErrorCase>({
      {"addresses an object", R"({"metadata":{"name":"n1"},"status":{"addresses":{"type":"InternalIP"}}})",
       "n1", kReasonBadType, "status.addresses: expected an array"},
      {"address a number",
       R"({"metadata":{"name":"n1"},"status":{"addresses":[{"type":"InternalIP","address":1}]}})", "n1",
       kReasonBadType, "status.addresses[0].address"},
      {"taints not an array", R"({"metadata":{"name":"n1"},"spec":{"taints":"x"}})", "n1", kReasonBadType,
       "spec.taints"},
  }));
  INFO(c.what);
  auto decoded = decode_node(json::parse(c.json));
  REQUIRE_FALSE(decoded.has_value());
  CHECK(decoded.error().object == c.object);
  CHECK(decoded.error().reason == c.reason);
  CHECK_THAT(decoded.error().message, Catch::Contains(c.message_part));
}

TEST_CASE("decode_object refuses kinds kipvs does not read", "[k8s][decode]") {
  auto deployment =
      decode_object(json::parse(R"({"kind":"Deployment","metadata":{"name":"d","namespace":"n"}})"));
  REQUIRE_FALSE(deployment.has_value());
  CHECK(deployment.error().reason == kReasonUnknownKind);
  CHECK(deployment.error().object == "n/d");
  CHECK_THAT(deployment.error().message, Catch::Contains("Deployment"));

  auto no_kind = decode_object(json::parse(R"({"metadata":{"name":"d"}})"));
  REQUIRE_FALSE(no_kind.has_value());
  CHECK(no_kind.error().reason == kReasonUnknownKind);
  CHECK_THAT(no_kind.error().message, Catch::Contains("kind: missing"));

  auto bad_field = decode_object(
      json::parse(R"({"kind":"Service","metadata":{"name":"a"},"spec":{"ports":[{"port":0}]}})"));
  REQUIRE_FALSE(bad_field.has_value());
  CHECK(bad_field.error().reason == kReasonBadPort);
}

TEST_CASE("to_string names object, path and reason", "[k8s][decode]") {
  auto decoded = decode_service(
      json::parse(R"({"metadata":{"name":"a","namespace":"n"},"spec":{"ports":[{"port":0}]}})"));
  REQUIRE_FALSE(decoded.has_value());
  CHECK(to_string(decoded.error()) ==
        "n/a: spec.ports[0].port: expected an integer in 1..65535, got 0 (bad_port)");
}

TEST_CASE("decode_status reads a watch ERROR event's Status", "[k8s][decode]") {
  auto status = decode_status(json::parse(R"js({
    "kind": "Status", "apiVersion": "v1", "metadata": {},
    "status": "Failure",
    "message": "too old resource version: 1 (81723)",
    "reason": "Expired",
    "code": 410
  })js"));
  REQUIRE(status.has_value());
  CHECK(*status == Status{"Failure", 410, "Expired", "too old resource version: 1 (81723)"});

  auto bad = decode_status(json::parse(R"({"code":"410"})"));
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().reason == kReasonBadType);

  auto empty = decode_status(json::parse("{}"));
  REQUIRE(empty.has_value());
  CHECK(empty->code == 0);
}

TEST_CASE("decode_list_meta reads resourceVersion and continue", "[k8s][decode]") {
  auto list = decode_list_meta(json::parse(R"({
    "kind": "ServiceList", "apiVersion": "v1",
    "metadata": {"resourceVersion": "90210", "continue": "eyJ2IjoibWV0YS5rOHMuaW8vdjEifQ", "remainingItemCount": 12},
    "items": []
  })"));
  REQUIRE(list.has_value());
  CHECK(list->resource_version == "90210");
  CHECK(list->continue_token == "eyJ2IjoibWV0YS5rOHMuaW8vdjEifQ");
  CHECK(list->remaining_item_count == 12);

  auto last_page = decode_list_meta(json::parse(R"({"metadata": {"resourceVersion": "7"}, "items": []})"));
  REQUIRE(last_page.has_value());
  CHECK(last_page->continue_token.empty());
  CHECK_FALSE(last_page->remaining_item_count.has_value());

  auto bad = decode_list_meta(json::parse(R"({"metadata": []})"));
  REQUIRE_FALSE(bad.has_value());
  CHECK_THAT(bad.error().message, Catch::Contains("metadata: expected an object"));
}

TEST_CASE("resource_version_of reads a BOOKMARK's object leniently", "[k8s][decode]") {
  CHECK(resource_version_of(json::parse(R"({"kind":"Service","metadata":{"resourceVersion":"12345"}})")) ==
        "12345");
  CHECK_FALSE(resource_version_of(json::parse(R"({"metadata":{}})")).has_value());
  CHECK_FALSE(resource_version_of(json::parse(R"({"metadata":{"resourceVersion":5}})")).has_value());
  CHECK_FALSE(resource_version_of(json::parse("[]")).has_value());
}

}  // namespace
}  // namespace kipvs::k8s
