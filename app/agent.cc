#include "app/agent.h"

#include <ifaddrs.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <iostream>
#include <map>
#include <ostream>
#include <sstream>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/serialize.hpp>

#include "address/link_watch.h"
#include "agent/nft_state.h"
#include "app/metrics_observer.h"
#include "app/render.h"
#include "app/service_names.h"
#include "app/sysctl.h"
#include "ipvs/diff.h"
#include "ipvs/ipvsadm_format.h"
#include "ipvs/netlink_backend.h"
#include "k8s/api_source.h"
#include "k8s/http_client.h"
#include "k8s/kubeconfig.h"
#include "k8s/manifests.h"
#include "metrics/health.h"
#include "metrics/http_server.h"
#include "metrics/metrics.h"
#include "metrics/process.h"
#include "metrics/scraper.h"
#include "metrics/service_health.h"
#include "metrics/throughput.h"

namespace kipvs::app {

namespace {

std::string hostname() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0) return "";
  return name;
}

}  // namespace

std::expected<void, Error> set_ipvs_timeouts(ipvs::Backend& backend, const ipvs::Timeouts& timeouts) {
  if (timeouts == ipvs::Timeouts{}) return {};
  return backend.set_timeouts(timeouts);
}

std::string node_name(std::string_view host) {
  const auto first = host.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return "";
  host = host.substr(first, host.find_last_not_of(" \t\r\n") - first + 1);
  std::string name(host);
  std::ranges::transform(name, name.begin(),
                         [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return name;
}

namespace {

// The service part of a rule: "-t 10.96.0.1:80", "-f 42 -6".
std::string service_spec(const ipvs::Service& service) {
  const auto rule = ipvs::format_service_rule(service);
  const auto end = rule.find(" -s ");
  return rule.substr(3, end == std::string::npos ? std::string::npos : end - 3);
}

}  // namespace

std::optional<std::chrono::milliseconds> parse_go_duration(std::string_view text) {
  if (text == "0") return std::chrono::milliseconds{0};
  if (text.empty()) return std::nullopt;
  double total_ms = 0;
  while (!text.empty()) {
    std::size_t digits = 0;
    while (digits < text.size() && ((text[digits] >= '0' && text[digits] <= '9') || text[digits] == '.'))
      ++digits;
    if (digits == 0) return std::nullopt;
    double value = 0;
    try {
      value = std::stod(std::string(text.substr(0, digits)));
    } catch (...) {
      return std::nullopt;
    }
    text.remove_prefix(digits);
    std::size_t unit_length = 0;
    while (unit_length < text.size() && !(text[unit_length] >= '0' && text[unit_length] <= '9'))
      ++unit_length;
    const auto unit = text.substr(0, unit_length);
    text.remove_prefix(unit_length);
    if (unit == "ms") {
      total_ms += value;
    } else if (unit == "s") {
      total_ms += value * 1000;
    } else if (unit == "m") {
      total_ms += value * 60'000;
    } else if (unit == "h") {
      total_ms += value * 3'600'000;
    } else {
      return std::nullopt;  // us/ns are too fine for any period here
    }
  }
  return std::chrono::milliseconds{static_cast<std::int64_t>(total_ms)};
}

namespace {

// What the configuration says about this node: its name, addresses and
// zone, the scheduler, the NodePort addresses and range.
std::expected<agent::NodeFacts, Error> node_facts(const Config& config) {
  agent::NodeFacts facts;
  facts.node_name = node_name(config.hostname_override.empty() ? hostname() : config.hostname_override);
  if (facts.node_name.empty())
    return std::unexpected(Error{.message = "an empty host name is invalid", .field = "--hostname-override"});
  facts.zone = config.kipvs.zone;
  facts.node_ips = config.kipvs.node_ips;
  // kube-proxy's bindAddress, when it is a real address, is the node IP.
  if (facts.node_ips.empty() && !config.bind_address.empty()) {
    if (auto address = ipvs::Address::parse(config.bind_address);
        address && *address != ipvs::Address::parse("0.0.0.0") && *address != ipvs::Address::parse("::")) {
      facts.node_ips.push_back(*address);
    }
  }
  facts.scheduler = config.ipvs.scheduler.empty() ? "rr" : config.ipvs.scheduler;
  facts.scheduler_flags = config.kipvs.scheduler_flags.empty()
                              ? agent::default_scheduler_flags(facts.scheduler)
                              : config.kipvs.scheduler_flag_bits;
  facts.proxy_name = config.kipvs.proxy_name;
  facts.affinity_mode = config.kipvs.affinity_mode;
  facts.node_port_addresses = config.node_port_addresses;
  facts.exclude_cidrs = config.ipvs.exclude_cidrs;
  facts.node_port_min = config.kipvs.node_port_min;
  facts.node_port_max = config.kipvs.node_port_max;
  facts.local_addresses = host_addresses(config.kipvs.interface_name);
  // Both families unless the kernel has no IPv6 (booted with ipv6.disable=1).
  if (std::error_code error; !std::filesystem::exists("/proc/net/if_inet6", error))
    facts.ip_families = {ipvs::Family::kIPv4};
  return facts;
}

}  // namespace

std::expected<AgentOptions, Error> agent_options(const Config& config,
                                                 const std::function<const char*(const char*)>& getenv) {
  using std::chrono::duration_cast;
  using std::chrono::milliseconds;
  AgentOptions options;
  options.manifests = config.kipvs.manifests;
  options.kubeconfig = config.kubeconfig;
  options.master = config.master;
  options.protobuf_lists = config.api_content_type == kProtobufContentType;
  const bool api_named = !config.kubeconfig.empty() || !config.master.empty();
  if (!options.manifests.empty() && api_named) {
    return std::unexpected(
        Error{.message = "give one object source: --manifests DIR, or --kubeconfig/--master"});
  }
  const auto set = [&](const char* name) {
    const char* value = getenv(name);
    return value != nullptr && *value != '\0';
  };
  options.use_api = options.manifests.empty();
  if (options.use_api && !api_named && !set("KUBECONFIG") && !set("KUBERNETES_SERVICE_HOST")) {
    return std::unexpected(
        Error{.message = std::string("no object source: give --manifests DIR, --kubeconfig FILE or --master "
                                     "URL (or run in a cluster)")});
  }

  auto& sync = options.sync;
  auto facts = node_facts(config);
  if (!facts) return std::unexpected(facts.error());
  sync.facts = std::move(*facts);
  sync.local_addresses = [interface = config.kipvs.interface_name] { return host_addresses(interface); };
  sync.node_ips_from_node = sync.facts.node_ips.empty();
  sync.zone_from_node = sync.facts.zone.empty();
  sync.min_sync_period = duration_cast<milliseconds>(config.ipvs.min_sync_period);
  sync.sync_period = duration_cast<milliseconds>(config.ipvs.sync_period);
  if (sync.sync_period.count() <= 0)
    return std::unexpected(Error{.message = "--ipvs-sync-period must be greater than 0"});
  // gracePeriod 0s: wait for the connections however long they last.
  if (config.kipvs.grace_period.count() == 0) {
    sync.grace_period = std::nullopt;
  } else {
    sync.grace_period = duration_cast<std::chrono::seconds>(config.kipvs.grace_period);
  }
  sync.drain_check_period = duration_cast<milliseconds>(config.kipvs.drain_check_period);
  if (sync.drain_check_period.count() <= 0)
    return std::unexpected(Error{.message = "--drain-check-period must be greater than 0"});
  sync.interface_name = config.kipvs.interface_name;
  // Binding addresses, a first sync makes the IPs local with routes and
  // swaps them for addresses afterwards (the kernel's cost of N addresses
  // is N^2).
  sync.routes_first = config.kipvs.service_ip_binding == address::Binding::kAddress;
  sync.nft = nft_config(config);
  auto owned_services = agent::OwnedServicesFile::for_this_namespace(config.kipvs.state_dir);
  if (!owned_services)
    return std::unexpected(Error{.message = owned_services.error().message, .field = "kipvs.stateDir"});
  sync.owned_services = std::move(*owned_services);
  options.strict_arp = config.ipvs.strict_arp;
  options.rate_estimation_disabled = config.kipvs.rate_estimation_disabled;
  options.proc_sys = config.kipvs.proc_sys;
  const auto seconds = [](std::chrono::nanoseconds d) {
    return static_cast<std::uint32_t>(std::chrono::duration_cast<std::chrono::seconds>(d).count());
  };
  options.timeouts = {.tcp = seconds(config.ipvs.tcp_timeout),
                      .tcp_fin = seconds(config.ipvs.tcp_fin_timeout),
                      .udp = seconds(config.ipvs.udp_timeout)};
  return options;
}

std::expected<AgentOptions, Error> parse_agent_args(std::span<const std::string_view> args) {
  if (!args.empty() && args.front() == "run") args = args.subspan(1);
  const auto config = parse_command_line(args);
  if (!config) return std::unexpected(Error{.message = config.error().text()});
  return agent_options(*config, [](const char* name) { return std::getenv(name); });
}

std::string format_operation(const ipvs::Operation& operation) {
  using Kind = ipvs::Operation::Kind;
  switch (operation.kind) {
    case Kind::kAddService:
      return ipvs::format_service_rule(operation.service);
    case Kind::kEditService:
      return "-E" + ipvs::format_service_rule(operation.service).substr(2);
    case Kind::kDeleteService:
      return "-D " + service_spec(operation.service);
    case Kind::kAddDestination:
      return ipvs::format_destination_rule(operation.service.key, operation.destination);
    case Kind::kEditDestination:
      return "-e" + ipvs::format_destination_rule(operation.service.key, operation.destination).substr(2);
    case Kind::kDeleteDestination: {
      const auto rule = ipvs::format_destination_rule(operation.service.key, operation.destination);
      const auto real = rule.find(" -r ");
      const auto end = rule.find(' ', real + 4);
      return "-d" + rule.substr(2, end == std::string::npos ? std::string::npos : end - 2);
    }
  }
  return {};
}

// ---------------------------------------------------------------------------

Agent::Agent(boost::asio::io_context& io, AgentOptions options, ipvs::Backend& backend,
             address::AddressBackend& addresses, agent::SyncObserver& observer, Logger& logger,
             MetricsObserver* changes, nftables::NftBackend* nft, conntrack::ConntrackBackend& conntrack)
    : io_(io),
      options_(std::move(options)),
      logger_(logger),
      sync_(
          io, backend, addresses, observer,
          [&] {
            auto sync = options_.sync;
            if (!sync.log) sync.log = [&logger](std::string_view line) { logger.info(0, line); };
            return sync;
          }(),
          nft, conntrack),
      metrics_(changes),
      changes_(changes != nullptr ? std::make_unique<ChangeNotifyingSink>(sync_, *changes) : nullptr),
      sink_(changes_ ? static_cast<k8s::ObjectSink*>(changes_.get()) : &sync_) {}

Agent::~Agent() {
  stop();
}

std::expected<void, Error> Agent::start() {
  utsname host{};
  const std::string release = ::uname(&host) == 0 ? host.release : "";
  const auto report = apply_sysctls(
      options_.proc_sys, kube_proxy_sysctls(options_.strict_arp, release, options_.rate_estimation_disabled));
  for (const auto& line : report.changed) logger_.info(0, "sysctl " + line);
  for (const auto& line : report.warnings) logger_.warning(line);
  if (options_.rate_estimation_disabled)
    logger_.warning(
        "kipvs.ipvsRateEstimation: disabled: the kernel's estimator also sums the connection, packet and "
        "byte counters that /metrics and ipvsadm --stats read; they stand still until it runs again");

  const auto& node_name = options_.sync.facts.node_name;
  if (!options_.use_api) {
    k8s::ManifestSource::Options source{.dir = options_.manifests,
                                        .node_name = node_name,
                                        .log = [this](std::string_view line) { logger_.info(0, line); }};
    manifests_ = std::make_unique<k8s::ManifestSource>(io_, source, *sink_);
    if (auto started = manifests_->start(); !started) return std::unexpected(started.error());
    return {};
  }
  auto config = k8s::load_client_config({.kubeconfig = options_.kubeconfig, .master = options_.master},
                                        k8s::process_environment());
  if (!config) return std::unexpected(Error{.message = config.error().text()});
  for (const auto& warning : k8s::client_config_warnings(*config)) logger_.warning(warning);
  tokens_ = std::make_shared<k8s::TokenSource>(config->token, config->token_file);
  k8s::HttpClientOptions client_options;
  if (metrics_ != nullptr) {
    // client-go's host label: the server's host:port.
    std::string host = config->server;
    if (const auto scheme = host.find("://"); scheme != std::string::npos) host = host.substr(scheme + 3);
    host = host.substr(0, host.find('/'));
    client_options.on_response = [observer = metrics_, host](unsigned status,
                                                             std::chrono::steady_clock::duration elapsed) {
      observer->api_request(host, status, elapsed);
    };
  }
  auto client = k8s::HttpClient::create(io_, *config, tokens_, client_options);
  if (!client) return std::unexpected(Error{.message = client.error().text()});
  http_ = std::move(*client);
  k8s::ApiSourceOptions api{
      .node_name = node_name, .proxy_name = options_.sync.facts.proxy_name.value_or(""), .tuning = {}};
  api.tuning.log = [this](std::string_view line) { logger_.info(0, line); };
  api.tuning.protobuf_lists = options_.protobuf_lists;
  if (metrics_ != nullptr) {
    api.tuning.on_watch_event = [observer = metrics_](k8s::ResourceKind kind, std::string_view type) {
      observer->watch_event(kind, type);
    };
    api.tuning.on_relist = [observer = metrics_](k8s::ResourceKind kind) { observer->relisted(kind); };
  }
  api_ = std::make_unique<k8s::ApiSource>(io_, *http_, *sink_, api);
  api_->start();
  logger_.info(0, "Watching the API server",
               {{"source", boost::json::value(std::string_view(config->source))},
                {"server", boost::json::value(std::string_view(http_->server()))}});
  return {};
}

void Agent::stop() {
  if (manifests_) manifests_->stop();
  if (api_) api_->stop();
  sync_.stop();
}

void Agent::reload() {
  if (manifests_) manifests_->reload();
}

std::expected<CleanupResult, Error> cleanup(ipvs::Backend& backend, address::AddressBackend& addresses,
                                            const std::string& interface, const agent::NodeFacts& facts,
                                            nftables::NftBackend* nft,
                                            const agent::OwnedServicesFile& recorded) {
  // No interface: a node kipvs never ran on, or one already cleaned up. Its
  // node-port services can still be there.
  auto on_link = addresses.list_addresses(interface);
  const bool link_missing = !on_link && (on_link.error().code == ENODEV || on_link.error().code == ENOENT);
  if (link_missing) on_link = std::set<ipvs::Address>{};
  if (!on_link)
    return std::unexpected(
        Error{.message = "cannot list the addresses of " + interface + ": " + on_link.error().message});
  auto services = backend.list_services();
  if (!services)
    return std::unexpected(Error{.message = "cannot list IPVS services: " + services.error().message});
  CleanupResult result;
  // Those it added whose address a crash left unbound, too.
  auto recorded_keys = recorded.load();
  if (!recorded_keys) {
    result.errors.push_back("cannot read the record of kipvs's virtual services: " +
                            recorded_keys.error().text());
    recorded_keys.emplace();
  }
  std::vector<ipvs::Operation> operations;
  for (const auto& state : *services) {
    const auto& key = state.service.key;
    if (!owns_service(key, *on_link, facts) &&
        !(recorded_keys->contains(key) && !facts.is_excluded(key.address)))
      continue;
    operations.push_back(
        {.kind = ipvs::Operation::Kind::kDeleteService, .service = state.service, .destination = {}});
  }
  const auto results = backend.apply(operations);
  for (std::size_t i = 0; i < results.size(); ++i) {
    if (results[i]) {
      ++result.services_deleted;
    } else {
      result.errors.push_back(results[i].error().message);
    }
  }
  for (const auto& address : *on_link) {
    if (auto deleted = addresses.delete_address(interface, address); deleted) {
      ++result.addresses_deleted;
    } else {
      result.errors.push_back(deleted.error().message);
    }
  }
  if (!link_missing) {
    if (auto deleted = addresses.delete_link(interface); deleted) {
      result.interface_deleted = true;
    } else if (deleted.error().code != ENODEV) {
      result.errors.push_back(deleted.error().message);
    }
  }
  if (result.errors.empty()) {
    if (auto removed = recorded.remove(); !removed) result.errors.push_back(removed.error().text());
  }
  if (nft != nullptr) {
    if (auto deleted = nft->delete_table(); deleted) {
      result.nft_table_deleted = true;
    } else if (deleted.error().code != ENOENT) {
      result.errors.push_back("cannot delete the nftables table: " + deleted.error().message);
    }
  }
  return result;
}

std::vector<ipvs::Address> host_addresses(const std::string& except_interface) {
  std::vector<ipvs::Address> out;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return out;
  for (const ifaddrs* entry = list; entry != nullptr; entry = entry->ifa_next) {
    if (entry->ifa_addr == nullptr || except_interface == entry->ifa_name) continue;
    ipvs::Address address;
    if (entry->ifa_addr->sa_family == AF_INET) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(entry->ifa_addr);
      address.family = ipvs::Family::kIPv4;
      std::memcpy(address.bytes.data(), &in->sin_addr, 4);
    } else if (entry->ifa_addr->sa_family == AF_INET6) {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(entry->ifa_addr);
      address.family = ipvs::Family::kIPv6;
      std::memcpy(address.bytes.data(), &in6->sin6_addr, 16);
    } else {
      continue;
    }
    if (std::ranges::find(out, address) == out.end()) out.push_back(address);
  }
  ::freeifaddrs(list);
  return out;
}

namespace {

// Starts one HTTP server on a configured address ("" disables it). A bind
// failure is logged and the agent runs on, as kube-proxy does: the rules
// matter more than the scrape.
std::unique_ptr<metrics::RetryingHttpServer> serve(boost::asio::io_context& io, Logger& logger,
                                                   std::string_view what, const std::string& address,
                                                   metrics::AsyncHandler handler,
                                                   metrics::HttpServerOptions options) {
  if (address.empty()) return nullptr;
  auto endpoint = metrics::parse_endpoint(address);
  if (!endpoint) {
    logger.error("Cannot serve " + std::string(what), endpoint.error().text(),
                 {{"address", boost::json::value(std::string_view(address))}});
    return nullptr;
  }
  return std::make_unique<metrics::RetryingHttpServer>(
      io, std::move(handler), *endpoint,
      [&logger, what = std::string(what), address](bool ok, const std::string& message) {
        if (ok) {
          logger.info(0, "Serving " + what, {{"address", boost::json::value(std::string_view(address))}});
        } else {
          logger.error("Cannot serve " + what, message,
                       {{"address", boost::json::value(std::string_view(address))}});
        }
      },
      std::chrono::seconds{5}, std::move(options));
}

// --cleanup: removes what kipvs programmed, then exits.
int run_cleanup(const Config& config, const std::expected<AgentOptions, Error>& options,
                ipvs::NetlinkBackend& backend, address::NetlinkAddressBackend& addresses,
                nftables::NftBackend* nft, Logger& logger) {
  agent::NodeFacts facts;
  if (options) facts = options->sync.facts;
  // Without --node-ip (and no Node object to ask), the node ports kipvs
  // served are on this host's addresses.
  if (facts.node_ips.empty()) facts.node_ips = host_addresses(config.kipvs.interface_name);
  auto recorded = agent::OwnedServicesFile::for_this_namespace(config.kipvs.state_dir);
  if (!recorded) {
    logger.error("Cleanup failed", recorded.error().text());
    return 1;
  }
  auto done = cleanup(backend, addresses, config.kipvs.interface_name, facts, nft, *recorded);
  if (!done) {
    logger.error("Cleanup failed", done.error().text());
    return 1;
  }
  for (const auto& error : done->errors) logger.error("Cleanup", error);
  logger.info(0, "Cleaned up",
              {{"virtualServices", boost::json::value(done->services_deleted)},
               {"addresses", boost::json::value(done->addresses_deleted)},
               {"nftablesTable", boost::json::value(done->nft_table_deleted)},
               {"interface", boost::json::value(std::string_view(config.kipvs.interface_name))},
               {"interfaceDeleted", boost::json::value(done->interface_deleted)}});
  return done->errors.empty() ? 0 : 1;
}

// The per-Service (or per-destination) byte and packet series. Scrapes read
// the kernel's counters on the scraper's thread, through a netlink socket of
// their own (the sync's belongs to the sync thread): returned, to be kept
// as long as `metrics`.
std::unique_ptr<ipvs::NetlinkBackend> add_throughput_metrics(const Config& config, metrics::Metrics& metrics,
                                                             ServiceNames& service_names, Logger& logger) {
  if (config.kipvs.throughput_metrics == ThroughputMetrics::kNone) return nullptr;
  auto opened = ipvs::NetlinkBackend::open();
  if (!opened) {
    logger.error("Cannot open IPVS for /metrics; no throughput series", opened.error().message);
    return nullptr;
  }
  auto scrape_kernel = std::move(*opened);
  const bool per_destination = config.kipvs.throughput_metrics == ThroughputMetrics::kDestinations;
  auto snapshot = [&kernel = *scrape_kernel, &service_names, &logger,
                   per_destination]() -> metrics::ThroughputSnapshot {
    // Per-Service series need the services' dump only: one request, where
    // the destinations take one more per service (at 10,000 Services the
    // difference is most of a scrape's time).
    std::expected<std::vector<ipvs::ServiceWithDestinations>, Error> dump;
    if (per_destination) {
      dump = kernel.list_all();
    } else if (auto services = kernel.list_services()) {
      dump.emplace();
      dump->reserve(services->size());
      for (auto& service : *services) dump->push_back(ipvs::ServiceWithDestinations{std::move(service), {}});
    } else {
      dump = std::unexpected(services.error());
    }
    if (!dump) {
      logger.error("Cannot read IPVS counters for /metrics", dump.error().message);
      return {};
    }
    const auto names = service_names.latest();
    return metrics::throughput_snapshot(
        *dump, [&names](const ipvs::ServiceKey& key) -> std::optional<metrics::ServiceLabels> {
          auto found = names->find(key);
          if (found == names->end()) return std::nullopt;
          return found->second;
        });
  };
  metrics.add_text_collectable(std::make_shared<metrics::ThroughputCollector>(
      snapshot,
      metrics::ThroughputOptions{.destinations = per_destination, .max_age = std::chrono::seconds{1}}));
  return scrape_kernel;
}

// Where Service health-check node ports are served: the node's addresses
// inside nodePortAddresses, or (nullopt) every address.
std::optional<std::vector<boost::asio::ip::address>> health_check_addresses(
    const std::optional<std::vector<ipvs::Address>>& ips, Logger& logger) {
  if (!ips) return std::nullopt;
  std::vector<boost::asio::ip::address> addresses;
  for (const auto& ip : *ips) {
    boost::system::error_code error;
    auto address = boost::asio::ip::make_address(ip.to_string(), error);
    if (!error) addresses.push_back(address);
  }
  if (addresses.empty())
    logger.error(
        "No address of this node is inside nodePortAddresses; health-check node ports are not served", "");
  return addresses;
}

// What the metrics observer reads from the sync and the kernel, and what it
// does after each sync (the Service health checks follow the sync).
MetricsObserver::Sources observer_sources(agent::Sync& sync, ipvs::NetlinkBackend& kernel,
                                          metrics::ServiceHealthServer& service_health, Logger& logger) {
  return {
      .table_size =
          [&sync] {
            std::size_t destinations = 0;
            for (const auto& [key, entry] : sync.observed()) destinations += entry.destinations.size();
            return std::pair{sync.observed().size(), destinations};
          },
      .socket_reopens = [&kernel] { return kernel.counters().reopens; },
      .after_sync =
          [&sync, &service_health, &logger] {
            std::map<metrics::ServiceName, std::uint16_t> ports;
            std::map<metrics::ServiceName, int> counts;
            for (const auto& [service, check] : sync.health_checks()) {
              const metrics::ServiceName name{service.namespace_, service.name};
              ports[name] = check.node_port;
              counts[name] = static_cast<int>(check.local_endpoints);
            }
            for (const auto& failure : service_health.sync_services(ports))
              logger.error("Cannot serve a Service health check", failure);
            service_health.sync_endpoints(counts);
          },
  };
}

// The metrics and health servers, answering on a thread of their own so
// that /livez and /healthz answer while a sync holds the sync thread.
class HttpServers {
 public:
  HttpServers(const Config& config, Logger& logger, metrics::Metrics& metrics, metrics::HealthState& health,
              metrics::Scraper& scraper)
      : work_(boost::asio::make_work_guard(io_)) {
    auto dropped = [&metrics](std::string what) {
      return [&metrics, what](metrics::DropReason reason) {
        metrics.http_connection_dropped(what, metrics::drop_reason_label(reason));
      };
    };
    const auto configz = boost::json::serialize(to_json(config));
    metrics_ =
        serve(io_, logger, "metrics", config.metrics_bind_address,
              metrics::metrics_handler({.configz = [configz] { return configz; }, .scraper = &scraper}),
              {.dropped = dropped("metrics")});
    health_ = serve(io_, logger, "health", config.healthz_bind_address,
                    metrics::answered_at_once(metrics::health_handler(health, &metrics)),
                    {.dropped = dropped("health")});
    thread_ = std::thread([this] { io_.run(); });
  }
  ~HttpServers() { stop(); }
  HttpServers(const HttpServers&) = delete;
  HttpServers& operator=(const HttpServers&) = delete;

  // Closes the servers on their thread, then stops it.
  void stop() {
    if (!thread_.joinable()) return;
    boost::asio::post(io_, [this] {
      if (metrics_) metrics_->close();
      if (health_) health_->close();
      work_.reset();
      io_.stop();
    });
    thread_.join();
  }

 private:
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::unique_ptr<metrics::RetryingHttpServer> metrics_;
  std::unique_ptr<metrics::RetryingHttpServer> health_;
  std::thread thread_;
};

// The ip_family label values of the families this node serves.
std::vector<std::string> family_labels(const agent::NodeFacts& facts) {
  std::vector<std::string> labels;
  for (auto family : facts.families())
    labels.emplace_back(family == ipvs::Family::kIPv6 ? metrics::kIPv6 : metrics::kIPv4);
  if (labels.empty()) labels.emplace_back(metrics::kIPv4);
  return labels;
}

// Called on the scraper's thread: what /metrics needs from the sync thread
// (the socket reopen count, the Service names) is refreshed there first;
// the table-size gauges were set after the last sync.
// A scrape waits for that at most a second, so during a long first sync it
// serves what was published before.
void refresh_for_scrape(boost::asio::io_context& io, MetricsObserver& observer, ServiceNames& names,
                        agent::Sync& sync) {
  auto refreshed = std::make_shared<std::promise<void>>();
  auto done = refreshed->get_future();
  boost::asio::post(io, [&observer, &names, &sync, refreshed] {
    const auto started = std::chrono::steady_clock::now();
    observer.refresh_for_scrape();
    names.refresh(sync);
    observer.scrape_refreshed(std::chrono::steady_clock::now() - started);
    refreshed->set_value();
  });
  done.wait_for(std::chrono::seconds{1});
}

// SIGINT and SIGTERM stop kipvs, its rules left in place; SIGHUP reloads.
class Signals {
 public:
  Signals(boost::asio::io_context& io, Agent& agent, Logger& logger)
      : io_(io), agent_(agent), logger_(logger), stop_(io, SIGINT, SIGTERM), reload_(io, SIGHUP) {
    stop_.async_wait([this](const boost::system::error_code& error, int signal) {
      if (error) return;
      logger_.info(0, "Stopping; the rules stay in place", {{"signal", boost::json::value(signal)}});
      agent_.stop();
      io_.stop();
    });
    wait_reload();
  }

 private:
  void wait_reload() {
    reload_.async_wait([this](const boost::system::error_code& error, int) {
      if (error) return;
      agent_.reload();
      wait_reload();
    });
  }

  boost::asio::io_context& io_;
  Agent& agent_;
  Logger& logger_;
  boost::asio::signal_set stop_;
  boost::asio::signal_set reload_;
};

// The dummy interface deleted behind kipvs's back (kube-proxy --cleanup
// deletes it and flushes IPVS): a full sync puts everything back at once,
// half a second later so that the rest of such a cleanup is done first.
class LinkRepair {
 public:
  LinkRepair(boost::asio::io_context& io, agent::Sync& sync, std::string interface_name, Logger& logger)
      : sync_(sync), interface_name_(std::move(interface_name)), logger_(logger), repair_(io) {
    auto opened = address::LinkWatch::open();
    if (!opened) {
      logger.warning("Cannot watch the links; a deleted dummy interface comes back at the next resync",
                     {{"error", boost::json::value(opened.error().message)}});
      return;
    }
    watch_ = std::move(*opened);
    // A duplicate the descriptor may own and close; LinkWatch closes its own.
    events_.emplace(io, ::dup(watch_->fd()));
    wait();
  }
  ~LinkRepair() {
    if (events_) events_->close();
  }
  LinkRepair(const LinkRepair&) = delete;
  LinkRepair& operator=(const LinkRepair&) = delete;

 private:
  void wait() {
    events_->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                        [this](const boost::system::error_code& error) {
                          if (error) return;
                          if (read()) wait();
                        });
  }
  bool read() {
    auto deleted = watch_->read_events(interface_name_);
    if (!deleted) {
      logger_.warning("Cannot read link events; no longer watching",
                      {{"error", boost::json::value(deleted.error().message)}});
      return false;
    }
    if (*deleted) {
      logger_.info(0, "The dummy interface was deleted; syncing everything again",
                   {{"interface", boost::json::value(std::string_view(interface_name_))}});
      repair_.expires_after(std::chrono::milliseconds{500});
      repair_.async_wait([this](const boost::system::error_code& cancelled) {
        if (!cancelled && sync_.initial_sync_done()) (void)sync_.sync_full();
      });
    }
    return true;
  }

  agent::Sync& sync_;
  std::string interface_name_;
  Logger& logger_;
  boost::asio::steady_timer repair_;
  std::unique_ptr<address::LinkWatch> watch_;
  std::optional<boost::asio::posix::stream_descriptor> events_;
};

}  // namespace

