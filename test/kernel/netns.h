#pragma once
// Helpers for the kernel tier, which runs inside the rig's guest. Every test
// case starts in a fresh network namespace of its own (see kernel_main.cc),
// so IPVS tables, links and addresses cannot leak between cases.

#include <string>

namespace kipvs::test {

// Moves the calling process into a new, empty network namespace with `lo` up.
void enter_fresh_netns();

struct CommandResult {
  int status = -1;     // exit status, or -1 when the command did not run
  std::string output;  // stdout and stderr, interleaved
};

// Runs a shell command in the current namespace and captures its output.
CommandResult run(const std::string& command);

// Runs a command and fails the current test case unless it exits 0.
std::string run_ok(const std::string& command);

// `ipvsadm -Sn`, read again while a line repeats: the kernel's service dump
// walks a table that all namespaces share, so a service added by a test
// running beside this one can make it list one of ours twice.
std::string ipvsadm_save();

// A named namespace (ip netns) for a peer host: a backend or a client. Deleted
// when the object goes away. Names are unique per process.
class PeerNamespace {
 public:
  explicit PeerNamespace(const std::string& role);
  ~PeerNamespace();
  PeerNamespace(const PeerNamespace&) = delete;
  PeerNamespace& operator=(const PeerNamespace&) = delete;

  const std::string& name() const { return name_; }
  // "ip netns exec NAME " prefix for commands run inside the peer.
  std::string exec() const { return "ip netns exec " + name_ + " "; }

 private:
  std::string name_;
};

}  // namespace kipvs::test
