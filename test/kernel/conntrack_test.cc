// UDP conntrack cleanup against the real kernel's conntrack table: the
// entries are made through ctnetlink, as the kernel keeps them for NATed
// flows (the reply tuple names the real server), in the case's own network
// namespace. What the cleanup deletes is checked in a dump of the table,
// and how many entries its dumps returned shows the kernel filtered them.

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/netfilter/ct.h>
#include <netlink/netfilter/nfnl.h>
#include <netlink/netlink.h>
#include <catch2/catch.hpp>

#include "conntrack/conntrack.h"
#include "netns.h"
#include "test/support/builders.h"

namespace {

using kipvs::conntrack::ConntrackFlow;
using kipvs::conntrack::NetlinkConntrackBackend;
using kipvs::conntrack::UdpEndpoint;
using kipvs::conntrack::UdpServing;

using kipvs::test::ip;

// Inserts conntrack entries: client -> service, answered by endpoint.
class EntryMaker {
 public:
  EntryMaker() : sock_(nl_socket_alloc(), nl_socket_free) {
    REQUIRE(sock_);
    REQUIRE(nfnl_connect(sock_.get()) == 0);
  }

  void add(int protocol, const std::string& client, int client_port, const std::string& service,
           int service_port, const std::string& endpoint, int endpoint_port) {
    std::unique_ptr<nfnl_ct, void (*)(nfnl_ct*)> ct(nfnl_ct_alloc(), nfnl_ct_put);
    const int family = client.find(':') == std::string::npos ? AF_INET : AF_INET6;
    nfnl_ct_set_family(ct.get(), static_cast<std::uint8_t>(family));
    nfnl_ct_set_proto(ct.get(), static_cast<std::uint8_t>(protocol));
    nfnl_ct_set_timeout(ct.get(), 600);
    set(ct.get(), 0, client, client_port, service, service_port);
    set(ct.get(), 1, endpoint, endpoint_port, client, client_port);
    const int rc = nfnl_ct_add(sock_.get(), ct.get(), NLM_F_CREATE);
    INFO(nl_geterror(rc));
    REQUIRE(rc == 0);
  }

 private:
  static void set(nfnl_ct* ct, int reply, const std::string& src, int src_port, const std::string& dst,
                  int dst_port) {
    nl_addr* source = nullptr;
    nl_addr* destination = nullptr;
    REQUIRE(nl_addr_parse(src.c_str(), AF_UNSPEC, &source) == 0);
    REQUIRE(nl_addr_parse(dst.c_str(), AF_UNSPEC, &destination) == 0);
    REQUIRE(nfnl_ct_set_src(ct, reply, source) == 0);
    REQUIRE(nfnl_ct_set_dst(ct, reply, destination) == 0);
    nl_addr_put(source);
    nl_addr_put(destination);
    nfnl_ct_set_src_port(ct, reply, static_cast<std::uint16_t>(src_port));
    nfnl_ct_set_dst_port(ct, reply, static_cast<std::uint16_t>(dst_port));
  }

