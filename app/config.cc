#include "app/config.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>
#include <functional>
#include <ostream>
#include <set>
#include <sstream>
#include <variant>

#include <yaml-cpp/yaml.h>
#include <boost/json.hpp>

#include "agent/desired_state.h"
#include "agent/nft_state.h"
#include "app/duration.h"

namespace kipvs::app {
namespace {

using namespace std::chrono_literals;

constexpr std::string_view kApiVersion = "kubeproxy.config.k8s.io/v1alpha1";
constexpr std::string_view kKind = "KubeProxyConfiguration";

// The type a setting takes, which decides how a YAML node or a flag's text is
// read before the setting's own check runs.
enum class Kind { kString, kBool, kInt, kDuration, kStringList };

using Value =
    std::variant<std::string, bool, std::int64_t, std::chrono::nanoseconds, std::vector<std::string>>;

// A setting's value taken, or an Error saying what was expected instead.
using Applied = std::expected<void, Error>;
using Apply = std::function<Applied(Config&, const Value&)>;

std::unexpected<Error> expecting(std::string what) {
  return std::unexpected(Error{.message = "expected " + std::move(what)});
}

// One setting: where it sits in the file, its flag, and how to apply it.
// Either path or flag may be empty (file-only, flag-only).
struct Setting {
  std::string_view path;
  std::string_view flag;
  Kind kind;
  std::string_view value_name;  // for --help
  std::string_view help;
  Apply apply;
};

std::string quoted(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::vector<std::string> split_commas(std::string_view text) {
  std::vector<std::string> out;
  while (!text.empty()) {
    const auto comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (!item.empty()) out.emplace_back(item);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return out;
}

// Setters for each kind; a setter's check returns what was expected.
Apply set_string(std::string Config::*field) {
  return [field](Config& c, const Value& v) -> Applied {
    c.*field = std::get<std::string>(v);
    return {};
  };
}

Apply set_bool(bool Config::*field) {
  return [field](Config& c, const Value& v) -> Applied {
    c.*field = std::get<bool>(v);
    return {};
  };
}

// A duration inside ipvs or kipvs, with its lower bound.
Apply set_duration(std::chrono::nanoseconds& (*field)(Config&), bool positive) {
  return [field, positive](Config& c, const Value& v) -> Applied {
    const auto d = std::get<std::chrono::nanoseconds>(v);
    if (positive && d <= 0ns) return expecting("a duration greater than 0, got " + format_duration(d));
    if (d < 0ns) return expecting("a duration of 0 or more, got " + format_duration(d));
    field(c) = d;
    return {};
  };
}

Applied parse_cidr_list(const std::vector<std::string>& items, std::vector<agent::Cidr>& out) {
  std::vector<agent::Cidr> cidrs;
  for (const auto& item : items) {
    const auto cidr = agent::Cidr::parse(item);
    // A bare address parses as a host prefix, but the fields want prefixes.
    if (!cidr || item.find('/') == std::string::npos)
      return expecting("a CIDR such as 10.0.0.0/8 or fd00::/64, got " + quoted(item));
    cidrs.push_back(*cidr);
  }
  out = std::move(cidrs);
  return {};
}

// "30000-32767" (the API server's syntax); "30000+767" is not accepted.
std::optional<std::pair<std::uint16_t, std::uint16_t>> parse_port_range(std::string_view text) {
  const auto dash = text.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  const auto number = [](std::string_view digits) -> std::optional<std::uint16_t> {
    unsigned value = 0;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (digits.empty() || ec != std::errc{} || end != digits.data() + digits.size() || value == 0 ||
        value > 65535)
      return std::nullopt;
    return static_cast<std::uint16_t>(value);
  };
  const auto low = number(text.substr(0, dash));
  const auto high = number(text.substr(dash + 1));
  if (!low || !high || *low > *high) return std::nullopt;
  return std::pair{*low, *high};
}

Applied check_bind_address(const std::string& text) {
  if (text.empty()) return {};  // disables the server, as kube-proxy
  if (!parse_host_port(text)) {
    return expecting("an address and port such as 0.0.0.0:10256 or [::]:10256, got " + quoted(text));
  }
  return {};
}

// An interface name (or prefix) that goes into the nftables rules as a
// quoted string: at most 15 characters (IFNAMSIZ - 1) of letters, digits and
// . _ - @, so no text can end the string early.
Applied check_interface_name(const std::string& text) {
  if (text.empty()) return {};
  const bool ok = text.size() <= 15 && std::ranges::all_of(text, [](char ch) {
                    return std::isalnum(static_cast<unsigned char>(ch)) != 0 || ch == '.' || ch == '_' ||
                           ch == '-' || ch == '@';
                  });
  if (!ok)
    return expecting("an interface name of at most 15 letters, digits and . _ - @, got " + quoted(text));
  return {};
}

// The document itself and the kube-proxy basics: where the API is, who this node is, where the servers
// listen.
void add_document_settings(std::vector<Setting>& s) {
  s.push_back({"apiVersion", "", Kind::kString, "", "", [](Config&, const Value& v) -> Applied {
                 const auto& text = std::get<std::string>(v);
                 if (text != kApiVersion) return expecting(quoted(kApiVersion) + ", got " + quoted(text));
                 return {};
               }});
  s.push_back({"kind", "", Kind::kString, "", "", [](Config&, const Value& v) -> Applied {
                 const auto& text = std::get<std::string>(v);
                 if (text != kKind) return expecting(quoted(kKind) + ", got " + quoted(text));
                 return {};
               }});
  s.push_back({"", "config", Kind::kString, "path",
               "The configuration file (a KubeProxyConfiguration, optionally with a kipvs: section). Flags "
               "override it.",
               set_string(&Config::config_file)});
  s.push_back({"mode", "proxy-mode", Kind::kString, "mode",
               "Which proxy mode to use: only \"ipvs\" (or empty).",
               [](Config& c, const Value& v) -> Applied {
                 const auto& text = std::get<std::string>(v);
                 if (text != "ipvs" && !text.empty())
                   return expecting("\"ipvs\" or \"\" (kipvs only does IPVS), got " + quoted(text));
                 c.mode = text;
                 return {};
               }});
  s.push_back(
      {"clientConnection.kubeconfig", "kubeconfig", Kind::kString, "path",
       "Path to a kubeconfig file with the API server and credentials (in-cluster config when empty).",
       set_string(&Config::kubeconfig)});
  s.push_back(
      {"clientConnection.contentType", "kube-api-content-type", Kind::kString, "type",
       "The content type Service and EndpointSlice lists are asked for: "
       "\"application/vnd.kubernetes.protobuf\" (the default, as kube-proxy) or \"application/json\". "
       "Watches are JSON either way.",
       [](Config& c, const Value& v) -> Applied {
         const auto& text = std::get<std::string>(v);
         if (!text.empty() && text != kProtobufContentType && text != kJsonContentType) {
           return expecting(quoted(std::string(kProtobufContentType)) + " or " +
                            quoted(std::string(kJsonContentType)) + ", got " + quoted(text));
         }
         c.api_content_type = text.empty() ? std::string(kProtobufContentType) : text;
         return {};
       }});
  s.push_back({"", "master", Kind::kString, "url",
               "The address of the Kubernetes API server (overrides any value in the kubeconfig).",
               set_string(&Config::master)});
  s.push_back({"hostnameOverride", "hostname-override", Kind::kString, "name",
               "The name of this node, instead of the hostname.", set_string(&Config::hostname_override)});
  s.push_back({"bindAddress", "bind-address", Kind::kString, "ip",
               "Overrides kipvs's idea of this node's primary IP (kube-proxy's meaning; no socket binds it).",
               [](Config& c, const Value& v) -> Applied {
                 const auto& text = std::get<std::string>(v);
                 if (!text.empty() && !ipvs::Address::parse(text))
                   return expecting("an IP address, got " + quoted(text));
                 c.bind_address = text;
                 return {};
               }});
  s.push_back(
      {"metricsBindAddress", "metrics-bind-address", Kind::kString, "ip:port",
       "Where /metrics, /proxyMode, /healthz, /livez and /configz are served (default 127.0.0.1:10249; "
       "empty disables).",
       [](Config& c, const Value& v) -> Applied {
         const auto& text = std::get<std::string>(v);
         if (auto applied = check_bind_address(text); !applied) return applied;
         c.metrics_bind_address = text;
         return {};
       }});
  s.push_back(
      {"healthzBindAddress", "healthz-bind-address", Kind::kString, "ip:port",
       "Where the health server's /healthz and /livez are served (default 0.0.0.0:10256; empty disables).",
       [](Config& c, const Value& v) -> Applied {
         const auto& text = std::get<std::string>(v);
         if (auto applied = check_bind_address(text); !applied) return applied;
         c.healthz_bind_address = text;
         return {};
       }});
}

// The ipvs section: scheduler, sync periods, strict ARP, excluded prefixes, connection timeouts.
void add_ipvs_settings(std::vector<Setting>& s) {
  s.push_back({"ipvs.scheduler", "ipvs-scheduler", Kind::kString, "name",
               "The IPVS scheduler: rr wrr lc wlc lblc lblcr dh sh sed nq mh fo ovf (empty means rr).",
               [](Config& c, const Value& v) -> Applied {
                 const auto& text = std::get<std::string>(v);
                 if (!text.empty() && !agent::is_known_scheduler(text)) {
                   return expecting(
                       "an IPVS scheduler (rr wrr lc wlc lblc lblcr dh sh sed nq mh fo ovf), got " +
                       quoted(text));
                 }
                 c.ipvs.scheduler = text;
                 return {};
               }});
  s.push_back(
      {"ipvs.syncPeriod", "ipvs-sync-period", Kind::kDuration, "duration",
       "How often the full resync runs, e.g. 30s, 1m (default 30s; must be greater than 0).",
       set_duration([](Config& c) -> std::chrono::nanoseconds& { return c.ipvs.sync_period; }, true)});
  s.push_back(
      {"ipvs.minSyncPeriod", "ipvs-min-sync-period", Kind::kDuration, "duration",
       "The minimum time between syncs, e.g. 1s (default 0: every change syncs at once).",
       set_duration([](Config& c) -> std::chrono::nanoseconds& { return c.ipvs.min_sync_period; }, false)});
  s.push_back(
      {"ipvs.strictARP", "ipvs-strict-arp", Kind::kBool, "",
       "Set arp_ignore=1 and arp_announce=2 so the node does not answer ARP for kube-ipvs0's addresses.",
       [](Config& c, const Value& v) -> Applied {
         c.ipvs.strict_arp = std::get<bool>(v);
         return {};
       }});
  s.push_back({"ipvs.excludeCIDRs", "ipvs-exclude-cidrs", Kind::kStringList, "cidr,...",
               "IPVS services on these prefixes are never cleaned up.", [](Config& c, const Value& v) {
                 return parse_cidr_list(std::get<std::vector<std::string>>(v), c.ipvs.exclude_cidrs);
               }});
  s.push_back(
      {"ipvs.tcpTimeout", "ipvs-tcp-timeout", Kind::kDuration, "duration",
       "Idle timeout of IPVS TCP connections (0 keeps the kernel's).",
       set_duration([](Config& c) -> std::chrono::nanoseconds& { return c.ipvs.tcp_timeout; }, false)});
  s.push_back(
      {"ipvs.tcpFinTimeout", "ipvs-tcpfin-timeout", Kind::kDuration, "duration",
       "Timeout of IPVS TCP connections after a FIN (0 keeps the kernel's).",
       set_duration([](Config& c) -> std::chrono::nanoseconds& { return c.ipvs.tcp_fin_timeout; }, false)});
  s.push_back(
      {"ipvs.udpTimeout", "ipvs-udp-timeout", Kind::kDuration, "duration",
       "Timeout of IPVS UDP entries (0 keeps the kernel's).",
       set_duration([](Config& c) -> std::chrono::nanoseconds& { return c.ipvs.udp_timeout; }, false)});
}

// What is local and what is masqueraded: cluster CIDRs, local detection, node port addresses.
void add_network_settings(std::vector<Setting>& s) {
  s.push_back({"clusterCIDR", "cluster-cidr", Kind::kString, "cidr[,cidr]",
               "The pods' CIDR range (a dual-stack pair may be given, comma-separated).",
               [](Config& c, const Value& v) {
                 return parse_cidr_list(split_commas(std::get<std::string>(v)), c.cluster_cidrs);
               }});
  s.push_back({"detectLocalMode", "detect-local-mode", Kind::kString, "mode",
               "How traffic from this node's pods is told apart: ClusterCIDR (the default), BridgeInterface "
               "or InterfaceNamePrefix (NodeCIDR is not supported).",
               [](Config& c, const Value& v) -> Applied {
                 const auto& text = std::get<std::string>(v);
                 if (text.empty() || text == "ClusterCIDR") {
                   c.detect_local.mode = DetectLocalMode::kClusterCidr;
                 } else if (text == "BridgeInterface") {
                   c.detect_local.mode = DetectLocalMode::kBridgeInterface;
                 } else if (text == "InterfaceNamePrefix") {
                   c.detect_local.mode = DetectLocalMode::kInterfaceNamePrefix;
                 } else if (text == "NodeCIDR") {
                   return expecting(
                       "ClusterCIDR, BridgeInterface or InterfaceNamePrefix (kipvs does not implement "
                       "NodeCIDR: set clusterCIDR to the pods' range and use ClusterCIDR), got \"NodeCIDR\"");
                 } else {
                   return expecting("ClusterCIDR, BridgeInterface or InterfaceNamePrefix, got " +
                                    quoted(text));
                 }
                 return {};
               }});
  s.push_back({"detectLocal.bridgeInterface", "pod-bridge-interface", Kind::kString, "name",
               "With detectLocalMode BridgeInterface: the pods' bridge (e.g. cni0).",
               [](Config& c, const Value& v) -> Applied {
                 const auto& text = std::get<std::string>(v);
                 if (auto applied = check_interface_name(text); !applied) return applied;
                 c.detect_local.bridge_interface = text;
                 return {};
               }});
  s.push_back({"detectLocal.interfaceNamePrefix", "pod-interface-name-prefix", Kind::kString, "prefix",
               "With detectLocalMode InterfaceNamePrefix: the prefix of the pods' interfaces (e.g. veth).",
               [](Config& c, const Value& v) -> Applied {
                 const auto& text = std::get<std::string>(v);
                 if (auto applied = check_interface_name(text); !applied) return applied;
                 c.detect_local.interface_name_prefix = text;
                 return {};
               }});
  s.push_back(
      {"nodePortAddresses", "nodeport-addresses", Kind::kStringList, "cidr,...",
       "Node IPs inside these prefixes serve NodePorts (keywords: all, primary; default: every node IP).",
       [](Config& c, const Value& v) -> Applied {
         std::vector<std::string> cidrs;
         bool every = false;
         for (const auto& item : std::get<std::vector<std::string>>(v)) {
           if (item == "all" || item == "primary") {
             every = true;  // kipvs's node IPs are the Node's own addresses
           } else if (item == "localhost") {
             return expecting(
                 "CIDRs or the keywords all, primary (IPVS cannot serve NodePorts on localhost), got "
                 "\"localhost\"");
           } else {
             cidrs.push_back(item);
           }
         }
         if (auto applied = parse_cidr_list(cidrs, c.node_port_addresses); !applied) return applied;
         if (every) c.node_port_addresses.clear();
         return {};
       }});
  s.push_back({"iptables.masqueradeAll", "masquerade-all", Kind::kBool, "",
               "SNAT all traffic sent to Service cluster IPs.", set_bool(&Config::masquerade_all)});
  s.push_back({"iptables.masqueradeBit", "iptables-masquerade-bit", Kind::kInt, "0..31",
               "The fwmark bit that marks packets for SNAT (default 14).",
               [](Config& c, const Value& v) -> Applied {
                 const auto bit = std::get<std::int64_t>(v);
                 if (bit < 0 || bit > 31)
                   return expecting("an integer from 0 to 31, got " + std::to_string(bit));
                 c.masquerade_bit = static_cast<std::int32_t>(bit);
                 return {};
               }});
}

// Logging, and --cleanup.
void add_logging_settings(std::vector<Setting>& s) {
  s.push_back({"logging.verbosity", "v", Kind::kInt, "N", "Log verbosity: 0 (default) to 10.",
               [](Config& c, const Value& v) -> Applied {
                 const auto level = std::get<std::int64_t>(v);
                 if (level < 0 || level > 10)
                   return expecting("a verbosity from 0 to 10, got " + std::to_string(level));
                 c.verbosity = static_cast<int>(level);
                 return {};
               }});
  s.push_back({"logging.format", "logging-format", Kind::kString, "text|json",
               "Log format: text (klog-like lines, the default) or json (one object per line).",
               [](Config& c, const Value& v) -> Applied {
                 const auto& text = std::get<std::string>(v);
                 if (text == "text" || text.empty()) {
                   c.log_format = LogFormat::kText;
                 } else if (text == "json") {
                   c.log_format = LogFormat::kJson;
                 } else {
                   return expecting("\"text\" or \"json\", got " + quoted(text));
                 }
                 return {};
               }});
  s.push_back({"", "cleanup", Kind::kBool, "",
               "Remove everything kipvs created (its IPVS services, addresses, interface, rules) and exit.",
               set_bool(&Config::cleanup)});
}

// kipvs's own section, how it programs: affinity, proxy name, interface, state, grace period.
void add_kipvs_behaviour_settings(std::vector<Setting>& s) {
  s.push_back({"kipvs.affinityMode", "affinity-mode", Kind::kString, "persistence|hash",
               "How sessionAffinity: ClientIP is done: IPVS persistence (kube-proxy's way, the default) or "
               "hashing on the client address.",
               [](Config& c, const Value& v) -> Applied {
                 const auto& text = std::get<std::string>(v);
                 if (text == "persistence" || text.empty()) {
                   c.kipvs.affinity_mode = agent::AffinityMode::kPersistence;
                 } else if (text == "hash") {
                   c.kipvs.affinity_mode = agent::AffinityMode::kHash;
                 } else {
                   return expecting("\"persistence\" or \"hash\", got " + quoted(text));
                 }
                 return {};
               }});
  s.push_back({"kipvs.proxyName", "proxy-name", Kind::kString, "name",
               "Serve the Services labelled service.kubernetes.io/service-proxy-name=NAME (default: the "
               "unlabelled ones).",
               [](Config& c, const Value& v) -> Applied {
                 const auto& text = std::get<std::string>(v);
                 if (text.empty()) {
                   c.kipvs.proxy_name.reset();
                 } else {
                   c.kipvs.proxy_name = text;
                 }
                 return {};
               }});
  s.push_back({"kipvs.interfaceName", "dummy-interface", Kind::kString, "name",
               "The dummy interface that holds Service addresses (default kube-ipvs0).",
               [](Config& c, const Value& v) -> Applied {
                 const auto& text = std::get<std::string>(v);
                 // IFNAMSIZ is 16 with the terminator.
                 if (text.empty() || text.size() > 15 || text.find_first_of("/ :") != std::string::npos) {
                   return expecting(
                       "an interface name of 1 to 15 characters without '/', ':' or spaces, got " +
                       quoted(text));
                 }
                 c.kipvs.interface_name = text;
                 return {};
               }});
  s.push_back({"kipvs.serviceIPBinding", "service-ip-binding", Kind::kString, "address|localRoute",
               "How a Service IP is made local on the node: an address on the dummy interface (kube-proxy's "
               "way, the default; binding N addresses costs the kernel N^2, so many at once get local routes "
               "first, swapped for addresses after) or a local route through it, kept.",
               [](Config& c, const Value& v) -> Applied {
                 const auto& text = std::get<std::string>(v);
                 if (text == "address" || text.empty()) {
                   c.kipvs.service_ip_binding = address::Binding::kAddress;
                 } else if (text == "localRoute") {
                   c.kipvs.service_ip_binding = address::Binding::kLocalRoute;
                 } else {
                   return expecting("\"address\" or \"localRoute\", got " + quoted(text));
                 }
                 return {};
               }});
  s.push_back({"kipvs.stateDir", "state-dir", Kind::kString, "path",
               "Where kipvs records the virtual services it added, so that they stay its own after a crash "
               "(default /run/kipvs, a tmpfs; \"\" keeps no record).",
               [](Config& c, const Value& v) -> Applied {
                 const auto& text = std::get<std::string>(v);
                 if (!text.empty() && !text.starts_with('/'))
                   return expecting("an absolute path, got " + quoted(text));
                 c.kipvs.state_dir = text;
                 return {};
               }});
  s.push_back(
      {"kipvs.gracePeriod", "graceful-termination-period", Kind::kDuration, "duration",
       "How long a removed endpoint drains at weight 0 before it is deleted (default 15m; 0 waits for its "
       "connections however long).",
       set_duration([](Config& c) -> std::chrono::nanoseconds& { return c.kipvs.grace_period; }, false)});
}

// kipvs's own section, how it runs: scheduler flags, metrics, manifests, drains, zone, /proc/sys.
void add_kipvs_operation_settings(std::vector<Setting>& s) {
  s.push_back({"kipvs.schedulerFlags", "ipvs-scheduler-flags", Kind::kString, "flag,...",
               "Scheduler flags: sh-fallback, sh-port (with sh), mh-fallback, mh-port (with mh).",
               [](Config& c, const Value& v) -> Applied {
                 const auto& text = std::get<std::string>(v);
                 const auto bits = agent::parse_scheduler_flags(text);
                 if (!bits)
                   return expecting("scheduler flags from sh-fallback, sh-port, mh-fallback, mh-port, got " +
                                    quoted(text));
                 c.kipvs.scheduler_flags = text;
                 c.kipvs.scheduler_flag_bits = *bits;
                 return {};
               }});
  s.push_back({"kipvs.throughputMetrics", "throughput-metrics", Kind::kString, "none|services|destinations",
               "Kernel throughput series in /metrics: per Service (the default), also per endpoint, or none.",
               [](Config& c, const Value& v) -> Applied {
                 const auto& text = std::get<std::string>(v);
                 if (text == "services" || text.empty()) {
                   c.kipvs.throughput_metrics = ThroughputMetrics::kServices;
                 } else if (text == "destinations") {
                   c.kipvs.throughput_metrics = ThroughputMetrics::kDestinations;
                 } else if (text == "none") {
                   c.kipvs.throughput_metrics = ThroughputMetrics::kNone;
                 } else {
                   return expecting("\"none\", \"services\" or \"destinations\", got " + quoted(text));
                 }
                 return {};
               }});
  s.push_back({"kipvs.manifests", "manifests", Kind::kString, "dir",
               "Read Services and EndpointSlices from manifests in this directory instead of an API server.",
               [](Config& c, const Value& v) -> Applied {
                 c.kipvs.manifests = std::get<std::string>(v);
                 return {};
               }});
  s.push_back({"kipvs.drainCheckPeriod", "drain-check-period", Kind::kDuration, "duration",
               "How often draining endpoints' connections are counted (default 5s; must be greater than 0).",
               set_duration([](Config& c) -> std::chrono::nanoseconds& { return c.kipvs.drain_check_period; },
                            true)});
  s.push_back({"kipvs.zone", "zone", Kind::kString, "zone",
               "This node's topology zone, instead of its Node's topology.kubernetes.io/zone label.",
               [](Config& c, const Value& v) -> Applied {
                 c.kipvs.zone = std::get<std::string>(v);
                 return {};
               }});
  s.push_back({"kipvs.procSys", "proc-sys", Kind::kString, "dir",
               "Where the node's /proc/sys is mounted, for the sysctls kipvs sets (default /proc/sys).",
               [](Config& c, const Value& v) -> Applied {
                 const auto& text = std::get<std::string>(v);
                 if (!text.starts_with('/')) return expecting("an absolute path, got " + quoted(text));
                 c.kipvs.proc_sys = text;
                 return {};
               }});
  s.push_back(
      {"kipvs.ipvsRateEstimation", "ipvs-rate-estimation", Kind::kString, "keep|disabled",
       "keep: leave net.ipv4.vs.run_estimation as the node has it (the default); disabled: set it to 0, "
       "so that kernels before 6.2 no longer hold up destination changes every 2 s at large tables. "
       "The same walk sums the connection, packet and byte counters: /metrics and ipvsadm --stats "
       "then stand still.",
       [](Config& c, const Value& v) -> Applied {
         const auto& text = std::get<std::string>(v);
         if (text == "keep" || text.empty()) {
           c.kipvs.rate_estimation_disabled = false;
         } else if (text == "disabled") {
           c.kipvs.rate_estimation_disabled = true;
         } else {
           return expecting("\"keep\" or \"disabled\", got " + quoted(text));
         }
         return {};
       }});
  s.push_back({"kipvs.nodePortRange", "service-node-port-range", Kind::kString, "min-max",
               "The API server's --service-node-port-range (default 30000-32767): node-port services in it "
               "found at start-up and no longer wanted are removed.",
               [](Config& c, const Value& v) -> Applied {
                 const auto& text = std::get<std::string>(v);
                 const auto range = parse_port_range(text);
                 if (!range) return expecting("a port range such as 30000-32767, got " + quoted(text));
                 c.kipvs.node_port_min = range->first;
                 c.kipvs.node_port_max = range->second;
                 return {};
               }});
  s.push_back({"kipvs.nodeIPs", "node-ip", Kind::kStringList, "ip,...",
               "This node's addresses, instead of those of its Node object.",
               [](Config& c, const Value& v) -> Applied {
                 std::vector<ipvs::Address> ips;
                 for (const auto& item : std::get<std::vector<std::string>>(v)) {
                   const auto ip = ipvs::Address::parse(item);
                   if (!ip) return expecting("IP addresses, got " + quoted(item));
                   ips.push_back(*ip);
                 }
                 c.kipvs.node_ips = std::move(ips);
                 return {};
               }});
}

const std::vector<Setting>& settings() {
  static const std::vector<Setting> kSettings = [] {
    std::vector<Setting> s;
    add_document_settings(s);
    add_ipvs_settings(s);
    add_network_settings(s);
    add_logging_settings(s);
    add_kipvs_behaviour_settings(s);
    add_kipvs_operation_settings(s);
    return s;
  }();
  return kSettings;
}

// Sections the walker descends into.
// In the file, as kube-proxy's defaulting does, a zero value of these means
// "the default" (kubeadm writes syncPeriod: 0s and metricsBindAddress: "").
// On the command line they keep their literal meaning: an empty bind address
// disables that server, and a zero sync period is an error.
const std::set<std::string, std::less<>> kZeroMeansDefault{"ipvs.syncPeriod", "metricsBindAddress",
                                                           "healthzBindAddress", "kipvs.interfaceName",
                                                           "kipvs.drainCheckPeriod"};

const std::set<std::string, std::less<>> kSections{"clientConnection", "logging", "iptables", "ipvs", "kipvs",
                                                   "detectLocal"};

// Fields kube-proxy knows that kipvs does not use. A trailing ".*" accepts the
// whole subtree.
const std::set<std::string, std::less<>> kIgnored{
    "featureGates.*",
    "clientConnection.acceptContentTypes",
    "clientConnection.qps",
    "clientConnection.burst",
    "logging.flushFrequency",
    "logging.vmodule",
    "logging.options.*",
    "bindAddressHardFail",
    "enableProfiling",
    "showHiddenMetricsForVersion",
    "iptables.localhostNodePorts",
    "iptables.snatNodeInternalIP",
    "iptables.syncPeriod",
    "iptables.minSyncPeriod",
    "nftables.*",
    "winkernel.*",
    "oomScoreAdj",
    "conntrack.*",
    "configSyncPeriod",
    "portRange",
    "windowsRunAsService",
    "linux.*",
    "windows.*",
};

// kube-proxy's flags (and klog's) that kipvs accepts and ignores.
const std::set<std::string, std::less<>> kIgnoredBoolFlags{
    "bind-address-hard-fail",
    "conntrack-tcp-be-liberal",
    "iptables-localhost-nodeports",
    "profiling",
    "alsologtostderr",
    "logtostderr",
    "add-dir-header",
    "skip-headers",
    "skip-log-headers",
    "one-output",
};
const std::set<std::string, std::less<>> kIgnoredValueFlags{
    "config-sync-period",
    "conntrack-max-per-core",
    "conntrack-min",
    "conntrack-tcp-timeout-close-wait",
    "conntrack-tcp-timeout-established",
    "conntrack-udp-timeout",
    "conntrack-udp-timeout-stream",
    "feature-gates",
    "healthz-port",
    "metrics-port",
    "iptables-min-sync-period",
    "iptables-sync-period",
    "kube-api-burst",
    "kube-api-qps",
    "log-flush-frequency",
    "oom-score-adj",
    "proxy-port-range",
    "show-hidden-metrics-for-version",
    "vmodule",
    "log-dir",
    "log-file",
    "log-file-max-size",
    "stderrthreshold",
    "log-backtrace-at",
};

bool is_ignored(const std::string& path) {
  if (kIgnored.contains(path) || kIgnored.contains(path + ".*")) return true;
  const auto dot = path.find('.');
  return dot != std::string::npos && kIgnored.contains(path.substr(0, dot) + ".*");
}

bool is_plain_number_or_bool(const YAML::Node& node) {
  if (node.Tag() != "?") return false;  // quoted: a string whatever it holds
  bool b = false;
  double d = 0;
  return !node.Scalar().empty() &&
         (YAML::convert<bool>::decode(node, b) || YAML::convert<double>::decode(node, d));
}

std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Null:
      return "null";
    default:
      return quoted(node.Scalar());
  }
}

// Reading a file or the flags stops at the first bad value, from deep in the
// walk of a YAML tree (yaml-cpp throws too): a ConfigFailure carries the
// Error out, and the public functions below catch it at this file's edge.
struct ConfigFailure {
  Error error;
};

// Reads a YAML document into a Config, failing with file:line: path.
class FileReader {
 public:
  FileReader(Config& config, std::string_view source) : config_(config), source_(source) {}

