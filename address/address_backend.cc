#include "address/address_backend.h"

#include <net/if.h>
#include <netlink/addr.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/socket.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/if_addr.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

#include "ipvs/netlink_socket.h"

namespace kipvs::address {

namespace {

// libnl answers with its own NLE_* codes; the callers reason in errno.
int errno_from_nl(int nl_error) {
  switch (nl_error < 0 ? -nl_error : nl_error) {
    case NLE_EXIST:
      return EEXIST;
    case NLE_NOADDR:
      return EADDRNOTAVAIL;
    case NLE_OBJ_NOTFOUND:
      return ENOENT;
    case NLE_NODEV:
      return ENODEV;
    case NLE_PERM:
      return EPERM;
    case NLE_INVAL:
      return EINVAL;
    case NLE_NOMEM:
      return ENOMEM;
    case NLE_AF_NOSUPPORT:
      return EAFNOSUPPORT;
    case NLE_BUSY:
      return EBUSY;
    default:
      return EIO;
  }
}

Error nl_failure(const std::string& what, int nl_error) {
  return Error{errno_from_nl(nl_error), what + ": " + nl_geterror(nl_error)};
}

int af_of(ipvs::Family family) {
  return family == ipvs::Family::kIPv6 ? AF_INET6 : AF_INET;
}

template <typename T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* object) const {
    if (object != nullptr) Free(object);
  }
};
void put_link(rtnl_link* link) {
  rtnl_link_put(link);
}
void put_addr(rtnl_addr* addr) {
  rtnl_addr_put(addr);
}
void put_nl_addr(nl_addr* addr) {
  nl_addr_put(addr);
}
using LinkPtr = std::unique_ptr<rtnl_link, Deleter<rtnl_link, put_link>>;
using AddrPtr = std::unique_ptr<rtnl_addr, Deleter<rtnl_addr, put_addr>>;
using NlAddrPtr = std::unique_ptr<nl_addr, Deleter<nl_addr, put_nl_addr>>;

}  // namespace

std::vector<std::expected<void, Error>> AddressBackend::add_addresses(
    const std::string& name, std::span<const ipvs::Address> addresses) {
  std::vector<std::expected<void, Error>> results;
  results.reserve(addresses.size());
  for (const auto& address : addresses) results.push_back(add_address(name, address));
  return results;
}

std::vector<std::expected<void, Error>> AddressBackend::add_local_routes(
    const std::string& name, std::span<const ipvs::Address> addresses) {
  return add_addresses(name, addresses);
}

std::set<ipvs::Address> AddressBackend::local_routes(const std::string& /*name*/) const {
  return {};
}

std::expected<void, Error> AddressBackend::promote(const std::string& /*name*/,
                                                   const ipvs::Address& /*address*/) {
  return {};
}

struct NetlinkAddressBackend::Socket {
  nl_sock* sock = nullptr;
  int route_fd = -1;  // raw, strict checking: the local routes' requests and dumps
  std::uint32_t route_sequence = 0;
  ~Socket() {
    if (sock != nullptr) nl_socket_free(sock);
    if (route_fd >= 0) close(route_fd);
  }
};

NetlinkAddressBackend::NetlinkAddressBackend(std::unique_ptr<Socket> socket, Binding binding)
    : socket_(std::move(socket)), binding_(binding) {}
NetlinkAddressBackend::~NetlinkAddressBackend() = default;

