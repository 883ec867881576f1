#include "netns.h"

#include <sched.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <set>
#include <sstream>
#include <stdexcept>

#include <catch2/catch.hpp>

namespace kipvs::test {

void enter_fresh_netns() {
  if (unshare(CLONE_NEWNET) != 0)
    throw std::runtime_error("unshare(CLONE_NEWNET) failed: not root, or not in the rig?");
  if (run("ip link set lo up").status != 0) throw std::runtime_error("cannot bring lo up");
}

CommandResult run(const std::string& command) {
  CommandResult result;
  const std::string full = command + " 2>&1";
  FILE* pipe = popen(full.c_str(), "r");
  if (pipe == nullptr) return result;
  std::array<char, 4096> buffer{};
  size_t n = 0;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) result.output.append(buffer.data(), n);
  const int status = pclose(pipe);
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

std::string run_ok(const std::string& command) {
  CommandResult result = run(command);
  INFO("command: " << command << "\noutput:\n" << result.output);
  REQUIRE(result.status == 0);
  return result.output;
}

std::string ipvsadm_save() {
  std::string output;
  for (int attempt = 0; attempt < 5; ++attempt) {
    output = run_ok("ipvsadm -Sn");
    std::set<std::string> lines;
    std::istringstream in(output);
    bool repeated = false;
    for (std::string line; std::getline(in, line);) repeated = repeated || !lines.insert(line).second;
    if (!repeated) return output;
  }
  return output;
}

PeerNamespace::PeerNamespace(const std::string& role) {
  static std::atomic<int> counter{0};
  name_ = "kt" + std::to_string(getpid()) + "-" + role + std::to_string(counter++);
  run_ok("ip netns add " + name_);
  run_ok(exec() + "ip link set lo up");
}

PeerNamespace::~PeerNamespace() {
  run("ip netns delete " + name_);
}

}  // namespace kipvs::test
