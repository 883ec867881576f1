#include "ipvs/netlink_backend.h"

#include <linux/netlink.h>
#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <set>
#include <system_error>

#include "ipvs/netlink_codec.h"
#include "ipvs/netlink_socket.h"

namespace kipvs::ipvs {
namespace {

namespace nl = netlink;

Error system_error(int code, const std::string& what) {
  return Error{code, what + ": " + std::generic_category().message(code)};
}

// Roughly what one acknowledgement costs in the receive buffer (skb
// truesize), used to size batches to the buffer the kernel granted.
constexpr std::size_t kAckBufferCost = 1024;

// Reads one datagram and hands its messages to `visit` in order, until one
// makes it answer true (the exchange is over: returns true) or the datagram
// ends (returns false). An overrun means the kernel dropped answers.
// transport_failed says whether a failure was the socket's (worth a new
// socket) rather than an answer that would come again.
template <typename Visit>
std::expected<bool, Error> read_datagram(NetlinkTransport& transport, Visit&& visit, bool& transport_failed) {
  transport_failed = true;
  auto datagram = transport.receive();
  if (!datagram) return std::unexpected(datagram.error());
  transport_failed = false;
  nl::MessageReader reader(*datagram);
  for (;;) {
    auto message = reader.next();
    if (!message) return std::unexpected(message.error());
    if (!message->has_value()) return false;
    const nl::Message& m = **message;
    if (m.type == nl::kMsgOverrun) {
      transport_failed = true;
      return std::unexpected(system_error(ENOBUFS, "netlink overrun"));
    }
    std::expected<bool, Error> done = visit(m);
    if (!done || *done) return done;
  }
}

// ---- libnl transport ---------------------------------------------------------------

class LibnlTransport final : public NetlinkTransport {
 public:
  // datagram_bytes: how much each read takes (see read_one_page()).
  LibnlTransport(NetlinkOptions options, std::size_t datagram_bytes)
      : options_(options), datagram_bytes_(datagram_bytes) {}
  ~LibnlTransport() override { close(); }
  LibnlTransport(const LibnlTransport&) = delete;
  LibnlTransport& operator=(const LibnlTransport&) = delete;