std::expected<std::unique_ptr<NetlinkAddressBackend>, Error> NetlinkAddressBackend::open(Binding binding) {
  auto socket = std::make_unique<Socket>();
  socket->sock = nl_socket_alloc();
  if (socket->sock == nullptr) return std::unexpected(Error{ENOMEM, "rtnetlink: cannot allocate a socket"});
  if (int rc = nl_connect(socket->sock, NETLINK_ROUTE); rc < 0)
    return std::unexpected(nl_failure("rtnetlink connect", rc));
  if (auto bounded =
          ipvs::set_socket_timeouts(nl_socket_get_fd(socket->sock), ipvs::kNetlinkTimeout, "rtnetlink");
      !bounded)
    return std::unexpected(bounded.error());
  socket->route_fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (socket->route_fd < 0)
    return std::unexpected(
        Error{errno, std::string("rtnetlink: cannot open a socket: ") + std::strerror(errno)});
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  if (bind(socket->route_fd, reinterpret_cast<const sockaddr*>(&local), sizeof local) != 0)
    return std::unexpected(
        Error{errno, std::string("rtnetlink: cannot bind a socket: ") + std::strerror(errno)});
  // A kernel without strict checking (before 4.20) sends every route of
  // every table: list_routes filters them here as well.
  const int on = 1;
  (void)setsockopt(socket->route_fd, SOL_NETLINK, NETLINK_GET_STRICT_CHK, &on, sizeof on);
  if (auto bounded = ipvs::set_socket_timeouts(socket->route_fd, ipvs::kNetlinkTimeout, "rtnetlink");
      !bounded)
    return std::unexpected(bounded.error());
  return std::unique_ptr<NetlinkAddressBackend>(new NetlinkAddressBackend(std::move(socket), binding));
}

std::chrono::milliseconds NetlinkAddressBackend::receive_timeout() const {
  return ipvs::receive_timeout(nl_socket_get_fd(socket_->sock));
}

std::expected<int, Error> NetlinkAddressBackend::link_index(const std::string& name) {
  if (auto it = link_indexes_.find(name); it != link_indexes_.end()) return it->second;
  rtnl_link* raw = nullptr;
  if (int rc = rtnl_link_get_kernel(socket_->sock, 0, name.c_str(), &raw); rc < 0) {
    return std::unexpected(nl_failure("get link " + name, rc));
  }
  LinkPtr link(raw);
  const int index = rtnl_link_get_ifindex(link.get());
  link_indexes_[name] = index;
  return index;
}

std::expected<void, Error> NetlinkAddressBackend::ensure_link(const std::string& name) {
  link_indexes_.erase(name);
  rtnl_link* raw = nullptr;
  int rc = rtnl_link_get_kernel(socket_->sock, 0, name.c_str(), &raw);
  if (rc < 0) {
    known_routes_.erase(name);  // went with the link
    LinkPtr created(rtnl_link_alloc());
    if (!created) return std::unexpected(Error{ENOMEM, "create link " + name + ": out of memory"});
    rtnl_link_set_name(created.get(), name.c_str());
    if (int type_rc = rtnl_link_set_type(created.get(), "dummy"); type_rc < 0) {
      return std::unexpected(nl_failure("create link " + name, type_rc));
    }
    // Another agent may create it at the same moment: EEXIST is fine.
    if (int add_rc = rtnl_link_add(socket_->sock, created.get(), NLM_F_CREATE);
        add_rc < 0 && add_rc != -NLE_EXIST) {
      return std::unexpected(nl_failure("create dummy link " + name, add_rc));
    }
    if (rc = rtnl_link_get_kernel(socket_->sock, 0, name.c_str(), &raw); rc < 0) {
      return std::unexpected(nl_failure("get link " + name, rc));
    }
  }
  LinkPtr link(raw);
  if ((rtnl_link_get_flags(link.get()) & IFF_UP) != 0) return {};
  LinkPtr change(rtnl_link_alloc());
  rtnl_link_set_flags(change.get(), IFF_UP);
  if (int up_rc = rtnl_link_change(socket_->sock, link.get(), change.get(), 0); up_rc < 0) {
    return std::unexpected(nl_failure("set link " + name + " up", up_rc));
  }
  return {};
}