  void read(const YAML::Node& root) {
    if (!root.IsMap()) {
      if (root.IsNull()) return;  // an empty file: all defaults
      fail(root, "", "expected a KubeProxyConfiguration mapping, got " + describe(root));
    }
    walk(root, "");
  }

 private:
  [[noreturn]] void fail(const YAML::Node& node, std::string_view path, const std::string& what) const {
    std::string source = source_;
    if (!node.Mark().is_null()) source += ":" + std::to_string(node.Mark().line + 1);
    throw ConfigFailure{Error{.message = what, .field = std::string(path), .source = std::move(source)}};
  }

  void walk(const YAML::Node& map, const std::string& prefix) {
    for (const auto& entry : map) {
      const std::string key = entry.first.as<std::string>();
      const std::string path = prefix.empty() ? key : prefix + "." + key;
      const YAML::Node& value = entry.second;
      const auto& all = settings();
      const auto setting = std::ranges::find(all, std::string_view(path), &Setting::path);
      if (setting != all.end() && !path.empty()) {
        if (value.IsNull()) continue;  // null leaves the default, as in Go
        apply(*setting, value, path);
      } else if (kSections.contains(path)) {
        if (value.IsNull()) continue;
        if (!value.IsMap()) fail(value, path, "expected a mapping, got " + describe(value));
        walk(value, path);
      } else if (is_ignored(path)) {
        if (!value.IsNull() && !(value.IsScalar() && value.Scalar().empty()) &&
            !(value.IsMap() && value.size() == 0)) {
          config_.ignored_fields.push_back(path);
        }
      } else {
        std::string warning = source_;
        if (!entry.first.Mark().is_null()) warning += ":" + std::to_string(entry.first.Mark().line + 1);
        config_.warnings.push_back(warning + ": " + path + ": unknown field, ignored");
      }
    }
  }