  std::expected<void, Error> open() override {
    close();
    socket_ = nl_socket_alloc();
    if (socket_ == nullptr) return std::unexpected(system_error(ENOMEM, "netlink socket"));
    if (const int rc = genl_connect(socket_); rc < 0) {
      close();
      return std::unexpected(Error{EIO, std::string("generic netlink connect: ") + nl_geterror(rc)});
    }
    // Resolving the family is the one libnl round trip, on a socket of its
    // own: libnl reads 16 KiB at a time, and the kernel would size every
    // later dump datagram of this socket by that read (see
    // one_page_reads()). Everything on this one is raw sendmsg/recvmmsg.
    const int family = resolve_family();
    if (family < 0) {
      close();
      return std::unexpected(Error{ENOENT, std::string("IPVS generic netlink family not found (") +
                                               nl_geterror(family) +
                                               "): is the ip_vs kernel module loaded?"});
    }
    family_id_ = static_cast<std::uint16_t>(family);
    const int fd = nl_socket_get_fd(socket_);

    if (auto bounded = set_socket_timeouts(fd, options_.timeout, "netlink"); !bounded) {
      close();
      return std::unexpected(bounded.error());
    }
    // A batch's acknowledgements all land in the receive buffer before we
    // read any; past its size the kernel drops them. FORCE ignores rmem_max.
    const int rcv = options_.receive_buffer_bytes;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof rcv) != 0) {
      (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
    }
    const int snd = options_.send_buffer_bytes;
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &snd, sizeof snd) != 0) {
      (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &snd, sizeof snd);
    }
    // Error acknowledgements without a copy of the request (Linux 4.3+;
    // older kernels refuse the option, which only costs buffer space).
    const int one = 1;
    (void)setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);

    if (auto mapped = map_buffers(); !mapped) {
      close();
      return std::unexpected(mapped.error());
    }
    lengths_.assign(kDatagrams, 0);
    next_ = count_ = 0;
    return {};
  }

  void close() override {
    unmap_buffers();
    if (socket_ != nullptr) nl_socket_free(socket_);
    socket_ = nullptr;
    next_ = count_ = 0;
  }

  bool is_open() const override { return socket_ != nullptr; }
  std::uint16_t family_id() const override { return family_id_; }
  std::uint32_t port_id() const override {
    return socket_ == nullptr ? 0 : nl_socket_get_local_port(socket_);
  }

  // What the kernel granted, for sizing batches.
  int receive_buffer() const {
    int size = 0;
    socklen_t len = sizeof size;
    if (socket_ == nullptr ||
        getsockopt(nl_socket_get_fd(socket_), SOL_SOCKET, SO_RCVBUF, &size, &len) != 0) {
      return 0;
    }
    return size;
  }

  std::expected<void, Error> send(std::span<const std::uint8_t> messages) override {
    if (socket_ == nullptr) return std::unexpected(system_error(ENOTCONN, "netlink send"));
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    iovec iov{const_cast<std::uint8_t*>(messages.data()), messages.size()};
    msghdr msg{};
    msg.msg_name = &kernel;
    msg.msg_namelen = sizeof kernel;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    for (;;) {
      const ssize_t sent = sendmsg(nl_socket_get_fd(socket_), &msg, 0);
      if (sent >= 0) {
        if (static_cast<std::size_t>(sent) != messages.size()) {
          return std::unexpected(system_error(EMSGSIZE, "netlink send (short write)"));
        }
        return {};
      }
      if (errno == EINTR) continue;
      return std::unexpected(system_error(errno, "netlink send"));
    }
  }

  std::expected<std::span<const std::uint8_t>, Error> receive() override {
    if (socket_ == nullptr) return std::unexpected(system_error(ENOTCONN, "netlink receive"));
    if (next_ < count_) {
      const std::size_t i = next_++;
      return std::span<const std::uint8_t>(buffer(i), lengths_[i]);
    }
    // One recvmmsg takes every datagram already queued: a batch's
    // acknowledgements, or a dump chunk and the NLMSG_DONE that reading it
    // makes the kernel produce.
    std::array<mmsghdr, kDatagrams> headers{};
    std::array<iovec, kDatagrams> iovs{};
    for (std::size_t i = 0; i < kDatagrams; ++i) {
      iovs[i] = iovec{buffer(i), datagram_bytes_};
      headers[i].msg_hdr.msg_iov = &iovs[i];
      headers[i].msg_hdr.msg_iovlen = 1;
    }
    int got = 0;
    for (;;) {
      ++receive_syscalls_;
      got = recvmmsg(nl_socket_get_fd(socket_), headers.data(), kDatagrams, MSG_WAITFORONE, nullptr);
      if (got >= 0) break;
      if (errno == EINTR) continue;
      // EAGAIN is SO_RCVTIMEO expiring; ENOBUFS means the kernel dropped
      // answers. Either way the caller reopens.
      const int code = errno == EAGAIN ? ETIMEDOUT : errno;
      return std::unexpected(system_error(code, "netlink receive"));
    }
    if (got == 0) return std::unexpected(system_error(ECONNRESET, "netlink receive"));
    for (int i = 0; i < got; ++i) {
      if ((headers[i].msg_hdr.msg_flags & MSG_TRUNC) != 0) {
        return std::unexpected(system_error(EMSGSIZE, "netlink receive (truncated datagram)"));
      }
      lengths_[static_cast<std::size_t>(i)] = headers[i].msg_len;
    }
    count_ = static_cast<std::size_t>(got);
    next_ = 1;
    return std::span<const std::uint8_t>(buffer(0), lengths_[0]);
  }

  std::uint64_t receive_syscalls() const override { return receive_syscalls_; }

  void release_buffers() override {
    if (buffers_ != nullptr) (void)madvise(buffers_, kDatagrams * datagram_bytes_, MADV_DONTNEED);
  }

 private:
  static int resolve_family() {
    nl_sock* resolver = nl_socket_alloc();
    if (resolver == nullptr) return -NLE_NOMEM;
    int family = genl_connect(resolver);
    if (family == 0) family = genl_ctrl_resolve(resolver, "IPVS");
    nl_socket_free(resolver);
    return family;
  }

  // The read buffers: one mapping, so that only the pages the kernel wrote
  // take memory (a dump's datagram is at most 32 KiB of its 64, an
  // acknowledgement a few bytes), and release_buffers() can return them.
  std::expected<void, Error> map_buffers() {
    unmap_buffers();
    void* mapped = mmap(nullptr, kDatagrams * datagram_bytes_, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mapped == MAP_FAILED) return std::unexpected(system_error(errno, "netlink read buffers"));
    buffers_ = static_cast<std::uint8_t*>(mapped);
    return {};
  }
  void unmap_buffers() {
    if (buffers_ != nullptr) munmap(buffers_, kDatagrams * datagram_bytes_);
    buffers_ = nullptr;
  }
  std::uint8_t* buffer(std::size_t i) const { return buffers_ + i * datagram_bytes_; }

  static constexpr std::size_t kDatagrams = 32;

  NetlinkOptions options_;
  std::size_t datagram_bytes_;
  nl_sock* socket_ = nullptr;
  std::uint16_t family_id_ = 0;
  std::uint8_t* buffers_ = nullptr;  // kDatagrams x datagram_bytes_, mapped
  std::vector<std::size_t> lengths_;
  std::size_t next_ = 0;
  std::size_t count_ = 0;
  std::uint64_t receive_syscalls_ = 0;
};

}  // namespace

