#include "metrics/throughput.h"

namespace kipvs::metrics {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

std::string protocol_name(ipvs::Protocol protocol) {
  switch (protocol) {
    case ipvs::Protocol::kTcp:
      return "TCP";
    case ipvs::Protocol::kUdp:
      return "UDP";
    case ipvs::Protocol::kSctp:
      return "SCTP";
  }
  return "unknown";
}

MetricFamily family(std::string name, std::string help, MetricType type) {
  return MetricFamily{std::move(name), std::move(help), type, {}};
}

void add(MetricFamily& family, std::vector<ClientMetric::Label> labels, double value) {
  ClientMetric metric;
  metric.label = std::move(labels);
  if (family.type == MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  family.metric.push_back(std::move(metric));
}

std::vector<ClientMetric::Label> with(std::vector<ClientMetric::Label> labels, std::string name,
                                      std::string value) {
  labels.push_back({std::move(name), std::move(value)});
  return labels;
}

}  // namespace

std::string host_port(const ipvs::Address& address, std::uint16_t port) {
  const std::string host =
      address.family == ipvs::Family::kIPv6 ? "[" + address.to_string() + "]" : address.to_string();
  return host + ":" + std::to_string(port);
}

std::vector<MetricFamily> ThroughputCollector::Collect() const {
  return families(source_());
}

std::vector<MetricFamily> ThroughputCollector::families(const ThroughputSnapshot& snapshot) {
  auto svc_connections =
      family("kipvs_service_connections_total",
             "Connections scheduled by the IPVS virtual service (kernel counter)", MetricType::Counter);
  auto svc_packets = family("kipvs_service_packets_total",
                            "Packets through the IPVS virtual service, by direction", MetricType::Counter);
  auto svc_bytes = family("kipvs_service_bytes_total", "Bytes through the IPVS virtual service, by direction",
                          MetricType::Counter);
  auto dst_connections =
      family("kipvs_destination_connections_total", "Connections scheduled to the endpoint (kernel counter)",
             MetricType::Counter);
  auto dst_packets = family("kipvs_destination_packets_total",
                            "Packets to and from the endpoint, by direction", MetricType::Counter);
  auto dst_bytes = family("kipvs_destination_bytes_total", "Bytes to and from the endpoint, by direction",
                          MetricType::Counter);
  auto dst_active = family("kipvs_destination_active_connections",
                           "Established connections to the endpoint (IPVS ActiveConn)", MetricType::Gauge);
  auto dst_inactive = family("kipvs_destination_inactive_connections",
                             "Other connection entries of the endpoint (IPVS InActConn)", MetricType::Gauge);
  auto dst_weight =
      family("kipvs_destination_weight", "The endpoint's IPVS weight (0 while draining)", MetricType::Gauge);

  for (const auto& svc : snapshot) {
    const std::vector<ClientMetric::Label> labels{{"namespace", svc.namespace_name},
                                                  {"service", svc.name},
                                                  {"port_name", svc.port_name},
                                                  {"protocol", protocol_name(svc.protocol)},
                                                  {"address", host_port(svc.address, svc.port)}};
    add(svc_connections, labels, static_cast<double>(svc.stats.connections));
    add(svc_packets, with(labels, "direction", "in"), static_cast<double>(svc.stats.packets_in));
    add(svc_packets, with(labels, "direction", "out"), static_cast<double>(svc.stats.packets_out));
    add(svc_bytes, with(labels, "direction", "in"), static_cast<double>(svc.stats.bytes_in));
    add(svc_bytes, with(labels, "direction", "out"), static_cast<double>(svc.stats.bytes_out));
    for (const auto& dst : svc.destinations) {
      const auto d = with(labels, "endpoint", host_port(dst.address, dst.port));
      add(dst_connections, d, static_cast<double>(dst.stats.connections));
      add(dst_packets, with(d, "direction", "in"), static_cast<double>(dst.stats.packets_in));
      add(dst_packets, with(d, "direction", "out"), static_cast<double>(dst.stats.packets_out));
      add(dst_bytes, with(d, "direction", "in"), static_cast<double>(dst.stats.bytes_in));
      add(dst_bytes, with(d, "direction", "out"), static_cast<double>(dst.stats.bytes_out));
      add(dst_active, d, dst.active_connections);
      add(dst_inactive, d, dst.inactive_connections);
      add(dst_weight, d, dst.weight);
    }
  }
  // Families are returned even when empty so HELP/TYPE lines are stable.
  return {std::move(svc_connections), std::move(svc_packets),  std::move(svc_bytes),
          std::move(dst_connections), std::move(dst_packets),  std::move(dst_bytes),
          std::move(dst_active),      std::move(dst_inactive), std::move(dst_weight)};
}

}  // namespace kipvs::metrics
