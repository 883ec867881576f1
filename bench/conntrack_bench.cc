// Issue 17 item 11: UDP conntrack cleanup with a large conntrack table, in
// the rig's guest. Fills the table through ctnetlink (mostly TCP, as a busy
// node's is, plus UDP flows to many Services, a few of them answered by an
// endpoint that is gone), then clears the stale UDP entries twice with the
// same pick:
//   kipvs:     NetlinkConntrackBackend (dumps the kernel filters, one entry
//              at a time)
//   reference: one libnl cache of the whole table, then the pick (what kipvs
//              did before, and what a userspace filter over a full dump does)
// Each runs in a child process of its own, so its peak RSS is its own. Ends
// with the line
//   conntrack_entries=N time_ratio=<kipvs/reference> rss_ratio=<kipvs/reference>
//
//   kipvs_conntrack_bench [--entries N] [--udp-services S] [--flows F] [--stale K]

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/netfilter/ct.h>
#include <netlink/netfilter/nfnl.h>
#include <netlink/netlink.h>

#include "conntrack/conntrack.h"

namespace {

using Clock = std::chrono::steady_clock;
using kipvs::conntrack::UdpEndpoint;
using kipvs::conntrack::UdpServing;

long status_kib(const char* field) {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.starts_with(field)) return std::stol(line.substr(std::strlen(field) + 1));
  }
  return -1;
}

std::string read_first_line(const char* path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

bool write_file(const char* path, const std::string& value) {
  std::ofstream out(path);
  out << value;
  return static_cast<bool>(out.flush());
}

class Filler {
 public:
  Filler() : sock_(nl_socket_alloc()) {
    if (sock_ == nullptr || nfnl_connect(sock_) < 0) throw std::runtime_error("ctnetlink connect");
    // No ack per entry: the kernel answers only failures, which a full
    // receive buffer may drop; the table's count tells what went in.
    nl_socket_disable_auto_ack(sock_);
  }
  ~Filler() { nl_socket_free(sock_); }

  void add(int protocol, std::uint32_t client, int client_port, std::uint32_t service, int service_port,
           std::uint32_t endpoint, int endpoint_port) {
    nfnl_ct* ct = nfnl_ct_alloc();
    nfnl_ct_set_family(ct, AF_INET);
    nfnl_ct_set_proto(ct, static_cast<std::uint8_t>(protocol));
    nfnl_ct_set_timeout(ct, 3600);
    set(ct, 0, client, client_port, service, service_port);
    set(ct, 1, endpoint, endpoint_port, client, client_port);
    nl_msg* msg = nullptr;
    if (nfnl_ct_build_add_request(ct, NLM_F_CREATE, &msg) == 0) {
      nl_send_auto(sock_, msg);
      nlmsg_free(msg);
    }
    nfnl_ct_put(ct);
    if (++sent_ % 2048 == 0) drain();
  }

 private:
  static void set(nfnl_ct* ct, int reply, std::uint32_t src, int src_port, std::uint32_t dst, int dst_port) {
    std::uint32_t s = htonl(src);
    std::uint32_t d = htonl(dst);
    nl_addr* source = nl_addr_build(AF_INET, &s, 4);
    nl_addr* destination = nl_addr_build(AF_INET, &d, 4);
    nfnl_ct_set_src(ct, reply, source);
    nfnl_ct_set_dst(ct, reply, destination);
    nl_addr_put(source);
    nl_addr_put(destination);
    nfnl_ct_set_src_port(ct, reply, static_cast<std::uint16_t>(src_port));
    nfnl_ct_set_dst_port(ct, reply, static_cast<std::uint16_t>(dst_port));
  }
  // Reads pending error answers so the socket's buffer does not fill.
  void drain() {
    char buffer[65536];
    while (recv(nl_socket_get_fd(sock_), buffer, sizeof buffer, MSG_DONTWAIT) > 0) {
    }
  }

  nl_sock* sock_;
  std::size_t sent_ = 0;
};

struct Measured {
  double seconds = 0;
  long rss_growth_kib = 0;
  long deleted = 0;
};

// Runs work in a child; its time, the growth of its peak RSS, and what it
// returned.
Measured in_child(const std::function<long()>& work) {
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) throw std::runtime_error("pipe");
  const pid_t pid = fork();
  if (pid == 0) {
    close(pipe_fds[0]);
    Measured m;
    const long before = status_kib("VmRSS:");
    const auto start = Clock::now();
    m.deleted = work();
    m.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    m.rss_growth_kib = status_kib("VmHWM:") - before;
    (void)!write(pipe_fds[1], &m, sizeof m);
    _exit(0);
  }
  close(pipe_fds[1]);
  Measured m;
  if (read(pipe_fds[0], &m, sizeof m) != sizeof m) throw std::runtime_error("child failed");
  close(pipe_fds[0]);
  waitpid(pid, nullptr, 0);
  return m;
}