  void apply(const Setting& setting, const YAML::Node& node, const std::string& path) {
    Value value;
    switch (setting.kind) {
      case Kind::kString:
        if (!node.IsScalar()) fail(node, path, "expected a string, got " + describe(node));
        // Go rejects a number or a boolean where a string belongs; so do we,
        // rather than guess what was meant.
        if (is_plain_number_or_bool(node)) {
          fail(node, path, "expected a string, got " + describe(node) + " (quote it if it is meant as text)");
        }
        value = node.Scalar();
        break;
      case Kind::kBool: {
        bool b = false;
        if (!node.IsScalar() || node.Tag() != "?" || !YAML::convert<bool>::decode(node, b)) {
          fail(node, path, "expected true or false, got " + describe(node));
        }
        value = b;
        break;
      }
      case Kind::kInt: {
        std::int64_t i = 0;
        const std::string text = node.IsScalar() ? node.Scalar() : "";
        const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), i);
        if (!node.IsScalar() || node.Tag() != "?" || ec != std::errc{} || end != text.data() + text.size()) {
          fail(node, path, "expected an integer, got " + describe(node));
        }
        value = i;
        break;
      }
      case Kind::kDuration: {
        if (!node.IsScalar())
          fail(node, path, "expected a duration such as 30s or 1m30s, got " + describe(node));
        const auto d = parse_duration(node.Scalar());
        if (!d) {
          fail(node, path,
               "expected a duration such as 30s or 1m30s, got " + describe(node) + " (" + d.error().message +
                   ")");
        }
        value = *d;
        break;
      }
      case Kind::kStringList: {
        if (!node.IsSequence()) fail(node, path, "expected a list of strings, got " + describe(node));
        std::vector<std::string> items;
        for (const auto& item : node) {
          if (!item.IsScalar())
            fail(item, path, "expected a list of strings, got an item that is " + describe(item));
          items.push_back(item.Scalar());
        }
        value = std::move(items);
        break;
      }
    }
    if (kZeroMeansDefault.contains(path)) {
      const auto* text = std::get_if<std::string>(&value);
      const auto* duration = std::get_if<std::chrono::nanoseconds>(&value);
      if ((text != nullptr && text->empty()) || (duration != nullptr && duration->count() == 0)) return;
    }
    if (auto applied = setting.apply(config_, value); !applied) fail(node, path, applied.error().message);
  }