namespace {

// One address of an RTM_NEWADDR message: IFA_LOCAL when there is one (IPv4
// has both), else IFA_ADDRESS (IPv6 has only that).
std::optional<ipvs::Address> local_address_of(nlmsghdr* header) {
  const auto* message = static_cast<const ifaddrmsg*>(NLMSG_DATA(header));
  const rtattr* local = nullptr;
  const rtattr* address = nullptr;
  int length = static_cast<int>(IFA_PAYLOAD(header));
  for (const auto* attribute = IFA_RTA(message); RTA_OK(attribute, length);
       attribute = RTA_NEXT(attribute, length)) {
    if (attribute->rta_type == IFA_LOCAL) local = attribute;
    if (attribute->rta_type == IFA_ADDRESS) address = attribute;
  }
  const rtattr* chosen = local != nullptr ? local : address;
  if (chosen == nullptr) return std::nullopt;
  const std::size_t size = RTA_PAYLOAD(chosen);
  ipvs::Address result;
  if (message->ifa_family == AF_INET && size == 4) {
    result.family = ipvs::Family::kIPv4;
  } else if (message->ifa_family == AF_INET6 && size == 16) {
    result.family = ipvs::Family::kIPv6;
  } else {
    return std::nullopt;
  }
  std::memcpy(result.bytes.data(), RTA_DATA(chosen), size);
  return result;
}

// Reads a dump's answers to request `sequence` on `fd` until NLMSG_DONE,
// handing each message to `each`. The kernel caps a dump's datagram at
// 32 KiB.
template <typename Each>
std::expected<void, Error> read_dump(int fd, std::uint32_t sequence, const std::string& what, Each each) {
  std::vector<unsigned char> buffer(64 * 1024);
  for (bool done = false; !done;) {
    const ssize_t received = recv(fd, buffer.data(), buffer.size(), 0);
    if (received < 0) {
      if (errno == EINTR) continue;
      return std::unexpected(Error{errno, what + ": " + std::strerror(errno)});
    }
    if (received == 0) return std::unexpected(Error{EIO, what + ": the socket closed"});
    int remaining = static_cast<int>(received);
    for (auto* header = reinterpret_cast<nlmsghdr*>(buffer.data()); !done && NLMSG_OK(header, remaining);
         header = NLMSG_NEXT(header, remaining)) {
      if (header->nlmsg_seq != sequence) continue;  // left over from an earlier request
      if (header->nlmsg_type == NLMSG_DONE) done = true;
      if (header->nlmsg_type == NLMSG_ERROR) {
        const auto* error = static_cast<const nlmsgerr*>(NLMSG_DATA(header));
        return std::unexpected(Error{-error->error, what + ": " + std::strerror(-error->error)});
      }
      each(header);
    }
  }
  return {};
}

// Appends one attribute to a message being built in `buffer` at `at`.
void append_attribute(std::vector<unsigned char>& buffer, std::size_t at, unsigned short type,
                      const void* data, std::size_t size) {
  const std::size_t offset = buffer.size();
  buffer.resize(offset + RTA_SPACE(size), 0);
  auto* rta = reinterpret_cast<rtattr*>(buffer.data() + offset);
  rta->rta_type = type;
  rta->rta_len = static_cast<unsigned short>(RTA_LENGTH(size));
  std::memcpy(RTA_DATA(rta), data, size);
  reinterpret_cast<nlmsghdr*>(buffer.data() + at)->nlmsg_len = static_cast<std::uint32_t>(buffer.size() - at);
}

// Appends a request of `type` whose body is a zeroed Body to `buffer`;
// returns the body (valid until the buffer grows) and where the request
// starts, for append_attribute.
template <typename Body>
std::pair<Body*, std::size_t> start_request(std::vector<unsigned char>& buffer, std::uint16_t type,
                                            std::uint16_t flags, std::uint32_t sequence) {
  const std::size_t at = buffer.size();
  buffer.resize(at + NLMSG_SPACE(sizeof(Body)), 0);
  auto* header = reinterpret_cast<nlmsghdr*>(buffer.data() + at);
  header->nlmsg_len = static_cast<std::uint32_t>(NLMSG_SPACE(sizeof(Body)));
  header->nlmsg_type = type;
  header->nlmsg_flags = flags;
  header->nlmsg_seq = sequence;
  return {static_cast<Body*>(NLMSG_DATA(header)), at};
}

std::size_t address_size(const ipvs::Address& address) {
  return address.family == ipvs::Family::kIPv6 ? 16 : 4;
}

// Appends an RTM_NEWADDR for address/32 or /128 on link `index`.
void append_address_request(std::vector<unsigned char>& buffer, const ipvs::Address& address, int index,
                            std::uint16_t flags, std::uint32_t sequence) {
  const bool v6 = address.family == ipvs::Family::kIPv6;
  auto [message, at] = start_request<ifaddrmsg>(buffer, RTM_NEWADDR, flags, sequence);
  message->ifa_family = static_cast<unsigned char>(af_of(address.family));
  message->ifa_prefixlen = v6 ? 128 : 32;
  // A virtual IPv6 address must answer at once, not after duplicate
  // address detection (and the same address is on every node).
  message->ifa_flags = v6 ? IFA_F_NODAD : 0;
  message->ifa_scope = RT_SCOPE_UNIVERSE;
  message->ifa_index = static_cast<std::uint32_t>(index);
  append_attribute(buffer, at, IFA_LOCAL, address.bytes.data(), address_size(address));
  append_attribute(buffer, at, IFA_ADDRESS, address.bytes.data(), address_size(address));
}

// Appends an RTM_NEWROUTE or RTM_DELROUTE for kipvs's local route to
// address/32 or /128 through link `index`: what an address's own local route
// is (table local, type local, scope host), with kipvs's protocol number. An
// IPv6 one gets the kernel's default metric for a route added by hand, so it
// never clashes with an address's own local route (metric 0).
void append_route_request(std::vector<unsigned char>& buffer, std::uint16_t type,
                          const ipvs::Address& address, int index, std::uint16_t flags,
                          std::uint32_t sequence) {
  const bool v6 = address.family == ipvs::Family::kIPv6;
  auto [message, at] = start_request<rtmsg>(buffer, type, flags, sequence);
  message->rtm_family = static_cast<unsigned char>(af_of(address.family));
  message->rtm_dst_len = v6 ? 128 : 32;
  message->rtm_table = RT_TABLE_LOCAL;
  message->rtm_protocol = kLocalRouteProtocol;
  // A delete matches any scope (the kernel compares the scope it is given).
  message->rtm_scope = type == RTM_DELROUTE ? RT_SCOPE_NOWHERE : RT_SCOPE_HOST;
  message->rtm_type = RTN_LOCAL;
  append_attribute(buffer, at, RTA_DST, address.bytes.data(), address_size(address));
  const auto oif = static_cast<std::uint32_t>(index);
  append_attribute(buffer, at, RTA_OIF, &oif, sizeof oif);
}

// kipvs's local route in an RTM_NEWROUTE message through link `index`, if
// it is one (a kernel without strict checking sends every route).
std::optional<ipvs::Address> local_route_of(nlmsghdr* header, int index) {
  const auto* message = static_cast<const rtmsg*>(NLMSG_DATA(header));
  if (message->rtm_type != RTN_LOCAL || message->rtm_protocol != kLocalRouteProtocol) return std::nullopt;
  std::uint32_t table = message->rtm_table;
  std::optional<std::uint32_t> oif;
  const rtattr* destination = nullptr;
  int length = static_cast<int>(RTM_PAYLOAD(header));
  for (const auto* attribute = RTM_RTA(message); RTA_OK(attribute, length);
       attribute = RTA_NEXT(attribute, length)) {
    if (attribute->rta_type == RTA_DST) destination = attribute;
    if (attribute->rta_type == RTA_TABLE && RTA_PAYLOAD(attribute) == 4)
      std::memcpy(&table, RTA_DATA(attribute), 4);
    if (attribute->rta_type == RTA_OIF && RTA_PAYLOAD(attribute) == 4) {
      std::uint32_t value = 0;
      std::memcpy(&value, RTA_DATA(attribute), 4);
      oif = value;
    }
  }
  if (table != RT_TABLE_LOCAL || oif != static_cast<std::uint32_t>(index) || destination == nullptr)
    return std::nullopt;
  ipvs::Address result;
  const std::size_t size = RTA_PAYLOAD(destination);
  if (message->rtm_family == AF_INET && size == 4 && message->rtm_dst_len == 32) {
    result.family = ipvs::Family::kIPv4;
  } else if (message->rtm_family == AF_INET6 && size == 16 && message->rtm_dst_len == 128) {
    result.family = ipvs::Family::kIPv6;
  } else {
    return std::nullopt;
  }
  std::memcpy(result.bytes.data(), RTA_DATA(destination), size);
  return result;
}

}  // namespace

