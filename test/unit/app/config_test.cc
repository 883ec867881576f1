// Configuration: kube-proxy's file format and flags, kipvs's own section,
// Go durations, and a table of bad files (config_cases/bad/*.yaml), each of
// which must fail with a message naming the file, the line and the field.

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>
#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include "app/config.h"
#include "app/duration.h"

namespace {

using namespace std::chrono_literals;
using kipvs::app::Config;
namespace fs = std::filesystem;

const fs::path kCases = KIPVS_CONFIG_CASES_DIR;

std::string first_line(const fs::path& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// The configuration, failing the case when it is refused.
Config must(std::expected<Config, kipvs::Error> config) {
  INFO((config ? "" : config.error().text()));
  REQUIRE(config.has_value());
  return std::move(*config);
}

// The error's text, or "(no error)".
std::string error_text(const std::expected<Config, kipvs::Error>& config) {
  return config ? "(no error)" : config.error().text();
}

std::string error_of(const std::string& path) {
  return error_text(kipvs::app::load_config_file(path));
}

std::expected<Config, kipvs::Error> parse_args(std::vector<std::string> args) {
  std::vector<std::string_view> views(args.begin(), args.end());
  return kipvs::app::parse_command_line(views);
}

Config from_args(std::vector<std::string> args) {
  return must(parse_args(std::move(args)));
}

std::string flag_error(std::vector<std::string> args) {
  return error_text(parse_args(std::move(args)));
}

struct TempFile {
  fs::path path;
  explicit TempFile(const std::string& text)
      : path(fs::temp_directory_path() / ("kipvs-config-test-" + std::to_string(::getpid()) + ".yaml")) {
    std::ofstream(path) << text;
  }
  ~TempFile() { fs::remove(path); }
};

}  // namespace

TEST_CASE("Go durations parse as time.ParseDuration does", "[config][duration]") {
  using kipvs::app::parse_duration;
  CHECK(parse_duration("30s").value() == 30s);
  CHECK(parse_duration("1m30s").value() == 90s);
  CHECK(parse_duration("500ms").value() == 500ms);
  CHECK(parse_duration("1h").value() == 1h);
  CHECK(parse_duration("2h22m").value() == 2h + 22min);
  CHECK(parse_duration("1.5h").value() == 90min);
  CHECK(parse_duration(".5s").value() == 500ms);
  CHECK(parse_duration("1us").value() == 1us);
  CHECK(parse_duration("1\xc2\xb5s").value() == 1us);
  CHECK(parse_duration("10ns").value() == 10ns);
  CHECK(parse_duration("0").value() == 0ns);
  CHECK(parse_duration("0s").value() == 0ns);
  CHECK(parse_duration("-5s").value() == -5s);
  CHECK(parse_duration("+5s").value() == 5s);
  CHECK(parse_duration("1h0m0s").value() == 1h);
  CHECK(parse_duration("2562047h").value() == 2562047h);

  CHECK(parse_duration("").error().text() == "empty duration");
  CHECK(parse_duration("30").error().text().starts_with("missing unit"));
  CHECK(parse_duration("30 s").error().text().starts_with("unknown unit"));
  CHECK(parse_duration("30sec").error().text().starts_with("unknown unit"));
  CHECK(parse_duration("1d").error().text().starts_with("unknown unit"));
  CHECK(parse_duration("s").error().text() == "expected a number");
  CHECK(parse_duration(".s").error().text() == "expected a number");
  CHECK(parse_duration("-").error().text() == "a sign without a number");
  CHECK(parse_duration("2562048h").error().text() == "duration out of range");
  CHECK(parse_duration("99999999999999999999s").error().text() == "duration out of range");
}

TEST_CASE("Go durations print as Duration.String does", "[config][duration]") {
  using kipvs::app::format_duration;
  CHECK(format_duration(0s) == "0s");
  CHECK(format_duration(30s) == "30s");
  CHECK(format_duration(90s) == "1m30s");
  CHECK(format_duration(1h) == "1h0m0s");
  CHECK(format_duration(15min) == "15m0s");
  CHECK(format_duration(500ms) == "500ms");
  CHECK(format_duration(1500ms) == "1.5s");
  CHECK(format_duration(1us) == "1\xc2\xb5s");
  CHECK(format_duration(1500ns) == "1.5\xc2\xb5s");
  CHECK(format_duration(7ns) == "7ns");
  CHECK(format_duration(-90s) == "-1m30s");
  for (const auto text : {"1h2m3.5s", "250ms", "26h0m0.001s"}) {
    const auto parsed = kipvs::app::parse_duration(text);
    REQUIRE(parsed);
    CHECK(format_duration(*parsed) == text);
  }
}

TEST_CASE("defaults are kube-proxy's", "[config]") {
  const Config c = from_args({});
  CHECK(c.mode.empty());
  CHECK(c.ipvs.scheduler.empty());
  CHECK(c.ipvs.sync_period == 30s);
  CHECK(c.ipvs.min_sync_period == 0s);
  CHECK(c.metrics_bind_address == "127.0.0.1:10249");
  CHECK(c.healthz_bind_address == "0.0.0.0:10256");
  CHECK(c.masquerade_bit == 14);
  CHECK(c.kipvs.interface_name == "kube-ipvs0");
  CHECK(c.kipvs.grace_period == 15min);
  CHECK(c.kipvs.throughput_metrics == kipvs::app::ThroughputMetrics::kServices);
  CHECK(c.kipvs.affinity_mode == kipvs::agent::AffinityMode::kPersistence);
  CHECK(c.health_timeout() == 60s);
  CHECK(c.config_file.empty());
  CHECK(c.warnings.empty());
}

TEST_CASE("kube-proxy's own v1.35 configuration is accepted without warnings", "[config]") {
  const auto path = kCases / "good" / "kube-proxy-v1.35.yaml";
  const Config c = must(kipvs::app::load_config_file(path.string()));
  for (const auto& warning : c.warnings) UNSCOPED_INFO(warning);
  CHECK(c.warnings.empty());
  CHECK(c.mode == "ipvs");
  CHECK(c.kubeconfig == "/var/lib/kube-proxy/kubeconfig.conf");
  REQUIRE(c.cluster_cidrs.size() == 1);
  CHECK(c.cluster_cidrs[0].to_string() == "10.244.0.0/16");
  CHECK(c.ipvs.sync_period == 30s);
  CHECK(c.ipvs.exclude_cidrs.empty());
  CHECK(c.bind_address == "0.0.0.0");
  CHECK(c.api_content_type == "application/vnd.kubernetes.protobuf");
  CHECK(c.config_file == path.string());
  // Known kube-proxy fields that kipvs does not use are noted, not warned about.
  CHECK(std::ranges::find(c.ignored_fields, "conntrack") != c.ignored_fields.end());
  CHECK(std::ranges::find(c.ignored_fields, "iptables.syncPeriod") != c.ignored_fields.end());
  CHECK(std::ranges::find(c.ignored_fields, "oomScoreAdj") != c.ignored_fields.end());
}

TEST_CASE("every field kipvs reads is read", "[config]") {
  const Config c = must(kipvs::app::load_config_file((kCases / "good" / "kipvs-full.yaml").string()));
  CHECK(c.warnings.empty());
  CHECK(c.bind_address == "192.168.1.10");
  CHECK(c.kubeconfig == "/etc/kipvs/kubeconfig");
  REQUIRE(c.cluster_cidrs.size() == 2);
  CHECK(c.cluster_cidrs[1].to_string() == "fd00:10:244::/56");
  CHECK(c.detect_local.mode == kipvs::app::DetectLocalMode::kBridgeInterface);
  CHECK(c.detect_local.bridge_interface == "cni0");
  CHECK(c.detect_local.interface_name_prefix == "veth");
  CHECK(c.hostname_override == "node-a");
  CHECK(c.healthz_bind_address == "[::]:10256");
  CHECK(c.metrics_bind_address == "0.0.0.0:10249");
  REQUIRE(c.node_port_addresses.size() == 2);
  CHECK(c.node_port_addresses[0].to_string() == "192.168.1.0/24");
  CHECK(c.masquerade_all);
  CHECK(c.masquerade_bit == 12);
  CHECK(c.ipvs.scheduler == "mh");
  CHECK(c.ipvs.sync_period == 90s);
  CHECK(c.ipvs.min_sync_period == 500ms);
  CHECK(c.ipvs.strict_arp);
  REQUIRE(c.ipvs.exclude_cidrs.size() == 1);
  CHECK(c.ipvs.exclude_cidrs[0].to_string() == "10.1.0.0/16");
  CHECK(c.ipvs.tcp_timeout == 15min);
  CHECK(c.ipvs.tcp_fin_timeout == 2min);
  CHECK(c.ipvs.udp_timeout == 30s);
  CHECK(c.log_format == kipvs::app::LogFormat::kJson);
  CHECK(c.verbosity == 4);
  CHECK(c.kipvs.affinity_mode == kipvs::agent::AffinityMode::kHash);
  CHECK(c.kipvs.proxy_name == "kipvs");
  CHECK(c.kipvs.interface_name == "kipvs0");
  CHECK(c.kipvs.service_ip_binding == kipvs::address::Binding::kLocalRoute);
  CHECK(c.kipvs.grace_period == 5min);
  CHECK(c.kipvs.scheduler_flags == "mh-fallback,mh-port");
  CHECK(c.kipvs.scheduler_flag_bits != 0);
  CHECK(c.kipvs.manifests == "/etc/kipvs/manifests");
  CHECK(c.kipvs.throughput_metrics == kipvs::app::ThroughputMetrics::kDestinations);
  REQUIRE(c.kipvs.node_ips.size() == 2);
  CHECK(c.kipvs.node_ips[1].to_string() == "fd00:1::10");
  CHECK(c.kipvs.zone == "zone-a");
  CHECK(c.kipvs.drain_check_period == 10s);
  CHECK(c.kipvs.proc_sys == "/host/proc/sys");
  CHECK(c.kipvs.rate_estimation_disabled);
}

TEST_CASE("an unknown field is a warning naming its path and line", "[config]") {
  const Config c = must(
      kipvs::app::parse_config_yaml("ipvs:\n  syncPeriodd: 10s\n  scheduler: wrr\nbogus: 1\n", "cm.yaml"));
  CHECK(c.ipvs.scheduler == "wrr");
  CHECK(c.ipvs.sync_period == 30s);
  REQUIRE(c.warnings.size() == 2);
  CHECK(c.warnings[0] == "cm.yaml:2: ipvs.syncPeriodd: unknown field, ignored");
  CHECK(c.warnings[1] == "cm.yaml:4: bogus: unknown field, ignored");
}

TEST_CASE("null and empty values keep the defaults", "[config]") {
  const Config c =
      must(kipvs::app::parse_config_yaml("ipvs:\n  syncPeriod:\n  excludeCIDRs: null\nmode: \"\"\n", "x"));
  CHECK(c.ipvs.sync_period == 30s);
  CHECK(c.mode.empty());
  CHECK(must(kipvs::app::parse_config_yaml("", "empty.yaml")).ipvs.sync_period == 30s);
}

TEST_CASE("nodePortAddresses keywords all and primary mean every node IP", "[config]") {
  const Config c = must(kipvs::app::parse_config_yaml("nodePortAddresses: [10.0.0.0/8, primary]\n", "x"));
  CHECK(c.node_port_addresses.empty());
  CHECK_THAT(error_text(kipvs::app::parse_config_yaml("nodePortAddresses: [localhost]\n", "x")),
             Catch::Contains("nodePortAddresses: expected CIDRs or the keywords all, primary"));
}

TEST_CASE("bad configuration files fail with the file, line, field and what was expected", "[config]") {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(kCases / "bad")) files.push_back(entry.path());
  std::ranges::sort(files);
  REQUIRE(files.size() >= 30);
  for (const auto& file : files) {
    const std::string header = first_line(file);
    REQUIRE(header.starts_with("# error: "));
    const std::string expected = header.substr(9);
    const std::string error = error_of(file.string());
    INFO(file.filename().string() << ": " << error);
    CHECK(error.starts_with(file.string() + ":"));
    CHECK(error.find(expected) != std::string::npos);
  }
}

