#include "metrics/service_health.h"

#include <boost/beast/http/field.hpp>
#include <boost/json/serialize.hpp>

namespace kipvs::metrics {
namespace {

namespace http = boost::beast::http;

std::string json_string(const std::string& text) {
  return boost::json::serialize(boost::json::string(text));
}

}  // namespace

std::string service_health_body(const ServiceName& service, int local_endpoints, bool proxy_healthy) {
  // The layout kube-proxy prints (tab-indented), so scripts that grep it work.
  return "{\n\t\"service\": {\n\t\t\"namespace\": " + json_string(service.namespace_name) +
         ",\n\t\t\"name\": " + json_string(service.name) +
         "\n\t},\n\t\"localEndpoints\": " + std::to_string(local_endpoints) +
         ",\n\t\"serviceProxyHealthy\": " + (proxy_healthy ? "true" : "false") + "\n}";
}

ServiceHealthServer::ServiceHealthServer(boost::asio::io_context& io,
                                         std::optional<std::vector<boost::asio::ip::address>> addresses,
                                         const HealthState& health)
    : io_(io),
      addresses_(addresses ? std::move(*addresses)
                           : std::vector<boost::asio::ip::address>{boost::asio::ip::address_v6::any()}),
      health_(health) {}

std::vector<std::string> ServiceHealthServer::sync_services(
    const std::map<ServiceName, std::uint16_t>& ports) {
  std::erase_if(services_, [&](const auto& entry) {
    const auto wanted = ports.find(entry.first);
    return wanted == ports.end() ||
           wanted->second != entry.second->port;  // servers close in their destructors
  });

  std::vector<std::string> errors;
  for (const auto& [service, port] : ports) {
    if (services_.contains(service)) continue;
    auto instance = std::make_unique<Instance>();
    instance->port = port;
    Instance* raw = instance.get();
    const ServiceName name = service;
    const HealthState* health = &health_;
    Handler handler = [raw, name, health](const Request& request) {
      // Any path and method, as kube-proxy's handler answers them all.
      const bool proxy_healthy = health->healthy();
      const bool ok = raw->endpoints != 0 && proxy_healthy;
      Response response{ok ? http::status::ok : http::status::service_unavailable, request.version()};
      response.set(http::field::content_type, "application/json");
      response.set("X-Content-Type-Options", "nosniff");
      // Load balancers that read it (kube-proxy sends it) weigh nodes by
      // their local endpoints.
      response.set("X-Load-Balancing-Endpoint-Weight", std::to_string(raw->endpoints));
      response.keep_alive(request.keep_alive());
      response.body() = service_health_body(name, raw->endpoints, proxy_healthy);
      return response;
    };
    bool failed = false;
    for (const auto& address : addresses_) {
      auto server = std::make_unique<HttpServer>(io_, handler);
      auto bound = server->listen({address, port});
      if (!bound) {
        errors.push_back("health check for Service " + service.namespace_name + "/" + service.name + ": " +
                         bound.error().text());
        failed = true;
        break;
      }
      instance->bound.push_back(*bound);
      instance->servers.push_back(std::move(server));
    }
    if (!failed) services_.emplace(service, std::move(instance));
  }
  return errors;
}

void ServiceHealthServer::sync_endpoints(const std::map<ServiceName, int>& counts) {
  for (auto& [service, instance] : services_) {
    const auto count = counts.find(service);
    instance->endpoints = count == counts.end() ? 0 : count->second;
  }
}

std::vector<boost::asio::ip::tcp::endpoint> ServiceHealthServer::bound(const ServiceName& service) const {
  const auto it = services_.find(service);
  return it == services_.end() ? std::vector<boost::asio::ip::tcp::endpoint>{} : it->second->bound;
}

}  // namespace kipvs::metrics