// The kernel caps a dump's datagram at 32 KiB; room for twice that.
constexpr std::size_t kLargeReads = 64 * 1024;

// The kernel sizes each datagram of a dump by the largest read the socket
// has asked for (up to 32 KiB), and with init_on_alloc (Debian's default)
// zeroes all of it, twice per dump (the data, then NLMSG_DONE): at 10,000
// Services a resync's per-service dumps zeroed 1 GiB, a fifth of its CPU
// in an emulated guest. Reads of one page keep them at one page: a dump's
// datagram is never larger than the read or NLMSG_GOODSIZE (a page, at most
// 8 KiB). The service list stays on large reads: the kernel resumes that
// dump by walking its hash table from the start, once per datagram.
std::size_t one_page_reads() {
  const long page = sysconf(_SC_PAGESIZE);
  return std::clamp<std::size_t>(page > 0 ? static_cast<std::size_t>(page) : 4096, 4096, 8192);
}

std::unique_ptr<NetlinkTransport> make_libnl_transport(const NetlinkOptions& options) {
  return std::make_unique<LibnlTransport>(options, kLargeReads);
}

// ---- NetlinkBackend ----------------------------------------------------------------

std::expected<std::unique_ptr<NetlinkBackend>, Error> NetlinkBackend::open(NetlinkOptions options) {
  auto transport = std::make_unique<LibnlTransport>(options, kLargeReads);
  if (auto opened = transport->open(); !opened) return std::unexpected(opened.error());
  // Fit a batch's acknowledgements into the buffer the kernel granted.
  const auto granted = static_cast<std::size_t>(std::max(transport->receive_buffer(), 0));
  options.max_batch_messages =
      std::clamp<std::size_t>(granted / kAckBufferCost, 1, options.max_batch_messages);
  // Without the socket option (a kernel built without it) netlink does all.
  auto sockopt = SockoptReader::open();
  return std::make_unique<NetlinkBackend>(
      std::move(transport), options, std::make_unique<LibnlTransport>(options, one_page_reads()),
      sockopt ? std::optional<SockoptReader>(std::move(*sockopt)) : std::nullopt);
}