TEST_CASE("errors carry the line of the bad value", "[config]") {
  const auto refused = kipvs::app::parse_config_yaml("mode: ipvs\nipvs:\n  strictARP: maybe\n", "f.yaml");
  CHECK(error_text(refused) == "f.yaml:3: ipvs.strictARP: expected true or false, got \"maybe\"");
  REQUIRE_FALSE(refused);
  CHECK(refused.error().source == "f.yaml:3");
  CHECK(refused.error().field == "ipvs.strictARP");
}

TEST_CASE("a missing file is an error naming it", "[config]") {
  CHECK(error_text(kipvs::app::load_config_file("/nonexistent/kipvs.yaml")) ==
        "/nonexistent/kipvs.yaml: cannot read the configuration file");
}

TEST_CASE("flags set every kube-proxy setting in both forms", "[config][flags]") {
  const Config c = from_args({"--kubeconfig=/k",
                              "--master",
                              "https://10.0.0.1:6443",
                              "--hostname-override=n1",
                              "--ipvs-scheduler",
                              "wlc",
                              "--ipvs-sync-period=1m",
                              "--ipvs-min-sync-period",
                              "2s",
                              "--ipvs-strict-arp",
                              "--ipvs-exclude-cidrs=10.0.0.0/8,192.168.0.0/16",
                              "--cluster-cidr=10.244.0.0/16",
                              "--nodeport-addresses",
                              "192.168.1.0/24",
                              "--metrics-bind-address=0.0.0.0:9999",
                              "--healthz-bind-address",
                              "[::1]:10256",
                              "--proxy-mode=ipvs",
                              "-v",
                              "3",
                              "--logging-format=json",
                              "--cleanup",
                              "--manifests=/m",
                              "--node-ip",
                              "10.0.0.5,fd00::5",
                              "--zone=z1",
                              "--graceful-termination-period=0s",
                              "--drain-check-period",
                              "1s",
                              "--dummy-interface=kipvs9",
                              "--proc-sys=/host/proc/sys",
                              "--service-node-port-range=40000-40999",
                              "--detect-local-mode=BridgeInterface",
                              "--pod-bridge-interface",
                              "cni0",
                              "--pod-interface-name-prefix=veth"});
  CHECK(c.kubeconfig == "/k");
  CHECK(c.master == "https://10.0.0.1:6443");
  CHECK(c.hostname_override == "n1");
  CHECK(c.ipvs.scheduler == "wlc");
  CHECK(c.ipvs.sync_period == 1min);
  CHECK(c.ipvs.min_sync_period == 2s);
  CHECK(c.ipvs.strict_arp);
  CHECK(c.ipvs.exclude_cidrs.size() == 2);
  CHECK(c.cluster_cidrs.size() == 1);
  CHECK(c.node_port_addresses.size() == 1);
  CHECK(c.metrics_bind_address == "0.0.0.0:9999");
  CHECK(c.healthz_bind_address == "[::1]:10256");
  CHECK(c.mode == "ipvs");
  CHECK(c.verbosity == 3);
  CHECK(c.log_format == kipvs::app::LogFormat::kJson);
  CHECK(c.cleanup);
  CHECK(c.kipvs.manifests == "/m");
  CHECK(c.kipvs.node_ips.size() == 2);
  CHECK(c.kipvs.zone == "z1");
  CHECK(c.kipvs.grace_period == 0s);
  CHECK(c.kipvs.drain_check_period == 1s);
  CHECK(c.kipvs.node_port_min == 40000);
  CHECK(c.kipvs.node_port_max == 40999);
  CHECK(c.kipvs.interface_name == "kipvs9");
  CHECK(c.kipvs.proc_sys == "/host/proc/sys");
  CHECK(c.detect_local.mode == kipvs::app::DetectLocalMode::kBridgeInterface);
  CHECK(c.detect_local.bridge_interface == "cni0");
  CHECK(c.detect_local.interface_name_prefix == "veth");
  CHECK(from_args({"--v=5"}).verbosity == 5);
  CHECK(from_args({"--throughput-metrics=none"}).kipvs.throughput_metrics ==
        kipvs::app::ThroughputMetrics::kNone);
  CHECK(from_args({"-v=2"}).verbosity == 2);
  CHECK_FALSE(from_args({"--ipvs-strict-arp=false"}).ipvs.strict_arp);
  CHECK(from_args({"--ipvs-rate-estimation=disabled"}).kipvs.rate_estimation_disabled);
  CHECK_FALSE(from_args({"--ipvs-rate-estimation", "keep"}).kipvs.rate_estimation_disabled);
  CHECK_FALSE(from_args({}).kipvs.rate_estimation_disabled);
  CHECK(from_args({"--help"}).help);
  CHECK(from_args({"-h"}).help);
}

