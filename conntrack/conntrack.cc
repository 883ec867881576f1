#include "conntrack/conntrack.h"

#include <netinet/in.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <string>

#include <arpa/inet.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <netlink/attr.h>
#include <netlink/handlers.h>
#include <netlink/msg.h>
#include <netlink/netfilter/ct.h>
#include <netlink/netfilter/nfnl.h>
#include <netlink/netlink.h>

#include "ipvs/netlink_socket.h"

namespace kipvs::conntrack {

namespace {

std::optional<ipvs::Address> address_of(const nl_addr* address) {
  if (address == nullptr) return std::nullopt;
  ipvs::Address out;
  const auto length = nl_addr_get_len(address);
  if (length == 4) {
    out.family = ipvs::Family::kIPv4;
  } else if (length == 16) {
    out.family = ipvs::Family::kIPv6;
  } else {
    return std::nullopt;
  }
  std::memcpy(out.bytes.data(), nl_addr_get_binary_addr(address), length);
  return out;
}

Error nl_error(const std::string& what, int code) {
  return Error{EIO, what + ": " + nl_geterror(code)};
}

}  // namespace

struct NetlinkConntrackBackend::Socket {
  nl_sock* sock = nullptr;
  ~Socket() {
    if (sock != nullptr) nl_socket_free(sock);
  }
};

NetlinkConntrackBackend::NetlinkConntrackBackend(std::unique_ptr<Socket> socket)
    : socket_(std::move(socket)) {}
NetlinkConntrackBackend::~NetlinkConntrackBackend() = default;

std::expected<std::unique_ptr<NetlinkConntrackBackend>, Error> NetlinkConntrackBackend::open() {
  auto socket = std::make_unique<Socket>();
  socket->sock = nl_socket_alloc();
  if (socket->sock == nullptr) return std::unexpected(Error{ENOMEM, "cannot allocate a netlink socket"});
  if (int rc = nfnl_connect(socket->sock); rc < 0) return std::unexpected(nl_error("ctnetlink connect", rc));
  if (auto bounded =
          ipvs::set_socket_timeouts(nl_socket_get_fd(socket->sock), ipvs::kNetlinkTimeout, "ctnetlink");
      !bounded)
    return std::unexpected(bounded.error());
  return std::unique_ptr<NetlinkConntrackBackend>(new NetlinkConntrackBackend(std::move(socket)));
}

std::chrono::milliseconds NetlinkConntrackBackend::receive_timeout() const {
  return ipvs::receive_timeout(nl_socket_get_fd(socket_->sock));
}

namespace {

// The kernel's dump filter flags (net/netfilter/nf_internals.h: kernel ABI
// since Linux 5.8, not in the uapi headers).
constexpr std::uint32_t kFilterIpDst = 1U << 1;
constexpr std::uint32_t kFilterProtoNum = 1U << 3;
constexpr std::uint32_t kFilterProtoDstPort = 1U << 5;

struct MsgDeleter {
  void operator()(nl_msg* msg) const { nlmsg_free(msg); }
};
struct CbDeleter {
  void operator()(nl_cb* cb) const { nl_cb_put(cb); }
};
struct CtPut {
  void operator()(nfnl_ct* ct) const { nfnl_ct_put(ct); }
};
using CtRef = std::unique_ptr<nfnl_ct, CtPut>;

// A dump request for the UDP entries of one family, and when `to` is given
// only those sent to that address and port. Kernels before 5.8 ignore the
// filter and send every entry: the caller checks each entry either way.
std::unique_ptr<nl_msg, MsgDeleter> udp_dump_request(ipvs::Family family,
                                                     const std::optional<UdpEndpoint>& to) {
  const int af = family == ipvs::Family::kIPv6 ? AF_INET6 : AF_INET;
  std::unique_ptr<nl_msg, MsgDeleter> msg(nfnlmsg_alloc_simple(NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_GET,
                                                               NLM_F_DUMP, static_cast<std::uint8_t>(af), 0));
  if (!msg) return nullptr;
  nl_msg* m = msg.get();
  auto* tuple = nla_nest_start(m, CTA_TUPLE_ORIG);
  if (tuple == nullptr) return nullptr;
  if (to) {
    auto* ip = nla_nest_start(m, CTA_TUPLE_IP);
    if (ip == nullptr) return nullptr;
    const int length = family == ipvs::Family::kIPv6 ? 16 : 4;
    if (nla_put(m, family == ipvs::Family::kIPv6 ? CTA_IP_V6_DST : CTA_IP_V4_DST, length,
                to->address.bytes.data()) < 0)
      return nullptr;
    nla_nest_end(m, ip);
  }
  auto* proto = nla_nest_start(m, CTA_TUPLE_PROTO);
  if (proto == nullptr || nla_put_u8(m, CTA_PROTO_NUM, IPPROTO_UDP) < 0) return nullptr;
  if (to && nla_put_u16(m, CTA_PROTO_DST_PORT, htons(to->port)) < 0) return nullptr;
  nla_nest_end(m, proto);
  nla_nest_end(m, tuple);
  auto* filter = nla_nest_start(m, CTA_FILTER);
  if (filter == nullptr) return nullptr;
  const std::uint32_t flags = kFilterProtoNum | (to ? kFilterIpDst | kFilterProtoDstPort : 0);
  if (nla_put_u32(m, CTA_FILTER_ORIG_FLAGS, flags) < 0 || nla_put_u32(m, CTA_FILTER_REPLY_FLAGS, 0) < 0)
    return nullptr;
  nla_nest_end(m, filter);
  return msg;
}

// What a dump's message handler needs: the pick, and where the doomed go.
struct DumpState {
  const std::function<bool(const ConntrackFlow&)>* doomed;
  std::vector<CtRef>* picked;
  std::size_t seen = 0;
  int parse_error = 0;
};

int on_entry(nl_msg* msg, void* arg) {
  auto& state = *static_cast<DumpState*>(arg);
  nfnl_ct* parsed = nullptr;
  if (int rc = nfnlmsg_ct_parse(nlmsg_hdr(msg), &parsed); rc < 0) {
    state.parse_error = rc;
    return NL_SKIP;
  }
  CtRef ct(parsed);
  ++state.seen;
  if (nfnl_ct_get_proto(ct.get()) != IPPROTO_UDP) return NL_OK;
  const auto service = address_of(nfnl_ct_get_dst(ct.get(), 0));
  const auto endpoint = address_of(nfnl_ct_get_src(ct.get(), 1));
  if (!service || !endpoint) return NL_OK;
  const ConntrackFlow flow{*service, nfnl_ct_get_dst_port(ct.get(), 0), *endpoint,
                           nfnl_ct_get_src_port(ct.get(), 1)};
  if ((*state.doomed)(flow)) state.picked->push_back(std::move(ct));
  return NL_OK;
}

}  // namespace

std::expected<std::size_t, Error> NetlinkConntrackBackend::delete_udp_where(
    const std::vector<std::pair<ipvs::Family, std::optional<UdpEndpoint>>>& dumps,
    const std::function<bool(const ConntrackFlow&)>& doomed) {
  // The kernel deletes by exact tuple only: dump what the kernel can narrow
  // down, one message at a time (only the doomed entries are kept), then
  // delete those.
  std::vector<CtRef> picked;
  std::unique_ptr<nl_cb, CbDeleter> cb(nl_cb_clone(nl_socket_get_cb(socket_->sock)));
  if (!cb) return std::unexpected(Error{ENOMEM, "conntrack dump: cannot allocate a callback"});
  DumpState state{&doomed, &picked};
  nl_cb_set(cb.get(), NL_CB_VALID, NL_CB_CUSTOM, on_entry, &state);
  for (const auto& [family, to] : dumps) {
    auto request = udp_dump_request(family, to);
    if (!request) return std::unexpected(Error{ENOMEM, "conntrack dump: cannot build the request"});
    if (int rc = nl_send_auto(socket_->sock, request.get()); rc < 0)
      return std::unexpected(nl_error("conntrack dump", rc));
    if (int rc = nl_recvmsgs(socket_->sock, cb.get()); rc < 0)
      return std::unexpected(nl_error("conntrack dump", rc));
  }
  if (state.parse_error != 0) return std::unexpected(nl_error("conntrack dump: an entry", state.parse_error));
  last_dump_entries_ = state.seen;
  std::size_t deleted = 0;
  std::string first_error;
  for (const auto& ct : picked) {
    // Gone already (it timed out meanwhile) is what we wanted.
    if (int rc = nfnl_ct_del(socket_->sock, ct.get(), 0); rc < 0 && rc != -NLE_OBJ_NOTFOUND) {
      if (first_error.empty()) first_error = nl_geterror(rc);
    } else {
      ++deleted;
    }
  }
  if (!first_error.empty()) return std::unexpected(Error{EIO, "conntrack delete: " + first_error});
  return deleted;
}

namespace {

// Up to this many virtual services get a dump each (the kernel returns
// their entries only); more get one dump of every UDP entry per family,
// since each dump walks the whole table in the kernel.
constexpr std::size_t kDumpsPerService = 16;

std::vector<std::pair<ipvs::Family, std::optional<UdpEndpoint>>> dumps_for(
    const std::set<UdpEndpoint>& services) {
  std::vector<std::pair<ipvs::Family, std::optional<UdpEndpoint>>> dumps;
  if (services.size() <= kDumpsPerService) {
    for (const auto& service : services) dumps.emplace_back(service.address.family, service);
    return dumps;
  }
  std::set<ipvs::Family> families;
  for (const auto& service : services) families.insert(service.address.family);
  for (auto family : families) dumps.emplace_back(family, std::nullopt);
  return dumps;
}

}  // namespace

std::expected<std::size_t, Error> NetlinkConntrackBackend::delete_udp_flows(
    std::span<const ConntrackFlow> flows) {
  if (flows.empty()) return 0;
  const std::set<ConntrackFlow> wanted(flows.begin(), flows.end());
  std::set<UdpEndpoint> services;
  for (const auto& flow : flows) services.insert({flow.service, flow.service_port});
  return delete_udp_where(dumps_for(services),
                          [&wanted](const ConntrackFlow& flow) { return wanted.contains(flow); });
}

std::expected<std::size_t, Error> NetlinkConntrackBackend::delete_stale_udp(const UdpServing& serving) {
  if (serving.empty()) return 0;
  std::set<UdpEndpoint> services;
  for (const auto& [service, servers] : serving) services.insert(service);
  return delete_udp_where(dumps_for(services), [&serving](const ConntrackFlow& flow) {
    const auto service = serving.find(UdpEndpoint{flow.service, flow.service_port});
    return service != serving.end() &&
           !service->second.contains(UdpEndpoint{flow.endpoint, flow.endpoint_port});
  });
}

std::expected<std::size_t, Error> NetlinkConntrackBackend::delete_unserved_udp(
    std::span<const ipvs::Family> families, const std::function<bool(const ConntrackFlow&)>& unserved) {
  std::vector<std::pair<ipvs::Family, std::optional<UdpEndpoint>>> dumps;
  for (const auto family : families) dumps.emplace_back(family, std::nullopt);
  if (dumps.empty()) return 0;
  return delete_udp_where(dumps, unserved);
}

}  // namespace kipvs::conntrack