std::expected<std::set<ipvs::Address>, Error> NetlinkAddressBackend::list_addresses(const std::string& name) {
  auto index = link_index(name);
  if (!index) return std::unexpected(index.error());
  std::set<ipvs::Address> addresses;
  if (auto read = list_link_addresses(name, *index, addresses); !read) return std::unexpected(read.error());
  if (auto routes = list_routes(name, *index, addresses); !routes) return std::unexpected(routes.error());
  return addresses;
}

std::expected<void, Error> NetlinkAddressBackend::list_link_addresses(const std::string& name, int index,
                                                                      std::set<ipvs::Address>& out) {
  // A raw dump parsed here: libnl's address cache makes an object per
  // address, and a resync reads kipvs's 10,000 addresses every period.
  // Sent and read past libnl (which would expect the next sequence number
  // on its next request), with a sequence number of its own.
  struct {
    nlmsghdr header;
    ifaddrmsg message;
  } request{};
  request.header.nlmsg_len = sizeof request;
  request.header.nlmsg_type = RTM_GETADDR;
  request.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  request.header.nlmsg_seq = ++dump_sequence_;
  request.message.ifa_family = AF_UNSPEC;
  request.message.ifa_index = static_cast<std::uint32_t>(index);
  const std::string what = "list addresses of " + name;
  const int fd = nl_socket_get_fd(socket_->sock);
  if (send(fd, &request, sizeof request, 0) != static_cast<ssize_t>(sizeof request))
    return std::unexpected(Error{errno, what + ": " + std::strerror(errno)});
  return read_dump(fd, request.header.nlmsg_seq, what, [&](nlmsghdr* header) {
    if (header->nlmsg_type != RTM_NEWADDR) return;
    const auto* message = static_cast<const ifaddrmsg*>(NLMSG_DATA(header));
    // The kernel gives the link an IPv6 link-local address when it comes
    // up: not kipvs's, and never to be removed. Without strict checking
    // the kernel sends every link's addresses.
    if (static_cast<int>(message->ifa_index) != index || message->ifa_scope != RT_SCOPE_UNIVERSE) return;
    if (auto address = local_address_of(header)) out.insert(*address);
  });
}