  Config& config_;
  std::string source_;
};

[[noreturn]] void flag_error(std::string_view flag, const std::string& what) {
  throw ConfigFailure{Error{.message = what, .field = "flag --" + std::string(flag)}};
}

Value flag_value(const Setting& setting, std::string_view text) {
  switch (setting.kind) {
    case Kind::kString:
      return std::string(text);
    case Kind::kBool:
      if (text == "true" || text == "1") return true;
      if (text == "false" || text == "0") return false;
      flag_error(setting.flag, "expected true or false, got " + quoted(text));
    case Kind::kInt: {
      std::int64_t i = 0;
      const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), i);
      if (ec != std::errc{} || end != text.data() + text.size() || text.empty()) {
        flag_error(setting.flag, "expected an integer, got " + quoted(text));
      }
      return i;
    }
    case Kind::kDuration: {
      const auto d = parse_duration(text);
      if (!d) {
        flag_error(setting.flag, "expected a duration such as 30s or 1m30s, got " + quoted(text) + " (" +
                                     d.error().message + ")");
      }
      return *d;
    }
    case Kind::kStringList:
      return split_commas(text);
  }
  return std::string(text);
}

const Setting* find_flag(std::string_view name) {
  const auto& all = settings();
  const auto it = std::ranges::find(all, name, &Setting::flag);
  return it == all.end() || name.empty() ? nullptr : &*it;
}

}  // namespace

