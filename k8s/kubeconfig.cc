#include "k8s/kubeconfig.h"

#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <yaml-cpp/yaml.h>

namespace kipvs::k8s {
namespace {

namespace fs = std::filesystem;

std::expected<std::string, Error> read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::unexpected(Error{.message = "cannot read " + path.string()});
  std::ostringstream out;
  out << in.rdbuf();
  if (in.bad()) return std::unexpected(Error{.message = "cannot read " + path.string()});
  return out.str();
}

std::string trim(std::string s) {
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return "";
  const auto last = s.find_last_not_of(" \t\r\n");
  return s.substr(first, last - first + 1);
}

std::optional<std::string> decode_base64(std::string_view text) {
  std::string clean;
  for (char c : text) {
    if (c != '\n' && c != '\r' && c != ' ' && c != '\t') clean.push_back(c);
  }
  if (clean.size() % 4 != 0) return std::nullopt;
  std::string out(clean.size() / 4 * 3, '\0');
  const int n =
      EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                      reinterpret_cast<const unsigned char*>(clean.data()), static_cast<int>(clean.size()));
  if (n < 0) return std::nullopt;
  // EVP_DecodeBlock counts the '=' padding as zero bytes.
  std::size_t size = static_cast<std::size_t>(n);
  if (!clean.empty() && clean.back() == '=') --size;
  if (clean.size() >= 2 && clean[clean.size() - 2] == '=') --size;
  out.resize(size);
  return out;
}

using BioPtr = std::unique_ptr<BIO, decltype(&BIO_free)>;

// OpenSSL must read it as at least one certificate: a wrong file fails at
// start-up, naming it, instead of at the first handshake.
std::expected<void, Error> check_certificates(const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
  int count = 0;
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    X509_free(cert);
    ++count;
  }
  if (count == 0) return std::unexpected(Error{.message = "no PEM certificate in it"});
  return {};
}

std::expected<void, Error> check_private_key(const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr);
  if (key == nullptr) return std::unexpected(Error{.message = "no PEM private key in it"});
  EVP_PKEY_free(key);
  return {};
}

// Reads one of the kubeconfig's "X / X-data" pairs; data wins, as in client-go.
struct PemField {
  const char* file_key;
  const char* data_key;
  bool is_key;
};

std::expected<std::optional<PemSource>, Error> read_pem_field(const YAML::Node& node, const PemField& field,
                                                              const std::string& where,
                                                              const fs::path& kubeconfig) {
  const std::string kubeconfig_name = kubeconfig.string();
  std::optional<PemSource> result;
  if (const auto data = node[field.data_key]; data && !data.IsNull()) {
    auto decoded = decode_base64(data.as<std::string>());
    if (!decoded)
      return std::unexpected(Error{
          .message = "not valid base64", .field = where + "." + field.data_key, .source = kubeconfig_name});
    result =
        PemSource{std::move(*decoded), "kubeconfig " + kubeconfig_name + ": " + where + "." + field.data_key};
  } else if (const auto file = node[field.file_key]; file && !file.IsNull()) {
    fs::path path = file.as<std::string>();
    if (path.is_relative()) path = kubeconfig.parent_path() / path;
    auto text = read_file(path);
    if (!text)
      return std::unexpected(Error{
          .message = text.error().message, .field = where + "." + field.file_key, .source = path.string()});
    result = PemSource{std::move(*text), path.string()};
  }
  if (result) {
    auto ok = field.is_key ? check_private_key(result->pem) : check_certificates(result->pem);
    if (!ok) {
      const bool from_data = result->origin.starts_with("kubeconfig ");
      return std::unexpected(Error{.message = ok.error().message,
                                   .field = where + "." + (from_data ? field.data_key : field.file_key),
                                   .source = from_data ? kubeconfig_name : result->origin});
    }
  }
  return result;
}

// The entry of a named list ("clusters", "users", "contexts") with that name.
YAML::Node find_named(const YAML::Node& root, const char* list, const std::string& name, const char* inner) {
  const YAML::Node entries = root[list];
  if (!entries || !entries.IsSequence()) return YAML::Node(YAML::NodeType::Undefined);
  for (const auto& entry : entries) {
    if (entry["name"] && entry["name"].as<std::string>() == name) return entry[inner];
  }
  return YAML::Node(YAML::NodeType::Undefined);
}

std::string scalar_or(const YAML::Node& node, const char* key, std::string fallback = "") {
  const auto value = node[key];
  if (!value || value.IsNull()) return fallback;
  return value.as<std::string>();
}

