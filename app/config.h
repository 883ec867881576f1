#pragma once
// kipvs's effective configuration: kube-proxy's KubeProxyConfiguration
// (kubeproxy.config.k8s.io/v1alpha1, so an existing kube-proxy ConfigMap
// works unchanged), kipvs's own settings under a top-level `kipvs:` section,
// and kube-proxy's command-line flags on top.
//
// Precedence: built-in defaults (kube-proxy's), then the file given with
// --config, then the flags. A wrong type or value anywhere is an Error naming
// the file and line (or flag), the field's path and what was expected; it is
// a start-up failure. An unknown field is a warning. Fields kube-proxy knows but
// kipvs does not use (iptables.localhostNodePorts, nftables.*, conntrack.*,
// winkernel.*, featureGates, ...) are accepted silently and listed in
// Config::ignored_fields when they are set.

#include <chrono>
#include <cstdint>
#include <expected>
#include <iosfwd>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/value.hpp>

#include "address/address_backend.h"
#include "agent/node_facts.h"
#include "app/log.h"
#include "base/error.h"
#include "nftables/nft_ruleset.h"

namespace kipvs::app {

// The content types the API's lists may be asked for (clientConnection.contentType).
inline constexpr std::string_view kProtobufContentType = "application/vnd.kubernetes.protobuf";
inline constexpr std::string_view kJsonContentType = "application/json";

// Which kernel throughput series /metrics exports (kipvs.throughputMetrics).
enum class ThroughputMetrics { kNone, kServices, kDestinations };

// detectLocalMode: how traffic from this node's pods is told from other
// traffic to a cluster IP (the other is masqueraded). kube-proxy's NodeCIDR
// is refused: it needs the Node's podCIDRs, which kipvs does not read.
enum class DetectLocalMode { kClusterCidr, kBridgeInterface, kInterfaceNamePrefix };

struct DetectLocal {
  DetectLocalMode mode = DetectLocalMode::kClusterCidr;
  std::string bridge_interface;       // detectLocal.bridgeInterface, --pod-bridge-interface
  std::string interface_name_prefix;  // detectLocal.interfaceNamePrefix, --pod-interface-name-prefix
};

// kube-proxy's `ipvs:` section.
struct IpvsConfig {
  std::string scheduler;  // "" means rr, as kube-proxy
  // How often the full resync runs (kube-proxy default 30s; must be > 0).
  std::chrono::nanoseconds sync_period = std::chrono::seconds{30};
  // Minimum time between two syncs; 0 (kube-proxy's default) means every
  // change syncs at once. kube-proxy's meaning is kept so a ConfigMap means
  // the same here; the sync loop may still coalesce changes that arrive while
  // a sync is running.
  std::chrono::nanoseconds min_sync_period{0};
  bool strict_arp = false;
  std::vector<agent::Cidr> exclude_cidrs;
  // IPVS connection timeouts; 0 leaves the kernel's value unchanged.
  std::chrono::nanoseconds tcp_timeout{0};
  std::chrono::nanoseconds tcp_fin_timeout{0};
  std::chrono::nanoseconds udp_timeout{0};
};

// kipvs's own settings, in the file's top-level `kipvs:` section (kube-proxy
// ignores nothing there because it never sees it: kipvs reads its own file).
struct KipvsConfig {
  agent::AffinityMode affinity_mode = agent::AffinityMode::kPersistence;  // affinityMode: persistence|hash
  // proxyName: serve Services labelled service.kubernetes.io/service-proxy-name
  // with this value (unset: the unlabelled ones, as kube-proxy).
  std::optional<std::string> proxy_name;
  std::string interface_name = "kube-ipvs0";  // interfaceName: the dummy interface
  // serviceIPBinding: address|localRoute, how a Service IP is made local
  // through the dummy interface.
  address::Binding service_ip_binding = address::Binding::kAddress;
  // stateDir: where the record of the virtual services kipvs added is kept
  // (agent/owned_services.h); a tmpfs, so a reboot empties it with the IPVS
  // table. "" keeps no record.
  std::string state_dir = "/run/kipvs";
  // gracePeriod: how long a removed TCP/SCTP destination drains at weight 0
  // before it is deleted even with connections left. 15m bounds the table's
  // growth under churn while outlasting ordinary requests; 0s waits for the
  // connections however long they last (kube-proxy's behaviour).
  std::chrono::nanoseconds grace_period = std::chrono::minutes{15};
  // schedulerFlags: "sh-fallback,sh-port" / "mh-fallback,mh-port", checked
  // against ipvs.scheduler.
  std::string scheduler_flags;
  std::uint32_t scheduler_flag_bits = 0;
  // throughputMetrics: which kernel counters /metrics exports. Per-endpoint
  // series cost 8 per endpoint: at 10,000 Services x 10 endpoints a scrape
  // is 850,000 series (about 150 MB) against 50,000 (7.5 MB) per Service
  // only, hence the default.
  ThroughputMetrics throughput_metrics = ThroughputMetrics::kServices;
  std::string manifests;                // manifests: a directory of manifests instead of an API server
  std::vector<ipvs::Address> node_ips;  // nodeIPs: instead of the Node's addresses
  std::string zone;                     // zone: instead of the Node's topology.kubernetes.io/zone label
  // drainCheckPeriod: how often draining destinations' connections are read.
  std::chrono::nanoseconds drain_check_period = std::chrono::seconds{5};
  std::string proc_sys = "/proc/sys";  // procSys: where the node's /proc/sys is mounted
  // ipvsRateEstimation: keep|disabled. disabled sets net.ipv4.vs.run_estimation to 0:
  // kernels before 6.2 walk every estimator every 2 s under the lock that
  // adding or deleting a destination takes (over 100 ms at 300,000
  // destinations). The same walk sums the per-CPU counters kipvs exports,
  // which stand still without it.
  bool rate_estimation_disabled = false;
  // nodePortRange: the API server's --service-node-port-range, "30000-32767".
  // A service on a node-port address in this range is taken as kipvs's when
  // kipvs starts and finds it no longer wanted.
  std::uint16_t node_port_min = 30000;
  std::uint16_t node_port_max = 32767;
};

struct Config {
  std::string mode;  // "ipvs" or "" (kube-proxy's default would be iptables; here it means ipvs)
  IpvsConfig ipvs;
  // clusterCIDR: one CIDR, or a comma-separated dual-stack pair.
  std::vector<agent::Cidr> cluster_cidrs;
  DetectLocal detect_local;
  std::vector<agent::Cidr> node_port_addresses;  // empty: every node IP
  std::string hostname_override;
  std::string bind_address;                              // an IP or ""; kube-proxy's node-IP override
  std::string metrics_bind_address = "127.0.0.1:10249";  // "" disables the server
  std::string healthz_bind_address = "0.0.0.0:10256";    // "" disables the server
  std::string kubeconfig;                                // clientConnection.kubeconfig or --kubeconfig
  std::string master;  // --master: the API server's URL, overrides the kubeconfig's
  std::string api_content_type{kProtobufContentType};  // clientConnection.contentType: what lists ask for
  bool masquerade_all = false;                         // iptables.masqueradeAll
  std::int32_t masquerade_bit = 14;                    // iptables.masqueradeBit, 0..31
  int verbosity = 0;                                   // logging.verbosity, -v
  LogFormat log_format = LogFormat::kText;             // logging.format, --logging-format
  KipvsConfig kipvs;