std::optional<HostPort> parse_host_port(std::string_view text) {
  std::string_view host;
  std::string_view port;
  if (text.starts_with('[')) {
    const auto close = text.find("]:");
    if (close == std::string_view::npos) return std::nullopt;
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
    if (host.find(':') == std::string_view::npos) return std::nullopt;  // brackets are for IPv6
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return std::nullopt;  // IPv6 needs brackets
  }
  const auto address = ipvs::Address::parse(host);
  if (!address) return std::nullopt;
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc{} || end != port.data() + port.size() || value > 65535)
    return std::nullopt;
  return HostPort{*address, static_cast<std::uint16_t>(value)};
}

std::expected<void, Error> validate(const Config& config, std::string_view source) {
  const auto fault = [&](std::string field, std::string message) {
    return std::unexpected(
        Error{.message = std::move(message), .field = std::move(field), .source = std::string(source)});
  };
  if (config.ipvs.min_sync_period > config.ipvs.sync_period) {
    return fault("ipvs.minSyncPeriod", "expected at most ipvs.syncPeriod (" +
                                           format_duration(config.ipvs.sync_period) + "), got " +
                                           format_duration(config.ipvs.min_sync_period));
  }
  if (!config.kipvs.scheduler_flags.empty()) {
    const std::string scheduler = config.ipvs.scheduler.empty() ? "rr" : config.ipvs.scheduler;
    if (!agent::flags_fit_scheduler(config.kipvs.scheduler_flags, scheduler)) {
      return fault("kipvs.schedulerFlags", "expected flags that fit the scheduler " + quoted(scheduler) +
                                               ", got " + quoted(config.kipvs.scheduler_flags));
    }
  }
  if (config.detect_local.mode == DetectLocalMode::kBridgeInterface &&
      config.detect_local.bridge_interface.empty())
    return fault("detectLocal.bridgeInterface",
                 "expected an interface name with detectLocalMode BridgeInterface, got none");
  if (config.detect_local.mode == DetectLocalMode::kInterfaceNamePrefix &&
      config.detect_local.interface_name_prefix.empty())
    return fault("detectLocal.interfaceNamePrefix",
                 "expected a prefix with detectLocalMode InterfaceNamePrefix, got none");
  if (config.cluster_cidrs.size() > 2 ||
      (config.cluster_cidrs.size() == 2 &&
       config.cluster_cidrs[0].address.family == config.cluster_cidrs[1].address.family)) {
    return fault("clusterCIDR", "expected one CIDR or a dual-stack pair (one IPv4, one IPv6)");
  }
  return {};
}

