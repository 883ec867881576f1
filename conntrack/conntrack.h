#pragma once
// Conntrack entries of UDP flows whose real server kipvs removed. UDP has no
// connection end, so a client sending from the same port keeps matching the
// old entry: its source NAT still expects replies from the old server, and
// the new server's replies are lost. kube-proxy clears such entries
// (pkg/proxy/conntrack); kipvs does too, after the destination is deleted.
//
// One small interface, a libnl-nf-3 implementation (ctnetlink), and a fake.
// Not thread-safe: the agent's one thread owns it.

#include <chrono>
#include <cstddef>
#include <expected>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <utility>
#include <vector>

#include "ipvs/backend.h"
#include "ipvs/model.h"

namespace kipvs::conntrack {

// Entries of UDP traffic sent to service:port (a virtual service) and
// answered by endpoint:port (a real server): the original direction's
// destination and the reply direction's source.
struct ConntrackFlow {
  ipvs::Address service;
  std::uint16_t service_port = 0;
  ipvs::Address endpoint;
  std::uint16_t endpoint_port = 0;
  friend auto operator<=>(const ConntrackFlow&, const ConntrackFlow&) = default;
};

// An address and port: a virtual service's, or a real server's.
struct UdpEndpoint {
  ipvs::Address address;
  std::uint16_t port = 0;
  friend auto operator<=>(const UdpEndpoint&, const UdpEndpoint&) = default;
};
// UDP virtual services and the real servers that serve each.
using UdpServing = std::map<UdpEndpoint, std::set<UdpEndpoint>>;

class ConntrackBackend {
 public:
  virtual ~ConntrackBackend() = default;
  // Deletes the UDP entries of these flows; returns how many went.
  [[nodiscard]] virtual std::expected<std::size_t, Error> delete_udp_flows(
      std::span<const ConntrackFlow> flows) = 0;
  // Deletes the UDP entries sent to one of these virtual services whose
  // replies do not come from one of its real servers (kube-proxy's
  // CleanStaleEntries): an entry made while the service had no endpoint
  // sends a client's every datagram into the void until it expires, since
  // the client keeps its source port. Returns how many went.
  [[nodiscard]] virtual std::expected<std::size_t, Error> delete_stale_udp(const UdpServing& serving) = 0;
  // The same for every UDP entry of these families: `unserved` says whether
  // an entry is to one of kipvs's virtual services and answered by none of
  // its real servers. A resync's sweep over every UDP service: the cost is
  // the table's UDP entries, not a map of every service's servers.
  [[nodiscard]] virtual std::expected<std::size_t, Error> delete_unserved_udp(
      std::span<const ipvs::Family> families, const std::function<bool(const ConntrackFlow&)>& unserved) = 0;
};

// Clears nothing: the agent's conntrack when ctnetlink cannot be opened
// (said once at start-up), and the tests that do not look at conntrack.
class NoConntrack final : public ConntrackBackend {
 public:
  [[nodiscard]] std::expected<std::size_t, Error> delete_udp_flows(std::span<const ConntrackFlow>) override {
    return 0;
  }
  [[nodiscard]] std::expected<std::size_t, Error> delete_stale_udp(const UdpServing&) override { return 0; }
  [[nodiscard]] std::expected<std::size_t, Error> delete_unserved_udp(
      std::span<const ipvs::Family>, const std::function<bool(const ConntrackFlow&)>&) override {
    return 0;
  }
};

// ctnetlink through libnl-nf-3: dumps the kernel filters (UDP only, and to
// one virtual service when there are few), read one entry at a time, then a
// delete per matching entry. Memory is the matching entries, not the table.
class NetlinkConntrackBackend final : public ConntrackBackend {
 public:
  [[nodiscard]] static std::expected<std::unique_ptr<NetlinkConntrackBackend>, Error> open();
  ~NetlinkConntrackBackend() override;
  NetlinkConntrackBackend(const NetlinkConntrackBackend&) = delete;
  NetlinkConntrackBackend& operator=(const NetlinkConntrackBackend&) = delete;

  [[nodiscard]] std::expected<std::size_t, Error> delete_udp_flows(
      std::span<const ConntrackFlow> flows) override;
  [[nodiscard]] std::expected<std::size_t, Error> delete_stale_udp(const UdpServing& serving) override;
  [[nodiscard]] std::expected<std::size_t, Error> delete_unserved_udp(
      std::span<const ipvs::Family> families,
      const std::function<bool(const ConntrackFlow&)>& unserved) override;

  // How long the socket waits for the kernel's answer.
  [[nodiscard]] std::chrono::milliseconds receive_timeout() const;
  // Entries the last cleanup's dumps returned (how well the kernel filtered).
  [[nodiscard]] std::size_t last_dump_entries() const { return last_dump_entries_; }

 private:
  // The dumps (a family, and a virtual service or every UDP entry); deletes
  // the entries `doomed` picks.
  std::expected<std::size_t, Error> delete_udp_where(
      const std::vector<std::pair<ipvs::Family, std::optional<UdpEndpoint>>>& dumps,
      const std::function<bool(const ConntrackFlow&)>& doomed);
  struct Socket;
  explicit NetlinkConntrackBackend(std::unique_ptr<Socket> socket);
  std::unique_ptr<Socket> socket_;
  std::size_t last_dump_entries_ = 0;
};

}  // namespace kipvs::conntrack