  std::unique_ptr<nl_sock, void (*)(nl_sock*)> sock_;
};

std::string address_text(nl_addr* address) {
  char text[64];
  return address == nullptr ? std::string() : nl_addr2str(address, text, sizeof text);
}

// The namespace's entries as /proc/net/nf_conntrack words ("udp src=A
// dst=B src=C dst=D", original then reply tuple), read with one netlink
// dump: that file's page-sized reads resume by position in a hash table
// every namespace shares, and skip an entry while another case's flows come
// and go.
std::vector<std::string> conntrack_lines() {
  std::unique_ptr<nl_sock, void (*)(nl_sock*)> sock(nl_socket_alloc(), nl_socket_free);
  REQUIRE(sock);
  REQUIRE(nfnl_connect(sock.get()) == 0);
  nl_cache* cache = nullptr;
  REQUIRE(nfnl_ct_alloc_cache(sock.get(), &cache) == 0);
  std::vector<std::string> lines;
  for (nl_object* object = nl_cache_get_first(cache); object != nullptr; object = nl_cache_get_next(object)) {
    auto* ct = reinterpret_cast<nfnl_ct*>(object);
    const int protocol = nfnl_ct_get_proto(ct);
    lines.push_back(
        std::string(protocol == IPPROTO_UDP   ? "udp"
                    : protocol == IPPROTO_TCP ? "tcp"
                                              : "other") +
        " src=" + address_text(nfnl_ct_get_src(ct, 0)) + " dst=" + address_text(nfnl_ct_get_dst(ct, 0)) +
        " src=" + address_text(nfnl_ct_get_src(ct, 1)) + " dst=" + address_text(nfnl_ct_get_dst(ct, 1)));
  }
  nl_cache_free(cache);
  return lines;
}

// Entries holding every one of the words.
int entries_with(const std::string& a, const std::string& b = "") {
  int count = 0;
  for (const auto& line : conntrack_lines()) {
    if (line.find(a) != std::string::npos && (b.empty() || line.find(b) != std::string::npos)) ++count;
  }
  return count;
}

std::unique_ptr<NetlinkConntrackBackend> open_backend() {
  auto backend = NetlinkConntrackBackend::open();
  INFO((backend ? std::string() : backend.error().message));
  REQUIRE(backend.has_value());
  return std::move(*backend);
}

}  // namespace

TEST_CASE("UDP conntrack cleanup deletes only the flows it is asked for, from entries the kernel filtered",
          "[kernel][conntrack]") {
  EntryMaker make;
  // Noise: TCP to the same address and port, UDP to other services.
  for (int i = 0; i < 200; ++i)
    make.add(IPPROTO_TCP, "10.1.0.1", 20000 + i, "10.96.0.10", 53, "10.244.0.5", 53);
  for (int i = 0; i < 30; ++i)
    make.add(IPPROTO_UDP, "10.1.0.2", 20000 + i, "10.96.0.20", 53, "10.244.0.9", 53);
  // The service: three flows answered by a current endpoint, two by one
  // that is gone.
  for (int i = 0; i < 3; ++i)
    make.add(IPPROTO_UDP, "10.1.0.3", 30000 + i, "10.96.0.10", 53, "10.244.0.5", 53);
  for (int i = 0; i < 2; ++i)
    make.add(IPPROTO_UDP, "10.1.0.3", 31000 + i, "10.96.0.10", 53, "10.244.0.6", 53);
  REQUIRE(entries_with("udp", "src=10.244.0.6") == 2);

  auto backend = open_backend();
  const UdpServing serving{{UdpEndpoint{ip("10.96.0.10"), 53}, {UdpEndpoint{ip("10.244.0.5"), 53}}}};
  const auto stale = backend->delete_stale_udp(serving);
  INFO((stale ? std::string() : stale.error().message));
  REQUIRE(stale.has_value());
  CHECK(*stale == 2);
  // The kernel sent the five UDP entries to 10.96.0.10:53, not the 230 others.
  CHECK(backend->last_dump_entries() == 5);
  CHECK(entries_with("udp", "src=10.244.0.6") == 0);
  CHECK(entries_with("udp", "src=10.244.0.5") == 3);
  CHECK(entries_with("tcp") == 200);

  // The endpoint removed: its three flows go, nothing else.
  const ConntrackFlow gone{ip("10.96.0.10"), 53, ip("10.244.0.5"), 53};
  const auto removed = backend->delete_udp_flows(std::span(&gone, 1));
  REQUIRE(removed.has_value());
  CHECK(*removed == 3);
  CHECK(backend->last_dump_entries() == 3);
  CHECK(entries_with("udp", "dst=10.96.0.10") == 0);
  CHECK(entries_with("udp", "dst=10.96.0.20") == 30);
  CHECK(entries_with("tcp") == 200);
}

