#include "agent/agent.h"

#include <unistd.h>

#include <csignal>
#include <iostream>
#include <ostream>

#include <boost/asio/signal_set.hpp>

#include "agent/render.h"
#include "agent/sysctl.h"
#include "ipvs/diff.h"
#include "ipvs/ipvsadm_format.h"
#include "ipvs/netlink_backend.h"
#include "k8s/api_source.h"
#include "k8s/http_client.h"
#include "k8s/kubeconfig.h"
#include "k8s/manifests.h"

namespace kipvs::agent {

namespace {

constexpr std::string_view kUsage =
    "usage: kipvs [run] (--manifests DIR | --kubeconfig FILE | --master URL) [--hostname-override NAME]\n"
    "             [--node-ip IP[,IP...]] [--zone ZONE] [--ipvs-scheduler NAME] [--ipvs-sync-period DUR]\n"
    "             [--ipvs-min-sync-period DUR] [--ipvs-strict-arp] [--ipvs-exclude-cidrs CIDR[,...]]\n"
    "             [--nodeport-addresses CIDR[,...]] [--graceful-termination-period DUR]\n"
    "             [--drain-check-period DUR] [--dummy-interface NAME] [--proc-sys DIR]\n"
    "       kipvs render --manifests DIR ...   (the desired table, ipvsadm -Sn format)\n"
    "       kipvs diff --manifests DIR ...     (what a sync would change in the kernel)\n";

std::vector<std::string_view> split_list(std::string_view text) {
  std::vector<std::string_view> items;
  while (!text.empty()) {
    const auto comma = text.find(',');
    if (auto item = text.substr(0, comma); !item.empty()) items.push_back(item);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return items;
}

std::expected<std::vector<Cidr>, std::string> parse_cidrs(std::string_view flag, std::string_view value) {
  std::vector<Cidr> cidrs;
  for (auto item : split_list(value)) {
    auto cidr = Cidr::parse(item);
    if (!cidr) return std::unexpected(std::string(flag) + ": \"" + std::string(item) + "\" is not a CIDR");
    cidrs.push_back(*cidr);
  }
  return cidrs;
}

std::string hostname() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0) return "";
  return name;
}

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

std::expected<AgentOptions, std::string> parse_agent_args(std::span<const std::string_view> args) {
  if (!args.empty() && args.front() == "run") args = args.subspan(1);
  AgentOptions options;
  auto& sync = options.sync;
  auto& facts = sync.facts;
  bool node_ips_set = false;
  bool zone_set = false;
  auto duration = [](std::string_view flag,
                     std::string_view value) -> std::expected<std::chrono::milliseconds, std::string> {
    auto parsed = parse_go_duration(value);
    if (!parsed)
      return std::unexpected(std::string(flag) + ": \"" + std::string(value) + "\" is not a duration");
    return *parsed;
  };
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string_view flag = args[i];
    std::string_view value;
    const auto equals = flag.find('=');
    const bool boolean = flag.substr(0, equals) == "--ipvs-strict-arp";
    if (flag.starts_with("--") && equals != std::string_view::npos) {
      value = flag.substr(equals + 1);
      flag = flag.substr(0, equals);
    } else if (boolean) {
      value = "true";
    } else if (flag.starts_with("--") && i + 1 < args.size()) {
      value = args[++i];
    } else {
      return std::unexpected("unexpected argument \"" + std::string(flag) +
                             "\" (or a flag without its value)");
    }

    if (flag == "--manifests") {
      options.manifests = std::filesystem::path(value);
    } else if (flag == "--kubeconfig") {
      options.kubeconfig = std::string(value);
      options.use_api = true;
    } else if (flag == "--master") {
      options.master = std::string(value);
      options.use_api = true;
    } else if (flag == "--hostname-override") {
      facts.node_name = std::string(value);
    } else if (flag == "--node-ip") {
      facts.node_ips.clear();
      for (auto item : split_list(value)) {
        auto address = ipvs::Address::parse(item);
        if (!address || item.starts_with('[')) {
          return std::unexpected("--node-ip: \"" + std::string(item) + "\" is not an IP address");
        }
        facts.node_ips.push_back(*address);
      }
      node_ips_set = true;
    } else if (flag == "--zone") {
      facts.zone = std::string(value);
      zone_set = true;
    } else if (flag == "--ipvs-scheduler") {
      if (!value.empty() && !is_known_scheduler(value)) {
        return std::unexpected("--ipvs-scheduler: \"" + std::string(value) +
                               "\" is not a known IPVS scheduler");
      }
      facts.scheduler = value.empty() ? "rr" : std::string(value);
    } else if (flag == "--ipvs-sync-period" || flag == "--ipvs-min-sync-period" ||
               flag == "--graceful-termination-period" || flag == "--drain-check-period") {
      auto parsed = duration(flag, value);
      if (!parsed) return std::unexpected(parsed.error());
      if (flag == "--ipvs-sync-period") {
        if (parsed->count() <= 0)
          return std::unexpected(std::string("--ipvs-sync-period must be greater than 0"));
        sync.sync_period = *parsed;
      } else if (flag == "--ipvs-min-sync-period") {
        sync.min_sync_period = *parsed;
      } else if (flag == "--drain-check-period") {
        if (parsed->count() <= 0)
          return std::unexpected(std::string("--drain-check-period must be greater than 0"));
        sync.drain_check_period = *parsed;
      } else {
        sync.grace_period = std::chrono::duration_cast<std::chrono::seconds>(*parsed);
      }
    } else if (flag == "--ipvs-strict-arp") {
      if (value != "true" && value != "false")
        return std::unexpected(std::string("--ipvs-strict-arp: true or false"));
      options.strict_arp = value == "true";
    } else if (flag == "--ipvs-exclude-cidrs") {
      auto cidrs = parse_cidrs(flag, value);
      if (!cidrs) return std::unexpected(cidrs.error());
      facts.exclude_cidrs = std::move(*cidrs);
    } else if (flag == "--nodeport-addresses") {
      auto cidrs = parse_cidrs(flag, value);
      if (!cidrs) return std::unexpected(cidrs.error());
      facts.node_port_addresses = std::move(*cidrs);
    } else if (flag == "--dummy-interface") {
      if (value.empty() || value.size() >= 16)
        return std::unexpected(std::string("--dummy-interface: 1 to 15 characters"));
      sync.interface_name = std::string(value);
    } else if (flag == "--proc-sys") {
      options.proc_sys = std::filesystem::path(value);
    } else {
      return std::unexpected("unknown flag " + std::string(flag));
    }
  }
  if (options.manifests.empty() == !options.use_api) {
    return std::unexpected(std::string("give exactly one source: --manifests DIR, or --kubeconfig/--master"));
  }
  if (facts.node_name.empty()) facts.node_name = hostname();
  sync.node_ips_from_node = !node_ips_set;
  sync.zone_from_node = !zone_set;
  return options;
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
             ipvs::AddressBackend* addresses, SyncObserver& observer)
    : io_(io), options_(std::move(options)), sync_(io, backend, addresses, observer, options_.sync) {}