NetlinkBackend::NetlinkBackend(std::unique_ptr<NetlinkTransport> transport, NetlinkOptions options,
                               std::unique_ptr<NetlinkTransport> service_dumps,
                               std::optional<SockoptReader> sockopt)
    : transport_(std::move(transport)),
      service_dumps_(std::move(service_dumps)),
      sockopt_(std::move(sockopt)),
      options_(options),
      // Any start works; a time-based one keeps restarts from reusing the
      // previous process's numbers.
      sequence_(static_cast<std::uint32_t>(std::time(nullptr))) {}

NetlinkBackend::Counters NetlinkBackend::counters() const {
  Counters counters = counters_;
  counters.receive_syscalls =
      transport_->receive_syscalls() + (service_dumps_ ? service_dumps_->receive_syscalls() : 0);
  return counters;
}

std::expected<void, Error> NetlinkBackend::ensure_open(NetlinkTransport& transport) {
  if (transport.is_open()) return {};
  return transport.open();
}

void NetlinkBackend::reopen_after(NetlinkTransport& transport, const Error& /*failure*/) {
  // Answers still queued on the old socket belong to requests we no longer
  // wait for; a new socket starts clean.
  transport.close();
  ++counters_.reopens;
}

std::expected<void, Error> NetlinkBackend::run_batches(std::span<const Operation> operations,
                                                       std::vector<std::optional<OperationResult>>& results) {
  struct Pending {
    std::uint32_t sequence;
    std::size_t index;
  };
  std::vector<Pending> batch;
  std::size_t next = 0;
  auto advance = [&] {
    while (next < operations.size() && results[next].has_value()) ++next;
  };
  advance();
  while (next < operations.size()) {
    if (auto opened = ensure_open(*transport_); !opened) return std::unexpected(opened.error());
    buffer_.clear();
    batch.clear();
    const std::uint16_t family = transport_->family_id();
    const std::uint32_t port = transport_->port_id();
    const std::uint16_t flags = nl::kFlagRequest | (options_.acknowledge_each ? nl::kFlagAck : 0);
    std::size_t last_start = 0;  // where the batch's last request begins in buffer_
    while (next < operations.size() && batch.size() < options_.max_batch_messages) {
      const std::size_t before = buffer_.size();
      const std::uint32_t sequence = next_sequence();
      nl::encode_operation(buffer_, nl::Header{family, sequence, flags, port}, operations[next]);
      if (buffer_.size() > options_.batch_bytes && !batch.empty()) {
        buffer_.resize(before);  // starts the next batch instead
        break;
      }
      last_start = before;
      batch.push_back(Pending{sequence, next});
      ++next;
      advance();
    }
    if (!options_.acknowledge_each) nl::add_flags(buffer_, last_start, nl::kFlagAck);

    if (auto sent = transport_->send(buffer_); !sent) return std::unexpected(sent.error());
    ++counters_.sendmsg_calls;
    counters_.messages_sent += batch.size();

    // A request that carries NLM_F_ACK gets exactly one NLMSG_ERROR (error 0
    // for success); one without gets an answer only when it failed. The
    // kernel handles and answers a batch in order, so once the last request
    // is answered every request without an answer succeeded. Answers are
    // matched by sequence number.
    const std::uint32_t first = batch.front().sequence;
    std::size_t unanswered = batch.size();
    bool last_answered = false;
    const auto record_ack = [&](const nl::Message& m) -> std::expected<bool, Error> {
      if (m.type != nl::kMsgError) return false;  // NOOP or a stray answer
      auto ack = nl::decode_ack(m);
      if (!ack) return std::unexpected(ack.error());
      const std::uint32_t offset = ack->sequence - first;  // wraps like the sequence does
      if (offset >= batch.size()) return false;            // from an earlier exchange
      const std::size_t index = batch[offset].index;
      if (results[index].has_value()) return false;
      if (ack->error == 0) {
        results[index] = OperationResult{};
      } else {
        results[index] = std::unexpected(operation_error(operations[index], ack->error));
      }
      --unanswered;
      last_answered |= offset + 1 == batch.size();
      return false;  // the rest of the datagram may hold more acks
    };
    while (unanswered > 0 && !last_answered) {
      bool transport_failed = false;  // apply() retries on a new socket either way
      if (auto read = read_datagram(*transport_, record_ack, transport_failed); !read)
        return std::unexpected(read.error());
    }
    for (const Pending& pending : batch) {
      if (!results[pending.index].has_value()) results[pending.index] = OperationResult{};
    }
  }
  return {};
}