TEST_CASE("UDP conntrack cleanup of many services reads the UDP entries of each family once",
          "[kernel][conntrack]") {
  EntryMaker make;
  for (int i = 0; i < 100; ++i)
    make.add(IPPROTO_TCP, "10.1.0.1", 20000 + i, "10.96.0.10", 80, "10.244.0.5", 80);
  UdpServing serving;
  // 20 services (more than get a dump each), one flow each answered by a
  // current endpoint and one by a stale one; and IPv6 too.
  for (int s = 1; s <= 20; ++s) {
    const std::string vip = "10.96.1." + std::to_string(s);
    make.add(IPPROTO_UDP, "10.1.0.4", 40000 + s, vip, 53, "10.244.1.1", 53);
    make.add(IPPROTO_UDP, "10.1.0.4", 41000 + s, vip, 53, "10.244.1.2", 53);
    serving[UdpEndpoint{ip(vip), 53}] = {UdpEndpoint{ip("10.244.1.1"), 53}};
  }
  make.add(IPPROTO_UDP, "fd00::4", 42000, "fd00:96::1", 53, "fd00:244::2", 53);
  serving[UdpEndpoint{ip("fd00:96::1"), 53}] = {UdpEndpoint{ip("fd00:244::1"), 53}};

  auto backend = open_backend();
  const auto stale = backend->delete_stale_udp(serving);
  INFO((stale ? std::string() : stale.error().message));
  REQUIRE(stale.has_value());
  CHECK(*stale == 21);
  // One dump per family of its UDP entries: 40 + 1, none of the TCP ones.
  CHECK(backend->last_dump_entries() == 41);
  CHECK(entries_with("udp", "src=10.244.1.2") == 0);
  CHECK(entries_with("udp", "src=10.244.1.1") == 20);
  CHECK(entries_with("udp", "src=fd00::4 ") == 0);
  CHECK(entries_with("tcp") == 100);
}

TEST_CASE(
    "UDP conntrack sweep over every entry deletes the ones the check picks, one dump per family asked for",
    "[kernel][conntrack]") {
  EntryMaker make;
  for (int i = 0; i < 50; ++i)
    make.add(IPPROTO_TCP, "10.1.0.1", 20000 + i, "10.96.0.10", 53, "10.244.0.7", 53);
  make.add(IPPROTO_UDP, "10.1.0.5", 50000, "10.96.2.1", 53, "10.244.2.1", 53);  // served
  make.add(IPPROTO_UDP, "10.1.0.5", 50001, "10.96.2.1", 53, "10.244.2.9", 53);  // by a server gone
  make.add(IPPROTO_UDP, "10.1.0.5", 50002, "10.96.2.1", 53, "10.96.2.1", 53);   // made with no server
  make.add(IPPROTO_UDP, "fd00::5", 50003, "fd00:96::2", 53, "fd00:244::9", 53);

  auto backend = open_backend();
  std::vector<ConntrackFlow> asked;
  const std::vector families{kipvs::ipvs::Family::kIPv4};
  const auto stale = backend->delete_unserved_udp(families, [&asked](const ConntrackFlow& flow) {
    asked.push_back(flow);
    return flow.service == ip("10.96.2.1") && flow.endpoint != ip("10.244.2.1");
  });
  INFO((stale ? std::string() : stale.error().message));
  REQUIRE(stale.has_value());
  CHECK(*stale == 2);
  // The three IPv4 UDP entries were read, with the reply's source as the
  // endpoint; no TCP entry and no IPv6 one.
  CHECK(backend->last_dump_entries() == 3);
  REQUIRE(asked.size() == 3);
  CHECK(std::ranges::count(asked, ConntrackFlow{ip("10.96.2.1"), 53, ip("10.244.2.9"), 53}) == 1);
  CHECK(entries_with("udp", "src=10.244.2.1") == 1);
  CHECK(entries_with("udp", "src=10.244.2.9") == 0);
  CHECK(entries_with("udp", "dst=10.96.2.1 src=10.96.2.1") == 0);
  CHECK(entries_with("udp", "src=fd00::5 ") == 1);  // IPv6 was not asked for
  CHECK(entries_with("tcp") == 50);

  // No family asked for: no dump at all.
  const auto none = backend->delete_unserved_udp({}, [](const ConntrackFlow&) { return true; });
  REQUIRE(none.has_value());
  CHECK(*none == 0);
  CHECK(entries_with("udp") == 2);
}
