#pragma once
// The Backend that talks to the kernel: generic netlink, family "IPVS".
//
// One socket, opened with libnl-genl-3; the family id is resolved once per
// socket. Sends and receives are bounded by SO_SNDTIMEO/SO_RCVTIMEO, so a
// stuck socket cannot hang the agent (kube-proxy could: kubernetes issue
// 71071). A call whose socket fails or times out closes it, opens a new one
// and retries once; counters().reopens counts that.
//
// apply() packs many requests into one sendmsg (about 64 KiB), every one with
// NLM_F_ACK, then reads the acknowledgements and matches each to its
// operation by sequence number: one failure reports its own errno and message
// and the others still apply. The encoding and decoding live in
// netlink_codec.h; this class only moves bytes.
//
// list_all() dumps the services, then each service's destinations. The kernel
// runs one dump at a time per socket, so the destination dumps go one after
// the other, each costing one sendmsg and (with recvmmsg) usually one receive.
// They go through a second socket that reads a page at a time: the kernel
// sizes (and zeroes) each dump datagram by the socket's largest read, and
// the service list wants large ones (netlink_backend.cc, one_page_reads).
//
// list_service_settings() and list_destinations() (the periodic resync's
// read, connection counts) ask through the older socket options first, where
// the kernel copies fixed-size entries at a small part of a dump's cost
// (sockopt_reader.h); what those cannot show (IPv6) goes to netlink, and
// the services only when the caller asks for IPv4 ones alone.
//
// Not thread-safe: one thread owns it, like the rest of the agent's state.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "ipvs/backend.h"
#include "ipvs/netlink_socket.h"
#include "ipvs/sockopt_reader.h"

namespace kipvs::ipvs {

namespace netlink {
struct GenlMessage;
struct Header;
}  // namespace netlink

// The socket under NetlinkBackend. The real one is libnl's; tests substitute
// a scripted kernel.
class NetlinkTransport {
 public:
  virtual ~NetlinkTransport() = default;
  // Opens the socket and resolves the IPVS family; closes any previous one.
  [[nodiscard]] virtual std::expected<void, Error> open() = 0;
  virtual void close() = 0;
  [[nodiscard]] virtual bool is_open() const = 0;
  [[nodiscard]] virtual std::uint16_t family_id() const = 0;
  [[nodiscard]] virtual std::uint32_t port_id() const = 0;
  // One sendmsg of complete netlink messages.
  [[nodiscard]] virtual std::expected<void, Error> send(std::span<const std::uint8_t> messages) = 0;
  // The next datagram from the kernel, waiting at most the receive timeout.
  // The span stays valid until the next call.
  [[nodiscard]] virtual std::expected<std::span<const std::uint8_t>, Error> receive() = 0;
  // receive() calls that went to the kernel (one recvmmsg may yield many
  // datagrams).
  [[nodiscard]] virtual std::uint64_t receive_syscalls() const = 0;
  // After a large dump: the memory its reads filled may go back to the
  // system (no span from receive() is held then).
  virtual void release_buffers() {}
};

struct NetlinkOptions {
  // Bounds every send and every wait for an answer.
  std::chrono::milliseconds timeout = kNetlinkTimeout;
  // Requests packed into one sendmsg.
  std::size_t batch_bytes = 64 * 1024;
  // Acknowledgements of a whole batch must fit in the receive buffer, or the
  // kernel drops them (ENOBUFS); each costs about 1 KiB of buffer.
  std::size_t max_batch_messages = 1024;
  // Ask the kernel to acknowledge every request of a batch (ipvsadm's way),
  // or only the batch's last one: the kernel handles a batch's requests in
  // order and answers a failed one whether asked or not, so the last one's
  // acknowledgement says the rest succeeded. One answer instead of a
  // thousand saves the kernel an allocation and a copy per request.
  bool acknowledge_each = false;
  // Requested with SO_RCVBUFFORCE (needs CAP_NET_ADMIN, which IPVS needs
  // anyway), falling back to SO_RCVBUF. The batch size shrinks to fit what
  // the kernel granted.
  int receive_buffer_bytes = 8 * 1024 * 1024;
  int send_buffer_bytes = 1024 * 1024;
};

// Opens a libnl generic netlink socket. Fails with a clear Error when the
// kernel has no IPVS family.
[[nodiscard]] std::unique_ptr<NetlinkTransport> make_libnl_transport(const NetlinkOptions& options);

class NetlinkBackend final : public Backend {
 public:
  // For metrics and the benchmark (messages per sendmsg).
  struct Counters {
    std::uint64_t reopens = 0;        // sockets closed after a failure and opened again
    std::uint64_t messages_sent = 0;  // netlink requests
    std::uint64_t sendmsg_calls = 0;
    std::uint64_t receive_syscalls = 0;
    std::uint64_t failed_operations = 0;  // operations apply() reported as failed
    std::uint64_t sockopt_reads = 0;      // lists answered through the socket options
  };

