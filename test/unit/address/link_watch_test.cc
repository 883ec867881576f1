// Which rtnetlink messages mean "the dummy interface was deleted": the link
// watch's decoder, on messages laid out as the kernel sends them.

#include <catch2/catch.hpp>

#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#include <cstring>
#include <string>
#include <vector>

#include "address/link_watch.h"

namespace kipvs::address {
namespace {

// One link message with an IFLA_IFNAME attribute (and an IFLA_MTU before it).
std::vector<char> link_message(std::uint16_t type, const std::string& name) {
  const std::size_t name_attribute = RTA_LENGTH(name.size() + 1);
  const std::size_t mtu_attribute = RTA_LENGTH(sizeof(std::uint32_t));
  const std::size_t length =
      NLMSG_LENGTH(sizeof(ifinfomsg)) + RTA_ALIGN(mtu_attribute) + RTA_ALIGN(name_attribute);
  std::vector<char> out(NLMSG_ALIGN(length), 0);
  nlmsghdr header{};
  header.nlmsg_len = static_cast<std::uint32_t>(length);
  header.nlmsg_type = type;
  std::memcpy(out.data(), &header, sizeof header);
  std::size_t at = NLMSG_LENGTH(sizeof(ifinfomsg));
  rtattr mtu{static_cast<unsigned short>(mtu_attribute), IFLA_MTU};
  std::memcpy(out.data() + at, &mtu, sizeof mtu);
  at += RTA_ALIGN(mtu_attribute);
  rtattr ifname{static_cast<unsigned short>(name_attribute), IFLA_IFNAME};
  std::memcpy(out.data() + at, &ifname, sizeof ifname);
  std::memcpy(out.data() + at + RTA_LENGTH(0), name.c_str(), name.size() + 1);
  return out;
}

TEST_CASE("the link watch recognises the deletion of one link by name", "[address][link]") {
  const auto deleted = link_message(RTM_DELLINK, "kube-ipvs0");
  CHECK(deletes_link(deleted, "kube-ipvs0"));
  CHECK_FALSE(deletes_link(deleted, "kube-ipvs1"));
  CHECK_FALSE(deletes_link(link_message(RTM_NEWLINK, "kube-ipvs0"), "kube-ipvs0"));
  CHECK_FALSE(deletes_link(link_message(RTM_DELLINK, "kube-ipvs0x"), "kube-ipvs0"));

  // Several messages in one read: the deletion may be any of them.
  auto batch = link_message(RTM_NEWLINK, "eth0");
  const auto other = link_message(RTM_DELLINK, "veth12");
  batch.insert(batch.end(), other.begin(), other.end());
  CHECK_FALSE(deletes_link(batch, "kube-ipvs0"));
  batch.insert(batch.end(), deleted.begin(), deleted.end());
  CHECK(deletes_link(batch, "kube-ipvs0"));

  // A message cut short is not read past its end.
  const std::vector<char> cut(deleted.begin(), deleted.begin() + 20);
  CHECK_FALSE(deletes_link(cut, "kube-ipvs0"));
  CHECK_FALSE(deletes_link({}, "kube-ipvs0"));
}

}  // namespace
}  // namespace kipvs::address