std::vector<OperationResult> NetlinkBackend::apply(std::span<const Operation> operations) {
  std::vector<std::optional<OperationResult>> results(operations.size());
  auto outcome = run_batches(operations, results);
  if (!outcome) {
    // Retry once what was not answered, on a new socket. An answer lost with
    // the old socket may mean the kernel applied the request: its retry then
    // reports EEXIST/ENOENT, which the reconciler treats as any other.
    reopen_after(*transport_, outcome.error());
    outcome = run_batches(operations, results);
    if (!outcome) reopen_after(*transport_, outcome.error());
  }
  std::vector<OperationResult> out;
  out.reserve(operations.size());
  for (std::size_t i = 0; i < operations.size(); ++i) {
    if (results[i].has_value()) {
      out.push_back(std::move(*results[i]));
    } else {
      out.emplace_back(std::unexpected(
          Error{outcome.error().code, describe(operations[i]) + ": " + outcome.error().message}));
    }
    if (!out.back()) ++counters_.failed_operations;
  }
  return out;
}

std::expected<void, Error> NetlinkBackend::exchange_once(NetlinkTransport& transport, const std::string& what,
                                                         Reply reply, bool dump, const Encode& encode,
                                                         const OnData& on_data, bool& transport_failed) {
  // Only failures of the socket itself are worth a new socket; an error the
  // kernel answered with, or an answer we cannot decode, would come again.
  transport_failed = true;
  if (auto opened = ensure_open(transport); !opened) return std::unexpected(opened.error());
  const std::uint32_t sequence = next_sequence();
  buffer_.clear();
  encode(buffer_, nl::Header{transport.family_id(), sequence, nl::kFlagRequest, transport.port_id()});
  if (auto sent = transport.send(buffer_); !sent) return std::unexpected(sent.error());
  ++counters_.sendmsg_calls;
  ++counters_.messages_sent;
  const std::uint16_t family = transport.family_id();
  // True when the exchange is over.
  const auto answer = [&](const nl::Message& m) -> std::expected<bool, Error> {
    if (m.sequence != sequence) return false;  // left over from an earlier exchange
    if (m.type == nl::kMsgError) {
      auto ack = nl::decode_ack(m);
      if (!ack) return std::unexpected(ack.error());
      if (ack->error != 0) return std::unexpected(system_error(ack->error, what));
      return reply == Reply::kAck && !dump;
    }
    if (m.type == nl::kMsgDone) {
      auto done = nl::decode_done(m);
      if (!done) return std::unexpected(done.error());
      // A dump can end in an error of its own (e.g. EMSGSIZE).
      if (*done != 0) return std::unexpected(system_error(*done, what));
      return true;
    }
    if (m.type == nl::kMsgNoop) return false;
    auto genl = nl::decode_genl(m, family);
    if (!genl) return std::unexpected(genl.error());
    if (auto handled = on_data(*genl); !handled) return std::unexpected(handled.error());
    return !dump && reply == Reply::kData;
  };
  for (;;) {
    auto read = read_datagram(transport, answer, transport_failed);
    if (!read) return std::unexpected(read.error());
    if (*read) return {};
  }
}