TEST_CASE("flags override the file, in either order", "[config][flags]") {
  const TempFile file("ipvs:\n  scheduler: lc\n  syncPeriod: 10s\nhostnameOverride: from-file\n");
  const Config c = from_args({"--hostname-override=from-flag", "--config", file.path.string()});
  CHECK(c.hostname_override == "from-flag");
  CHECK(c.ipvs.scheduler == "lc");  // not given as a flag: the file's
  CHECK(c.ipvs.sync_period == 10s);
  CHECK(c.config_file == file.path.string());
  const Config d = from_args({"--config=" + file.path.string(), "--ipvs-scheduler=sh"});
  CHECK(d.ipvs.scheduler == "sh");
}

TEST_CASE("checks across fields run once the flags are applied", "[config][flags]") {
  // Alone the file is wrong (minSyncPeriod above the default syncPeriod);
  // with the flag it is not.
  const TempFile file("ipvs:\n  minSyncPeriod: 1m\n");
  CHECK(from_args({"--config", file.path.string(), "--ipvs-sync-period=2m"}).ipvs.min_sync_period == 1min);
  CHECK(flag_error({"--config", file.path.string()}) ==
        file.path.string() +
            " with the command-line flags: ipvs.minSyncPeriod: expected at most ipvs.syncPeriod (30s), got "
            "1m0s");
}