std::expected<void, Error> NetlinkAddressBackend::list_routes(const std::string& name, int index,
                                                              std::set<ipvs::Address>& out) {
  // With strict checking the kernel sends only the local table's routes of
  // kipvs's protocol through the link: none on a node bound with addresses.
  std::vector<unsigned char> request;
  auto [message, at] =
      start_request<rtmsg>(request, RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, ++socket_->route_sequence);
  message->rtm_family = AF_UNSPEC;
  message->rtm_table = RT_TABLE_LOCAL;
  message->rtm_protocol = kLocalRouteProtocol;
  message->rtm_type = RTN_LOCAL;
  const auto oif = static_cast<std::uint32_t>(index);
  append_attribute(request, at, RTA_OIF, &oif, sizeof oif);
  const std::uint32_t sequence = socket_->route_sequence;
  const std::string what = "list local routes through " + name;
  if (send(socket_->route_fd, request.data(), request.size(), 0) != static_cast<ssize_t>(request.size()))
    return std::unexpected(Error{errno, what + ": " + std::strerror(errno)});
  std::set<ipvs::Address> routes;
  auto read = read_dump(socket_->route_fd, sequence, what, [&](nlmsghdr* answer) {
    if (answer->nlmsg_type != RTM_NEWROUTE) return;
    if (auto address = local_route_of(answer, index)) routes.insert(*address);
  });
  if (!read) return read;
  out.insert(routes.begin(), routes.end());
  known_routes_[name] = std::move(routes);
  return {};
}

namespace {

std::expected<AddrPtr, Error> make_addr(int index, const ipvs::Address& address, const std::string& what) {
  const bool v6 = address.family == ipvs::Family::kIPv6;
  NlAddrPtr local(nl_addr_build(af_of(address.family), address.bytes.data(), v6 ? 16 : 4));
  AddrPtr addr(rtnl_addr_alloc());
  if (!local || !addr) return std::unexpected(Error{ENOMEM, what + ": out of memory"});
  nl_addr_set_prefixlen(local.get(), v6 ? 128 : 32);
  rtnl_addr_set_ifindex(addr.get(), index);
  if (int rc = rtnl_addr_set_local(addr.get(), local.get()); rc < 0)
    return std::unexpected(nl_failure(what, rc));
  // A virtual IPv6 address must answer at once, not after duplicate address
  // detection (and the same address is on every node).
  if (v6) rtnl_addr_set_flags(addr.get(), IFA_F_NODAD);
  return addr;
}

}  // namespace

