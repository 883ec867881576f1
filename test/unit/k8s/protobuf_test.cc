// The protobuf decoders against the JSON ones: the same object in both
// encodings decodes to the same value, and what one refuses the other
// refuses for the same reason at the same field path.
#include "k8s/protobuf.h"

#include <string>

#include <boost/json/parse.hpp>
#include <catch2/catch.hpp>

#include "k8s/decode.h"
#include "protobuf_encode.h"

namespace kipvs::k8s {
namespace {

using test::Pb;
using test::pb_meta;

Service json_service(const std::string& text) {
  auto decoded = decode_service(boost::json::parse(text));
  INFO((decoded ? "" : to_string(decoded.error())));
  REQUIRE(decoded.has_value());
  return *decoded;
}

EndpointSlice json_slice(const std::string& text) {
  auto decoded = decode_endpoint_slice(boost::json::parse(text));
  INFO((decoded ? "" : to_string(decoded.error())));
  REQUIRE(decoded.has_value());
  return *decoded;
}

template <typename T>
T decoded_or_fail(std::expected<T, DecodeError> decoded) {
  INFO((decoded ? "" : to_string(decoded.error())));
  REQUIRE(decoded.has_value());
  return std::move(*decoded);
}

TEST_CASE("protobuf: a Service decodes to what its JSON decodes to") {
  const Pb meta = pb_meta("shop", "web", "77")
                      .string(5, "uid-1")
                      .message(9, Pb().integer(1, 1700000000))  // deletionTimestamp
                      .message(11, Pb().string(1, "app").string(2, "web"))
                      .message(12, Pb().string(1, "note").string(2, "kept"))
                      .message(12, Pb().string(1, "kubectl.kubernetes.io/last-applied-configuration")
                                       .string(2, "{\"huge\": true}"))
                      .message(17, Pb().string(1, "kubectl"));  // managedFields: skipped
  const Pb spec = Pb().message(1, Pb().string(1, "http")
                                      .string(2, "UDP")
                                      .integer(3, 53)
                                      .message(4, Pb().integer(1, 0).integer(2, 5353))  // targetPort
                                      .integer(5, 30053))
                      .message(1, Pb().string(2, "").integer(3, 80).integer(5, 0))  // Go's "" protocol: TCP
                      .message(2, Pb().string(1, "app").string(2, "web"))           // selector: not read
                      .string(3, "10.96.0.10")
                      .string(18, "10.96.0.10")
                      .string(18, "fd00::10")
                      .string(4, "LoadBalancer")
                      .string(5, "192.0.2.1")
                      .string(7, "ClientIP")
                      .string(9, "10.0.0.0/8")
                      .string(11, "Local")
                      .integer(12, 31000)
                      .message(14, Pb().message(1, Pb().integer(1, 600)))
                      .string(19, "IPv4")
                      .string(19, "IPv6")
                      .string(17, "PreferDualStack")
                      .string(22, "Local")
                      .string(23, "PreferClose")
                      .fixed32(99)
                      .fixed64(98);
  const Pb status = Pb().message(1, Pb().message(1, Pb().string(1, "198.51.100.7").string(3, "Proxy"))
                                        .message(1, Pb().string(2, "lb.example.com")));
  const Pb service = Pb().message(1, meta).message(2, spec).message(3, status);

  const Service json = json_service(R"({
    "metadata": {"name": "web", "namespace": "shop", "uid": "uid-1", "resourceVersion": "77",
                 "deletionTimestamp": "2023-11-14T22:13:20Z",
                 "labels": {"app": "web"}, "annotations": {"note": "kept"}},
    "spec": {"ports": [{"name": "http", "protocol": "UDP", "port": 53, "targetPort": 5353, "nodePort": 30053},
                       {"port": 80}],
             "selector": {"app": "web"},
             "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10", "fd00::10"], "type": "LoadBalancer",
             "externalIPs": ["192.0.2.1"], "sessionAffinity": "ClientIP",
             "loadBalancerSourceRanges": ["10.0.0.0/8"], "externalTrafficPolicy": "Local",
             "healthCheckNodePort": 31000, "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}},
             "ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "PreferDualStack",
             "internalTrafficPolicy": "Local", "trafficDistribution": "PreferClose"},
    "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.7", "ipMode": "Proxy"},
                                            {"hostname": "lb.example.com"}]}}})");

  const Service decoded = decoded_or_fail(decode_service_protobuf(service.bytes()));
  CHECK(decoded == json);
  // Spelled out, so a JSON decoder that dropped a field cannot hide it here.
  CHECK(decoded.meta.being_deleted);
  CHECK(decoded.meta.annotations == std::map<std::string, std::string>{{"note", "kept"}});
  REQUIRE(decoded.ports.size() == 2);
  CHECK(decoded.ports[0].protocol == Protocol::kUdp);
  CHECK(decoded.ports[0].node_port == 30053);
  CHECK(decoded.ports[1].protocol == Protocol::kTcp);
  CHECK(decoded.type == ServiceType::kLoadBalancer);
  CHECK(decoded.affinity_timeout_seconds == 600);
  CHECK(decoded.cluster_ips == std::vector<std::string>{"10.96.0.10", "fd00::10"});
  CHECK(decoded.traffic_distribution == "PreferClose");
  REQUIRE(decoded.load_balancer_ingress.size() == 2);
  CHECK(decoded.load_balancer_ingress[0].ip_mode == IngressIpMode::kProxy);
  CHECK(decoded.load_balancer_ingress[1].ip_mode == IngressIpMode::kVip);
}

