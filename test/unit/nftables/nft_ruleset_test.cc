// The nftables table as text, the diff between two tables, and the fake
// backend's kernel answers; one endpoint's change is set-element commands only.

#include <catch2/catch.hpp>

#include <cerrno>
#include <string>

#include "nftables/fake_nft_backend.h"
#include "nftables/nft_backend.h"
#include "nftables/nft_ruleset.h"
#include "test/support/builders.h"

namespace kipvs::nftables {
namespace {

using ipvs::Family;
using ipvs::Protocol;
using kipvs::test::ip;

NftState sample() {
  NftState state;
  state.config.cluster_cidrs = {"10.244.0.0/16", "fd00:10:244::/56"};
  state.config.masquerade_mark = 0x4000;
  state.elements[nft_set_name(nft_set::kVipAddresses, Family::kIPv4)] = {nft_element(ip("10.96.0.10"))};
  state.elements[nft_set_name(nft_set::kVipPorts, Family::kIPv4)] = {
      nft_element(ip("10.96.0.10"), Protocol::kTcp, 80)};
  state.elements[nft_set_name(nft_set::kClusterPorts, Family::kIPv4)] = {
      nft_element(ip("10.96.0.10"), Protocol::kTcp, 80)};
  state.elements[nft_set_name(nft_set::kHairpin, Family::kIPv4)] = {
      nft_hairpin_element(ip("10.244.0.5"), Protocol::kTcp, 8080)};
  return state;
}

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST_CASE("element texts", "[nft]") {
  CHECK(nft_element(ip("10.96.0.1"), Protocol::kUdp, 53) == "10.96.0.1 . udp . 53");
  CHECK(nft_element(ip("fd00::1"), Protocol::kSctp, 9) == "fd00::1 . sctp . 9");
  CHECK(nft_hairpin_element(ip("10.244.0.5"), Protocol::kTcp, 8080) ==
        "10.244.0.5 . tcp . 8080 . 10.244.0.5");
  CHECK(nft_range_element(ip("203.0.113.7"), Protocol::kTcp, 80, ip("192.0.2.0"), 24) ==
        "203.0.113.7 . tcp . 80 . 192.0.2.0/24");
  CHECK(nft_set_name(nft_set::kVipPorts, Family::kIPv6) == "vip_ports_v6");
}

TEST_CASE("the whole table replaces an old one in one script", "[nft]") {
  const auto text = render_nft_table(sample());
  // Create (so the delete cannot fail), delete, declare.
  CHECK(text.starts_with("table inet kipvs\ndelete table inet kipvs\ntable inet kipvs {\n"));
  CHECK(count(text, "  set ") == 14);  // 7 sets x 2 families
  CHECK(text.find("elements = { 10.96.0.10 . tcp . 80 }") != std::string::npos);
  CHECK(text.find("ip saddr != { 10.244.0.0/16 } meta mark set meta mark or 0x4000") != std::string::npos);
  CHECK(text.find("ip6 saddr != { fd00:10:244::/56 }") != std::string::npos);
  CHECK(text.find("type nat hook postrouting priority srcnat") != std::string::npos);
  CHECK(text.find("meta mark and 0x4000 == 0x4000 meta mark set meta mark xor 0x4000 masquerade") !=
        std::string::npos);
  CHECK(text.find("ip daddr . meta l4proto . th dport . ip saddr @hairpin_v4 masquerade") !=
        std::string::npos);
  CHECK(
      text.find("ct state new ip daddr @vip_addrs_v4 meta l4proto { tcp, udp, sctp } ip daddr . meta l4proto "
                ". th dport != @vip_ports_v4 reject") != std::string::npos);
  CHECK(text.find("flags interval") != std::string::npos);
}

TEST_CASE("masquerading picks its source ports fully at random (kube-proxy's --random-fully)", "[nft]") {
  const auto text = render_nft_table(sample());
  CHECK(count(text, " masquerade") == 3);  // hairpin of each family, the marked packets
  CHECK(count(text, " masquerade fully-random\n") == 3);
}

TEST_CASE("loadBalancerSourceRanges filter connections from elsewhere and the node's own", "[nft]") {
  const auto text = render_nft_table(sample());
  const std::string rule =
      "ip daddr . meta l4proto . th dport @fw_ports_v4 ip daddr . meta l4proto . th dport . ip saddr != "
      "@fw_allow_v4 drop";
  const auto input =
      text.substr(text.find("chain input"), text.find("chain local_output") - text.find("chain input"));
  const auto output = text.substr(text.find("chain local_output"));
  CHECK(input.find(rule) != std::string::npos);
  // The node's own connections meet IPVS at LOCAL_OUT (priority -99): the
  // filter comes before it.
  CHECK(output.find("type filter hook output priority -150;") != std::string::npos);
  CHECK(output.find(rule) != std::string::npos);
  CHECK(output.find("ip6 daddr . meta l4proto . th dport @fw_ports_v6") != std::string::npos);
}

TEST_CASE(
    "detectLocalMode by interface: traffic to a cluster IP not from the pods' interfaces is masqueraded",
    "[nft]") {
  auto state = sample();
  state.config.cluster_cidrs.clear();
  state.config.local_interface = "veth*";
  const auto text = render_nft_table(state);
  const auto prerouting =
      text.substr(text.find("chain prerouting"), text.find("chain output") - text.find("chain prerouting"));
  CHECK(prerouting.find(
            "ip daddr . meta l4proto . th dport @cluster_ports_v4 iifname != \"veth*\" meta mark set "
            "meta mark or 0x4000") != std::string::npos);
  CHECK(prerouting.find("ip6 daddr . meta l4proto . th dport @cluster_ports_v6 iifname != \"veth*\"") !=
        std::string::npos);
  CHECK(prerouting.find("saddr != {") == std::string::npos);
}

TEST_CASE("masqueradeAll masquerades every cluster-IP connection, and with no CIDR, only the node's own",
          "[nft]") {
  auto state = sample();
  state.config.masquerade_all = true;
  auto text = render_nft_table(state);
  CHECK(text.find("ip daddr . meta l4proto . th dport @cluster_ports_v4 meta mark set") != std::string::npos);
  CHECK(text.find("saddr != {") == std::string::npos);

  state.config = NftConfig{};
  text = render_nft_table(state);
  const auto prerouting =
      text.substr(text.find("chain prerouting"), text.find("chain output") - text.find("chain prerouting"));
  CHECK(prerouting.find("@cluster_ports_v4") == std::string::npos);
  CHECK(text.find("chain output") != std::string::npos);
  CHECK(text.substr(text.find("chain output")).find("@cluster_ports_v4 meta mark set") != std::string::npos);
}

TEST_CASE("diff: first write is the whole table, the same state twice is nothing", "[nft]") {
  const auto state = sample();
  auto first = nft_diff(std::nullopt, state);
  REQUIRE(first.full.has_value());
  CHECK(render_nft_update(first) == render_nft_table(state));
  auto again = nft_diff(state, state);
  CHECK(again.empty());
  CHECK(render_nft_update(again).empty());
}

TEST_CASE("diff: one endpoint's change is element commands only", "[nft][acceptance]") {
  const auto before = sample();
  auto after = before;
  auto& hairpin = after.elements[nft_set_name(nft_set::kHairpin, Family::kIPv4)];
  hairpin.erase(nft_hairpin_element(ip("10.244.0.5"), Protocol::kTcp, 8080));
  hairpin.insert(nft_hairpin_element(ip("10.244.0.6"), Protocol::kTcp, 8080));

  const auto update = nft_diff(before, after);
  REQUIRE_FALSE(update.full.has_value());
  REQUIRE(update.removed.size() == 1);
  REQUIRE(update.added.size() == 1);
  CHECK(render_nft_update(update) ==
        "delete element inet kipvs hairpin_v4 { 10.244.0.5 . tcp . 8080 . 10.244.0.5 }\n"
        "add element inet kipvs hairpin_v4 { 10.244.0.6 . tcp . 8080 . 10.244.0.6 }\n");
}

TEST_CASE("diff: a change of the rules' shape rewrites the table", "[nft]") {
  const auto before = sample();
  auto after = before;
  SECTION("cluster CIDR") {
    after.config.cluster_cidrs = {"10.200.0.0/16"};
  }
  SECTION("masqueradeAll") {
    after.config.masquerade_all = true;
  }
  SECTION("mark") {
    after.config.masquerade_mark = 0x8000;
  }
  CHECK(nft_diff(before, after).full.has_value());
}

TEST_CASE("fake backend: the kernel's answers, one transaction at a time", "[nft]") {
  FakeNftBackend nft;
  NftUpdate elements;
  elements.added.push_back({"vip_ports_v4", "10.96.0.1 . tcp . 80"});
  // No table yet.
  auto done = nft.apply(elements);
  REQUIRE_FALSE(done);
  CHECK(done.error().code == ENOENT);
  CHECK(nft.delete_table().error().code == ENOENT);

  REQUIRE(nft.apply(nft_diff(std::nullopt, sample())));
  CHECK(nft.full_writes == 1);
  REQUIRE(nft.apply(elements));
  CHECK(nft.table()->elements.at("vip_ports_v4").contains("10.96.0.1 . tcp . 80"));

  // A delete of a missing element fails the whole transaction.
  NftUpdate mixed;
  mixed.added.push_back({"vip_ports_v4", "10.96.0.2 . tcp . 80"});
  mixed.removed.push_back({"vip_ports_v4", "10.96.0.3 . tcp . 80"});
  REQUIRE_FALSE(nft.apply(mixed));
  CHECK_FALSE(nft.table()->elements.at("vip_ports_v4").contains("10.96.0.2 . tcp . 80"));

  nft.fail_code = EOPNOTSUPP;
  CHECK(nft.apply(elements).error().code == EOPNOTSUPP);
  nft.fail_code = 0;
  REQUIRE(nft.list_table());
  REQUIRE(nft.delete_table());
  CHECK_FALSE(nft.table().has_value());
}

}  // namespace
}  // namespace kipvs::nftables