Agent::~Agent() {
  stop();
}

std::expected<void, std::string> Agent::start() {
  const auto report = apply_sysctls(options_.proc_sys, kube_proxy_sysctls(options_.strict_arp));
  for (const auto& line : report.changed) std::cerr << "kipvs: sysctl " << line << '\n';
  for (const auto& line : report.warnings) std::cerr << "kipvs: warning: " << line << '\n';

  const auto& node_name = options_.sync.facts.node_name;
  if (!options_.use_api) {
    k8s::ManifestSource::Options source{.dir = options_.manifests, .node_name = node_name, .log = {}};
    manifests_ = std::make_unique<k8s::ManifestSource>(io_, source, sync_);
    if (auto started = manifests_->start(); !started) return std::unexpected(started.error());
    return {};
  }
  auto config = k8s::load_client_config({.kubeconfig = options_.kubeconfig, .master = options_.master},
                                        k8s::process_environment());
  if (!config) return std::unexpected(k8s::to_string(config.error()));
  tokens_ = std::make_shared<k8s::TokenSource>(config->token, config->token_file);
  auto client = k8s::HttpClient::create(io_, *config, tokens_);
  if (!client) return std::unexpected(k8s::to_string(client.error()));
  http_ = std::move(*client);
  k8s::ApiSourceOptions api{
      .node_name = node_name, .proxy_name = options_.sync.facts.proxy_name.value_or(""), .tuning = {}};
  api_ = std::make_unique<k8s::ApiSource>(io_, *http_, sync_, api);
  api_->start();
  std::cerr << "kipvs: watching " << config->source << " (" << http_->server() << ")\n";
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

int run_agent(std::span<const std::string_view> args, SyncObserver& observer) {
  auto options = parse_agent_args(args);
  if (!options) {
    std::cerr << "kipvs: " << options.error() << '\n' << kUsage;
    return 2;
  }
  auto backend = ipvs::NetlinkBackend::open();
  if (!backend) {
    std::cerr << "kipvs: cannot open IPVS: " << backend.error().message << "\n";
    return 1;
  }
  auto addresses = ipvs::NetlinkAddressBackend::open();
  if (!addresses) {
    std::cerr << "kipvs: cannot open rtnetlink: " << addresses.error().message << '\n';
    return 1;
  }

  boost::asio::io_context io;
  Agent agent(io, std::move(*options), **backend, addresses->get(), observer);
  if (auto started = agent.start(); !started) {
    std::cerr << "kipvs: " << started.error() << '\n';
    return 1;
  }
  boost::asio::signal_set stop_signals(io, SIGINT, SIGTERM);
  stop_signals.async_wait([&](const boost::system::error_code& error, int signal) {
    if (error) return;
    std::cerr << "kipvs: signal " << signal << ", stopping (rules stay in place)\n";
    agent.stop();
    io.stop();
  });
  boost::asio::signal_set reload_signal(io, SIGHUP);
  std::function<void()> wait_reload = [&] {
    reload_signal.async_wait([&](const boost::system::error_code& error, int) {
      if (error) return;
      agent.reload();
      wait_reload();
    });
  };
  wait_reload();
  io.run();
  return 0;
}

int run_diff(std::span<const std::string_view> args, std::ostream& out, std::ostream& err) {
  auto options = parse_render_args(args);
  if (!options) {
    err << "kipvs diff: " << options.error() << "\nusage: kipvs diff <the flags of kipvs render>\n";
    return 2;
  }
  auto rendered = render(*options);
  if (!rendered) {
    err << "kipvs diff: " << rendered.error() << '\n';
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
  if (auto link = ipvs::NetlinkAddressBackend::open()) {
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

}  // namespace kipvs::agent
