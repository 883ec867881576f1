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

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include "ipvs/backend.h"
#include "ipvs/model.h"
#include "metrics/metrics.h"

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

// The Kubernetes names of one virtual service.
struct ServiceLabels {
  std::string namespace_name;
  std::string name;
  std::string port_name;
  friend bool operator==(const ServiceLabels&, const ServiceLabels&) = default;
};

// Builds a snapshot from a kernel dump (Backend::list_all). name_of names a
// virtual service after its Service port; services it does not know (not
// kipvs's, or excluded) are left out.
[[nodiscard]] ThroughputSnapshot throughput_snapshot(
    const std::vector<ipvs::ServiceWithDestinations>& dump,
    const std::function<std::optional<ServiceLabels>(const ipvs::ServiceKey&)>& name_of);

struct ThroughputOptions {
  // Per-endpoint series (8 per endpoint) besides the 5 per service. At
  // 10,000 services x 10 endpoints that is 850,000 series and about 150 MB
  // per scrape, against 50,000 series and 9 MB without them.
  bool destinations = true;
  // A snapshot younger than this is served again instead of dumping the
  // kernel anew, which bounds its work when several Prometheus servers
  // scrape (0: dump on every scrape).
  std::chrono::nanoseconds max_age{0};
};

// Labels: namespace, service, port_name, protocol (TCP/UDP/SCTP), address
// ("10.96.0.10:53", "[fd00::10]:53"); destinations add endpoint. Counters
// are the kernel's 64-bit counters printed as exact integers.
class ThroughputCollector : public prometheus::Collectable, public TextCollectable {
 public:
  using Source = std::function<ThroughputSnapshot()>;
  using Clock = std::function<std::chrono::steady_clock::time_point()>;

  explicit ThroughputCollector(Source source, ThroughputOptions options = {},
                               Clock clock = std::chrono::steady_clock::now)
      : source_(std::move(source)), options_(options), clock_(std::move(clock)) {}

  // prometheus-cpp's form (for a Registry or an Exposer).
  [[nodiscard]] std::vector<prometheus::MetricFamily> Collect() const override;
  // The same series as text, without the intermediate objects.
  void append_text(std::string& out) const override;
  // Drops the kept snapshot: the next scrape dumps anew.
  void forget() override;

  // For one snapshot, without calling the source.
  [[nodiscard]] static std::vector<prometheus::MetricFamily> families(const ThroughputSnapshot& snapshot,
                                                                      bool destinations = true);
  static void write_text(const ThroughputSnapshot& snapshot, bool destinations, std::string& out);

 private:
  const ThroughputSnapshot& snapshot() const;

  Source source_;
  ThroughputOptions options_;
  Clock clock_;
  // Collect() is const in prometheus-cpp's interface; the cache is not state
  // anyone observes except through fewer dumps.
  mutable std::optional<std::chrono::steady_clock::time_point> taken_;
  mutable ThroughputSnapshot cached_;
};

// "10.0.0.1:80" or "[fd00::1]:80".
[[nodiscard]] std::string host_port(const ipvs::Address& address, std::uint16_t port);

}  // namespace kipvs::metrics
