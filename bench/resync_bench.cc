// The periodic resync at scale, in the rig's guest: N Services x M
// endpoints programmed by kipvs's own sync into a fresh network namespace,
// then
//  - idle resyncs: CPU (every thread of the process) and wall time of each,
//    and the longest the sync thread was away meanwhile (a change waits that
//    long);
//  - resyncs with an endpoint change every --change-every ms: how long each
//    change took to reach the kernel;
//  - drift: a virtual service and a real server removed behind kipvs's back,
//    and whether the next resync put them back.
// See bench/resync for the driver; it ends with the line
//   resync_cpu_s=<median> resync_wall_s=<median> stall_max_ms=<max> change_p99_ms=<p99> drift_repaired=<n>/2
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "address/address_backend.h"
#include "agent/sync.h"
#include "bench/fresh_netns.h"
#include "conntrack/conntrack.h"
#include "ipvs/diff.h"
#include "ipvs/netlink_backend.h"
#include "ipvs/table.h"

namespace {

using namespace kipvs;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

double cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

std::string ipv4(std::uint32_t value) {
  return std::to_string(value >> 24) + "." + std::to_string((value >> 16) & 255) + "." +
         std::to_string((value >> 8) & 255) + "." + std::to_string(value & 255);
}

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const auto at = static_cast<std::size_t>(p * static_cast<double>(values.size() - 1) + 0.5);
  return values[std::min(at, values.size() - 1)];
}

// Hears when syncs end.
class Observer final : public agent::NoopSyncObserver {
 public:
  void sync_finished(agent::SyncKind kind, std::chrono::nanoseconds, bool ok) override {
    ++(kind == agent::SyncKind::kFull ? full : incremental);
    all_ok &= ok;
    if (on_finished) on_finished();
  }
  int full = 0;
  int incremental = 0;
  bool all_ok = true;
  std::function<void()> on_finished;
};

struct Cluster {
  std::map<k8s::ObjectKey, k8s::Service> services;
  std::map<k8s::ObjectKey, k8s::EndpointSlice> slices;
  std::uint32_t next_pod = (10u << 24) | (128u << 16);
};

// The ports of bench/scale_cluster.py's mix: a third 80/TCP, a third
// 80/TCP + 443/TCP, a third 53/UDP + 53/TCP (1.67 virtual services per
// Service, as in bench/scale).
std::vector<std::pair<k8s::ServicePort, k8s::EndpointPort>> ports_for(int i) {
  const auto port = [](const char* name, k8s::Protocol protocol, std::int32_t number, std::int32_t target) {
    return std::pair{k8s::ServicePort{.name = name, .protocol = protocol, .port = number, .node_port = 0},
                     k8s::EndpointPort{.name = name, .protocol = protocol, .port = target}};
  };
  switch (i % 3) {
    case 0:
      return {port("http", k8s::Protocol::kTcp, 80, 8080)};
    case 1:
      return {port("http", k8s::Protocol::kTcp, 80, 8080), port("https", k8s::Protocol::kTcp, 443, 8443)};
    default:
      return {port("dns", k8s::Protocol::kUdp, 53, 5353), port("dns-tcp", k8s::Protocol::kTcp, 53, 5353)};
  }
}

Cluster make_cluster(int services, int endpoints) {
  Cluster cluster;
  for (int s = 0; s < services; ++s) {
    const std::string name = "svc-" + std::to_string(s);
    k8s::Service service;
    service.meta.name = name;
    service.meta.namespace_ = "bench";
    service.cluster_ip = ipv4((10u << 24) | (96u << 16) | static_cast<std::uint32_t>(s));
    k8s::EndpointSlice slice;
    slice.meta.name = name + "-abc";
    slice.meta.namespace_ = "bench";
    slice.meta.labels["kubernetes.io/service-name"] = name;
    slice.address_type = k8s::AddressType::kIPv4;
    for (auto& [service_port, endpoint_port] : ports_for(s)) {
      service.ports.push_back(std::move(service_port));
      slice.ports.push_back(std::move(endpoint_port));
    }
    for (int e = 0; e < endpoints; ++e) {
      slice.endpoints.push_back(k8s::Endpoint{.addresses = {ipv4(cluster.next_pod++)},
                                              .conditions = {},
                                              .node_name = {},
                                              .zone = {},
                                              .hints = {}});
    }
    cluster.services.emplace(k8s::ObjectKey{"bench", name}, std::move(service));
    cluster.slices.emplace(k8s::ObjectKey{"bench", name + "-abc"}, std::move(slice));
  }
  return cluster;
}

