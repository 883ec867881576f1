#pragma once
// The benchmarks' own network namespace in the guest: IPVS state is per
// namespace, so each run starts from an empty table.
#include <sched.h>

#include <cstdio>
#include <cstdlib>

namespace kipvs::bench {

inline void fresh_netns() {
  if (unshare(CLONE_NEWNET) != 0) {
    std::perror("unshare(CLONE_NEWNET)");
    std::exit(1);
  }
  // The kernel refuses masquerading destinations (EINVAL) in a namespace
  // whose local routing table does not exist yet: bring lo up first.
  if (std::system("ip link set lo up") != 0) std::exit(1);
}

}  // namespace kipvs::bench
