// kipvs's own address binds in the guest: N /32 addresses on kube-ipvs0 one
// request at a time (add_address, a libnl round trip each) and in batches
// (add_addresses, 512 requests per sendmsg), each in a fresh network
// namespace, in alternating order over ROUNDS rounds:
//   scripts/rig run -- build/bench/kipvs_address_binds_bench [N] [ROUNDS]
// Ends with the line
//   n=<N> one_by_one_s=<a> batched_s=<b> ratio=<b/a>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "address/address_backend.h"
#include "fresh_netns.h"

namespace {

using Clock = std::chrono::steady_clock;
using kipvs::ipvs::Address;

double bind_all(const std::vector<Address>& addresses, bool batched) {
  kipvs::bench::fresh_netns();
  auto opened = kipvs::address::NetlinkAddressBackend::open();
  if (!opened || !(*opened)->ensure_link("kube-ipvs0")) {
    std::fprintf(stderr, "address-binds: cannot open rtnetlink or make the link\n");
    std::exit(1);
  }
  auto& links = **opened;
  const auto start = Clock::now();
  std::size_t failed = 0;
  if (batched) {
    for (const auto& result : links.add_addresses("kube-ipvs0", addresses)) failed += result ? 0 : 1;
  } else {
    for (const auto& address : addresses) failed += links.add_address("kube-ipvs0", address) ? 0 : 1;
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const auto listed = links.list_addresses("kube-ipvs0");
  if (failed != 0 || !listed || listed->size() != addresses.size()) {
    std::fprintf(stderr, "address-binds: %zu failed, %zu on the link\n", failed, listed ? listed->size() : 0);
    std::exit(1);
  }
  return seconds;
}

}  // namespace

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 10000;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 1;
  std::vector<Address> addresses;
  for (int i = 0; i < n; ++i) {  // as bench/address-binds spreads them
    addresses.push_back(*Address::parse(std::to_string(10 + i / 65536) + "." +
                                        std::to_string(96 + (i / 256) % 256) + "." + std::to_string(i % 256) +
                                        ".1"));
  }
  double one_by_one = 0;
  double batched = 0;
  for (int round = 0; round < rounds; ++round) {
    const bool batched_first = round % 2 == 1;
    const double first = bind_all(addresses, batched_first);
    const double second = bind_all(addresses, !batched_first);
    one_by_one += batched_first ? second : first;
    batched += batched_first ? first : second;
    std::printf("round %d: one by one %.2f s, batched %.2f s\n", round + 1, batched_first ? second : first,
                batched_first ? first : second);
  }
  std::printf("n=%d one_by_one_s=%.2f batched_s=%.2f ratio=%.3f\n", n, one_by_one / rounds, batched / rounds,
              batched / one_by_one);
  return 0;
}
