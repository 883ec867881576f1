#pragma once
// Per-Service and per-endpoint throughput read from the kernel at scrape
// time, which kube-proxy does not export at all. The agent supplies a
// callback that dumps IPVS (services, destinations and their counters) and
// names each virtual service after its Kubernetes Service; this collector
// turns that snapshot into counters and gauges on every scrape. Nothing is
// stored between scrapes, so a deleted Service's series simply disappear.
//
// Cost: one IPVS dump per scrape (one netlink dump of the services, then one
// per service for its destinations), which the callback performs.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include "ipvs/model.h"

namespace kipvs::metrics {

struct DestinationThroughput {
  ipvs::Address address;
  std::uint16_t port = 0;
  ipvs::Stats stats;
  std::uint32_t active_connections = 0;
  std::uint32_t inactive_connections = 0;
  std::int32_t weight = 0;
};

// One IPVS virtual service and the Service port it implements.
struct ServiceThroughput {
  std::string namespace_name;  // the Service's namespace
  std::string name;            // the Service's name
  std::string port_name;       // the Service port's name ("" if unnamed)
  ipvs::Protocol protocol = ipvs::Protocol::kTcp;
  ipvs::Address address;  // the virtual IP (cluster IP, node IP, ...)
  std::uint16_t port = 0;
  ipvs::Stats stats;
  std::vector<DestinationThroughput> destinations;
};

using ThroughputSnapshot = std::vector<ServiceThroughput>;

// Labels: namespace, service, port_name, protocol (TCP/UDP/SCTP), address
// ("10.96.0.10:53", "[fd00::10]:53"); destinations add endpoint.
class ThroughputCollector : public prometheus::Collectable {
 public:
  using Source = std::function<ThroughputSnapshot()>;
  explicit ThroughputCollector(Source source) : source_(std::move(source)) {}

  [[nodiscard]] std::vector<prometheus::MetricFamily> Collect() const override;

  // The families for one snapshot, without calling the source (for tests).
  [[nodiscard]] static std::vector<prometheus::MetricFamily> families(const ThroughputSnapshot& snapshot);

 private:
  Source source_;
};

// "10.0.0.1:80" or "[fd00::1]:80".
[[nodiscard]] std::string host_port(const ipvs::Address& address, std::uint16_t port);

}  // namespace kipvs::metrics