// The reference: the whole table in a libnl cache, then the same pick.
long reference_cleanup(const UdpServing& serving) {
  nl_sock* sock = nl_socket_alloc();
  if (nfnl_connect(sock) < 0) return -1;
  nl_cache* cache = nullptr;
  if (nfnl_ct_alloc_cache(sock, &cache) < 0) return -1;
  long deleted = 0;
  for (auto* object = nl_cache_get_first(cache); object != nullptr; object = nl_cache_get_next(object)) {
    auto* ct = reinterpret_cast<nfnl_ct*>(object);
    if (nfnl_ct_get_proto(ct) != IPPROTO_UDP) continue;
    const nl_addr* dst = nfnl_ct_get_dst(ct, 0);
    const nl_addr* src = nfnl_ct_get_src(ct, 1);
    if (dst == nullptr || src == nullptr || nl_addr_get_len(dst) != 4 || nl_addr_get_len(src) != 4) continue;
    kipvs::ipvs::Address service{};
    kipvs::ipvs::Address endpoint{};
    service.family = endpoint.family = kipvs::ipvs::Family::kIPv4;
    std::memcpy(service.bytes.data(), nl_addr_get_binary_addr(dst), 4);
    std::memcpy(endpoint.bytes.data(), nl_addr_get_binary_addr(src), 4);
    auto found = serving.find(UdpEndpoint{service, nfnl_ct_get_dst_port(ct, 0)});
    if (found == serving.end() || found->second.contains(UdpEndpoint{endpoint, nfnl_ct_get_src_port(ct, 1)}))
      continue;
    if (nfnl_ct_del(sock, ct, 0) == 0) ++deleted;
  }
  nl_cache_free(cache);
  nl_socket_free(sock);
  return deleted;
}

}  // namespace