std::expected<void, Error> NetlinkAddressBackend::add_address(const std::string& name,
                                                              const ipvs::Address& address) {
  if (binding_ == Binding::kAddress) return change_address(name, address, true);
  auto results = add_addresses(name, std::span(&address, 1));
  return results.front();
}

std::expected<void, Error> NetlinkAddressBackend::delete_address(const std::string& name,
                                                                 const ipvs::Address& address) {
  // Whichever is there: this binding's kind first, the other when it is not.
  if (binding_ == Binding::kLocalRoute) {
    auto route = delete_route(name, address);
    if (route || route.error().code != ESRCH) return route;
    return delete_address_keeping_routes(name, address);
  }
  auto deleted = delete_address_keeping_routes(name, address);
  if (deleted || deleted.error().code != EADDRNOTAVAIL) return deleted;
  if (auto route = delete_route(name, address); route || route.error().code != ESRCH) return route;
  return deleted;
}

std::expected<void, Error> NetlinkAddressBackend::delete_address_keeping_routes(
    const std::string& name, const ipvs::Address& address) {
  auto deleted = change_address(name, address, false);
  if (!deleted || address.family != ipvs::Family::kIPv4) return deleted;
  // The kernel drops every IPv4 route through a link when its last IPv4
  // address goes (a node bound with addresses before, kube-proxy's):
  // kipvs's routes are put back at once. Whether that happened is asked of
  // one of them (an add that finds it there is EEXIST), not of a dump of
  // the link per address. One that fails is bound again by the next resync.
  std::vector<ipvs::Address> routes;
  if (auto known = known_routes_.find(name); known != known_routes_.end()) {
    for (const auto& route : known->second)
      if (route.family == ipvs::Family::kIPv4) routes.push_back(route);
  }
  if (routes.empty()) return deleted;
  auto index = link_index(name);
  if (!index) return deleted;
  std::vector<std::expected<void, Error>> results(routes.size());
  add_batch(name, *index, Binding::kLocalRoute, std::span(routes).first(1), std::span(results).first(1));
  if (!results.front() && results.front().error().code == EEXIST) return deleted;
  add_batch(name, *index, Binding::kLocalRoute, std::span(routes).subspan(1), std::span(results).subspan(1));
  return deleted;
}

std::expected<void, Error> NetlinkAddressBackend::delete_route(const std::string& name,
                                                               const ipvs::Address& address) {
  auto index = link_index(name);
  if (!index) return std::unexpected(index.error());
  const std::string what = "delete local route " + address.to_string() + " through " + name;
  std::vector<unsigned char> request;
  append_route_request(request, RTM_DELROUTE, address, *index, NLM_F_REQUEST | NLM_F_ACK,
                       ++socket_->route_sequence);
  const std::uint32_t sequence = socket_->route_sequence;
  if (send(socket_->route_fd, request.data(), request.size(), 0) != static_cast<ssize_t>(request.size()))
    return std::unexpected(Error{errno, what + ": " + std::strerror(errno)});
  std::vector<unsigned char> answer(8192);
  for (;;) {
    const ssize_t received = recv(socket_->route_fd, answer.data(), answer.size(), 0);
    if (received < 0 && errno == EINTR) continue;
    if (received <= 0)
      return std::unexpected(
          Error{received < 0 ? errno : EIO,
                what + ": " + (received < 0 ? std::strerror(errno) : "the socket closed")});
    int remaining = static_cast<int>(received);
    for (auto* header = reinterpret_cast<nlmsghdr*>(answer.data()); NLMSG_OK(header, remaining);
         header = NLMSG_NEXT(header, remaining)) {
      if (header->nlmsg_type != NLMSG_ERROR || header->nlmsg_seq != sequence) continue;
      const int code = -static_cast<const nlmsgerr*>(NLMSG_DATA(header))->error;
      if (code == 0) {
        known_routes_[name].erase(address);
        return {};
      }
      // IPv4 says ESRCH for a route that is not there, IPv6 ESRCH or ENOENT.
      return std::unexpected(Error{code == ENOENT ? ESRCH : code, what + ": " + std::strerror(code)});
    }
  }
}