std::expected<void, Error> NetlinkBackend::exchange(NetlinkTransport& transport, const std::string& what,
                                                    Reply reply, bool dump, const Encode& encode,
                                                    const OnData& on_data,
                                                    const std::function<void()>& reset) {
  bool transport_failed = false;
  auto outcome = exchange_once(transport, what, reply, dump, encode, on_data, transport_failed);
  if (outcome || !transport_failed) return outcome;
  reopen_after(transport, outcome.error());
  reset();
  outcome = exchange_once(transport, what, reply, dump, encode, on_data, transport_failed);
  if (!outcome && transport_failed) reopen_after(transport, outcome.error());
  if (!outcome && outcome.error().message.find(what) == std::string::npos) {
    return std::unexpected(Error{outcome.error().code, what + ": " + outcome.error().message});
  }
  return outcome;
}

namespace {

// The kernel's service dump resumes by position in its global hash table,
// which every network namespace shares: a service added elsewhere between two
// datagrams shifts ours past the resume point and it is dumped again. Keep
// the last copy (its counters are the newer). The same shift can also skip a
// service; the reconciler's re-read on EEXIST repairs that.
void drop_repeated_services(std::vector<ServiceState>& services) {
  std::set<ServiceKey> seen;
  std::vector<bool> keep(services.size(), false);
  std::size_t kept = 0;
  for (std::size_t i = services.size(); i-- > 0;) {
    if (seen.insert(services[i].service.key).second) {
      keep[i] = true;
      ++kept;
    }
  }
  if (kept == services.size()) return;
  std::vector<ServiceState> unique;
  unique.reserve(kept);
  for (std::size_t i = 0; i < services.size(); ++i) {
    if (keep[i]) unique.push_back(std::move(services[i]));
  }
  services = std::move(unique);
}

}  // namespace

std::expected<std::vector<ServiceState>, Error> NetlinkBackend::list_services() {
  std::vector<ServiceState> services;
  auto outcome = exchange(
      *transport_, "list services", Reply::kData, true,
      [&](std::vector<std::uint8_t>& out, const nl::Header& header) {
        nl::encode_dump_services(out, header);
      },
      [&](const nl::GenlMessage& message) -> std::expected<void, Error> {
        auto service = nl::decode_service(message);
        if (!service) return std::unexpected(service.error());
        services.push_back(std::move(*service));
        return {};
      },
      [&] { services.clear(); });
  transport_->release_buffers();
  if (!outcome) return std::unexpected(outcome.error());
  drop_repeated_services(services);
  return services;
}

std::expected<std::vector<DestinationState>, Error> NetlinkBackend::dump_destinations(
    const ServiceKey& service) {
  std::vector<DestinationState> destinations;
  auto outcome = exchange(
      service_dumps_ ? *service_dumps_ : *transport_, "list destinations of " + to_string(service),
      Reply::kData, true,
      [&](std::vector<std::uint8_t>& out, const nl::Header& header) {
        nl::encode_dump_destinations(out, header, service);
      },
      [&](const nl::GenlMessage& message) -> std::expected<void, Error> {
        auto destination = nl::decode_destination(message, service.family);
        if (!destination) return std::unexpected(destination.error());
        destinations.push_back(std::move(*destination));
        return {};
      },
      [&] { destinations.clear(); });
  if (!outcome) return std::unexpected(outcome.error());
  // A whole-table dump keeps 180,000 of these at 10,000 Services: without
  // the slack that growth by doubling leaves, a third less.
  destinations.shrink_to_fit();
  return destinations;
}