namespace {

// The file alone, not yet validated across fields: flags may still change
// the fields a cross-field check compares.
Config read_config_yaml(std::string_view text, std::string_view source) {
  Config config;
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    throw ConfigFailure{Error{.message = "not valid YAML: " + e.msg,
                              .source = std::string(source) + ":" + std::to_string(e.mark.line + 1)}};
  }
  FileReader(config, source).read(root);
  config.config_file = std::string(source);
  return config;
}

Config read_config_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigFailure{Error{.message = "cannot read the configuration file", .source = path}};
  std::stringstream buffer;
  buffer << in.rdbuf();
  return read_config_yaml(buffer.str(), path);
}

// Runs a reader, turning its ConfigFailure into the Error it carries, and
// checks the result across fields. `after_file` follows the file's name in
// a cross-field error (the flags may have set one of the fields).
template <typename Read>
std::expected<Config, Error> checked_config(Read&& read, std::string_view after_file = "") {
  Config config;
  try {
    config = read();
  } catch (const ConfigFailure& failure) {
    return std::unexpected(failure.error);
  }
  const std::string source = config.config_file.empty() ? "" : config.config_file + std::string(after_file);
  if (auto valid = validate(config, source); !valid) return std::unexpected(valid.error());
  return config;
}

// Kube-proxy's flags -> a Config, before the cross-field checks.
Config read_command_line(std::span<const std::string_view> args) {
  struct Parsed {
    const Setting* setting;
    std::string_view name;
    std::string value;
  };
  std::vector<Parsed> parsed;
  std::vector<std::string> ignored_flags;
  bool help = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    if (arg == "-h" || arg == "--help") {
      help = true;
      continue;
    }
    if (!arg.starts_with('-') || arg == "-" || arg == "--") {
      throw ConfigFailure{
          Error{.message = "unexpected argument " + quoted(arg) + " (flags start with --; see --help)"}};
    }
    arg.remove_prefix(arg.starts_with("--") ? 2 : 1);
    std::string_view name = arg;
    std::optional<std::string> value;
    if (const auto eq = arg.find('='); eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      value = std::string(arg.substr(eq + 1));
    }
    const Setting* setting = find_flag(name);
    if (setting == nullptr) {
      // kube-proxy's own flags that kipvs has no use for: accepted with a
      // warning, so a kube-proxy command line keeps working.
      const bool ignored_bool = kIgnoredBoolFlags.contains(name);
      if (!ignored_bool && !kIgnoredValueFlags.contains(name)) {
        flag_error(name, "unknown flag (see --help)");
      }
      if (!value && !ignored_bool) {
        if (i + 1 >= args.size()) flag_error(name, "needs a value");
        ++i;
      }
      ignored_flags.push_back("flag --" + std::string(name) +
                              ": a kube-proxy flag kipvs does not use, ignored");
      continue;
    }
    if (!value) {
      if (setting->kind == Kind::kBool) {
        value = "true";  // a boolean flag alone turns it on
      } else if (i + 1 < args.size()) {
        value = std::string(args[++i]);
      } else {
        flag_error(setting->flag, "needs a value (" + std::string(setting->value_name) + ")");
      }
    }
    parsed.push_back({setting, name, std::move(*value)});
  }

  Config config;
  for (const auto& p : parsed) {
    if (p.setting->flag == "config") config = read_config_file(p.value);
  }
  config.help = help;
  config.warnings.insert(config.warnings.end(), ignored_flags.begin(), ignored_flags.end());
  for (const auto& p : parsed) {
    if (p.setting->flag == "config") continue;
    const Value value = flag_value(*p.setting, p.value);
    if (auto applied = p.setting->apply(config, value); !applied)
      flag_error(p.setting->flag, applied.error().message);
  }
  return config;
}

}  // namespace