TEST_CASE("protobuf: a Service with only what the API always writes takes the defaults") {
  // Go writes its non-pointer fields even when empty.
  const Pb spec = Pb().message(1, Pb().string(1, "").string(2, "TCP").integer(3, 443).integer(5, 0))
                      .string(3, "10.96.0.1")
                      .string(4, "")
                      .string(7, "")
                      .string(10, "")
                      .string(11, "")
                      .integer(12, 0);
  const Service decoded = decoded_or_fail(
      decode_service_protobuf(Pb().message(1, pb_meta("default", "kubernetes")).message(2, spec).bytes()));
  const Service json = json_service(
      R"({"metadata": {"name": "kubernetes", "namespace": "default", "resourceVersion": "1"},
          "spec": {"ports": [{"protocol": "TCP", "port": 443}], "clusterIP": "10.96.0.1"}})");
  CHECK(decoded == json);
  CHECK(decoded.type == ServiceType::kClusterIP);
  CHECK(decoded.session_affinity == SessionAffinity::kNone);
  CHECK_FALSE(decoded.traffic_distribution.has_value());
  CHECK_FALSE(decoded.affinity_timeout_seconds.has_value());
}

TEST_CASE("protobuf: an EndpointSlice decodes to what its JSON decodes to") {
  const Pb ready =
      Pb().string(1, "fd00::1")
          .message(2, Pb().integer(1, 1).integer(2, 0))
          .string(3, "pod-a")                                    // hostname: not read
          .message(4, Pb().string(1, "Pod").string(2, "pod-a"))  // targetRef: not read
          .string(6, "node-1")
          .string(7, "zone-a")
          .message(8, Pb().message(1, Pb().string(1, "zone-a")).message(2, Pb().string(1, "node-1")));
  const Pb bare = Pb().string(1, "fd00::2").string(1, "fd00::3").message(8, Pb());
  const Pb slice =
      Pb().message(1, pb_meta("shop", "web-abc")
                          .message(11, Pb().string(1, "kubernetes.io/service-name").string(2, "web")))
          .string(4, "IPv6")
          .message(2, ready)
          .message(2, bare)
          .message(3, Pb().string(1, "http").string(2, "TCP").integer(3, 8080).string(4, "h2c"))
          .message(3, Pb().string(1, "").integer(3, 0))
          .message(3, Pb());

  const EndpointSlice json = json_slice(R"({
    "metadata": {"name": "web-abc", "namespace": "shop", "resourceVersion": "1",
                 "labels": {"kubernetes.io/service-name": "web"}},
    "addressType": "IPv6",
    "endpoints": [
      {"addresses": ["fd00::1"], "conditions": {"ready": true, "serving": false}, "hostname": "pod-a",
       "targetRef": {"kind": "Pod", "name": "pod-a"}, "nodeName": "node-1", "zone": "zone-a",
       "hints": {"forZones": [{"name": "zone-a"}], "forNodes": [{"name": "node-1"}]}},
      {"addresses": ["fd00::2", "fd00::3"], "hints": {}}],
    "ports": [{"name": "http", "protocol": "TCP", "port": 8080, "appProtocol": "h2c"},
              {"name": "", "port": 0}, {}]})");

  const EndpointSlice decoded = decoded_or_fail(decode_endpoint_slice_protobuf(slice.bytes()));
  CHECK(decoded == json);
  REQUIRE(decoded.endpoints.size() == 2);
  CHECK(decoded.endpoints[0].conditions.ready == true);
  CHECK(decoded.endpoints[0].conditions.serving == false);
  CHECK_FALSE(decoded.endpoints[0].conditions.terminating.has_value());
  CHECK(decoded.endpoints[0].hints->for_nodes == std::vector<std::string>{"node-1"});
  CHECK(decoded.endpoints[1].hints.has_value());
  CHECK(decoded.endpoints[1].hints->for_zones.empty());
  REQUIRE(decoded.ports.size() == 3);
  CHECK(decoded.ports[1].name == "");
  CHECK(decoded.ports[1].port == 0);
  CHECK_FALSE(decoded.ports[2].port.has_value());
  CHECK_FALSE(decoded.ports[2].protocol.has_value());
}