template <typename T>
std::optional<std::expected<T, Error>> NetlinkBackend::through_sockopt(
    const std::function<std::expected<std::optional<T>, Error>(SockoptReader&)>& read) {
  if (!sockopt_) return std::nullopt;
  auto answer = read(*sockopt_);
  if (answer && *answer) {
    ++counters_.sockopt_reads;
    return std::expected<T, Error>(std::move(**answer));
  }
  if (!answer) {
    if (answer.error().code == ESRCH) return std::expected<T, Error>(std::unexpected(answer.error()));
    if (sockopt_refusal_lasts(answer.error().code)) sockopt_.reset();  // netlink from now on
  }
  return std::nullopt;
}

std::expected<std::vector<ServiceState>, Error> NetlinkBackend::list_service_settings(bool ipv4_only) {
  if (!ipv4_only) return list_services();
  if (auto answer = through_sockopt<std::vector<ServiceState>>(
          [](SockoptReader& reader) { return reader.ipv4_services(); })) {
    return std::move(*answer);
  }
  return list_services();
}

std::expected<std::vector<DestinationState>, Error> NetlinkBackend::list_destinations(
    const ServiceKey& service) {
  if (auto answer = through_sockopt<std::vector<DestinationState>>(
          [&service](SockoptReader& reader) { return reader.destinations(service); })) {
    return std::move(*answer);
  }
  return dump_destinations(service);
}

std::expected<std::vector<ServiceWithDestinations>, Error> NetlinkBackend::list_all() {
  auto services = list_services();
  if (!services) return std::unexpected(services.error());
  std::vector<ServiceWithDestinations> all;
  all.reserve(services->size());
  for (ServiceState& service : *services) {
    auto destinations = dump_destinations(service.service.key);
    if (!destinations) return std::unexpected(destinations.error());
    all.push_back(ServiceWithDestinations{std::move(service), std::move(*destinations)});
  }
  (service_dumps_ ? *service_dumps_ : *transport_).release_buffers();
  return all;
}

template <typename T, typename EncodeFn, typename DecodeFn>
std::expected<T, Error> NetlinkBackend::get_one(const std::string& what, EncodeFn encode, DecodeFn decode) {
  T value{};
  auto outcome = exchange(
      *transport_, what, Reply::kData, false,
      [&](std::vector<std::uint8_t>& out, const nl::Header& header) { encode(out, header); },
      [&](const nl::GenlMessage& message) -> std::expected<void, Error> {
        auto decoded = decode(message);
        if (!decoded) return std::unexpected(decoded.error());
        value = *decoded;
        return {};
      },
      [] {});
  if (!outcome) return std::unexpected(outcome.error());
  return value;
}

std::expected<Timeouts, Error> NetlinkBackend::get_timeouts() {
  return get_one<Timeouts>("get timeouts", nl::encode_get_config,
                           [](const nl::GenlMessage& message) { return nl::decode_config(message); });
}

std::expected<void, Error> NetlinkBackend::set_timeouts(const Timeouts& timeouts) {
  return exchange(
      *transport_, "set timeouts", Reply::kAck, false,
      [&](std::vector<std::uint8_t>& out, nl::Header header) {
        header.flags |= nl::kFlagAck;
        nl::encode_set_config(out, header, timeouts);
      },
      [](const nl::GenlMessage&) -> std::expected<void, Error> { return {}; }, [] {});
}

std::expected<Info, Error> NetlinkBackend::get_info() {
  return get_one<Info>("get info", nl::encode_get_info,
                       [](const nl::GenlMessage& message) { return nl::decode_info(message); });
}

std::expected<void, Error> NetlinkBackend::flush() {
  return exchange(
      *transport_, "flush", Reply::kAck, false,
      [&](std::vector<std::uint8_t>& out, nl::Header header) {
        header.flags |= nl::kFlagAck;
        nl::encode_flush(out, header);
      },
      [](const nl::GenlMessage&) -> std::expected<void, Error> { return {}; }, [] {});
}

}  // namespace kipvs::ipvs
