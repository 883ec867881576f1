#pragma once
// The running agent: the object graph main builds. An object source (static
// manifests or the Kubernetes API) feeds the Sync, which programs IPVS through
// a Backend and kube-ipvs0 through an AddressBackend; sysctls are set once at
// start. Everything lives on one io_context thread.
//
// Flags are a minimal kube-proxy-like set until the configuration layer
// (KubeProxyConfiguration file + flags) takes over:
//
//   kipvs [run] (--manifests DIR | --kubeconfig FILE | --master URL)
//         [--hostname-override NAME] [--node-ip IP[,IP...]] [--zone ZONE]
//         [--ipvs-scheduler NAME] [--ipvs-sync-period DUR] [--ipvs-min-sync-period DUR]
//         [--ipvs-strict-arp] [--ipvs-exclude-cidrs CIDR[,...]] [--nodeport-addresses CIDR[,...]]
//         [--graceful-termination-period DUR] [--drain-check-period DUR]
//         [--dummy-interface NAME] [--proc-sys DIR]
//
// DUR is a Go duration ("30s", "500ms", "1m30s"). `kipvs diff` takes
// render's flags and prints, in ipvsadm's syntax, what a sync would change in
// the kernel, without changing it.

#include <chrono>
#include <expected>
#include <filesystem>
#include <iosfwd>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include <boost/asio/io_context.hpp>

#include "agent/sync.h"
#include "ipvs/address_backend.h"
#include "ipvs/backend.h"

namespace kipvs::k8s {
class ManifestSource;
class ApiSource;
class HttpClient;
class TokenSource;
}  // namespace kipvs::k8s

namespace kipvs::agent {

struct AgentOptions {
  std::filesystem::path manifests;  // static source, or
  std::string kubeconfig;           // the API (kubeconfig, $KUBECONFIG, in-cluster)
  std::string master;
  bool use_api = false;
  SyncOptions sync;
  bool strict_arp = false;
  std::filesystem::path proc_sys = "/proc/sys";
};

// A Go duration: "300ms", "30s", "1m30s", "2h", "0". Negative values are refused.
[[nodiscard]] std::optional<std::chrono::milliseconds> parse_go_duration(std::string_view text);

// Parses the agent's flags (after an optional "run"). Errors name the flag.
[[nodiscard]] std::expected<AgentOptions, std::string> parse_agent_args(
    std::span<const std::string_view> args);

// One operation in ipvsadm's command syntax: -A/-E/-D for services,
// -a/-e/-d for destinations ("-d -t 10.96.0.1:80 -r 10.244.1.5:8080").
[[nodiscard]] std::string format_operation(const ipvs::Operation& operation);

class Agent {
 public:
  Agent(boost::asio::io_context& io, AgentOptions options, ipvs::Backend& backend,
        ipvs::AddressBackend* addresses, SyncObserver& observer);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Sysctls, then the object source. Fails (a start-up error) when the
  // source cannot start: a missing manifest directory, a bad kubeconfig.
  [[nodiscard]] std::expected<void, std::string> start();
  void stop();
  // SIGHUP: re-read the manifests now.
  void reload();

  [[nodiscard]] Sync& sync() { return sync_; }

 private:
  boost::asio::io_context& io_;
  AgentOptions options_;
  Sync sync_;
  std::unique_ptr<k8s::ManifestSource> manifests_;
  std::shared_ptr<k8s::TokenSource> tokens_;
  std::unique_ptr<k8s::HttpClient> http_;
  std::unique_ptr<k8s::ApiSource> api_;
};

// The process: opens the kernel backends, runs until SIGTERM/SIGINT.
// Returns the exit status.
int run_agent(std::span<const std::string_view> args, SyncObserver& observer);

// `kipvs diff`. Returns the exit status.
int run_diff(std::span<const std::string_view> args, std::ostream& out, std::ostream& err);

}  // namespace kipvs::agent
