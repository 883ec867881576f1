#include "app/render.h"

#include <algorithm>
#include <iterator>
#include <ostream>
#include <variant>

#include "ipvs/ipvsadm_format.h"
#include "k8s/manifests.h"

namespace kipvs::app {

namespace {

constexpr std::string_view kUsage =
    "usage: kipvs render --manifests DIR [--hostname-override NAME] [--node-ip IP[,IP...]] [--zone ZONE]\n"
    "                    [--ipvs-scheduler NAME] [--ipvs-scheduler-flags LIST] [--affinity-mode "
    "persistence|hash]\n"
    "                    [--proxy-name NAME] [--nodeport-addresses CIDR[,CIDR...]] [--ipvs-exclude-cidrs "
    "CIDR[,CIDR...]]\n";

constexpr std::string_view kZoneLabel = "topology.kubernetes.io/zone";

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

std::expected<std::vector<agent::Cidr>, Error> parse_cidrs(std::string_view flag, std::string_view value) {
  std::vector<agent::Cidr> cidrs;
  for (auto item : split_list(value)) {
    auto cidr = agent::Cidr::parse(item);
    if (!cidr)
      return std::unexpected(
          Error{.message = "\"" + std::string(item) + "\" is not a CIDR", .field = std::string(flag)});
    cidrs.push_back(*cidr);
  }
  return cidrs;
}

}  // namespace

namespace {

// One of render's flags with its value; `flags_given` notes
// --ipvs-scheduler-flags (else the scheduler's default flags apply).
std::expected<void, Error> apply_render_flag(RenderOptions& options, std::string_view flag,
                                             std::string_view value, bool& flags_given) {
  auto& facts = options.facts;
  const auto refuse = [&](std::string message) {
    return std::unexpected(Error{.message = std::move(message), .field = std::string(flag)});
  };
  const auto quoted = [](std::string_view text) { return "\"" + std::string(text) + "\""; };
  if (flag == "--manifests") {
    options.manifests = std::filesystem::path(value);
  } else if (flag == "--hostname-override") {
    facts.node_name = std::string(value);
  } else if (flag == "--node-ip") {
    facts.node_ips.clear();  // the last occurrence wins, as for every flag
    for (auto item : split_list(value)) {
      auto address = ipvs::Address::parse(item);
      if (!address || item.starts_with('[')) return refuse(quoted(item) + " is not an IP address");
      facts.node_ips.push_back(*address);
    }
    options.node_ips_set = true;
  } else if (flag == "--zone") {
    facts.zone = std::string(value);
    options.zone_set = true;
  } else if (flag == "--ipvs-scheduler") {
    if (!value.empty() && !agent::is_known_scheduler(value))
      return refuse(quoted(value) + " is not a known IPVS scheduler");
    facts.scheduler = value.empty() ? "rr" : std::string(value);
  } else if (flag == "--ipvs-scheduler-flags") {
    auto bits = agent::parse_scheduler_flags(value);
    if (!bits) return refuse(quoted(value) + " names an unknown flag");
    facts.scheduler_flags = *bits;
    flags_given = true;
  } else if (flag == "--affinity-mode") {
    if (value == "persistence") {
      facts.affinity_mode = agent::AffinityMode::kPersistence;
    } else if (value == "hash") {
      facts.affinity_mode = agent::AffinityMode::kHash;
    } else {
      return refuse(quoted(value) + " is not persistence or hash");
    }
  } else if (flag == "--proxy-name") {
    facts.proxy_name = std::string(value);
  } else if (flag == "--nodeport-addresses" || flag == "--ipvs-exclude-cidrs") {
    auto cidrs = parse_cidrs(flag, value);
    if (!cidrs) return std::unexpected(cidrs.error());
    (flag == "--nodeport-addresses" ? facts.node_port_addresses : facts.exclude_cidrs) = std::move(*cidrs);
  } else {
    return std::unexpected(Error{.message = "unknown flag " + std::string(flag)});
  }
  return {};
}

}  // namespace

std::expected<RenderOptions, Error> parse_render_args(std::span<const std::string_view> args) {
  RenderOptions options;
  bool flags_given = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string_view flag = args[i];
    std::string_view value;
    if (const auto equals = flag.find('='); flag.starts_with("--") && equals != std::string_view::npos) {
      value = flag.substr(equals + 1);
      flag = flag.substr(0, equals);
    } else if (flag.starts_with("--") && i + 1 < args.size()) {
      value = args[++i];
    } else {
      return std::unexpected(Error{.message = "unexpected argument \"" + std::string(flag) +
                                              "\" (or a flag without its value)"});
    }
    if (auto applied = apply_render_flag(options, flag, value, flags_given); !applied)
      return std::unexpected(applied.error());
  }
  auto& facts = options.facts;
  if (options.manifests.empty()) return std::unexpected(Error{.message = "--manifests DIR is required"});
  if (!flags_given) facts.scheduler_flags = agent::default_scheduler_flags(facts.scheduler);
  // The configured flags must suit the configured scheduler, as an
  // annotation's must (checked by name, so re-check the bits here).
  const auto shared = ipvs::flags::kSchedShFallback | ipvs::flags::kSchedShPort;
  if ((facts.scheduler_flags & shared) != 0 && facts.scheduler != "sh" && facts.scheduler != "mh") {
    return std::unexpected(
        Error{.message = "sh-*/mh-* flags need the sh or mh scheduler", .field = "--ipvs-scheduler-flags"});
  }
  return options;
}

std::expected<RenderResult, Error> render(const RenderOptions& options) {
  auto loaded = k8s::load_manifests(options.manifests);
  if (!loaded) return std::unexpected(loaded.error());

  RenderResult result;
  for (const auto& error : loaded->errors) result.warnings.push_back(k8s::to_string(error));

  agent::NodeFacts facts = options.facts;
  agent::ServiceMap services;
  agent::EndpointSliceMap slices;
  for (const auto& object : loaded->objects) {
    if (const auto* service = std::get_if<k8s::Service>(&object)) {
      services.emplace(k8s::key_of(*service), *service);
    } else if (const auto* slice = std::get_if<k8s::EndpointSlice>(&object)) {
      slices.emplace(k8s::key_of(*slice), *slice);
    } else if (const auto* node = std::get_if<k8s::Node>(&object)) {
      if (facts.node_name.empty() || node->meta.name != facts.node_name) continue;
      if (!options.zone_set) {
        if (auto zone = node->meta.labels.find(std::string(kZoneLabel)); zone != node->meta.labels.end()) {
          facts.zone = zone->second;
        }
      }
      if (!options.node_ips_set) {
        std::ranges::copy(agent::node_ips_of(*node), std::back_inserter(facts.node_ips));
      }
    }
  }

  result.state = agent::compute_desired_state(services, slices, facts);
  for (const auto& problem : result.state.problems)
    result.warnings.push_back(problem.message + " (" + problem.reason + ")");
  result.text = ipvs::format_ipvsadm_save(result.state.table);
  return result;
}

int run_render(std::span<const std::string_view> args, std::ostream& out, std::ostream& err) {
  auto options = parse_render_args(args);
  if (!options) {
    err << "kipvs render: " << options.error().text() << '\n' << kUsage;
    return 2;
  }
  auto result = render(*options);
  if (!result) {
    err << "kipvs render: " << result.error().text() << '\n';
    return 1;
  }
  for (const auto& warning : result->warnings) err << "warning: " << warning << '\n';
  out << result->text;
  return 0;
}

}  // namespace kipvs::app