std::expected<void, Error> NetlinkAddressBackend::change_address(const std::string& name,
                                                                 const ipvs::Address& address, bool add) {
  const std::string what =
      (add ? "add address " : "delete address ") + address.to_string() + (add ? " to " : " from ") + name;
  // A sync binds every cluster IP: looking the link up for each would double
  // the round trips. The cached index is dropped, and the change tried once
  // more, when it fails (the link may have been deleted and made again).
  const bool cached = link_indexes_.contains(name);
  for (int attempt = 0;; ++attempt) {
    auto index = link_index(name);
    if (!index) return std::unexpected(index.error());
    auto addr = make_addr(*index, address, what);
    if (!addr) return std::unexpected(addr.error());
    const int rc =
        add ? rtnl_addr_add(socket_->sock, addr->get(), 0) : rtnl_addr_delete(socket_->sock, addr->get(), 0);
    if (rc >= 0) return {};
    auto error = nl_failure(what, rc);
    const bool answer = error.code == EEXIST || error.code == EADDRNOTAVAIL;
    if (answer || !cached || attempt > 0) return std::unexpected(error);
    link_indexes_.erase(name);
  }
}

void NetlinkAddressBackend::add_batch(const std::string& name, int index, Binding kind,
                                      std::span<const ipvs::Address> addresses,
                                      std::span<std::expected<void, Error>> results) {
  const bool routes = kind == Binding::kLocalRoute;
  const auto what = [&](const ipvs::Address& address) {
    return routes ? "add local route " + address.to_string() + " through " + name
                  : "add address " + address.to_string() + " to " + name;
  };
  const int fd = routes ? socket_->route_fd : nl_socket_get_fd(socket_->sock);
  std::uint32_t& sequence = routes ? socket_->route_sequence : dump_sequence_;
  // Failures come back as one answer each (about 100 bytes with the echoed
  // request): a batch's worth must fit the socket's receive buffer.
  constexpr std::size_t kBatch = 512;
  std::vector<unsigned char> buffer;
  std::vector<unsigned char> answers(64 * 1024);
  for (std::size_t first = 0; first < addresses.size(); first += kBatch) {
    const std::size_t count = std::min(kBatch, addresses.size() - first);
    buffer.clear();
    const std::uint32_t first_sequence = sequence + 1;
    for (std::size_t i = 0; i < count; ++i) {
      // As rtnl_addr_add asks (an address), or as fib_magic adds an
      // address's own route (a route: another link's local route to the same
      // IP is no clash), and the batch's last one for an answer.
      const std::uint16_t flags =
          NLM_F_REQUEST | NLM_F_CREATE | (routes ? 0 : NLM_F_EXCL) | (i + 1 == count ? NLM_F_ACK : 0);
      if (routes) {
        append_route_request(buffer, RTM_NEWROUTE, addresses[first + i], index, flags, ++sequence);
      } else {
        append_address_request(buffer, addresses[first + i], index, flags, ++sequence);
      }
    }
    const std::uint32_t last_sequence = sequence;
    const auto fail_rest = [&](const Error& error) {
      for (std::size_t i = 0; i < count; ++i) {
        auto& result = results[first + i];
        if (result.has_value())
          result = std::unexpected(Error{error.code, what(addresses[first + i]) + ": " + error.message});
      }
    };
    if (send(fd, buffer.data(), buffer.size(), 0) != static_cast<ssize_t>(buffer.size())) {
      fail_rest(Error{errno, std::strerror(errno)});
      continue;
    }
    // Answered in order: once the last one is, the others without an
    // answer were added.
    for (bool last_answered = false; !last_answered;) {
      const ssize_t received = recv(fd, answers.data(), answers.size(), 0);
      if (received < 0 && errno == EINTR) continue;
      if (received <= 0) {
        // Unknown which were added: the binder reads the link again.
        fail_rest(
            Error{received < 0 ? errno : EIO, received < 0 ? std::strerror(errno) : "the socket closed"});
        break;
      }
      int remaining = static_cast<int>(received);
      for (auto* header = reinterpret_cast<nlmsghdr*>(answers.data()); NLMSG_OK(header, remaining);
           header = NLMSG_NEXT(header, remaining)) {
        if (header->nlmsg_type != NLMSG_ERROR) continue;
        const std::uint32_t offset = header->nlmsg_seq - first_sequence;
        if (offset >= count) continue;  // left over from an earlier request
        const int code = -static_cast<const nlmsgerr*>(NLMSG_DATA(header))->error;
        if (code != 0) {
          results[first + offset] =
              std::unexpected(Error{code, what(addresses[first + offset]) + ": " + std::strerror(code)});
        }
        last_answered |= header->nlmsg_seq == last_sequence;
      }
    }
  }
  if (!routes) return;
  auto& known = known_routes_[name];
  for (std::size_t i = 0; i < addresses.size(); ++i) {
    if (results[i] || results[i].error().code == EEXIST) known.insert(addresses[i]);
  }
}