TEST_CASE("kube-proxy flags kipvs does not use are accepted with a warning", "[config][flags]") {
  const Config c = from_args({"--feature-gates=A=true", "--conntrack-max-per-core", "0", "--profiling",
                              "--oom-score-adj=-999", "--ipvs-scheduler=lc"});
  CHECK(c.ipvs.scheduler == "lc");  // the value after --conntrack-max-per-core was not taken as a flag
  REQUIRE(c.warnings.size() == 4);
  CHECK(c.warnings[0] == "flag --feature-gates: a kube-proxy flag kipvs does not use, ignored");
  CHECK(c.warnings[2] == "flag --profiling: a kube-proxy flag kipvs does not use, ignored");
  CHECK(flag_error({"--write-config-to=/tmp/x"}) == "flag --write-config-to: unknown flag (see --help)");
  CHECK(flag_error({"--feature-gates"}) == "flag --feature-gates: needs a value");
}

TEST_CASE("flag errors name the flag", "[config][flags]") {
  CHECK(flag_error({"--ipvs-sync-period=5"}) ==
        "flag --ipvs-sync-period: expected a duration such as 30s or 1m30s, got \"5\" (missing unit (one of "
        "ns, us, "
        "ms, s, m, h))");
  CHECK(flag_error({"--ipvs-scheduler", "fastest"})
            .starts_with("flag --ipvs-scheduler: expected an IPVS scheduler"));
  CHECK(flag_error({"--proxy-mode=iptables"}).starts_with("flag --proxy-mode: expected \"ipvs\""));
  CHECK(flag_error({"--metrics-bind-address=10249"})
            .starts_with("flag --metrics-bind-address: expected an address"));
  CHECK(flag_error({"--cluster-cidr=10.0.0.0/99"}).starts_with("flag --cluster-cidr: expected a CIDR"));
  CHECK(flag_error({"-v", "many"}) == "flag --v: expected an integer, got \"many\"");
  CHECK(flag_error({"--ipvs-strict-arp=perhaps"}) ==
        "flag --ipvs-strict-arp: expected true or false, got \"perhaps\"");
  CHECK(flag_error({"--kubeconfig"}) == "flag --kubeconfig: needs a value (path)");
  CHECK(flag_error({"--no-such-flag=1"}) == "flag --no-such-flag: unknown flag (see --help)");
  CHECK(flag_error({"stray"}).starts_with("unexpected argument \"stray\""));
  CHECK(flag_error({"--ipvs-sync-period=10s", "--ipvs-min-sync-period=20s"}) ==
        "ipvs.minSyncPeriod: expected at most ipvs.syncPeriod (10s), got 20s");
  CHECK(flag_error({"--config=/nonexistent.yaml"}) ==
        "/nonexistent.yaml: cannot read the configuration file");
}