std::expected<Config, Error> parse_config_yaml(std::string_view text, std::string_view source) {
  return checked_config([&] { return read_config_yaml(text, source); });
}

std::expected<Config, Error> load_config_file(const std::string& path) {
  return checked_config([&] { return read_config_file(path); });
}

std::expected<Config, Error> parse_command_line(std::span<const std::string_view> args) {
  return checked_config([&] { return read_command_line(args); }, " with the command-line flags");
}

int run_check_config(std::span<const std::string_view> args, std::ostream& out, std::ostream& err) {
  if (args.size() != 1 || args[0].starts_with('-')) {
    err << "usage: kipvs check-config FILE\n";
    return 2;
  }
  const auto config = load_config_file(std::string(args[0]));
  if (!config) {
    err << config.error().text() << "\n";
    return 1;
  }
  for (const auto& warning : config->warnings) err << "warning: " << warning << "\n";
  out << args[0] << ": ok\n";
  return 0;
}

std::string help_text() {
  std::ostringstream out;
  out << "Usage: kipvs [flags]\n"
         "       kipvs render --manifests DIR [...]\n"
         "       kipvs check-config FILE    (validate a configuration file and exit)\n\n"
         "kipvs programs IPVS for Kubernetes Services as kube-proxy's IPVS mode does. It reads kube-proxy's\n"
         "configuration file (--config) and flags; flags override the file.\n\nFlags:\n";
  for (const auto& s : settings()) {
    if (s.flag.empty()) continue;
    std::string head = "  " + std::string(s.flag.size() == 1 ? "-" : "--") + std::string(s.flag);
    if (s.flag == "v") head = "  -v, --v";
    if (!s.value_name.empty()) head += " " + std::string(s.value_name);
    out << head;
    if (head.size() < 34) {
      out << std::string(34 - head.size(), ' ');
    } else {
      out << "\n" << std::string(34, ' ');
    }
    out << s.help;
    if (!s.path.empty()) out << " [file: " << s.path << "]";
    out << "\n";
  }
  out << "  -h, --help                      Print this help and exit.\n";
  out << "\nkube-proxy's other flags (--feature-gates, --conntrack-*, --oom-score-adj, ...) are accepted and "
         "ignored with a warning.\n";
  return out.str();
}

