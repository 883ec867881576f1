#include "agent/sysctl.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace kipvs::agent {

std::vector<SysctlSetting> kube_proxy_sysctls(bool strict_arp) {
  std::vector<SysctlSetting> settings{
      {"net/ipv4/vs/conntrack", "1"},
      {"net/ipv4/vs/expire_nodest_conn", "1"},
      {"net/ipv4/vs/expire_quiescent_template", "1"},
      {"net/ipv4/ip_forward", "1"},
  };
  if (strict_arp) {
    settings.push_back({"net/ipv4/conf/all/arp_ignore", "1"});
    settings.push_back({"net/ipv4/conf/all/arp_announce", "2"});
  }
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

}  // namespace kipvs::agent