TEST_CASE("--help lists every kube-proxy flag with a description", "[config][flags]") {
  const std::string help = kipvs::app::help_text();
  for (const char* flag : {"--config path",
                           "--kubeconfig path",
                           "--master url",
                           "--hostname-override name",
                           "--ipvs-scheduler name",
                           "--ipvs-sync-period duration",
                           "--ipvs-min-sync-period duration",
                           "--ipvs-strict-arp",
                           "--ipvs-exclude-cidrs",
                           "--cluster-cidr",
                           "--nodeport-addresses",
                           "--metrics-bind-address ip:port",
                           "--healthz-bind-address ip:port",
                           "--proxy-mode mode",
                           "-v, --v N",
                           "--logging-format text|json",
                           "--cleanup",
                           "--manifests dir",
                           "--node-ip",
                           "--help"}) {
    INFO(flag);
    CHECK(help.find(flag) != std::string::npos);
  }
  CHECK(help.find("[file: ipvs.syncPeriod]") != std::string::npos);
}

TEST_CASE("the lists' content type: protobuf by default, JSON when asked, nothing else", "[config][flags]") {
  CHECK(from_args({}).api_content_type == "application/vnd.kubernetes.protobuf");
  CHECK(from_args({"--kube-api-content-type=application/json"}).api_content_type == "application/json");
  CHECK(from_args({"--kube-api-content-type", "application/json"}).warnings.empty());
  CHECK(flag_error({"--kube-api-content-type=text/plain"}) ==
        "flag --kube-api-content-type: expected \"application/vnd.kubernetes.protobuf\" or "
        "\"application/json\", "
        "got \"text/plain\"");
  // kubeadm writes contentType: "" (the default).
  const TempFile empty("clientConnection:\n  contentType: \"\"\n");
  CHECK(must(kipvs::app::load_config_file(empty.path.string())).api_content_type ==
        "application/vnd.kubernetes.protobuf");
  CHECK(kipvs::app::to_json(from_args({"--kube-api-content-type=application/json"}))
            .at("clientConnection")
            .at("contentType") == "application/json");
}