struct Refusal {
  std::string object;
  std::string reason;
  std::string message;
};

Refusal refusal_of(std::expected<Service, DecodeError> decoded) {
  REQUIRE_FALSE(decoded.has_value());
  return {decoded.error().object, decoded.error().reason, decoded.error().message};
}

TEST_CASE("protobuf: what the JSON decoder refuses is refused for the same reason at the same path") {
  const auto service_with_port = [](const Pb& port) {
    return Pb()
        .message(1, pb_meta("ns", "s"))
        .message(2, Pb().message(1, Pb().integer(3, 80)).message(1, port));
  };
  struct Case {
    std::string what;
    Pb protobuf;
    std::string json;
  };
  const std::vector<Case> cases = {
      {"port 0", service_with_port(Pb().integer(3, 0)), R"({"port": 0})"},
      {"no port", service_with_port(Pb().string(1, "x")), R"({"name": "x"})"},
      {"negative port, sign-extended", service_with_port(Pb().integer(3, -1)), R"({"port": -1})"},
      {"node port past 65535", service_with_port(Pb().integer(3, 80).integer(5, 70000)),
       R"({"port": 80, "nodePort": 70000})"},
      {"unknown protocol", service_with_port(Pb().string(2, "ICMP").integer(3, 80)),
       R"({"protocol": "ICMP", "port": 80})"},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    const Refusal pb = refusal_of(decode_service_protobuf(c.protobuf.bytes()));
    const Refusal json = refusal_of(decode_service(boost::json::parse(
        R"({"metadata": {"name": "s", "namespace": "ns"}, "spec": {"ports": [{"port": 80}, )" + c.json +
        "]}}")));
    CHECK(pb.object == json.object);
    CHECK(pb.reason == json.reason);
    CHECK(pb.message == json.message);
    CHECK(pb.message.starts_with("spec.ports[1]."));
  }

  for (const std::int64_t seconds : {0, 86401}) {
    const Pb service =
        Pb().message(1, pb_meta("ns", "s"))
            .message(
                2,
                Pb().message(1, Pb().integer(3, 80)).message(14, Pb().message(1, Pb().integer(1, seconds))));
    const Refusal pb = refusal_of(decode_service_protobuf(service.bytes()));
    const Refusal json = refusal_of(decode_service(boost::json::parse(
        R"({"metadata": {"name": "s", "namespace": "ns"}, "spec": {"ports": [{"port": 80}],
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": )" +
        std::to_string(seconds) + "}}}}")));
    CHECK(pb.reason == std::string(kReasonBadTimeout));
    CHECK(pb.message == json.message);
  }

  const Refusal nameless =
      refusal_of(decode_service_protobuf(Pb().message(1, Pb().string(3, "ns")).message(2, Pb()).bytes()));
  CHECK(nameless.object == "?");
  CHECK(nameless.reason == std::string(kReasonMissingName));
  CHECK(nameless.message.starts_with("metadata.name: "));

  auto slice_refusal = decode_endpoint_slice_protobuf(Pb().message(1, pb_meta("ns", "e"))
                                                          .message(3, Pb().integer(3, 80))
                                                          .message(3, Pb().integer(3, 65536))
                                                          .bytes());
  REQUIRE_FALSE(slice_refusal.has_value());
  CHECK(slice_refusal.error().object == "ns/e");
  CHECK(slice_refusal.error().reason == std::string(kReasonBadPort));
  CHECK(slice_refusal.error().message.starts_with("ports[1].port: "));
}

