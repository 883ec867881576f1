#pragma once
// Health-check node ports for LoadBalancer Services with
// externalTrafficPolicy: Local (kube-proxy's service_health.go): one HTTP
// listener per Service on its spec.healthCheckNodePort, answering any path
// with 200 when this node has local endpoints for it and the proxy is
// healthy, else 503, so the cloud load balancer sends traffic only to nodes
// that can serve it locally. The sync loop tells it which Services need a
// port and how many local endpoints each has.

#include <compare>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "metrics/health.h"
#include "metrics/http_server.h"

namespace kipvs::metrics {

struct ServiceName {
  std::string namespace_name;
  std::string name;
  friend auto operator<=>(const ServiceName&, const ServiceName&) = default;
};

class ServiceHealthServer {
 public:
  // addresses: where each port is opened (the node's addresses inside
  // nodePortAddresses); nullopt means every address, one [::] socket with
  // IPv4 mapped (0.0.0.0 and [::] both would clash: EADDRINUSE); an empty
  // list opens nothing. health decides serviceProxyHealthy.
  ServiceHealthServer(boost::asio::io_context& io,
                      std::optional<std::vector<boost::asio::ip::address>> addresses,
                      const HealthState& health);

  // The Services that need a health-check port now: opens listeners for new
  // ones, closes those gone or moved to another port. Returns one message per
  // listener that failed to open (the Service is retried on the next call).
  [[nodiscard]] std::vector<std::string> sync_services(const std::map<ServiceName, std::uint16_t>& ports);
  // Local endpoint counts; a Service not in the map has 0.
  void sync_endpoints(const std::map<ServiceName, int>& counts);

  // The endpoints a Service's port is bound to (tests use port 0 to get an
  // ephemeral port).
  [[nodiscard]] std::vector<boost::asio::ip::tcp::endpoint> bound(const ServiceName& service) const;
  [[nodiscard]] std::size_t size() const { return services_.size(); }

 private:
  struct Instance {
    std::uint16_t port = 0;
    int endpoints = 0;
    std::vector<std::unique_ptr<HttpServer>> servers;
    std::vector<boost::asio::ip::tcp::endpoint> bound;
  };

  boost::asio::io_context& io_;
  std::vector<boost::asio::ip::address> addresses_;
  const HealthState& health_;
  // unique_ptr: handlers keep a pointer to their Instance.
  std::map<ServiceName, std::unique_ptr<Instance>> services_;
};

// kube-proxy's per-Service answer body.
[[nodiscard]] std::string service_health_body(const ServiceName& service, int local_endpoints,
                                              bool proxy_healthy);

}  // namespace kipvs::metrics