boost::json::value to_json(const Config& c) {
  auto cidrs = [](const std::vector<agent::Cidr>& list) {
    boost::json::array out;
    for (const auto& cidr : list) out.emplace_back(cidr.to_string());
    return out;
  };
  auto join = [](const std::vector<agent::Cidr>& list) {
    std::string out;
    for (const auto& cidr : list) out += (out.empty() ? "" : ",") + cidr.to_string();
    return out;
  };
  boost::json::array node_ips;
  for (const auto& ip : c.kipvs.node_ips) node_ips.emplace_back(ip.to_string());
  boost::json::object kipvs{
      {"affinityMode", c.kipvs.affinity_mode == agent::AffinityMode::kHash ? "hash" : "persistence"},
      {"interfaceName", c.kipvs.interface_name},
      {"serviceIPBinding",
       c.kipvs.service_ip_binding == address::Binding::kLocalRoute ? "localRoute" : "address"},
      {"stateDir", c.kipvs.state_dir},
      {"gracePeriod", format_duration(c.kipvs.grace_period)},
      {"schedulerFlags", c.kipvs.scheduler_flags},
      {"throughputMetrics", c.kipvs.throughput_metrics == ThroughputMetrics::kNone       ? "none"
                            : c.kipvs.throughput_metrics == ThroughputMetrics::kServices ? "services"
                                                                                         : "destinations"},
      {"manifests", c.kipvs.manifests},
      {"nodeIPs", std::move(node_ips)},
      {"drainCheckPeriod", format_duration(c.kipvs.drain_check_period)},
      {"zone", c.kipvs.zone},
      {"procSys", c.kipvs.proc_sys},
      {"ipvsRateEstimation", c.kipvs.rate_estimation_disabled ? "disabled" : "keep"},
      {"nodePortRange", std::to_string(c.kipvs.node_port_min) + "-" + std::to_string(c.kipvs.node_port_max)},
  };
  if (c.kipvs.proxy_name) kipvs["proxyName"] = *c.kipvs.proxy_name;
  return boost::json::object{
      {"apiVersion", kApiVersion},
      {"kind", kKind},
      {"mode", c.mode.empty() ? "ipvs" : c.mode},
      {"clientConnection", {{"kubeconfig", c.kubeconfig}, {"contentType", c.api_content_type}}},
      {"logging",
       {{"format", c.log_format == LogFormat::kJson ? "json" : "text"}, {"verbosity", c.verbosity}}},
      {"hostnameOverride", c.hostname_override},
      {"bindAddress", c.bind_address},
      {"metricsBindAddress", c.metrics_bind_address},
      {"healthzBindAddress", c.healthz_bind_address},
      {"clusterCIDR", join(c.cluster_cidrs)},
      {"detectLocalMode", c.detect_local.mode == DetectLocalMode::kBridgeInterface ? "BridgeInterface"
                          : c.detect_local.mode == DetectLocalMode::kInterfaceNamePrefix
                              ? "InterfaceNamePrefix"
                              : "ClusterCIDR"},
      {"detectLocal",
       {{"bridgeInterface", c.detect_local.bridge_interface},
        {"interfaceNamePrefix", c.detect_local.interface_name_prefix}}},
      {"nodePortAddresses", cidrs(c.node_port_addresses)},
      {"iptables", {{"masqueradeAll", c.masquerade_all}, {"masqueradeBit", c.masquerade_bit}}},
      {"ipvs",
       {{"scheduler", c.ipvs.scheduler},
        {"syncPeriod", format_duration(c.ipvs.sync_period)},
        {"minSyncPeriod", format_duration(c.ipvs.min_sync_period)},
        {"strictARP", c.ipvs.strict_arp},
        {"excludeCIDRs", cidrs(c.ipvs.exclude_cidrs)},
        {"tcpTimeout", format_duration(c.ipvs.tcp_timeout)},
        {"tcpFinTimeout", format_duration(c.ipvs.tcp_fin_timeout)},
        {"udpTimeout", format_duration(c.ipvs.udp_timeout)}}},
      {"kipvs", std::move(kipvs)},
  };
}

nftables::NftConfig nft_config(const Config& config) {
  nftables::NftConfig out;
  switch (config.detect_local.mode) {
    case DetectLocalMode::kClusterCidr:
      for (const auto& cidr : config.cluster_cidrs)
        out.cluster_cidrs.push_back(agent::network_of(cidr).to_string());
      break;
    case DetectLocalMode::kBridgeInterface:
      out.local_interface = config.detect_local.bridge_interface;
      break;
    case DetectLocalMode::kInterfaceNamePrefix:
      out.local_interface = config.detect_local.interface_name_prefix + "*";
      break;
  }
  out.masquerade_all = config.masquerade_all;
  out.masquerade_mark = std::uint32_t{1} << (config.masquerade_bit & 31);
  return out;
}

}  // namespace kipvs::app