int run_agent(const Config& config, std::ostream& err) {
  Logger logger(err, config.verbosity, config.log_format);
  for (const auto& warning : config.warnings) logger.warning(warning);
  for (const auto& field : config.ignored_fields)
    logger.info(2, "Ignored", {{"field", boost::json::value(std::string_view(field))}});

  auto options = agent_options(config, [](const char* name) { return std::getenv(name); });
  // The backends: IPVS and rtnetlink are required; without nftables kipvs
  // still programs IPVS (no masquerading or filtering), and says so.
  if (!options && !config.cleanup) {
    logger.error("Cannot start", options.error().text());
    return 1;
  }
  auto backend = ipvs::NetlinkBackend::open();
  if (!backend) {
    logger.error("Cannot open IPVS (is the ip_vs kernel module available?)", backend.error().message);
    return 1;
  }
  auto addresses = address::NetlinkAddressBackend::open(config.kipvs.service_ip_binding);
  if (!addresses) {
    logger.error("Cannot open rtnetlink", addresses.error().message);
    return 1;
  }
  auto nft = nftables::LibNftBackend::open();
  if (!nft) logger.error("Cannot open nftables; no masquerading or filtering", nft.error().message);
  nftables::NftBackend* nft_backend = nft ? nft->get() : nullptr;
  if (config.cleanup) return run_cleanup(config, options, **backend, **addresses, nft_backend, logger);

  if (auto set = set_ipvs_timeouts(**backend, options->timeouts); !set)
    logger.warning("Cannot set the IPVS connection timeouts; the kernel's stay",
                   {{"error", boost::json::value(set.error().message)}});

  boost::asio::io_context io;
  metrics::Metrics metrics(family_labels(options->sync.facts));
  metrics::HealthState health(config.health_timeout());
  MetricsObserver observer(metrics, &health);
  auto conntrack = conntrack::NetlinkConntrackBackend::open();
  if (!conntrack)
    logger.error("Cannot open ctnetlink; UDP conntrack entries are not cleared", conntrack.error().message);
  // The host's addresses are what matters here: read before options go.
  const auto health_ips = options->sync.facts.health_check_ips();
  conntrack::NoConntrack no_conntrack;
  Agent agent(io, std::move(*options), **backend, **addresses, observer, logger, &observer, nft_backend,
              conntrack ? static_cast<conntrack::ConntrackBackend&>(**conntrack) : no_conntrack);
  auto& sync = agent.sync();

  metrics.add_text_collectable(std::make_shared<metrics::ProcessCollector>());
  ServiceNames service_names;
  const auto scrape_kernel = add_throughput_metrics(config, metrics, service_names, logger);
  metrics::ServiceHealthServer service_health(io, health_check_addresses(health_ips, logger), health);
  observer.set_sources(observer_sources(sync, **backend, service_health, logger));

  // /metrics is built on the scraper's thread; between scrapes it keeps
  // nothing built for them.
  metrics::Scraper scraper(
      [&] {
        refresh_for_scrape(io, observer, service_names, sync);
        return metrics.serialize();
      },
      [&] {
        metrics.forget_between_scrapes();
        service_names.forget();
      });
  HttpServers http(config, logger, metrics, health, scraper);

  if (auto started = agent.start(); !started) {
    logger.error("Cannot start", started.error().text());
    scraper.stop();
    http.stop();
    return 1;
  }
  Signals signals(io, agent, logger);
  LinkRepair link_repair(io, sync, config.kipvs.interface_name, logger);
  io.run();
  // The scraper first: its last answer goes out through the HTTP thread.
  scraper.stop();
  http.stop();
  return 0;
}