TEST_CASE("protobuf: a wrong wire type or a cut message refuses the object, naming it") {
  // spec.clusterIP as an integer.
  const Refusal wrong_type = refusal_of(
      decode_service_protobuf(Pb().message(1, pb_meta("ns", "s")).message(2, Pb().integer(3, 5)).bytes()));
  CHECK(wrong_type.object == "ns/s");
  CHECK(wrong_type.reason == std::string(kReasonBadType));
  CHECK(wrong_type.message == "spec.clusterIP: expected a string, got an integer");

  // A length running past the end of the endpoint's bytes.
  const Pb endpoint = Pb().raw(std::string("\x0a\x7f", 2)).raw("10.0.0.1");
  auto cut = decode_endpoint_slice_protobuf(Pb().message(1, pb_meta("ns", "e")).message(2, endpoint).bytes());
  REQUIRE_FALSE(cut.has_value());
  CHECK(cut.error().object == "ns/e");
  CHECK(cut.error().reason == std::string(kReasonBadType));
  CHECK(cut.error().message == "endpoints[0]: malformed protobuf encoding");

  // A group (wire type 3) is not in the API's messages.
  const Refusal group =
      refusal_of(decode_service_protobuf(Pb().message(1, pb_meta("ns", "s")).raw("\x13").bytes()));
  CHECK(group.message == "malformed protobuf encoding");
}

TEST_CASE("protobuf list: the envelope, the list's metadata and the items found without decoding them") {
  const Pb list = Pb().message(1, Pb().string(2, "42").string(3, "next-page").integer(4, 7))
                      .message(2, Pb().message(1, pb_meta("ns", "a")))
                      .message(2, Pb().message(1, pb_meta("ns", "b")))
                      .message(2, Pb().integer(1, 3));  // a broken item: refused when decoded, not here
  const std::string body = list.envelope("v1", "ServiceList");
  auto page = read_protobuf_list(body, "ServiceList");
  INFO((page ? "" : page.error()));
  REQUIRE(page.has_value());
  CHECK(page->meta == ListMeta{"42", "next-page", 7});
  REQUIRE(page->items.size() == 3);
  CHECK(decoded_or_fail(decode_service_protobuf(page->items[1])).meta.name == "b");
  CHECK_FALSE(decode_service_protobuf(page->items[2]).has_value());

  const auto error_of = [](std::string_view text, std::string_view kind) {
    auto result = read_protobuf_list(text, kind);
    REQUIRE_FALSE(result.has_value());
    return result.error();
  };
  CHECK(error_of(body, "EndpointSliceList") == "expected a EndpointSliceList, got \"ServiceList\"");
  CHECK(error_of(R"({"items": []})", "ServiceList") == "the body does not start with the protobuf magic");
  CHECK(error_of(body.substr(0, body.size() - 3), "ServiceList") == "malformed protobuf envelope");
  Pb gzipped;
  gzipped.message(1, Pb().string(2, "ServiceList")).string(2, list.bytes()).string(3, "gzip");
  CHECK(error_of(std::string("k8s\0", 4) + gzipped.bytes(), "ServiceList") ==
        "unknown content encoding \"gzip\"");
  CHECK(error_of(Pb().integer(1, 2).envelope("v1", "ServiceList"), "ServiceList") ==
        "metadata: expected a message");

  // An empty last page.
  auto empty =
      read_protobuf_list(Pb().message(1, Pb().string(2, "43")).envelope("v1", "ServiceList"), "ServiceList");
  REQUIRE(empty.has_value());
  CHECK(empty->items.empty());
  CHECK(empty->meta.continue_token.empty());
}

TEST_CASE("protobuf: a Status in its envelope, and which content types are protobuf") {
  const std::string body = Pb().string(2, "Failure")
                               .string(3, "too old resource version: 5 (77)")
                               .string(4, "Expired")
                               .integer(6, 410)
                               .envelope("v1", "Status");
  auto status = decode_status_protobuf(body);
  REQUIRE(status.has_value());
  CHECK(*status == Status{"Failure", 410, "Expired", "too old resource version: 5 (77)"});
  CHECK_FALSE(decode_status_protobuf(R"({"kind": "Status"})").has_value());
  CHECK_FALSE(decode_status_protobuf(Pb().string(2, "x").envelope("v1", "ServiceList")).has_value());

  CHECK(is_protobuf("application/vnd.kubernetes.protobuf"));
  CHECK(is_protobuf("application/vnd.kubernetes.protobuf;stream=watch"));
  CHECK(is_protobuf("application/vnd.kubernetes.protobuf ; charset=binary"));
  CHECK_FALSE(is_protobuf("application/json"));
  CHECK_FALSE(is_protobuf(""));
}

}  // namespace
}  // namespace kipvs::k8s