// A user's credentials into `config`: a client certificate and key, a
// token, or a token file (read now, and again later).
std::expected<void, Error> read_user(const YAML::Node& user, const std::string& user_where,
                                     const fs::path& file, ClientConfig& config) {
  const std::string name = file.string();
  for (const char* unsupported : {"exec", "auth-provider", "username"}) {
    if (user[unsupported]) {
      return std::unexpected(
          Error{.message = "not supported by kipvs: use a token, tokenFile or client certificate",
                .field = user_where + "." + unsupported,
                .source = name});
    }
  }
  auto cert =
      read_pem_field(user, {"client-certificate", "client-certificate-data", false}, user_where, file);
  if (!cert) return std::unexpected(cert.error());
  auto key = read_pem_field(user, {"client-key", "client-key-data", true}, user_where, file);
  if (!key) return std::unexpected(key.error());
  if (cert->has_value() != key->has_value()) {
    return std::unexpected(Error{.message = "client-certificate and client-key must be given together",
                                 .field = user_where,
                                 .source = name});
  }
  config.client_certificate = std::move(*cert);
  config.client_key = std::move(*key);
  config.token = scalar_or(user, "token");
  if (const std::string token_file = scalar_or(user, "tokenFile"); !token_file.empty()) {
    fs::path path = token_file;
    if (path.is_relative()) path = file.parent_path() / path;
    // Like client-go: the file must be readable at start; it is re-read later.
    auto text = read_file(path);
    if (!text)
      return std::unexpected(Error{
          .message = text.error().message, .field = user_where + ".tokenFile", .source = path.string()});
    config.token = trim(*text);
    config.token_file = path;
  }
  return {};
}

std::expected<ClientConfig, Error> parse_kubeconfig(const YAML::Node& root, const fs::path& file,
                                                    const std::string& context_override) {
  const std::string name = file.string();
  const std::string context_name =
      context_override.empty() ? scalar_or(root, "current-context") : context_override;
  if (context_name.empty())
    return std::unexpected(Error{.message = "not set", .field = "current-context", .source = name});
  const YAML::Node context = find_named(root, "contexts", context_name, "context");
  if (!context || !context.IsMap()) {
    return std::unexpected(
        Error{.message = "no such context", .field = "contexts[" + context_name + "]", .source = name});
  }
  const std::string cluster_name = scalar_or(context, "cluster");
  const std::string user_name = scalar_or(context, "user");
  const std::string cluster_where = "clusters[" + cluster_name + "].cluster";
  const YAML::Node cluster = find_named(root, "clusters", cluster_name, "cluster");
  if (!cluster || !cluster.IsMap()) {
    return std::unexpected(Error{.message = "no such cluster (named by context " + context_name + ")",
                                 .field = "clusters[" + cluster_name + "]",
                                 .source = name});
  }

  ClientConfig config;
  config.source = "kubeconfig " + name;
  config.server = scalar_or(cluster, "server");
  if (config.server.empty())
    return std::unexpected(Error{.message = "not set", .field = cluster_where + ".server", .source = name});
  config.tls_server_name = scalar_or(cluster, "tls-server-name");
  if (const auto insecure = cluster["insecure-skip-tls-verify"]; insecure && !insecure.IsNull()) {
    config.insecure_skip_tls_verify = insecure.as<bool>();
  }
  if (config.insecure_skip_tls_verify) {
    // A CA here would silently go unused. kubectl (client-go's TLSConfigFor)
    // refuses the pair: "specifying a root certificates file with the
    // insecure flag is not allowed".
    for (const char* ca : {"certificate-authority-data", "certificate-authority"}) {
      if (const auto value = cluster[ca]; value && !value.IsNull()) {
        return std::unexpected(Error{
            .message = "true together with " + cluster_where + "." + ca +
                       ": a CA to verify with and no verification contradict each other (kubectl refuses "
                       "this too); remove one of them",
            .field = cluster_where + ".insecure-skip-tls-verify",
            .source = name});
      }
    }
  }
  auto ca = read_pem_field(cluster, {"certificate-authority", "certificate-authority-data", false},
                           cluster_where, file);
  if (!ca) return std::unexpected(ca.error());
  config.certificate_authority = std::move(*ca);

  if (user_name.empty()) return config;
  const YAML::Node user = find_named(root, "users", user_name, "user");
  if (!user || !user.IsMap()) {
    return std::unexpected(Error{.message = "no such user (named by context " + context_name + ")",
                                 .field = "users[" + user_name + "]",
                                 .source = name});
  }
  if (auto credentials = read_user(user, "users[" + user_name + "].user", file, config); !credentials)
    return std::unexpected(credentials.error());
  return config;
}

}  // namespace

Getenv process_environment() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

std::expected<ClientConfig, Error> load_in_cluster(const Getenv& getenv, const fs::path& root) {
  const auto host = getenv("KUBERNETES_SERVICE_HOST");
  const auto port = getenv("KUBERNETES_SERVICE_PORT");
  if (!host || host->empty()) {
    return std::unexpected(
        Error{.message = "not set (not running in a pod?)", .field = "KUBERNETES_SERVICE_HOST"});
  }
  if (!port || port->empty())
    return std::unexpected(Error{.message = "not set", .field = "KUBERNETES_SERVICE_PORT"});
  ClientConfig config;
  config.source = "in-cluster";
  const bool ipv6 = host->find(':') != std::string::npos;
  config.server = "https://" + (ipv6 ? "[" + *host + "]" : *host) + ":" + *port;

  const fs::path token_file = root / "token";
  auto token = read_file(token_file);
  if (!token)
    return std::unexpected(
        Error{.message = token.error().message, .field = "token", .source = token_file.string()});
  config.token = trim(*token);
  config.token_file = token_file;

  const fs::path ca_file = root / "ca.crt";
  auto ca = read_file(ca_file);
  if (!ca)
    return std::unexpected(
        Error{.message = ca.error().message, .field = "ca.crt", .source = ca_file.string()});
  if (auto ok = check_certificates(*ca); !ok) {
    return std::unexpected(
        Error{.message = ok.error().message, .field = "ca.crt", .source = ca_file.string()});
  }
  config.certificate_authority = PemSource{std::move(*ca), ca_file.string()};
  return config;
}