int run_main(std::span<const std::string_view> args, std::ostream& out, std::ostream& err) {
  if (!args.empty() && args.front() == "check-config") return run_check_config(args.subspan(1), out, err);
  if (!args.empty() && args.front() == "run") args = args.subspan(1);
  auto parsed = parse_command_line(args);
  if (!parsed) {
    err << "kipvs: " << parsed.error().text() << '\n';
    return 1;
  }
  Config config = std::move(*parsed);
  if (config.help) {
    out << help_text();
    return 0;
  }
  return run_agent(config, err);
}

int run_diff(std::span<const std::string_view> args, std::ostream& out, std::ostream& err) {
  auto options = parse_render_args(args);
  if (!options) {
    err << "kipvs diff: " << options.error().text() << "\nusage: kipvs diff <the flags of kipvs render>\n";
    return 2;
  }
  auto rendered = render(*options);
  if (!rendered) {
    err << "kipvs diff: " << rendered.error().text() << '\n';
    return 1;
  }
  for (const auto& warning : rendered->warnings) err << "kipvs diff: warning: " << warning << '\n';
  auto backend = ipvs::NetlinkBackend::open();
  if (!backend) {
    err << "kipvs diff: cannot open IPVS: " << backend.error().message << '\n';
    return 1;
  }
  auto dump = (*backend)->list_all();
  if (!dump) {
    err << "kipvs diff: cannot read the IPVS table: " << dump.error().message << '\n';
    return 1;
  }
  const std::string interface = "kube-ipvs0";
  std::set<ipvs::Address> on_link;
  if (auto link = address::NetlinkAddressBackend::open()) {
    if (auto listed = (*link)->list_addresses(interface)) on_link = *listed;
  }
  const auto& state = rendered->state;
  auto owned_addresses = state.bound_addresses;
  owned_addresses.insert(on_link.begin(), on_link.end());
  const auto facts = options->facts;
  const auto observed = ipvs::table_from(*dump);
  const auto plan = ipvs::diff(state.table, observed, [&](const ipvs::ServiceKey& key) {
    return owns_service(key, owned_addresses, facts);
  });
  // What a first sync would do: busy destinations drain instead of going.
  const auto drained =
      ipvs::apply_drain_policy(plan, observed, ipvs::connections_from(*dump), {}, ipvs::DrainClock::now());
  for (const auto& address : state.bound_addresses) {
    if (!on_link.contains(address))
      out << "# ip address add " << address.to_string() << " dev " << interface << '\n';
  }
  for (const auto& operation : drained.plan.operations) out << format_operation(operation) << '\n';
  for (const auto& address : on_link) {
    if (!state.bound_addresses.contains(address)) {
      out << "# ip address delete " << address.to_string() << " dev " << interface << '\n';
    }
  }
  err << "kipvs diff: " << drained.plan.size() << " operations (" << observed.size()
      << " virtual services in the kernel, " << state.table.size() << " desired)\n";
  return 0;
}

}  // namespace kipvs::app