  // The real thing: opens the socket and resolves the family now, so a node
  // without IPVS fails at start-up with a message a person can act on.
  [[nodiscard]] static std::expected<std::unique_ptr<NetlinkBackend>, Error> open(
      NetlinkOptions options = {});

  // Over any transport (tests). The transport is opened on first use;
  // service_dumps, when given, carries the per-service destination dumps;
  // sockopt, when given, answers the reads without counters where it can.
  NetlinkBackend(std::unique_ptr<NetlinkTransport> transport, NetlinkOptions options,
                 std::unique_ptr<NetlinkTransport> service_dumps = nullptr,
                 std::optional<SockoptReader> sockopt = std::nullopt);

  [[nodiscard]] std::vector<OperationResult> apply(std::span<const Operation> operations) override;
  [[nodiscard]] std::expected<std::vector<ServiceState>, Error> list_services() override;
  [[nodiscard]] std::expected<std::vector<ServiceState>, Error> list_service_settings(
      bool ipv4_only) override;
  [[nodiscard]] std::expected<std::vector<DestinationState>, Error> list_destinations(
      const ServiceKey& service) override;
  [[nodiscard]] std::expected<std::vector<ServiceWithDestinations>, Error> list_all() override;
  [[nodiscard]] std::expected<Timeouts, Error> get_timeouts() override;
  [[nodiscard]] std::expected<void, Error> set_timeouts(const Timeouts& timeouts) override;
  [[nodiscard]] std::expected<Info, Error> get_info() override;
  [[nodiscard]] std::expected<void, Error> flush() override;

  [[nodiscard]] Counters counters() const;

 private:
  enum class Reply : std::uint8_t { kAck, kData };
  // Writes the request under the header exchange() gives it (family,
  // sequence, the socket's port).
  using Encode = std::function<void(std::vector<std::uint8_t>&, const netlink::Header&)>;
  using OnData = std::function<std::expected<void, Error>(const netlink::GenlMessage&)>;

  [[nodiscard]] std::expected<void, Error> ensure_open(NetlinkTransport& transport);
  void reopen_after(NetlinkTransport& transport, const Error& failure);
  [[nodiscard]] std::uint32_t next_sequence() { return sequence_++; }
  // Sends the pending operations in batches; fills results[i] as answers
  // arrive. A transport failure stops it and is returned; the operations
  // still unanswered are then the ones with no result.
  [[nodiscard]] std::expected<void, Error> run_batches(std::span<const Operation> operations,
                                                       std::vector<std::optional<OperationResult>>& results);
  // Sends one request and reads until its answer: an acknowledgement
  // (Reply::kAck), one data message (kData) or a whole dump ending in
  // NLMSG_DONE (dump = true). Data goes to on_data. A transport failure
  // reopens the socket and runs the exchange once more (reset is called
  // first, so on_data can start over).
  // One request whose one answer decodes into a T (the config, the info).
  template <typename T, typename EncodeFn, typename DecodeFn>
  [[nodiscard]] std::expected<T, Error> get_one(const std::string& what, EncodeFn encode, DecodeFn decode);
  [[nodiscard]] std::expected<void, Error> exchange(NetlinkTransport& transport, const std::string& what,
                                                    Reply reply, bool dump, const Encode& encode,
                                                    const OnData& on_data,
                                                    const std::function<void()>& reset);
  [[nodiscard]] std::expected<void, Error> exchange_once(NetlinkTransport& transport, const std::string& what,
                                                         Reply reply, bool dump, const Encode& encode,
                                                         const OnData& on_data, bool& transport_failed);
  [[nodiscard]] std::expected<std::vector<DestinationState>, Error> dump_destinations(
      const ServiceKey& service);
  // The socket options' answer, or nullopt for netlink's. A lasting refusal
  // (sockopt_refusal_lasts) turns them off for good.
  template <typename T>
  [[nodiscard]] std::optional<std::expected<T, Error>> through_sockopt(
      const std::function<std::expected<std::optional<T>, Error>(SockoptReader&)>& read);

  std::unique_ptr<NetlinkTransport> transport_;
  std::unique_ptr<NetlinkTransport> service_dumps_;  // null: transport_ carries them too
  std::optional<SockoptReader> sockopt_;             // none: netlink answers everything
  NetlinkOptions options_;
  Counters counters_;
  std::uint32_t sequence_;
  std::vector<std::uint8_t> buffer_;
};

}  // namespace kipvs::ipvs