TEST_CASE("to_json is the effective configuration for /configz", "[config]") {
  const Config c = from_args({"--ipvs-sync-period=45s", "--ipvs-exclude-cidrs=10.0.0.0/8", "--proxy-name=p"});
  const auto json = kipvs::app::to_json(c);
  CHECK(json.at("kind") == "KubeProxyConfiguration");
  CHECK(json.at("mode") == "ipvs");
  CHECK(json.at("ipvs").at("syncPeriod") == "45s");
  CHECK(json.at("ipvs").at("minSyncPeriod") == "0s");
  CHECK(json.at("ipvs").at("excludeCIDRs").as_array().size() == 1);
  CHECK(json.at("ipvs").at("excludeCIDRs").at(0) == "10.0.0.0/8");
  CHECK(json.at("metricsBindAddress") == "127.0.0.1:10249");
  CHECK(json.at("iptables").at("masqueradeBit") == 14);
  CHECK(json.at("kipvs").at("proxyName") == "p");
  CHECK(json.at("kipvs").at("gracePeriod") == "15m0s");
  CHECK(json.at("kipvs").at("throughputMetrics") == "services");
  // What /configz prints reads back as the same configuration.
  const TempFile file(boost::json::serialize(json));  // JSON is YAML
  const Config again = must(kipvs::app::load_config_file(file.path.string()));
  CHECK(again.warnings.empty());
  CHECK(again.ipvs.sync_period == 45s);
  CHECK(again.ipvs.exclude_cidrs == c.ipvs.exclude_cidrs);
  CHECK(again.kipvs.proxy_name == "p");
}

