#include "k8s/kubeconfig.h"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include <catch2/catch.hpp>

#include "k8s/http_client.h"

namespace kipvs::k8s {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// A scratch folder under the build tree with a CA made by openssl.
struct Scratch {
  fs::path dir;
  std::string ca_pem;
  std::string key_pem;

  Scratch() {
    dir = fs::current_path() / "kubeconfig_scratch";
    fs::create_directories(dir);
    if (!fs::exists(dir / "ca.crt")) {
      const std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test -keyout " +
                              (dir / "ca.key").string() + " -out " + (dir / "ca.crt").string() +
                              " 2>/dev/null";
      REQUIRE(std::system(cmd.c_str()) == 0);
    }
    ca_pem = read(dir / "ca.crt");
    key_pem = read(dir / "ca.key");
  }
  static std::string read(const fs::path& path) {
    std::ifstream in(path);
    std::stringstream out;
    out << in.rdbuf();
    return out.str();
  }
  fs::path write(const std::string& name, const std::string& text) const {
    fs::create_directories((dir / name).parent_path());
    std::ofstream(dir / name, std::ios::trunc) << text;
    return dir / name;
  }
};

std::string base64(const std::string& in) {
  static constexpr char kTable[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const unsigned v = (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8 | (unsigned char)in[i + 2];
    out += {kTable[v >> 18], kTable[(v >> 12) & 63], kTable[(v >> 6) & 63], kTable[v & 63]};
  }
  if (i + 1 == in.size()) {
    const unsigned v = (unsigned char)in[i] << 16;
    out += {kTable[v >> 18], kTable[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == in.size()) {
    const unsigned v = (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8;
    out += {kTable[v >> 18], kTable[(v >> 12) & 63], kTable[(v >> 6) & 63], '='};
  }
  return out;
}

Getenv env_of(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

TEST_CASE("kubeconfig: in-cluster config from the environment and the service-account folder") {
  Scratch s;
  const fs::path root = s.dir / "sa";
  s.write("sa/token", "  tok-123\n");
  s.write("sa/ca.crt", s.ca_pem);
  struct Case {
    std::string host, server;
  };
  const auto c = GENERATE(values<Case>(
      {{"10.96.0.1", "https://10.96.0.1:443"}, {"fd00:10:96::1", "https://[fd00:10:96::1]:443"}}));
  auto config = load_in_cluster(
      env_of({{"KUBERNETES_SERVICE_HOST", c.host}, {"KUBERNETES_SERVICE_PORT", "443"}}), root);
  REQUIRE(config.has_value());
  CHECK(config->server == c.server);
  CHECK(config->token == "tok-123");
  CHECK(config->token_file == root / "token");
  REQUIRE(config->certificate_authority.has_value());
  CHECK(config->certificate_authority->origin == (root / "ca.crt").string());
}

TEST_CASE("kubeconfig: in-cluster errors name the variable or the file") {
  Scratch s;
  auto no_host = load_in_cluster(env_of({}), s.dir / "sa");
  REQUIRE_FALSE(no_host.has_value());
  CHECK(no_host.error().field == "KUBERNETES_SERVICE_HOST");
  s.write("sa-badca/token", "t");
  s.write("sa-badca/ca.crt", "not a certificate");
  auto bad_ca = load_in_cluster(env_of({{"KUBERNETES_SERVICE_HOST", "h"}, {"KUBERNETES_SERVICE_PORT", "1"}}),
                                s.dir / "sa-badca");
  REQUIRE_FALSE(bad_ca.has_value());
  CHECK(bad_ca.error().source == (s.dir / "sa-badca" / "ca.crt").string());
  CHECK(bad_ca.error().text().find("no PEM certificate") != std::string::npos);
}

TEST_CASE("kubeconfig: current-context, relative paths, data fields, tokenFile") {
  Scratch s;
  s.write("kc/pki/ca.crt", s.ca_pem);
  s.write("kc/tok", "file-token\n");
  const fs::path file = s.write("kc/config", R"(apiVersion: v1
kind: Config
current-context: prod
contexts:
- name: dev
  context: {cluster: devc, user: devu}
- name: prod
  context: {cluster: prodc, user: produ}
clusters:
- name: devc
  cluster: {server: "https://dev:6443", insecure-skip-tls-verify: true}
- name: prodc
  cluster:
    server: https://[fd00::1]:6443
    certificate-authority: pki/ca.crt
    tls-server-name: api.internal
users:
- name: devu
  user:
    token: dev-token
    client-certificate-data: )" + base64(s.ca_pem) +
                                                 R"(
    client-key-data: )" + base64(s.key_pem) + R"(
- name: produ
  user: {tokenFile: tok}
)");
  auto prod = load_kubeconfig(file);
  REQUIRE(prod.has_value());
  CHECK(prod->server == "https://[fd00::1]:6443");
  CHECK(prod->tls_server_name == "api.internal");
  REQUIRE(prod->certificate_authority.has_value());
  CHECK(prod->certificate_authority->origin == (s.dir / "kc" / "pki/ca.crt").string());
  CHECK(prod->token == "file-token");
  CHECK(prod->token_file == s.dir / "kc" / "tok");
  CHECK_FALSE(prod->insecure_skip_tls_verify);

  auto dev = load_kubeconfig(file, "dev");
  REQUIRE(dev.has_value());
  CHECK(dev->insecure_skip_tls_verify);
  CHECK(dev->token == "dev-token");
  REQUIRE(dev->client_certificate.has_value());
  CHECK(dev->client_certificate->pem == s.ca_pem);
  REQUIRE(dev->client_key.has_value());
  CHECK(dev->client_key->pem == s.key_pem);
}

TEST_CASE("kubeconfig: errors name the file and the field") {
  Scratch s;
  s.write("bad/notpem", "hello");
  struct Case {
    const char* name;
    std::string yaml;
    std::string field;  // expected Error.field
    std::string file;   // expected file name suffix
  };
  const std::string head = "current-context: c\ncontexts:\n- name: c\n  context: {cluster: k, user: u}\n";
  const auto c = GENERATE_COPY(values<Case>({
      {"no current context", "contexts: []\n", "current-context", "config"},
      {"unknown context", "current-context: x\ncontexts: []\n", "contexts[x]", "config"},
      {"no server", head + "clusters:\n- name: k\n  cluster: {}\nusers:\n- name: u\n  user: {}\n",
       "clusters[k].cluster.server", "config"},
      {"bad CA file",
       head + "clusters:\n- name: k\n  cluster: {server: https://h, certificate-authority: notpem}\n",
       "clusters[k].cluster.certificate-authority", "notpem"},
      {"missing CA file",
       head + "clusters:\n- name: k\n  cluster: {server: https://h, certificate-authority: nope}\n",
       "clusters[k].cluster.certificate-authority", "nope"},
      {"bad base64",
       head + "clusters:\n- name: k\n  cluster: {server: https://h, certificate-authority-data: '!!'}\n",
       "clusters[k].cluster.certificate-authority-data", "config"},
      {"exec plugin",
       head + "clusters:\n- name: k\n  cluster: {server: https://h}\nusers:\n- name: u\n  user: {exec: {}}\n",
       "users[u].user.exec", "config"},
      {"insecure with CA data",
       head +
           "clusters:\n- name: k\n  cluster: {server: https://h, insecure-skip-tls-verify: true, "
           "certificate-authority-data: '" +
           base64(s.ca_pem) + "'}\n",
       "clusters[k].cluster.insecure-skip-tls-verify", "config"},
      {"insecure with a CA file",
       head + "clusters:\n- name: k\n  cluster: {server: https://h, insecure-skip-tls-verify: true, "
              "certificate-authority: nope}\n",
       "clusters[k].cluster.insecure-skip-tls-verify", "config"},
      {"missing token file",
       head + "clusters:\n- name: k\n  cluster: {server: https://h}\nusers:\n- name: u\n  user: {tokenFile: "
              "gone}\n",
       "users[u].user.tokenFile", "gone"},
  }));
  CAPTURE(c.name);
  const fs::path file = s.write("bad/config", c.yaml);
  auto config = load_kubeconfig(file);
  REQUIRE_FALSE(config.has_value());
  CAPTURE(config.error().text());
  CHECK(config.error().field == c.field);
  CHECK(config.error().source.ends_with(c.file));
}

TEST_CASE("kubeconfig: insecure-skip-tls-verify with a CA is refused, as kubectl refuses it") {
  Scratch s;
  s.write("insecure/ca.crt", s.ca_pem);
  const std::string ca =
      GENERATE(std::string("certificate-authority-data"), std::string("certificate-authority"));
  CAPTURE(ca);
  const std::string value = ca == "certificate-authority" ? "ca.crt" : base64(s.ca_pem);
  const fs::path file =
      s.write("insecure/config",
              "current-context: c\ncontexts:\n- name: c\n  context: {cluster: k}\nclusters:\n"
              "- name: k\n  cluster: {server: https://h, insecure-skip-tls-verify: true, " +
                  ca + ": '" + value + "'}\n");
  auto config = load_kubeconfig(file);
  REQUIRE_FALSE(config.has_value());
  CHECK(config.error().field == "clusters[k].cluster.insecure-skip-tls-verify");
  CHECK_THAT(config.error().message, Catch::Contains("clusters[k].cluster." + ca));
  // false with a CA is the ordinary, verified case.
  const fs::path verified = s.write("insecure/verified",
                                    "current-context: c\ncontexts:\n- name: c\n  context: "
                                    "{cluster: k}\nclusters:\n- name: k\n  cluster: {server: "
                                    "https://h, insecure-skip-tls-verify: false, " +
                                        ca + ": '" + value + "'}\n");
  CHECK(load_kubeconfig(verified).has_value());
}

TEST_CASE("kubeconfig: a bearer token over plain http:// is warned about") {
  ClientConfig config;
  config.server = "http://10.0.0.1:8080";
  CHECK(client_config_warnings(config).empty());  // no token: nothing to leak
  config.token = "secret";
  config.source = "kubeconfig /etc/kc";
  auto warnings = client_config_warnings(config);
  REQUIRE(warnings.size() == 1);
  CHECK_THAT(warnings[0], Catch::Contains("http://10.0.0.1:8080"));
  CHECK_THAT(warnings[0], Catch::Contains("kubeconfig /etc/kc"));
  CHECK_THAT(warnings[0], !Catch::Contains("secret"));
  config.token.clear();
  config.token_file = "/var/run/token";  // a token read from a file goes the same way
  CHECK(client_config_warnings(config).size() == 1);
  config.server = "https://10.0.0.1:6443";
  CHECK(client_config_warnings(config).empty());
}

TEST_CASE("kubeconfig: which configuration wins, and --master") {
  Scratch s;
  const std::string kc =
      "current-context: c\ncontexts:\n- name: c\n  context: {cluster: k}\nclusters:\n- name: k\n"
      "  cluster: {server: https://SERVER}\n";
  auto write_kc = [&](const std::string& name, const std::string& server) {
    std::string text = kc;
    text.replace(text.find("SERVER"), 6, server);
    return s.write(name, text).string();
  };
  const std::string flag = write_kc("res/flag", "flag");
  const std::string env = write_kc("res/env", "env");
  write_kc("res/home/.kube/config", "home");
  s.write("res/sa/token", "t");
  s.write("res/sa/ca.crt", s.ca_pem);
  const std::string home = (s.dir / "res/home").string();
  const fs::path sa = s.dir / "res/sa";
  auto server = [&](ConfigFlags flags, std::map<std::string, std::string> vars) {
    auto config = load_client_config(flags, env_of(std::move(vars)), sa);
    REQUIRE(config.has_value());
    return config->server;
  };
  const std::map<std::string, std::string> all{{"KUBECONFIG", "/missing:" + env},
                                               {"HOME", home},
                                               {"KUBERNETES_SERVICE_HOST", "10.0.0.1"},
                                               {"KUBERNETES_SERVICE_PORT", "443"}};
  CHECK(server({flag, ""}, all) == "https://flag");
  CHECK(server({"", ""}, all) == "https://env");
  CHECK(server({"", ""}, {{"HOME", home},
                          {"KUBERNETES_SERVICE_HOST", "10.0.0.1"},
                          {"KUBERNETES_SERVICE_PORT", "443"}}) == "https://10.0.0.1:443");
  CHECK(server({"", ""}, {{"HOME", home}}) == "https://home");
  CHECK(server({flag, "https://master:1"}, all) == "https://master:1");
  CHECK(server({"", "http://only:8080"}, {}) == "http://only:8080");
  // In a pod, --master keeps the pod's credentials (the API server's real
  // address instead of the kubernetes Service, which kipvs programs itself).
  const std::map<std::string, std::string> pod{{"KUBERNETES_SERVICE_HOST", "10.96.0.1"},
                                               {"KUBERNETES_SERVICE_PORT", "443"}};
  const auto in_pod = load_client_config({"", "https://192.168.0.5:6443"}, env_of(pod), sa);
  REQUIRE(in_pod.has_value());
  CHECK(in_pod->server == "https://192.168.0.5:6443");
  CHECK(in_pod->token == "t");
  CHECK(in_pod->certificate_authority.has_value());
  auto none = load_client_config({}, env_of({}), sa);
  REQUIRE_FALSE(none.has_value());
  CHECK(none.error().message.find("--kubeconfig") != std::string::npos);
}

TEST_CASE("token source: re-read at most once a minute, at once after a 401, old token kept on failure") {
  Scratch s;
  const fs::path file = s.write("tok/token", "one\n");
  auto now = std::chrono::steady_clock::time_point{};
  TokenSource tokens("fixed", file, [&] { return now; });
  CHECK(tokens.token() == "one");
  s.write("tok/token", "two");
  now += 59s;
  CHECK(tokens.token() == "one");  // not yet a minute
  now += 1s;
  CHECK(tokens.token() == "two");
  s.write("tok/token", "three");
  CHECK(tokens.token() == "two");
  tokens.invalidate();  // a 401
  CHECK(tokens.token() == "three");
  fs::remove(file);
  tokens.invalidate();
  CHECK(tokens.token() == "three");  // a failed read keeps the token
  CHECK_FALSE(tokens.reload().has_value());
  s.write("tok/token", "   \n");
  CHECK_FALSE(tokens.reload().has_value());  // empty: keep the old one
  CHECK(tokens.token() == "three");
  TokenSource fixed("static", "", [&] { return now; });
  CHECK(fixed.token() == "static");
}

TEST_CASE("server URL: scheme, host, IPv6 brackets, port, prefix") {
  struct Case {
    std::string url;
    bool ok;
    ServerUrl want;
  };
  const auto c = GENERATE(values<Case>({
      {"https://10.0.0.1:6443", true, {true, "10.0.0.1", "6443", ""}},
      {"https://api.example", true, {true, "api.example", "443", ""}},
      {"http://127.0.0.1", true, {false, "127.0.0.1", "80", ""}},
      {"https://[fd00::1]:6443/", true, {true, "fd00::1", "6443", ""}},
      {"https://[fd00::1]", true, {true, "fd00::1", "443", ""}},
      {"https://rancher/k8s/clusters/c-1/", true, {true, "rancher", "443", "/k8s/clusters/c-1"}},
      {"ftp://x", false, {}},
      {"https://", false, {}},
      {"https://fd00::1:6443", false, {}},
      {"https://h:0", false, {}},
      {"https://h:70000", false, {}},
      {"https://[::1", false, {}},
  }));
  CAPTURE(c.url);
  auto url = parse_server_url(c.url);
  REQUIRE(url.has_value() == c.ok);
  if (c.ok) CHECK(*url == c.want);
}

}  // namespace
}  // namespace kipvs::k8s