  // What was read: the file (empty without --config), warnings for unknown
  // fields ("ipvs.syncPeriodd: unknown field"), and the known kube-proxy
  // fields that kipvs ignores but found set.
  std::string config_file;
  std::vector<std::string> warnings;
  std::vector<std::string> ignored_fields;

  // Actions rather than settings.
  bool cleanup = false;  // --cleanup: remove what kipvs created and exit
  bool help = false;     // --help: print help_text() and exit

  // The health timeout kube-proxy derives: twice the sync period.
  [[nodiscard]] std::chrono::nanoseconds health_timeout() const { return 2 * ipvs.sync_period; }
};

// Parses a KubeProxyConfiguration document. `source` names it in errors (the
// file's path).
[[nodiscard]] std::expected<Config, Error> parse_config_yaml(std::string_view text, std::string_view source);

// Reads and parses a file (an unreadable file is an Error too).
[[nodiscard]] std::expected<Config, Error> load_config_file(const std::string& path);

// Parses kube-proxy's flags (args without the program name): reads --config
// first when given, then applies every flag on top, in order. Accepts
// "--flag=value", "--flag value", "-v N", "-v=N"; boolean flags also stand
// alone. An Error names the flag.
[[nodiscard]] std::expected<Config, Error> parse_command_line(std::span<const std::string_view> args);

// Applies the checks that span fields (scheduler flags against the
// scheduler). parse_* call it; exposed for configs built by hand.
[[nodiscard]] std::expected<void, Error> validate(const Config& config, std::string_view source);

// `kipvs check-config FILE`: parses and validates a configuration file as
// start-up would, prints its warnings to err and "FILE: ok" to out. Returns
// the exit status: 0 when kipvs would start with it, 1 for a configuration
// error (printed to err), 2 for a usage error.
int run_check_config(std::span<const std::string_view> args, std::ostream& out, std::ostream& err);

// --help: every flag with its value form and a description.
[[nodiscard]] std::string help_text();

// The effective configuration for /configz, field names as in the file.
[[nodiscard]] boost::json::value to_json(const Config& config);

// "host:port" with IPv6 in brackets ("[::]:10256"); port 0..65535. The error
// says what is wrong.
struct HostPort {
  ipvs::Address address;
  std::uint16_t port = 0;
};
[[nodiscard]] std::optional<HostPort> parse_host_port(std::string_view text);

// clusterCIDR, detectLocalMode, iptables.masqueradeAll and
// iptables.masqueradeBit -> the rules' shape.
[[nodiscard]] nftables::NftConfig nft_config(const Config& config);

}  // namespace kipvs::app
