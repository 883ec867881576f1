#include "address/link_watch.h"

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace kipvs::address {

std::expected<std::unique_ptr<LinkWatch>, Error> LinkWatch::open() {
  const int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return std::unexpected(Error{errno, std::string("rtnetlink socket: ") + std::strerror(errno)});
  sockaddr_nl address{};
  address.nl_family = AF_NETLINK;
  address.nl_groups = RTMGRP_LINK;
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    const int error = errno;
    ::close(fd);
    return std::unexpected(Error{error, std::string("rtnetlink link group: ") + std::strerror(error)});
  }
  return std::unique_ptr<LinkWatch>(new LinkWatch(fd));
}

LinkWatch::~LinkWatch() {
  if (fd_ >= 0) ::close(fd_);
}

std::expected<bool, Error> LinkWatch::read_events(const std::string& name) {
  std::vector<char> buffer(64 * 1024);
  bool deleted = false;
  for (;;) {
    const auto got = ::recv(fd_, buffer.data(), buffer.size(), 0);
    if (got < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return deleted;
      if (errno == EINTR) continue;
      if (errno == ENOBUFS) {
        deleted = true;  // messages were lost: assume the worst
        continue;
      }
      return std::unexpected(Error{errno, std::string("rtnetlink read: ") + std::strerror(errno)});
    }
    if (deletes_link(std::span<const char>(buffer.data(), static_cast<std::size_t>(got)), name))
      deleted = true;
  }
}

bool deletes_link(std::span<const char> messages, const std::string& name) {
  std::size_t offset = 0;
  while (offset + sizeof(nlmsghdr) <= messages.size()) {
    nlmsghdr header;
    std::memcpy(&header, messages.data() + offset, sizeof header);
    if (header.nlmsg_len < sizeof header || offset + header.nlmsg_len > messages.size()) return false;
    if (header.nlmsg_type == RTM_DELLINK && header.nlmsg_len >= NLMSG_LENGTH(sizeof(ifinfomsg))) {
      std::size_t at = offset + NLMSG_LENGTH(sizeof(ifinfomsg));
      const std::size_t end = offset + header.nlmsg_len;
      while (at + sizeof(rtattr) <= end) {
        rtattr attribute;
        std::memcpy(&attribute, messages.data() + at, sizeof attribute);
        if (attribute.rta_len < sizeof attribute || at + attribute.rta_len > end) break;
        if (attribute.rta_type == IFLA_IFNAME) {
          const char* text = messages.data() + at + RTA_LENGTH(0);
          const std::size_t size = attribute.rta_len - RTA_LENGTH(0);
          if (std::string(text, ::strnlen(text, size)) == name) return true;
        }
        at += RTA_ALIGN(attribute.rta_len);
      }
    }
    offset += NLMSG_ALIGN(header.nlmsg_len);
  }
  return false;
}

}  // namespace kipvs::address