TEST_CASE("host:port addresses", "[config]") {
  using kipvs::app::parse_host_port;
  CHECK(parse_host_port("0.0.0.0:10256")->port == 10256);
  CHECK(parse_host_port("[::]:10256")->address.family == kipvs::ipvs::Family::kIPv6);
  CHECK(parse_host_port("[fd00::1]:0")->port == 0);
  CHECK_FALSE(parse_host_port("::1:10256"));
  CHECK_FALSE(parse_host_port("[10.0.0.1]:80"));
  CHECK_FALSE(parse_host_port("10.0.0.1"));
  CHECK_FALSE(parse_host_port("10.0.0.1:"));
  CHECK_FALSE(parse_host_port("10.0.0.1:65536"));
  CHECK_FALSE(parse_host_port("10.0.0.1:8o"));
  CHECK_FALSE(parse_host_port("host:80"));
}

TEST_CASE("in the file a zero sync period or an empty address means the default, as kube-proxy's defaulting",
          "[config]") {
  const Config c = must(kipvs::app::parse_config_yaml(
      "ipvs:\n  syncPeriod: 0s\nmetricsBindAddress: \"\"\nhealthzBindAddress: \"\"\n", "kubeadm.conf"));
  CHECK(c.ipvs.sync_period == 30s);
  CHECK(c.metrics_bind_address == "127.0.0.1:10249");
  CHECK(c.healthz_bind_address == "0.0.0.0:10256");
  // On the command line the literal meaning stays: empty disables, 0 is refused.
  const Config flags = from_args({"--metrics-bind-address="});
  CHECK(flags.metrics_bind_address.empty());
  CHECK(flag_error({"--ipvs-sync-period=0s"}) ==
        "flag --ipvs-sync-period: expected a duration greater than 0, got 0s");
}

TEST_CASE("kubeadm's kube-proxy ConfigMap (the chart's test copy) is accepted", "[config]") {
  const YAML::Node configmap = YAML::LoadFile(KIPVS_KUBEADM_CONFIGMAP);
  const std::string conf = configmap["data"]["config.conf"].as<std::string>();
  const Config c = must(kipvs::app::parse_config_yaml(conf, "config.conf"));
  CHECK(c.mode == "ipvs");
  CHECK(c.ipvs.sync_period == 30s);
  CHECK(c.masquerade_bit == 14);
  CHECK(c.metrics_bind_address == "127.0.0.1:10249");
  CHECK(c.healthz_bind_address == "0.0.0.0:10256");
  CHECK(c.kubeconfig == "/var/lib/kube-proxy/kubeconfig.conf");
  // That copy carries one field kube-proxy does not have
  // (showHiddenMetricsForAlphaFeatures; kube-proxy's is
  // showHiddenMetricsForVersion): the only warning allowed.
  for (const auto& warning : c.warnings) {
    INFO(warning);
    CHECK(warning.find("showHiddenMetricsForAlphaFeatures: unknown field") != std::string::npos);
  }
}

TEST_CASE("kipvs check-config reports ok, warnings and errors with an exit status", "[config]") {
  auto run = [](std::vector<std::string_view> args, std::string& out, std::string& err) {
    std::ostringstream o, e;
    const int status = kipvs::app::run_check_config(args, o, e);
    out = o.str();
    err = e.str();
    return status;
  };
  std::string out, err;
  const std::string good = (kCases / "good" / "kube-proxy-v1.35.yaml").string();
  CHECK(run({good}, out, err) == 0);
  CHECK(out == good + ": ok\n");
  CHECK(err.empty());

  const TempFile warned("ipvs:\n  schedular: rr\n");
  CHECK(run({warned.path.string()}, out, err) == 0);
  CHECK(err == "warning: " + warned.path.string() + ":2: ipvs.schedular: unknown field, ignored\n");

  const std::string bad = (kCases / "bad" / "masquerade-bit-40.yaml").string();
  CHECK(run({bad}, out, err) == 1);
  CHECK(out.empty());
  CHECK(err == bad + ":3: iptables.masqueradeBit: expected an integer from 0 to 31, got 40\n");

  CHECK(run({}, out, err) == 2);
  CHECK(err == "usage: kipvs check-config FILE\n");
  CHECK(kipvs::app::help_text().find("kipvs check-config FILE") != std::string::npos);
}