std::expected<ClientConfig, Error> load_kubeconfig(const fs::path& file, const std::string& context) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(file.string());
  } catch (const YAML::BadFile&) {
    return std::unexpected(Error{.message = "cannot read the kubeconfig", .source = file.string()});
  } catch (const YAML::Exception& e) {
    return std::unexpected(
        Error{.message = std::string("not valid YAML: ") + e.what(), .source = file.string()});
  }
  try {
    return parse_kubeconfig(root, file, context);
  } catch (const YAML::Exception& e) {
    // A field of the wrong shape (a list where a string belongs, ...).
    return std::unexpected(
        Error{.message = std::string("unexpected structure: ") + e.what(), .source = file.string()});
  }
}

std::expected<ClientConfig, Error> load_client_config(const ConfigFlags& flags, const Getenv& getenv,
                                                      const fs::path& service_account_root) {
  auto with_master = [&](std::expected<ClientConfig, Error> config) {
    if (config && !flags.master.empty()) config->server = flags.master;
    return config;
  };
  if (!flags.kubeconfig.empty()) return with_master(load_kubeconfig(flags.kubeconfig));
  if (const auto env = getenv("KUBECONFIG"); env && !env->empty()) {
    std::stringstream list(*env);
    std::string entry;
    while (std::getline(list, entry, ':')) {
      if (!entry.empty() && fs::exists(entry)) return with_master(load_kubeconfig(entry));
    }
    if (flags.master.empty()) {
      return std::unexpected(
          Error{.message = "none of these files exists", .field = "KUBECONFIG", .source = *env});
    }
  }
  if (flags.master.empty()) {
    if (const auto host = getenv("KUBERNETES_SERVICE_HOST"); host && !host->empty()) {
      return load_in_cluster(getenv, service_account_root);
    }
  }
  if (const auto home = getenv("HOME"); home && !home->empty()) {
    const fs::path file = fs::path(*home) / ".kube" / "config";
    if (fs::exists(file)) return with_master(load_kubeconfig(file));
  }
  if (!flags.master.empty()) {
    // client-go: an empty kubeconfig with a pod's credentials at hand is the
    // in-cluster config with --master as its server (token and CA kept).
    if (const auto host = getenv("KUBERNETES_SERVICE_HOST");
        host && !host->empty() && fs::exists(service_account_root / "token")) {
      auto config = with_master(load_in_cluster(getenv, service_account_root));
      if (config) config->source = "in-cluster, --master";
      return config;
    }
    ClientConfig config;
    config.server = flags.master;
    config.source = "--master";
    return config;
  }
  return std::unexpected(
      Error{.message = "no API server configuration: pass --kubeconfig or --master, set $KUBECONFIG, "
                       "or run in a pod"});
}

std::vector<std::string> client_config_warnings(const ClientConfig& config) {
  std::vector<std::string> out;
  const bool token = !config.token.empty() || !config.token_file.empty();
  if (token && config.server.starts_with("http://")) {
    out.push_back(config.source + ": the bearer token is sent to " + config.server +
                  " unencrypted; anyone on the way can read it and act as kipvs (use https://)");
  }
  return out;
}

TokenSource::TokenSource(std::string fixed_token, fs::path file, Clock clock)
    : token_(std::move(fixed_token)), file_(std::move(file)), clock_(std::move(clock)) {}

std::string TokenSource::token() {
  std::lock_guard lock(mutex_);
  if (!file_.empty() && (stale_ || !last_read_ || clock_() - *last_read_ >= kRefreshPeriod)) {
    auto text = read_file(file_);
    last_read_ = clock_();
    stale_ = false;
    if (text) {
      if (std::string fresh = trim(*text); !fresh.empty()) token_ = std::move(fresh);
    }
  }
  return token_;
}

void TokenSource::invalidate() {
  std::lock_guard lock(mutex_);
  stale_ = true;
}

std::expected<void, Error> TokenSource::reload() {
  std::lock_guard lock(mutex_);
  if (file_.empty()) return {};
  auto text = read_file(file_);
  last_read_ = clock_();
  stale_ = false;
  if (!text) return std::unexpected(text.error());
  std::string fresh = trim(*text);
  if (fresh.empty()) return std::unexpected(Error{.message = file_.string() + " is empty"});
  token_ = std::move(fresh);
  return {};
}

}  // namespace kipvs::k8s
