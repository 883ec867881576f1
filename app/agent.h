#pragma once
// The running agent: the object graph main builds. An object source (static
// manifests or the Kubernetes API) feeds the Sync, which programs IPVS through
// a Backend and kube-ipvs0 through an AddressBackend; sysctls are set once at
// start. Everything lives on one io_context thread.
//
// Flags and the configuration file are app/config.h's (kube-proxy's
// KubeProxyConfiguration and flags); `kipvs --help` lists them. The object
// source is --manifests DIR, or the Kubernetes API (--kubeconfig, --master,
// $KUBECONFIG, or in-cluster when $KUBERNETES_SERVICE_HOST is set).
//
// `kipvs diff` takes render's flags and prints, in ipvsadm's syntax, what a
// sync would change in the kernel, without changing it.

#include <chrono>
#include <expected>
#include <filesystem>
#include <functional>
#include <iosfwd>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "address/address_backend.h"
#include "agent/owned_services.h"
#include "agent/sync.h"
#include "app/config.h"
#include "app/log.h"
#include "app/metrics_observer.h"
#include "base/error.h"
#include "ipvs/backend.h"

namespace kipvs::k8s {
class ManifestSource;
class ApiSource;
class HttpClient;
class TokenSource;
}  // namespace kipvs::k8s

namespace kipvs::app {

struct AgentOptions {
  std::filesystem::path manifests;  // static source, or
  std::string kubeconfig;           // the API (kubeconfig, $KUBECONFIG, in-cluster)
  std::string master;
  bool use_api = false;
  bool protobuf_lists = true;  // clientConnection.contentType
  agent::SyncOptions sync;
  bool strict_arp = false;
  bool rate_estimation_disabled = false;  // kipvs.ipvsRateEstimation: disabled
  std::filesystem::path proc_sys = "/proc/sys";
  ipvs::Timeouts timeouts;  // 0 leaves the kernel's value
};

// The agent's options from the effective configuration. An error names what
// is wrong: no object source, or two. getenv looks up $KUBECONFIG and
// $KUBERNETES_SERVICE_HOST (injected so tests do not depend on the process).
[[nodiscard]] std::expected<AgentOptions, Error> agent_options(
    const Config& config, const std::function<const char*(const char*)>& getenv);

// A Go duration: "300ms", "30s", "1m30s", "2h", "0". Negative values are refused.
[[nodiscard]] std::optional<std::chrono::milliseconds> parse_go_duration(std::string_view text);

// Parses the agent's flags (after an optional "run") with parse_command_line,
// then agent_options with the process environment. Errors name the flag.
[[nodiscard]] std::expected<AgentOptions, Error> parse_agent_args(std::span<const std::string_view> args);

// --cleanup: deletes the virtual services kipvs owns (on the dummy
// interface's addresses, node ports on the node IPs in facts, or recorded as
// added by it; never in excludeCIDRs), then the record, the interface's addresses, the interface itself and
// the nftables table (when nft is given). Foreign services stay. A missing interface or table is not an
// error.
struct CleanupResult {
  std::size_t services_deleted = 0;
  std::size_t addresses_deleted = 0;
  bool interface_deleted = false;
  bool nft_table_deleted = false;
  std::vector<std::string> errors;  // per operation; the others still ran
};
[[nodiscard]] std::expected<CleanupResult, Error> cleanup(ipvs::Backend& backend,
                                                          address::AddressBackend& addresses,
                                                          const std::string& interface,
                                                          const agent::NodeFacts& facts,
                                                          nftables::NftBackend* nft = nullptr,
                                                          const agent::OwnedServicesFile& recorded = {});

// ipvs.tcpTimeout and the others, when any is set: the error text when the
// kernel refused them. Not fatal, as in kube-proxy: the kernel's values stay.
[[nodiscard]] std::expected<void, Error> set_ipvs_timeouts(ipvs::Backend& backend,
                                                           const ipvs::Timeouts& timeouts);

// The Node's name from a host name or --hostname-override, as kube-proxy
// derives it: spaces trimmed, lower-cased ("" is invalid). Endpoints'
// nodeName is compared with it.
[[nodiscard]] std::string node_name(std::string_view host);

// The addresses on this host's interfaces but one (the dummy interface),
// for --cleanup without node IPs: the node ports kipvs served are on them.
[[nodiscard]] std::vector<ipvs::Address> host_addresses(const std::string& except_interface);

// One operation in ipvsadm's command syntax: -A/-E/-D for services,
// -a/-e/-d for destinations ("-d -t 10.96.0.1:80 -r 10.244.1.5:8080").
[[nodiscard]] std::string format_operation(const ipvs::Operation& operation);

class Agent {
 public:
  // changes (may be null) hears of Service and EndpointSlice changes as
  // they arrive from the source, before the Sync does. nft and conntrack:
  // as agent::Sync takes them.
  Agent(boost::asio::io_context& io, AgentOptions options, ipvs::Backend& backend,
        address::AddressBackend& addresses, agent::SyncObserver& observer, Logger& logger,
        MetricsObserver* changes, nftables::NftBackend* nft, conntrack::ConntrackBackend& conntrack);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Sysctls, then the object source. Fails (a start-up error) when the
  // source cannot start: a missing manifest directory, a bad kubeconfig.
  [[nodiscard]] std::expected<void, Error> start();
  void stop();
  // SIGHUP: re-read the manifests now.
  void reload();

  [[nodiscard]] agent::Sync& sync() { return sync_; }

 private:
  boost::asio::io_context& io_;
  AgentOptions options_;
  Logger& logger_;
  agent::Sync sync_;
  MetricsObserver* metrics_;  // may be null
  std::unique_ptr<ChangeNotifyingSink> changes_;
  k8s::ObjectSink* sink_;
  std::unique_ptr<k8s::ManifestSource> manifests_;
  std::shared_ptr<k8s::TokenSource> tokens_;
  std::unique_ptr<k8s::HttpClient> http_;
  std::unique_ptr<k8s::ApiSource> api_;
};

// The process: builds the logger, metrics, HTTP servers and kernel
// backends from the configuration, runs until SIGTERM/SIGINT (or, with
// --cleanup, removes what kipvs created and returns). Start-up failures are
// printed to err. Returns the exit status.
int run_agent(const Config& config, std::ostream& err);

// main's dispatch for everything but render and diff: check-config, --help,
// then run_agent. Returns the exit status.
int run_main(std::span<const std::string_view> args, std::ostream& out, std::ostream& err);

// `kipvs diff`. Returns the exit status.
int run_diff(std::span<const std::string_view> args, std::ostream& out, std::ostream& err);

}  // namespace kipvs::app
