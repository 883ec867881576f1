#include "ipvs/conntrack.h"

#include <netinet/in.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <string>

#include <netlink/cache.h>
#include <netlink/netfilter/ct.h>
#include <netlink/netfilter/nfnl.h>
#include <netlink/netlink.h>

#include "ipvs/netlink_socket.h"

namespace kipvs::ipvs {

namespace {

std::optional<Address> address_of(const nl_addr* address) {
  if (address == nullptr) return std::nullopt;
  Address out;
  const auto length = nl_addr_get_len(address);
  if (length == 4) {
    out.family = Family::kIPv4;
  } else if (length == 16) {
    out.family = Family::kIPv6;
  } else {
    return std::nullopt;
  }
  std::memcpy(out.bytes.data(), nl_addr_get_binary_addr(address), length);
  return out;
}

Error nl_error(const std::string& what, int code) {
  return Error{EIO, what + ": " + nl_geterror(code)};
}

}  // namespace

struct NetlinkConntrackBackend::Socket {
  nl_sock* sock = nullptr;
  ~Socket() {
    if (sock != nullptr) nl_socket_free(sock);
  }
};

NetlinkConntrackBackend::NetlinkConntrackBackend(std::unique_ptr<Socket> socket)
    : socket_(std::move(socket)) {}
NetlinkConntrackBackend::~NetlinkConntrackBackend() = default;

std::expected<std::unique_ptr<NetlinkConntrackBackend>, Error> NetlinkConntrackBackend::open() {
  auto socket = std::make_unique<Socket>();
  socket->sock = nl_socket_alloc();
  if (socket->sock == nullptr) return std::unexpected(Error{ENOMEM, "cannot allocate a netlink socket"});
  if (int rc = nfnl_connect(socket->sock); rc < 0) return std::unexpected(nl_error("ctnetlink connect", rc));
  if (auto bounded = set_socket_timeouts(nl_socket_get_fd(socket->sock), kNetlinkTimeout, "ctnetlink");
      !bounded)
    return std::unexpected(bounded.error());
  return std::unique_ptr<NetlinkConntrackBackend>(new NetlinkConntrackBackend(std::move(socket)));
}

std::chrono::milliseconds NetlinkConntrackBackend::receive_timeout() const {
  return ipvs::receive_timeout(nl_socket_get_fd(socket_->sock));
}

template <typename Pick>
std::expected<std::size_t, Error> NetlinkConntrackBackend::delete_udp_where(Pick doomed) {
  // The kernel deletes by exact tuple only, so dump and pick.
  nl_cache* cache = nullptr;
  if (int rc = nfnl_ct_alloc_cache(socket_->sock, &cache); rc < 0)
    return std::unexpected(nl_error("conntrack dump", rc));
  std::size_t deleted = 0;
  std::string first_error;
  for (auto* object = nl_cache_get_first(cache); object != nullptr; object = nl_cache_get_next(object)) {
    auto* ct = reinterpret_cast<nfnl_ct*>(object);
    if (nfnl_ct_get_proto(ct) != IPPROTO_UDP) continue;
    const auto service = address_of(nfnl_ct_get_dst(ct, 0));
    const auto endpoint = address_of(nfnl_ct_get_src(ct, 1));
    if (!service || !endpoint) continue;
    const ConntrackFlow flow{*service, nfnl_ct_get_dst_port(ct, 0), *endpoint, nfnl_ct_get_src_port(ct, 1)};
    if (!doomed(flow)) continue;
    // Gone already (it timed out meanwhile) is what we wanted.
    if (int rc = nfnl_ct_del(socket_->sock, ct, 0); rc < 0 && rc != -NLE_OBJ_NOTFOUND) {
      if (first_error.empty()) first_error = nl_geterror(rc);
    } else {
      ++deleted;
    }
  }
  nl_cache_free(cache);
  if (!first_error.empty()) return std::unexpected(Error{EIO, "conntrack delete: " + first_error});
  return deleted;
}

std::expected<std::size_t, Error> NetlinkConntrackBackend::delete_udp_flows(
    std::span<const ConntrackFlow> flows) {
  if (flows.empty()) return 0;
  const std::set<ConntrackFlow> wanted(flows.begin(), flows.end());
  return delete_udp_where([&wanted](const ConntrackFlow& flow) { return wanted.contains(flow); });
}

std::expected<std::size_t, Error> NetlinkConntrackBackend::delete_stale_udp(const UdpServing& serving) {
  if (serving.empty()) return 0;
  return delete_udp_where([&serving](const ConntrackFlow& flow) {
    const auto service = serving.find(UdpEndpoint{flow.service, flow.service_port});
    return service != serving.end() &&
           !service->second.contains(UdpEndpoint{flow.endpoint, flow.endpoint_port});
  });
}

}  // namespace kipvs::ipvs