// Runs the loop until `done`; returns the longest gap between two ticks of
// a 5 ms timer meanwhile (how long a change would have waited at most).
double run_until(boost::asio::io_context& io, const std::function<bool()>& done) {
  boost::asio::steady_timer tick(io);
  double stall = 0;
  auto last = Clock::now();
  std::function<void()> arm = [&] {
    tick.expires_after(milliseconds(5));
    tick.async_wait([&](const boost::system::error_code& error) {
      if (error) return;
      stall = std::max(stall, ms_since(last) - 5.0);
      last = Clock::now();
      arm();
    });
  };
  arm();
  while (!done()) io.run_one();
  stall = std::max(stall, ms_since(last) - 5.0);  // the handler that ended it
  tick.cancel();
  io.poll();
  io.restart();
  return stall;
}

int failed(const std::string& what) {
  std::cerr << "resync bench: " << what << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  int services = 10000;
  int endpoints = 10;
  int resyncs = 3;
  int change_every_ms = 50;
  int reference_resyncs = -1;  // as many as resyncs
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const int value = std::atoi(argv[i + 1]);
    if (flag == "--services") services = value;
    if (flag == "--endpoints") endpoints = value;
    if (flag == "--resyncs") resyncs = value;
    if (flag == "--change-every") change_every_ms = value;
    if (flag == "--reference-resyncs") reference_resyncs = value;
  }
  if (reference_resyncs < 0) reference_resyncs = resyncs;
  kipvs::bench::fresh_netns();
  auto backend = ipvs::NetlinkBackend::open();
  auto addresses = address::NetlinkAddressBackend::open();
  if (!backend || !addresses) {
    std::cerr << "resync bench: cannot open IPVS or rtnetlink\n";
    return 1;
  }
  boost::asio::io_context io;
  Observer observer;
  conntrack::NoConntrack no_conntrack;
  agent::SyncOptions options;
  options.facts.node_name = "bench";
  options.facts.ip_families = {ipvs::Family::kIPv4};
  options.sync_period = std::chrono::hours(1);  // the bench starts each resync
  std::vector<std::string> log_lines;
  options.log = [&](std::string_view line) {
    if (!line.starts_with("sync ")) std::cerr << "kipvs: " << line << "\n";
    log_lines.emplace_back(line);
  };
  agent::Sync sync(io, **backend, **addresses, observer, options, nullptr, no_conntrack);

  Cluster cluster = make_cluster(services, endpoints);
  for (const auto& [key, service] : cluster.services) sync.service_changed(key, &service);
  for (const auto& [key, slice] : cluster.slices) sync.endpoint_slice_changed(key, &slice);
  const auto first_started = Clock::now();
  sync.synced(k8s::ResourceKind::kService);
  sync.synced(k8s::ResourceKind::kEndpointSlice);
  run_until(io, [&] { return sync.initial_sync_done(); });
  if (!observer.all_ok) return failed("the first sync failed");
  std::cout << "first sync: " << ms_since(first_started) / 1000 << " s, " << sync.observed().size()
            << " virtual services\n";
  if (!log_lines.empty()) std::cout << "  " << log_lines.back() << "\n";

  // Idle resyncs.
  std::vector<double> cpu;
  std::vector<double> wall;
  double stall_max = 0;
  for (int r = 0; r < resyncs; ++r) {
    const int before = observer.full;
    const double cpu_before = cpu_seconds();
    const auto started = Clock::now();
    if (!sync.start_resync()) {
      auto listed = (*backend)->list_services();
      return failed("the resync did not start: " + (listed ? std::string("?") : listed.error().message));
    }
    const double stall = run_until(io, [&] { return observer.full > before; });
    wall.push_back(ms_since(started) / 1000);
    cpu.push_back(cpu_seconds() - cpu_before);
    stall_max = std::max(stall_max, stall);
    std::cout << "idle resync " << r + 1 << ": cpu " << cpu.back() << " s, wall " << wall.back()
              << " s, longest stall " << stall << " ms\n  " << log_lines.back() << "\n";
  }

  // The reference, in the same guest: what a resync did before it went
  // piece by piece, one whole-table dump through one socket with large
  // reads, then the whole table compared in one block.
  std::vector<double> reference_cpu;
  {
    auto whole = ipvs::NetlinkBackend(ipvs::make_libnl_transport({}), {});
    const ipvs::Table desired = sync.desired();
    for (int r = 0; r < reference_resyncs; ++r) {
      const double cpu_before = cpu_seconds();
      auto dump = whole.list_all();
      if (!dump) return failed("whole-table dump: " + dump.error().message);
      const auto observed = ipvs::table_from(*dump);
      const auto plan = ipvs::diff(desired, observed, [](const ipvs::ServiceKey&) { return true; });
      reference_cpu.push_back(cpu_seconds() - cpu_before);
      std::cout << "reference resync " << r + 1 << ": cpu " << reference_cpu.back() << " s, " << plan.size()
                << " operations\n";
    }
  }

  // Resyncs with changes: the last endpoint of service k moves to a new pod.
  std::vector<double> latencies;
  std::map<k8s::ObjectKey, Clock::time_point> pending;
  observer.on_finished = [&] {
    if (sync.dirty_services() != 0) return;
    for (const auto& [key, when] : pending) latencies.push_back(ms_since(when));
    pending.clear();
  };
  std::size_t next_change = 0;
  boost::asio::steady_timer change_timer(io);
  std::function<void()> arm_change = [&] {
    change_timer.expires_after(milliseconds(change_every_ms));
    change_timer.async_wait([&](const boost::system::error_code& error) {
      if (error) return;
      auto slice = std::next(cluster.slices.begin(),
                             static_cast<std::ptrdiff_t>((next_change++ * 7919) % cluster.slices.size()));
      slice->second.endpoints.back().addresses = {ipv4(cluster.next_pod++)};
      const k8s::ObjectKey service{"bench", slice->second.meta.labels["kubernetes.io/service-name"]};
      // When it was due: a change that arrives while the sync thread is
      // busy waits like this timer did.
      pending.emplace(service, change_timer.expiry());
      sync.endpoint_slice_changed(slice->first, &slice->second);
      arm_change();
    });
  };
  for (int r = 0; r < resyncs; ++r) {
    const int before = observer.full;
    if (!sync.start_resync()) return failed("the resync did not start");
    arm_change();
    run_until(io, [&] { return observer.full > before; });
    change_timer.cancel();
    run_until(io, [&] { return pending.empty(); });
    std::cout << "resync with changes " << r + 1 << ": " << latencies.size() << " changes so far\n  "
              << log_lines.back() << "\n";
  }
  observer.on_finished = nullptr;
  std::cout << "change latencies in order (ms):";
  for (const double latency : latencies) std::cout << " " << static_cast<long>(latency);
  std::cout << "\n";

  // Drift: someone else deletes a virtual service and a real server.
  auto other = ipvs::NetlinkBackend::open();
  const auto& table = sync.observed();
  const auto first = table.begin();
  const auto second = std::next(first);
  const ipvs::Service gone_service = first->second.service;
  const ipvs::Service trimmed_service = second->second.service;
  const ipvs::Destination gone_destination = second->second.destinations.begin()->second;
  const std::vector<ipvs::Operation> drift{
      {ipvs::Operation::Kind::kDeleteService, gone_service, {}},
      {ipvs::Operation::Kind::kDeleteDestination, trimmed_service, gone_destination},
  };
  for (const auto& result : (*other)->apply(drift)) {
    if (!result) std::cerr << "resync bench: drift not made: " << result.error().message << "\n";
  }
  {
    const int before = observer.full;
    if (!sync.start_resync()) return failed("the resync did not start");
    run_until(io, [&] { return observer.full > before; });
    std::cout << "resync after drift:\n  " << log_lines.back() << "\n";
  }
  int repaired = 0;
  if ((*other)->list_destinations(gone_service.key)) ++repaired;
  if (auto listed = (*other)->list_destinations(trimmed_service.key)) {
    for (const auto& state : *listed) repaired += state.destination.key == gone_destination.key ? 1 : 0;
  }

  std::cout << "resync_cpu_s=" << percentile(cpu, 0.5)
            << " reference_cpu_s=" << percentile(reference_cpu, 0.5)
            << " cpu_vs_reference=" << percentile(cpu, 0.5) / percentile(reference_cpu, 0.5)
            << " resync_wall_s=" << percentile(wall, 0.5) << " stall_max_ms=" << stall_max
            << " change_p50_ms=" << percentile(latencies, 0.5)
            << " change_p99_ms=" << percentile(latencies, 0.99)
            << " change_max_ms=" << (latencies.empty() ? 0 : percentile(latencies, 1.0))
            << " changes=" << latencies.size() << " drift_repaired=" << repaired << "/2"
            << " syncs_ok=" << (observer.all_ok ? "yes" : "no") << "\n";
  return repaired == 2 && observer.all_ok ? 0 : 1;
}
