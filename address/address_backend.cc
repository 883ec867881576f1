#include "address/address_backend.h"

#include <net/if.h>
#include <netlink/addr.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/socket.h>
#include <sys/socket.h>

#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>
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

struct NetlinkAddressBackend::Socket {
  nl_sock* sock = nullptr;
  ~Socket() {
    if (sock != nullptr) nl_socket_free(sock);
  }
};

NetlinkAddressBackend::NetlinkAddressBackend(std::unique_ptr<Socket> socket) : socket_(std::move(socket)) {}
NetlinkAddressBackend::~NetlinkAddressBackend() = default;

std::expected<std::unique_ptr<NetlinkAddressBackend>, Error> NetlinkAddressBackend::open() {
  auto socket = std::make_unique<Socket>();
  socket->sock = nl_socket_alloc();
  if (socket->sock == nullptr) return std::unexpected(Error{ENOMEM, "rtnetlink: cannot allocate a socket"});
  if (int rc = nl_connect(socket->sock, NETLINK_ROUTE); rc < 0)
    return std::unexpected(nl_failure("rtnetlink connect", rc));
  if (auto bounded =
          ipvs::set_socket_timeouts(nl_socket_get_fd(socket->sock), ipvs::kNetlinkTimeout, "rtnetlink");
      !bounded)
    return std::unexpected(bounded.error());
  return std::unique_ptr<NetlinkAddressBackend>(new NetlinkAddressBackend(std::move(socket)));
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

}  // namespace

std::expected<std::set<ipvs::Address>, Error> NetlinkAddressBackend::list_addresses(const std::string& name) {
  auto index = link_index(name);
  if (!index) return std::unexpected(index.error());
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
  request.message.ifa_index = static_cast<std::uint32_t>(*index);
  const std::string what = "list addresses of " + name;
  const int fd = nl_socket_get_fd(socket_->sock);
  if (send(fd, &request, sizeof request, 0) != static_cast<ssize_t>(sizeof request))
    return std::unexpected(Error{errno, what + ": " + std::strerror(errno)});
  std::set<ipvs::Address> addresses;
  // The kernel caps a dump's datagram at 32 KiB.
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
      if (header->nlmsg_seq != request.header.nlmsg_seq) continue;  // left over from an earlier request
      if (header->nlmsg_type == NLMSG_DONE) done = true;
      if (header->nlmsg_type == NLMSG_ERROR) {
        const auto* error = static_cast<const nlmsgerr*>(NLMSG_DATA(header));
        return std::unexpected(Error{-error->error, what + ": " + std::strerror(-error->error)});
      }
      if (header->nlmsg_type != RTM_NEWADDR) continue;
      const auto* message = static_cast<const ifaddrmsg*>(NLMSG_DATA(header));
      // The kernel gives the link an IPv6 link-local address when it comes
      // up: not kipvs's, and never to be removed. Without strict checking
      // the kernel sends every link's addresses.
      if (static_cast<int>(message->ifa_index) != *index || message->ifa_scope != RT_SCOPE_UNIVERSE) continue;
      if (auto address = local_address_of(header)) addresses.insert(*address);
    }
  }
  return addresses;
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
  return change_address(name, address, true);
}

std::expected<void, Error> NetlinkAddressBackend::delete_address(const std::string& name,
                                                                 const ipvs::Address& address) {
  return change_address(name, address, false);
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

std::vector<std::expected<void, Error>> NetlinkAddressBackend::add_addresses(
    const std::string& name, std::span<const ipvs::Address> addresses) {
  std::vector<std::expected<void, Error>> results(addresses.size());
  if (addresses.empty()) return results;
  const bool cached = link_indexes_.contains(name);
  auto index = link_index(name);
  if (!index) {
    for (auto& result : results) result = std::unexpected(index.error());
    return results;
  }
  const auto what = [&](const ipvs::Address& address) {
    return "add address " + address.to_string() + " to " + name;
  };
  const int fd = nl_socket_get_fd(socket_->sock);
  // Failures come back as one answer each (about 100 bytes with the echoed
  // request): a batch's worth must fit the socket's receive buffer.
  constexpr std::size_t kBatch = 512;
  std::vector<unsigned char> buffer;
  std::vector<unsigned char> answers(64 * 1024);
  for (std::size_t first = 0; first < addresses.size(); first += kBatch) {
    const std::size_t count = std::min(kBatch, addresses.size() - first);
    buffer.clear();
    const std::uint32_t first_sequence = dump_sequence_ + 1;
    for (std::size_t i = 0; i < count; ++i) {
      const ipvs::Address& address = addresses[first + i];
      const bool v6 = address.family == ipvs::Family::kIPv6;
      const std::size_t size = v6 ? 16 : 4;
      const std::size_t attribute = RTA_SPACE(size);
      const std::size_t length = NLMSG_SPACE(sizeof(ifaddrmsg)) + 2 * attribute;
      const std::size_t at = buffer.size();
      buffer.resize(at + length, 0);
      auto* header = reinterpret_cast<nlmsghdr*>(buffer.data() + at);
      header->nlmsg_len = static_cast<std::uint32_t>(length);
      header->nlmsg_type = RTM_NEWADDR;
      // As rtnl_addr_add asks, and the batch's last one for an answer.
      header->nlmsg_flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL | (i + 1 == count ? NLM_F_ACK : 0);
      header->nlmsg_seq = ++dump_sequence_;
      auto* message = static_cast<ifaddrmsg*>(NLMSG_DATA(header));
      message->ifa_family = static_cast<unsigned char>(af_of(address.family));
      message->ifa_prefixlen = v6 ? 128 : 32;
      // A virtual IPv6 address must answer at once, not after duplicate
      // address detection (and the same address is on every node).
      message->ifa_flags = v6 ? IFA_F_NODAD : 0;
      message->ifa_scope = RT_SCOPE_UNIVERSE;
      message->ifa_index = static_cast<std::uint32_t>(*index);
      auto* attributes = reinterpret_cast<unsigned char*>(header) + NLMSG_SPACE(sizeof(ifaddrmsg));
      for (const unsigned short type : {IFA_LOCAL, IFA_ADDRESS}) {
        auto* rta = reinterpret_cast<rtattr*>(attributes);
        rta->rta_type = type;
        rta->rta_len = static_cast<unsigned short>(RTA_LENGTH(size));
        std::memcpy(RTA_DATA(rta), address.bytes.data(), size);
        attributes += attribute;
      }
    }
    const std::uint32_t last_sequence = dump_sequence_;
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
  // The link was deleted and made again since its index was cached: the
  // failed ones once more, one at a time, which looks the index up again.
  if (cached && std::ranges::any_of(results, [](const auto& result) {
        return !result.has_value() && result.error().code == ENODEV;
      })) {
    link_indexes_.erase(name);
    for (std::size_t i = 0; i < results.size(); ++i) {
      if (!results[i].has_value() && results[i].error().code == ENODEV)
        results[i] = change_address(name, addresses[i], true);
    }
  }
  return results;
}

std::expected<void, Error> NetlinkAddressBackend::delete_link(const std::string& name) {
  link_indexes_.erase(name);
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
