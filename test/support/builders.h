#pragma once
// Builders the tests share: addresses and keys from text, and a Service and
// an EndpointSlice with one set of defaults that a case changes with a
// mutator, as kube-proxy's tests do with
// makeTestService(namespace, name, func(*v1.Service)). A file keeps a
// wrapper of its own only to name its own vocabulary (a slice on a node).
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <catch2/catch.hpp>

#include "ipvs/model.h"
#include "k8s/objects.h"
#include "k8s/sink.h"

namespace kipvs::test {

// Fails the test on text that is not an address.
inline ipvs::Address ip(std::string_view text) {
  auto address = ipvs::Address::parse(text);
  REQUIRE(address.has_value());
  return *address;
}

// A virtual service by address and port; the family follows the address.
inline ipvs::ServiceKey service_key(std::string_view address, std::uint16_t port,
                                    ipvs::Protocol protocol = ipvs::Protocol::kTcp) {
  const auto parsed = ip(address);
  return ipvs::ServiceKey{
      .family = parsed.family, .protocol = protocol, .address = parsed, .port = port, .fwmark = 0};
}

inline ipvs::DestinationKey destination_key(std::string_view address, std::uint16_t port) {
  return {ip(address), port};
}

// A TCP virtual service and a real server, the rest as ipvs::Service and
// ipvs::Destination default it.
inline ipvs::Service virtual_service(std::string_view address, std::uint16_t port) {
  ipvs::Service service;
  service.key = service_key(address, port);
  return service;
}
inline ipvs::Destination real_server(std::string_view address, std::uint16_t port) {
  ipvs::Destination destination;
  destination.key = destination_key(address, port);
  return destination;
}

// A ClusterIP Service default/NAME with one port, "http" 80/TCP.
inline k8s::Service make_service(std::string_view name, std::string_view cluster_ip,
                                 const std::function<void(k8s::Service&)>& change = {}) {
  k8s::Service service;
  service.meta.name = name;
  service.meta.namespace_ = "default";
  service.cluster_ip = cluster_ip;
  service.ports.push_back(
      k8s::ServicePort{.name = "http", .protocol = k8s::Protocol::kTcp, .port = 80, .node_port = 0});
  if (change) change(service);
  return service;
}

// The EndpointSlice default/SERVICE-abc of SERVICE: IPv4, port "http"
// 8080/TCP, one endpoint per address with no conditions set (ready) and no
// node.
inline k8s::EndpointSlice make_slice(std::string_view service, const std::vector<std::string>& addresses,
                                     const std::function<void(k8s::EndpointSlice&)>& change = {}) {
  k8s::EndpointSlice slice;
  slice.meta.name = std::string(service) + "-abc";
  slice.meta.namespace_ = "default";
  slice.meta.labels["kubernetes.io/service-name"] = service;
  slice.address_type = k8s::AddressType::kIPv4;
  slice.ports.push_back(k8s::EndpointPort{.name = "http", .protocol = k8s::Protocol::kTcp, .port = 8080});
  for (const auto& address : addresses) {
    slice.endpoints.push_back(
        k8s::Endpoint{.addresses = {address}, .conditions = {}, .node_name = {}, .zone = {}, .hints = {}});
  }
  if (change) change(slice);
  return slice;
}

// Mutators for the common changes.
inline auto with_protocol(k8s::Protocol protocol) {
  return [protocol](auto& object) {
    for (auto& port : object.ports) port.protocol = protocol;
  };
}
inline auto on_node(std::string node) {
  return [node = std::move(node)](k8s::EndpointSlice& slice) {
    for (auto& endpoint : slice.endpoints) endpoint.node_name = node;
  };
}

// Objects handed to a sink the way a source does: the sink keeps pointers,
// as into a source's cache, so the objects live here.
class SourceCache {
 public:
  explicit SourceCache(k8s::ObjectSink& sink) : sink_(sink) {}
  void add(const k8s::Service& object) {
    const auto key = k8s::key_of(object);
    sink_.service_changed(key, &services_.insert_or_assign(key, object).first->second);
  }
  void add(const k8s::EndpointSlice& object) {
    const auto key = k8s::key_of(object);
    sink_.endpoint_slice_changed(key, &slices_.insert_or_assign(key, object).first->second);
  }
  // Both kinds have been listed.
  void synced() {
    sink_.synced(k8s::ResourceKind::kService);
    sink_.synced(k8s::ResourceKind::kEndpointSlice);
  }

 private:
  k8s::ObjectSink& sink_;
  std::map<k8s::ObjectKey, k8s::Service> services_;
  std::map<k8s::ObjectKey, k8s::EndpointSlice> slices_;
};

}  // namespace kipvs::test
