#pragma once
// Where the API server is and how to authenticate to it: from the pod's
// service account (in-cluster) or from a kubeconfig file, as kube-proxy finds
// them. The result, ClientConfig, holds PEM data already read from disk (so a
// bad file fails at start-up with its name), plus the token file path, which
// TokenSource re-reads while running because bound tokens rotate.

#include <chrono>
#include <expected>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"

namespace kipvs::k8s {

// PEM text and where it came from ("/path/ca.crt" or
// "kubeconfig /path: users[kipvs].client-key-data"), for error messages.
struct PemSource {
  std::string pem;
  std::string origin;
  friend bool operator==(const PemSource&, const PemSource&) = default;
};

// Everything the HTTP client needs to reach the API server.
struct ClientConfig {
  std::string server;                              // "https://host:port[/prefix]"; "http://" only for tests
  std::optional<PemSource> certificate_authority;  // none: the system's CAs
  bool insecure_skip_tls_verify = false;
  std::string tls_server_name;  // overrides the host for SNI and verification
  std::optional<PemSource> client_certificate;
  std::optional<PemSource> client_key;
  std::string token;                 // a fixed bearer token ("" = none)
  std::filesystem::path token_file;  // re-read; wins over token when readable
  std::string source;                // "in-cluster" or "kubeconfig <path>", for logs
};

// A configuration that cannot be used is an Error naming the file (source,
// empty for a missing environment variable) and the field (e.g.
// "clusters[prod].cluster.server").

// The process environment, injectable for tests.
using Getenv = std::function<std::optional<std::string>(const std::string&)>;
[[nodiscard]] Getenv process_environment();

// In-cluster: KUBERNETES_SERVICE_HOST / _PORT (an IPv6 host goes in
// brackets), <root>/token and <root>/ca.crt.
inline constexpr const char* kServiceAccountRoot = "/var/run/secrets/kubernetes.io/serviceaccount";
[[nodiscard]] std::expected<ClientConfig, Error> load_in_cluster(
    const Getenv& getenv, const std::filesystem::path& service_account_root = kServiceAccountRoot);

// One kubeconfig file, its current-context (or `context` when given).
// Relative paths resolve against the file's folder.
[[nodiscard]] std::expected<ClientConfig, Error> load_kubeconfig(const std::filesystem::path& file,
                                                                 const std::string& context = "");

// What the command line says (kube-proxy's --kubeconfig and --master).
struct ConfigFlags {
  std::string kubeconfig;
  std::string master;
};

// The resolution kube-proxy users expect: --kubeconfig, else $KUBECONFIG
// (the first existing file of a ':' list; merging is not supported), else
// in-cluster when KUBERNETES_SERVICE_HOST is set, else ~/.kube/config.
// --master overrides the server; in a pod (KUBERNETES_SERVICE_HOST and the
// service-account token) it keeps the pod's token and CA, as client-go
// does; elsewhere --master alone is enough (no auth).
[[nodiscard]] std::expected<ClientConfig, Error> load_client_config(
    const ConfigFlags& flags, const Getenv& getenv,
    const std::filesystem::path& service_account_root = kServiceAccountRoot);

// What is legal but unwise in a configuration, one log line each: a bearer
// token sent over plain http:// (readable, and usable, by anyone on the way).
[[nodiscard]] std::vector<std::string> client_config_warnings(const ClientConfig& config);

// The bearer token to send. A token file is re-read at most once per
// refresh period and right after a 401 (invalidate()), since service-account
// tokens are rotated on disk by the kubelet; a failed or empty read keeps the
// token last read. Called from the io_context thread; the mutex only guards
// against a test or metrics reader on another thread.
class TokenSource {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;
  static constexpr std::chrono::seconds kRefreshPeriod{60};

  TokenSource(std::string fixed_token, std::filesystem::path file,
              Clock clock = std::chrono::steady_clock::now);

  // "" when there is no token at all.
  [[nodiscard]] std::string token();
  // The server said 401: the next token() re-reads the file.
  void invalidate();
  // Reads the file now; the error when it failed (the old token stays).
  [[nodiscard]] std::expected<void, Error> reload();

 private:
  std::mutex mutex_;
  std::string token_;
  std::filesystem::path file_;
  Clock clock_;
  std::optional<std::chrono::steady_clock::time_point> last_read_;
  bool stale_ = true;
};

}  // namespace kipvs::k8s
