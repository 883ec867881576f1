#pragma once
// The IPVS generic netlink wire format as pure functions over bytes: no
// sockets, no libnl. Encoders append one complete netlink message (nlmsghdr +
// genlmsghdr + attributes) to a buffer, so many requests can share one
// sendmsg. Decoders validate every length and return an Error for anything
// malformed or truncated; they never read outside the span they are given.
//
// The layout follows linux/ip_vs.h and the kernel's parser in
// net/netfilter/ipvs/ip_vs_ctl.c; kernel quirks are commented where handled in
// netlink_codec.cc. Answer encoders (what the kernel sends) exist for tests,
// fuzz seeds and fake kernels.

#include <cstddef>
#include <cstdint>
#include <expected>
#include <optional>
#include <span>
#include <vector>

#include "ipvs/backend.h"
#include "ipvs/model.h"

namespace kipvs::ipvs::netlink {

// IPVS_CMD_* (linux/ip_vs.h).
enum class Command : std::uint8_t {
  kNewService = 1,
  kSetService = 2,
  kDelService = 3,
  kGetService = 4,
  kNewDest = 5,
  kSetDest = 6,
  kDelDest = 7,
  kGetDest = 8,
  kSetConfig = 12,
  kGetConfig = 13,
  kSetInfo = 14,
  kGetInfo = 15,
  kFlush = 17,
};

// Netlink header values used by kipvs (linux/netlink.h).
inline constexpr std::uint16_t kMsgNoop = 1;
inline constexpr std::uint16_t kMsgError = 2;
inline constexpr std::uint16_t kMsgDone = 3;
inline constexpr std::uint16_t kMsgOverrun = 4;
inline constexpr std::uint16_t kFlagRequest = 0x001;
inline constexpr std::uint16_t kFlagMulti = 0x002;
inline constexpr std::uint16_t kFlagAck = 0x004;
inline constexpr std::uint16_t kFlagDump = 0x300;
inline constexpr std::size_t kHeaderSize = 16;     // sizeof(struct nlmsghdr)
inline constexpr std::size_t kGenlHeaderSize = 4;  // sizeof(struct genlmsghdr)

// The fields of a request's nlmsghdr that the caller chooses.
struct Header {
  std::uint16_t family_id = 0;  // the resolved "IPVS" generic netlink family
  std::uint32_t sequence = 0;
  std::uint16_t flags = kFlagRequest;  // NLM_F_*; encoders add NLM_F_DUMP where needed
  std::uint32_t port_id = 0;
};

// ---- Requests -------------------------------------------------------------

// NEW_SERVICE / SET_SERVICE carry the full service; DEL_SERVICE and
// GET_SERVICE carry only its identity.
void encode_service_request(std::vector<std::uint8_t>& out, const Header& header, Command command,
                            const Service& service);
// NEW_DEST / SET_DEST carry the full destination; DEL_DEST only its identity.
// All three nest the service's identity too.
void encode_destination_request(std::vector<std::uint8_t>& out, const Header& header, Command command,
                                const ServiceKey& service, const Destination& destination);
// The request for one backend operation.
void encode_operation(std::vector<std::uint8_t>& out, const Header& header, const Operation& operation);
void encode_dump_services(std::vector<std::uint8_t>& out, const Header& header);
void encode_dump_destinations(std::vector<std::uint8_t>& out, const Header& header,
                              const ServiceKey& service);
void encode_get_config(std::vector<std::uint8_t>& out, const Header& header);
void encode_set_config(std::vector<std::uint8_t>& out, const Header& header, const Timeouts& timeouts);
void encode_get_info(std::vector<std::uint8_t>& out, const Header& header);
void encode_flush(std::vector<std::uint8_t>& out, const Header& header);
// ORs flags into the nlmsghdr of the request encoded at `offset` of out.
void add_flags(std::vector<std::uint8_t>& out, std::size_t offset, std::uint16_t flags);

// ---- Answers (what the kernel sends) --------------------------------------

// Which statistics nests an answer carries: kernels since 4.x send both.
enum class StatsAttributes : std::uint8_t { kBoth, kOnly32, kOnly64, kNone };

void encode_service_answer(std::vector<std::uint8_t>& out, const Header& header, const ServiceState& service,
                           StatsAttributes stats = StatsAttributes::kBoth);
void encode_destination_answer(std::vector<std::uint8_t>& out, const Header& header,
                               const DestinationState& destination,
                               StatsAttributes stats = StatsAttributes::kBoth);
void encode_config_answer(std::vector<std::uint8_t>& out, const Header& header, const Timeouts& timeouts);
void encode_info_answer(std::vector<std::uint8_t>& out, const Header& header, const Info& info);
// NLMSG_ERROR answering `request` (its header is echoed); error is 0 for an
// acknowledgement or a positive errno.
void encode_ack(std::vector<std::uint8_t>& out, const Header& request, int error);
// NLMSG_DONE ending a dump; error is 0 or a positive errno.
void encode_done(std::vector<std::uint8_t>& out, const Header& request, int error = 0);

// ---- Decoding -------------------------------------------------------------

// One netlink message inside a received buffer; payload excludes nlmsghdr.
struct Message {
  std::uint16_t type = 0;
  std::uint16_t flags = 0;
  std::uint32_t sequence = 0;
  std::uint32_t port_id = 0;
  std::span<const std::uint8_t> payload;
};

// Walks the messages of one received datagram (or a concatenation of them).
class MessageReader {
 public:
  explicit MessageReader(std::span<const std::uint8_t> buffer) : rest_(buffer) {}
  // The next message, std::nullopt at the end, or an Error if the buffer holds
  // a truncated or inconsistent header (the reader then stays at the end).
  [[nodiscard]] std::expected<std::optional<Message>, Error> next();

 private:
  std::span<const std::uint8_t> rest_;
};

// NLMSG_ERROR: error 0 is an acknowledgement, otherwise a positive errno.
// sequence is the echoed request's sequence number.
struct Ack {
  std::uint32_t sequence = 0;
  int error = 0;
};
[[nodiscard]] std::expected<Ack, Error> decode_ack(const Message& message);
// NLMSG_DONE: 0, or the positive errno a dump ended with.
[[nodiscard]] std::expected<int, Error> decode_done(const Message& message);

// A generic netlink message of the IPVS family: command plus attributes.
struct GenlMessage {
  Command command = Command::kGetInfo;
  std::span<const std::uint8_t> attributes;
};
// Checks the message type is family_id and splits off the genlmsghdr.
[[nodiscard]] std::expected<GenlMessage, Error> decode_genl(const Message& message, std::uint16_t family_id);

// A service answer (or a NEW/SET_SERVICE request): the full service.
[[nodiscard]] std::expected<ServiceState, Error> decode_service(const GenlMessage& message);
// Only the identity of the nested service (any request that names one).
[[nodiscard]] std::expected<ServiceKey, Error> decode_service_key(const GenlMessage& message);
// A destination answer (or NEW/SET_DEST request). The address family is
// service_family when the kernel omits IPVS_DEST_ATTR_ADDR_FAMILY (< 4.4).
[[nodiscard]] std::expected<DestinationState, Error> decode_destination(const GenlMessage& message,
                                                                        Family service_family);
// Only the identity of the nested destination (DEL_DEST).
[[nodiscard]] std::expected<DestinationKey, Error> decode_destination_key(const GenlMessage& message,
                                                                          Family service_family);
[[nodiscard]] std::expected<Timeouts, Error> decode_config(const GenlMessage& message);
[[nodiscard]] std::expected<Info, Error> decode_info(const GenlMessage& message);

}  // namespace kipvs::ipvs::netlink
