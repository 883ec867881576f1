// Every netlink socket kipvs talks through is bounded in time: a kernel that
// does not answer fails the operation instead of blocking the agent's thread.
// Opening rtnetlink and ctnetlink sockets needs no privilege; sending on them
// is left to the kernel tests.

#include <catch2/catch.hpp>

#include <linux/netlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>

#include "address/address_backend.h"
#include "conntrack/conntrack.h"
#include "ipvs/netlink_socket.h"

namespace kipvs::ipvs {
namespace {

using namespace std::chrono_literals;

TEST_CASE("a receive on a netlink socket with timeouts gives up with EAGAIN", "[ipvs][netlink]") {
  const int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  REQUIRE(fd >= 0);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  REQUIRE(set_socket_timeouts(fd, 100ms, "test"));
  CHECK(receive_timeout(fd) == 100ms);
  char buffer[256];
  const auto started = std::chrono::steady_clock::now();
  const auto got = ::recv(fd, buffer, sizeof buffer, 0);  // nothing was asked, nothing comes
  const int error = errno;
  CHECK(got < 0);
  CHECK((error == EAGAIN || error == EWOULDBLOCK));
  CHECK(std::chrono::steady_clock::now() - started < 5s);
}

TEST_CASE("the rtnetlink and ctnetlink sockets wait for the kernel as long as the IPVS one",
          "[ipvs][netlink]") {
  auto addresses = address::NetlinkAddressBackend::open();
  REQUIRE(addresses);
  CHECK((*addresses)->receive_timeout() == kNetlinkTimeout);

  auto conntrack = conntrack::NetlinkConntrackBackend::open();
  REQUIRE(conntrack);
  CHECK((*conntrack)->receive_timeout() == kNetlinkTimeout);
}

}  // namespace
}  // namespace kipvs::ipvs