std::vector<std::expected<void, Error>> NetlinkAddressBackend::add_addresses(
    const std::string& name, std::span<const ipvs::Address> addresses) {
  return add_many(name, binding_, addresses);
}

std::vector<std::expected<void, Error>> NetlinkAddressBackend::add_local_routes(
    const std::string& name, std::span<const ipvs::Address> addresses) {
  return add_many(name, Binding::kLocalRoute, addresses);
}

std::set<ipvs::Address> NetlinkAddressBackend::local_routes(const std::string& name) const {
  auto known = known_routes_.find(name);
  return known == known_routes_.end() ? std::set<ipvs::Address>{} : known->second;
}

std::expected<void, Error> NetlinkAddressBackend::promote(const std::string& name,
                                                          const ipvs::Address& address) {
  if (auto added = change_address(name, address, true); !added && added.error().code != EEXIST) return added;
  // The address brought its own local route (the kernel's, beside kipvs's):
  // deleting kipvs's leaves the IP local.
  auto deleted = delete_route(name, address);
  if (!deleted && deleted.error().code == ESRCH) {
    known_routes_[name].erase(address);
    return {};
  }
  return deleted;
}

std::vector<std::expected<void, Error>> NetlinkAddressBackend::add_many(
    const std::string& name, Binding kind, std::span<const ipvs::Address> addresses) {
  std::vector<std::expected<void, Error>> results(addresses.size());
  if (addresses.empty()) return results;
  const bool cached = link_indexes_.contains(name);
  auto index = link_index(name);
  if (!index) {
    for (auto& result : results) result = std::unexpected(index.error());
    return results;
  }
  add_batch(name, *index, kind, addresses, results);
  // The link was deleted and made again since its index was cached: the
  // failed ones once more with the index looked up again.
  const auto gone = [](const auto& result) { return !result.has_value() && result.error().code == ENODEV; };
  if (!cached || !std::ranges::any_of(results, gone)) return results;
  link_indexes_.erase(name);
  index = link_index(name);
  std::vector<ipvs::Address> again;
  std::vector<std::size_t> at;
  for (std::size_t i = 0; i < results.size(); ++i) {
    if (!gone(results[i])) continue;
    if (!index) {
      results[i] = std::unexpected(index.error());
      continue;
    }
    again.push_back(addresses[i]);
    at.push_back(i);
  }
  if (again.empty()) return results;
  std::vector<std::expected<void, Error>> retried(again.size());
  add_batch(name, *index, kind, again, retried);
  for (std::size_t i = 0; i < again.size(); ++i) results[at[i]] = std::move(retried[i]);
  return results;
}

std::expected<void, Error> NetlinkAddressBackend::delete_link(const std::string& name) {
  link_indexes_.erase(name);
  known_routes_.erase(name);
  rtnl_link* raw = nullptr;
  if (int rc = rtnl_link_get_kernel(socket_->sock, 0, name.c_str(), &raw); rc < 0) {
    // libnl says "object not found" for a missing name; callers reason in ENODEV.
    auto error = nl_failure("get link " + name, rc);
    if (error.code == ENOENT) error.code = ENODEV;
    return std::unexpected(error);
  }
  LinkPtr link(raw);
  if (int rc = rtnl_link_delete(socket_->sock, link.get()); rc < 0)
    return std::unexpected(nl_failure("delete link " + name, rc));
  return {};
}

// ---------------------------------------------------------------------------

}  // namespace kipvs::address
