#pragma once
// The kernel settings kube-proxy's IPVS mode needs (pkg/proxy/ipvs/proxier.go,
// NewProxier), written through /proc/sys. A setting that cannot be written
// (a read-only /proc/sys in a container, a kernel without the knob) is a
// warning, not a failure: the agent still runs, and says what is missing.

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace kipvs::app {

struct SysctlSetting {
  std::string name;   // "net/ipv4/vs/conntrack", relative to the root
  std::string value;  // "1"
  friend bool operator==(const SysctlSetting&, const SysctlSetting&) = default;
};

// conntrack=1 (IPVS connections get conntrack entries, so masquerading and
// NodePort SNAT work), expire_nodest_conn=1 (a connection to a removed real
// server is dropped at its next packet instead of hanging),
// expire_quiescent_template=1 (persistence templates to a weight-0 server
// expire, so a drained server stops getting sticky clients), ip_forward=1;
// with strict ARP, arp_ignore=1 and arp_announce=2 on all interfaces so the
// node does not answer ARP for the virtual IPs on kube-ipvs0.
// On kernels 4.1 to 5.8 also conn_reuse_mode=0: with 1 there, a new
// connection that reuses a port of a TIME_WAIT one stalls for a second (the
// SYN is dropped while the old entry expires); 5.9 fixed it, and before 4.1
// the knob does not exist. kernel_release is uname's ("5.4.0-100-generic").
// rate_estimation_disabled (kipvs's own, not kube-proxy's): run_estimation=0; left
// as the node has it otherwise.
[[nodiscard]] std::vector<SysctlSetting> kube_proxy_sysctls(bool strict_arp, std::string_view kernel_release,
                                                            bool rate_estimation_disabled = false);

struct SysctlReport {
  std::vector<std::string> changed;   // "net/ipv4/ip_forward: 0 -> 1"
  std::vector<std::string> warnings;  // one line per setting that could not be set
};

// Writes each setting whose current value differs. root is /proc/sys in
// production; tests pass a temporary directory.
[[nodiscard]] SysctlReport apply_sysctls(const std::filesystem::path& root,
                                         const std::vector<SysctlSetting>& settings);

}  // namespace kipvs::app
