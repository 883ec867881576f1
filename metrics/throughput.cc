#include "metrics/throughput.h"

namespace kipvs::metrics {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

// One exported family: its name, help and type, whether it is per endpoint,
// and its samples' values, one per direction ("" when it has none).
struct FamilyDef {
  std::string_view name;
  std::string_view help;
  MetricType type;
  bool per_destination;
  using Get = std::uint64_t (*)(const ServiceThroughput&, const DestinationThroughput*);
  std::vector<std::pair<std::string_view, Get>> values;
};

std::uint64_t non_negative(std::int64_t value) {
  return value < 0 ? 0 : static_cast<std::uint64_t>(value);
}

const std::vector<FamilyDef>& family_defs() {
  using S = const ServiceThroughput&;
  using D = const DestinationThroughput*;
  static const std::vector<FamilyDef> kDefs{
      {"kipvs_service_connections_total",
       "Connections scheduled by the IPVS virtual service (kernel counter)",
       MetricType::Counter,
       false,
       {{"", [](S s, D) { return s.stats.connections; }}}},
      {"kipvs_service_packets_total",
       "Packets through the IPVS virtual service, by direction",
       MetricType::Counter,
       false,
       {{"in", [](S s, D) { return s.stats.packets_in; }},
        {"out", [](S s, D) { return s.stats.packets_out; }}}},
      {"kipvs_service_bytes_total",
       "Bytes through the IPVS virtual service, by direction",
       MetricType::Counter,
       false,
       {{"in", [](S s, D) { return s.stats.bytes_in; }}, {"out", [](S s, D) { return s.stats.bytes_out; }}}},
      {"kipvs_destination_connections_total",
       "Connections scheduled to the endpoint (kernel counter)",
       MetricType::Counter,
       true,
       {{"", [](S, D d) { return d->stats.connections; }}}},
      {"kipvs_destination_packets_total",
       "Packets to and from the endpoint, by direction",
       MetricType::Counter,
       true,
       {{"in", [](S, D d) { return d->stats.packets_in; }},
        {"out", [](S, D d) { return d->stats.packets_out; }}}},
      {"kipvs_destination_bytes_total",
       "Bytes to and from the endpoint, by direction",
       MetricType::Counter,
       true,
       {{"in", [](S, D d) { return d->stats.bytes_in; }},
        {"out", [](S, D d) { return d->stats.bytes_out; }}}},
      {"kipvs_destination_active_connections",
       "Established connections to the endpoint (IPVS ActiveConn)",
       MetricType::Gauge,
       true,
       {{"", [](S, D d) { return std::uint64_t{d->active_connections}; }}}},
      {"kipvs_destination_inactive_connections",
       "Other connection entries of the endpoint (IPVS InActConn)",
       MetricType::Gauge,
       true,
       {{"", [](S, D d) { return std::uint64_t{d->inactive_connections}; }}}},
      {"kipvs_destination_weight",
       "The endpoint's IPVS weight (0 while draining)",
       MetricType::Gauge,
       true,
       {{"", [](S, D d) { return non_negative(d->weight); }}}},
  };
  return kDefs;
}

std::vector<ClientMetric::Label> service_labels(const ServiceThroughput& svc) {
  return {{"namespace", svc.namespace_name},
          {"service", svc.name},
          {"port_name", svc.port_name},
          {"protocol", std::string(ipvs::protocol_name(svc.protocol))},
          {"address", host_port(svc.address, svc.port)}};
}

// Label values escaped as the text format wants: backslash, quote, newline.
void append_escaped(std::string& out, std::string_view value) {
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

std::string label_text(const std::vector<ClientMetric::Label>& labels) {
  std::string out;
  for (const auto& label : labels) {
    if (!out.empty()) out += ',';
    out += label.name;
    out += "=\"";
    append_escaped(out, label.value);
    out += '"';
  }
  return out;
}

}  // namespace

std::string host_port(const ipvs::Address& address, std::uint16_t port) {
  const std::string host =
      address.family == ipvs::Family::kIPv6 ? "[" + address.to_string() + "]" : address.to_string();
  return host + ":" + std::to_string(port);
}

const ThroughputSnapshot& ThroughputCollector::snapshot() const {
  const auto now = clock_();
  if (!taken_ || options_.max_age.count() == 0 || now - *taken_ >= options_.max_age) {
    cached_ = source_();
    taken_ = now;
  }
  return cached_;
}

std::vector<MetricFamily> ThroughputCollector::Collect() const {
  return families(snapshot(), options_.destinations);
}

void ThroughputCollector::append_text(std::string& out) const {
  write_text(snapshot(), options_.destinations, out);
}

void ThroughputCollector::forget() {
  taken_.reset();
  ThroughputSnapshot().swap(cached_);
}

ThroughputSnapshot throughput_snapshot(
    const std::vector<ipvs::ServiceWithDestinations>& dump,
    const std::function<std::optional<ServiceLabels>(const ipvs::ServiceKey&)>& name_of) {
  ThroughputSnapshot snapshot;
  snapshot.reserve(dump.size());
  for (const auto& entry : dump) {
    const auto& key = entry.service.service.key;
    auto labels = name_of(key);
    if (!labels) continue;
    ServiceThroughput svc;
    svc.namespace_name = std::move(labels->namespace_name);
    svc.name = std::move(labels->name);
    svc.port_name = std::move(labels->port_name);
    svc.protocol = key.protocol;
    svc.address = key.address;
    svc.port = key.port;
    svc.stats = entry.service.stats;
    svc.destinations.reserve(entry.destinations.size());
    for (const auto& d : entry.destinations) {
      svc.destinations.push_back({d.destination.key.address, d.destination.key.port, d.stats,
                                  d.active_connections, d.inactive_connections, d.destination.weight});
    }
    snapshot.push_back(std::move(svc));
  }
  return snapshot;
}

std::vector<MetricFamily> ThroughputCollector::families(const ThroughputSnapshot& snapshot,
                                                        bool destinations) {
  std::vector<MetricFamily> out;
  for (const auto& def : family_defs()) {
    // Families are returned even when empty so HELP/TYPE lines are stable.
    MetricFamily family{std::string(def.name), std::string(def.help), def.type, {}};
    if (def.per_destination && !destinations) {
      out.push_back(std::move(family));
      continue;
    }
    for (const auto& svc : snapshot) {
      auto add = [&](std::vector<ClientMetric::Label> labels, const DestinationThroughput* dst) {
        for (const auto& [direction, get] : def.values) {
          ClientMetric metric;
          metric.label = labels;
          if (!direction.empty()) metric.label.push_back({"direction", std::string(direction)});
          const auto value = static_cast<double>(get(svc, dst));
          if (def.type == MetricType::Counter) {
            metric.counter.value = value;
          } else {
            metric.gauge.value = value;
          }
          family.metric.push_back(std::move(metric));
        }
      };
      if (!def.per_destination) {
        add(service_labels(svc), nullptr);
        continue;
      }
      for (const auto& dst : svc.destinations) {
        auto labels = service_labels(svc);
        labels.push_back({"endpoint", host_port(dst.address, dst.port)});
        add(std::move(labels), &dst);
      }
    }
    out.push_back(std::move(family));
  }
  return out;
}

namespace {

// Every sample's label text, built once and used by every family: a
// Service's, and (when destinations are exported) each destination's
// endpoint label to follow it.
struct LabelTexts {
  std::vector<std::string> services;
  std::vector<std::vector<std::string>> endpoints;  // per Service, per destination
};

LabelTexts label_texts(const ThroughputSnapshot& snapshot, bool destinations) {
  LabelTexts texts;
  texts.services.reserve(snapshot.size());
  texts.endpoints.reserve(snapshot.size());
  for (const auto& svc : snapshot) {
    texts.services.push_back(label_text(service_labels(svc)));
    auto& endpoints = texts.endpoints.emplace_back();
    if (!destinations) continue;
    endpoints.reserve(svc.destinations.size());
    for (const auto& dst : svc.destinations) {
      std::string text = ",endpoint=\"";
      append_escaped(text, host_port(dst.address, dst.port));
      endpoints.push_back(text + '"');
    }
  }
  return texts;
}

// At most how many bytes the text takes, so it is reserved once: at 10,000
// Services it is over 12 MB, and growing into it by doubling holds one and
// a half times that at the last step.
std::size_t text_bound(const ThroughputSnapshot& snapshot, bool destinations, const LabelTexts& texts) {
  std::size_t bound = 0;
  for (const auto& def : family_defs()) {
    bound += 2 * def.name.size() + def.help.size() + 32;
    if (def.per_destination && !destinations) continue;
    for (std::size_t i = 0; i < snapshot.size(); ++i) {
      for (const auto& [direction, get] : def.values) {
        // name{labels,direction="..."} value\n, the value at most 20 digits
        const std::size_t sample_bound = def.name.size() + direction.size() + 40;
        if (!def.per_destination) {
          bound += sample_bound + texts.services[i].size();
          continue;
        }
        for (const auto& endpoint : texts.endpoints[i])
          bound += sample_bound + texts.services[i].size() + endpoint.size();
      }
    }
  }
  return bound;
}

}  // namespace

void ThroughputCollector::write_text(const ThroughputSnapshot& snapshot, bool destinations,
                                     std::string& out) {
  const LabelTexts texts = label_texts(snapshot, destinations);
  const auto& service_text = texts.services;
  const auto& endpoint_text = texts.endpoints;
  auto sample = [&](std::string_view name, const std::string& labels, std::string_view extra,
                    std::string_view direction, std::uint64_t value) {
    out += name;
    out += '{';
    out += labels;
    out += extra;
    if (!direction.empty()) {
      out += ",direction=\"";
      out += direction;
      out += '"';
    }
    out += "} ";
    out += std::to_string(value);
    out += '\n';
  };

  out.reserve(out.size() + text_bound(snapshot, destinations, texts));

  for (const auto& def : family_defs()) {
    out += "# HELP ";
    out += def.name;
    out += ' ';
    out += def.help;
    out += "\n# TYPE ";
    out += def.name;
    out += def.type == MetricType::Counter ? " counter\n" : " gauge\n";
    if (def.per_destination && !destinations) continue;
    for (std::size_t i = 0; i < snapshot.size(); ++i) {
      const auto& svc = snapshot[i];
      for (const auto& [direction, get] : def.values) {
        if (!def.per_destination) sample(def.name, service_text[i], "", direction, get(svc, nullptr));
      }
      if (!def.per_destination) continue;
      for (std::size_t j = 0; j < svc.destinations.size(); ++j) {
        for (const auto& [direction, get] : def.values) {
          sample(def.name, service_text[i], endpoint_text[i][j], direction, get(svc, &svc.destinations[j]));
        }
      }
    }
  }
}

}  // namespace kipvs::metrics
