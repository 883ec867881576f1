#include "app/sysctl.h"

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>

namespace kipvs::app {

namespace {

// "5.4.0-100-generic" -> 5 * 1000 + 4; 0 when it does not parse.
int kernel_version(std::string_view release) {
  int major = 0;
  int minor = 0;
  const auto* end = release.data() + release.size();
  auto [dot, major_error] = std::from_chars(release.data(), end, major);
  if (major_error != std::errc{} || dot == end || *dot != '.') return 0;
  auto [rest, minor_error] = std::from_chars(dot + 1, end, minor);
  if (minor_error != std::errc{}) return 0;
  return major * 1000 + minor;
}

}  // namespace

std::vector<SysctlSetting> kube_proxy_sysctls(bool strict_arp, std::string_view kernel_release,
                                              bool rate_estimation_disabled) {
  std::vector<SysctlSetting> settings{
      {"net/ipv4/vs/conntrack", "1"},
      {"net/ipv4/vs/expire_nodest_conn", "1"},
      {"net/ipv4/vs/expire_quiescent_template", "1"},
      {"net/ipv4/ip_forward", "1"},
  };
  if (const int version = kernel_version(kernel_release); version >= 4001 && version < 5009)
    settings.push_back({"net/ipv4/vs/conn_reuse_mode", "0"});
  if (strict_arp) {
    settings.push_back({"net/ipv4/conf/all/arp_ignore", "1"});
    settings.push_back({"net/ipv4/conf/all/arp_announce", "2"});
  }
  if (rate_estimation_disabled) settings.push_back({"net/ipv4/vs/run_estimation", "0"});
  return settings;
}

SysctlReport apply_sysctls(const std::filesystem::path& root, const std::vector<SysctlSetting>& settings) {
  SysctlReport report;
  for (const auto& setting : settings) {
    const auto path = root / setting.name;
    std::string current;
    {
      std::ifstream in(path);
      if (!in) {
        report.warnings.push_back("sysctl " + setting.name + ": cannot read " + path.string() + ": " +
                                  std::strerror(errno) + " (wanted " + setting.value + ")");
        continue;
      }
      std::getline(in, current);
    }
    if (current == setting.value) continue;
    std::ofstream out(path);
    out << setting.value << '\n';
    out.flush();
    if (!out) {
      report.warnings.push_back("sysctl " + setting.name + ": cannot set " + setting.value + " (is " +
                                current + "): " + std::strerror(errno));
      continue;
    }
    report.changed.push_back(setting.name + ": " + current + " -> " + setting.value);
  }
  return report;
}

}  // namespace kipvs::app
