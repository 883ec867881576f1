#pragma once
// The dummy interface that carries kipvs's virtual addresses (kube-ipvs0 by
// default): IPVS only answers for an address the node accepts as local, so
// every cluster, external and load-balancer IP is bound there, as kube-proxy
// does, or given a local route through it (Binding). One small interface, a
// libnl-route-3 implementation, and a stateful fake with the kernel's
// answers, like the IPVS Backend.
//
// Answers: adding an address that is there is EEXIST; deleting one that is
// not is EADDRNOTAVAIL; both are ordinary answers for the caller. Not
// thread-safe: one thread at a time uses it (the agent's, which lends it to a
// worker for the many binds of a first sync and waits for them).

#include <array>
#include <chrono>
#include <cstddef>
#include <expected>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "ipvs/backend.h"
#include "ipvs/model.h"

namespace kipvs::address {

// How a virtual IP is made local. The kernel walks a link's whole address
// list for each address it adds (binding N is O(N^2)); a route goes into the
// local table's trie.
enum class Binding {
  kAddress,     // an address on the link, as kube-proxy binds (`ip address show`)
  kLocalRoute,  // a local route through the link (`ip route show table local`)
};

// The routing protocol number kipvs's local routes carry: how they are told
// from the routes the kernel makes for addresses, and from anyone else's.
inline constexpr unsigned char kLocalRouteProtocol = 107;

class AddressBackend {
 public:
  virtual ~AddressBackend() = default;
  // Creates the dummy link when it is missing and sets it up.
  [[nodiscard]] virtual std::expected<void, Error> ensure_link(const std::string& name) = 0;
  // The virtual IPs made local through the link, either way: its addresses
  // (host addresses; prefix lengths are not kept) and kipvs's local routes.
  [[nodiscard]] virtual std::expected<std::set<ipvs::Address>, Error> list_addresses(
      const std::string& name) = 0;
  // Adds address/32 (IPv4) or /128 (IPv6, without duplicate address
  // detection), or its local route.
  [[nodiscard]] virtual std::expected<void, Error> add_address(const std::string& name,
                                                               const ipvs::Address& address) = 0;
  // Removes the address or kipvs's local route, whichever is there.
  [[nodiscard]] virtual std::expected<void, Error> delete_address(const std::string& name,
                                                                  const ipvs::Address& address) = 0;
  // add_address for each, in order, with an answer for each (a first sync
  // binds one address per cluster IP). This one asks add_address.
  [[nodiscard]] virtual std::vector<std::expected<void, Error>> add_addresses(
      const std::string& name, std::span<const ipvs::Address> addresses);
  // Removes the link (and with it its addresses). A missing link is ENODEV.
  [[nodiscard]] virtual std::expected<void, Error> delete_link(const std::string& name) = 0;

  // For binding addresses many at a time: each IP made local with kipvs's
  // local route first (its cost does not grow with the link's address
  // count), and swapped for its address later by promote(). This one asks
  // add_addresses.
  [[nodiscard]] virtual std::vector<std::expected<void, Error>> add_local_routes(
      const std::string& name, std::span<const ipvs::Address> addresses);
  // The IPs of kipvs's local routes through the link, as last listed and
  // changed since (list_addresses lists them).
  [[nodiscard]] virtual std::set<ipvs::Address> local_routes(const std::string& name) const;
  // Adds the address (EEXIST is fine) and then deletes kipvs's local route
  // to it: the IP stays local throughout.
  [[nodiscard]] virtual std::expected<void, Error> promote(const std::string& name,
                                                           const ipvs::Address& address);
};

// rtnetlink through libnl-route-3 and raw requests; two sockets, opened in
// open(): libnl's, and one with strict checking for the routes (the kernel
// filters their dump by table, protocol and link).
class NetlinkAddressBackend final : public AddressBackend {
 public:
  // `binding` is how add_address(es) makes an IP local; listing and deleting
  // find both kinds, so a node bound the other way is read as it is.
  [[nodiscard]] static std::expected<std::unique_ptr<NetlinkAddressBackend>, Error> open(
      Binding binding = Binding::kAddress);
  ~NetlinkAddressBackend() override;
  NetlinkAddressBackend(const NetlinkAddressBackend&) = delete;
  NetlinkAddressBackend& operator=(const NetlinkAddressBackend&) = delete;

  [[nodiscard]] std::expected<void, Error> ensure_link(const std::string& name) override;
  [[nodiscard]] std::expected<std::set<ipvs::Address>, Error> list_addresses(
      const std::string& name) override;
  [[nodiscard]] std::expected<void, Error> add_address(const std::string& name,
                                                       const ipvs::Address& address) override;
  [[nodiscard]] std::expected<void, Error> delete_address(const std::string& name,
                                                          const ipvs::Address& address) override;
  [[nodiscard]] std::expected<void, Error> delete_link(const std::string& name) override;
  // Many RTM_NEWADDR (or RTM_NEWROUTE) requests in each sendmsg, only the
  // last one asking for an answer (the kernel answers a failed one anyway):
  // one round trip per few hundred addresses instead of one each.
  [[nodiscard]] std::vector<std::expected<void, Error>> add_addresses(
      const std::string& name, std::span<const ipvs::Address> addresses) override;
  [[nodiscard]] std::vector<std::expected<void, Error>> add_local_routes(
      const std::string& name, std::span<const ipvs::Address> addresses) override;
  [[nodiscard]] std::set<ipvs::Address> local_routes(const std::string& name) const override;
  [[nodiscard]] std::expected<void, Error> promote(const std::string& name,
                                                   const ipvs::Address& address) override;

  // How long the socket waits for the kernel's answer.
  [[nodiscard]] std::chrono::milliseconds receive_timeout() const;

 private:
  struct Socket;
  NetlinkAddressBackend(std::unique_ptr<Socket> socket, Binding binding);
  [[nodiscard]] std::expected<int, Error> link_index(const std::string& name);
  [[nodiscard]] std::expected<void, Error> change_address(const std::string& name,
                                                          const ipvs::Address& address, bool add);
  [[nodiscard]] std::expected<void, Error> delete_route(const std::string& name,
                                                        const ipvs::Address& address);
  [[nodiscard]] std::expected<void, Error> delete_address_keeping_routes(const std::string& name,
                                                                         const ipvs::Address& address);
  [[nodiscard]] std::expected<void, Error> list_link_addresses(const std::string& name, int index,
                                                               std::set<ipvs::Address>& out);
  [[nodiscard]] std::expected<void, Error> list_routes(const std::string& name, int index,
                                                       std::set<ipvs::Address>& out);
  // One batch's requests (`kind`) for `addresses` on link `index`, answers
  // into `results`.
  void add_batch(const std::string& name, int index, Binding kind, std::span<const ipvs::Address> addresses,
                 std::span<std::expected<void, Error>> results);
  // add_batch of `kind`, once more with the index looked up again for those
  // that found the link gone (deleted and made again since it was cached).
  [[nodiscard]] std::vector<std::expected<void, Error>> add_many(const std::string& name, Binding kind,
                                                                 std::span<const ipvs::Address> addresses);

  std::unique_ptr<Socket> socket_;
  Binding binding_;
  // kipvs's local routes through each link, as last listed and changed
  // since: what the flush of a link's last IPv4 address takes away.
  std::map<std::string, std::set<ipvs::Address>> known_routes_;
  std::map<std::string, int> link_indexes_;  // by link name
  std::uint32_t dump_sequence_ = 1U << 31;   // the raw address dumps' (libnl numbers from the time)
};

}  // namespace kipvs::address