int main(int argc, char** argv) {
  long entries = 400000;
  int udp_services = 1000;
  int flows = 20;  // UDP flows per service
  int stale = 100;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const long value = std::stol(argv[i + 1]);
    if (flag == "--entries")
      entries = value;
    else if (flag == "--udp-services")
      udp_services = static_cast<int>(value);
    else if (flag == "--flows")
      flows = static_cast<int>(value);
    else if (flag == "--stale")
      stale = static_cast<int>(value);
    else {
      std::cerr << "unknown flag " << flag << "\n";
      return 2;
    }
  }
  // Room for the table: the limit and the hash are the init namespace's.
  write_file("/proc/sys/net/netfilter/nf_conntrack_max", std::to_string(entries * 2));
  write_file("/proc/sys/net/netfilter/nf_conntrack_buckets", std::to_string(entries / 2));
  if (unshare(CLONE_NEWNET) != 0) {
    std::perror("unshare");
    return 1;
  }

  const std::uint32_t vip_base = 0x0A600000;       // 10.96.0.0
  const std::uint32_t endpoint_base = 0x0AF40000;  // 10.244.0.0
  const std::uint32_t client_base = 0x0A010000;    // 10.1.0.0
  const long udp_entries = static_cast<long>(udp_services) * flows;
  const long tcp_entries = entries - udp_entries - stale;
  UdpServing serving;
  for (int s = 0; s < udp_services; ++s) {
    kipvs::ipvs::Address vip{};
    vip.family = kipvs::ipvs::Family::kIPv4;
    const std::uint32_t v = htonl(vip_base + 1 + static_cast<std::uint32_t>(s));
    std::memcpy(vip.bytes.data(), &v, 4);
    kipvs::ipvs::Address endpoint{};
    endpoint.family = kipvs::ipvs::Family::kIPv4;
    const std::uint32_t e = htonl(endpoint_base + 1 + static_cast<std::uint32_t>(s));
    std::memcpy(endpoint.bytes.data(), &e, 4);
    serving[UdpEndpoint{vip, 53}] = {UdpEndpoint{endpoint, 53}};
  }
  auto fill_stale = [&](Filler& filler) {
    for (int k = 0; k < stale; ++k) {
      const auto s = static_cast<std::uint32_t>(k % udp_services);
      filler.add(IPPROTO_UDP, client_base + 2, 10000 + k, vip_base + 1 + s, 53, endpoint_base + 60000 + s,
                 53);
    }
  };

  const auto fill_start = Clock::now();
  {
    Filler filler;
    for (long i = 0; i < tcp_entries; ++i) {
      filler.add(IPPROTO_TCP, client_base + 1 + static_cast<std::uint32_t>(i / 50000),
                 1024 + static_cast<int>(i % 50000), vip_base + 1 + static_cast<std::uint32_t>(i % 5000), 443,
                 endpoint_base + 1 + static_cast<std::uint32_t>(i % 5000), 8443);
    }
    for (int s = 0; s < udp_services; ++s) {
      for (int f = 0; f < flows; ++f) {
        filler.add(IPPROTO_UDP, client_base + 100 + static_cast<std::uint32_t>(f), 5353,
                   vip_base + 1 + static_cast<std::uint32_t>(s), 53,
                   endpoint_base + 1 + static_cast<std::uint32_t>(s), 53);
      }
    }
    fill_stale(filler);
  }
  const double fill_seconds = std::chrono::duration<double>(Clock::now() - fill_start).count();
  const long count = std::stol(read_first_line("/proc/sys/net/netfilter/nf_conntrack_count"));
  std::cout << "table: " << count << " entries (" << tcp_entries << " TCP, " << udp_entries << " UDP to "
            << udp_services << " services, " << stale << " stale UDP), filled in " << fill_seconds << " s\n";
  if (count < entries * 95 / 100) {
    std::cerr << "the table holds fewer entries than asked: " << count << "\n";
    return 1;
  }

  const auto kipvs_run = in_child([&] {
    auto backend = kipvs::conntrack::NetlinkConntrackBackend::open();
    if (!backend) return -1L;
    auto deleted = (*backend)->delete_stale_udp(serving);
    if (deleted) std::cout << "kipvs: its dumps returned " << (*backend)->last_dump_entries() << " entries\n";
    return deleted ? static_cast<long>(*deleted) : -1L;
  });
  {
    Filler filler;
    fill_stale(filler);
  }
  const auto reference_run = in_child([&] { return reference_cleanup(serving); });

  // One removed endpoint of one Service: the kernel sends that Service's
  // entries only.
  const auto one_service = in_child([&] {
    auto backend = kipvs::conntrack::NetlinkConntrackBackend::open();
    if (!backend) return -1L;
    const auto& [service, servers] = *serving.begin();
    const kipvs::conntrack::ConntrackFlow flow{service.address, service.port, servers.begin()->address, 53};
    auto deleted = (*backend)->delete_udp_flows(std::span(&flow, 1));
    return deleted ? static_cast<long>(*deleted) : -1L;
  });

  auto row = [](const char* what, const Measured& m) {
    std::printf("%-44s %9.3f s %9.1f MiB peak RSS growth %7ld deleted\n", what, m.seconds,
                static_cast<double>(m.rss_growth_kib) / 1024, m.deleted);
  };
  row("kipvs: stale UDP cleanup (filtered dumps)", kipvs_run);
  row("reference: whole table in a libnl cache", reference_run);
  row("kipvs: one removed endpoint's flows", one_service);
  if (kipvs_run.deleted != stale || reference_run.deleted != stale || one_service.deleted != flows) {
    std::cerr << "unexpected deletion counts\n";
    return 1;
  }
  std::printf("conntrack_entries=%ld time_ratio=%.3f rss_ratio=%.3f one_service_seconds=%.3f\n", count,
              kipvs_run.seconds / reference_run.seconds,
              static_cast<double>(std::max(kipvs_run.rss_growth_kib, 1L)) /
                  static_cast<double>(std::max(reference_run.rss_growth_kib, 1L)),
              one_service.seconds);
  return 0;
}
