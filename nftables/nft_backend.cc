#include "nftables/nft_backend.h"

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nftables/libnftables.h>

#include "ipvs/netlink_socket.h"

namespace kipvs::nftables {

namespace {

// libnftables reports errors as text only; recover the errno the kernel gave
// for the answers callers act on.
int code_of(const std::string& text) {
  if (text.find(std::strerror(ENOENT)) != std::string::npos) return ENOENT;
  if (text.find(std::strerror(EPERM)) != std::string::npos) return EPERM;
  if (text.find(std::strerror(EOPNOTSUPP)) != std::string::npos) return EOPNOTSUPP;
  if (text.find(std::strerror(EPROTONOSUPPORT)) != std::string::npos) return EPROTONOSUPPORT;
  return EIO;
}

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

// A libnftables context for one run: it keeps its cache of the table
// (every set and element it parsed or fetched: 8 MB at 2,000 Services)
// until freed, and the next command would fetch the table anew anyway,
// since each transaction changes the ruleset's generation.
struct Context {
  nft_ctx* ctx = nullptr;
  Context() = default;
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  ~Context() {
    if (ctx != nullptr) nft_ctx_free(ctx);
  }
};

std::expected<void, Error> open_context(Context& context) {
  context.ctx = nft_ctx_new(NFT_CTX_DEFAULT);
  if (context.ctx == nullptr) return std::unexpected(Error{ENOMEM, "cannot create an nftables context"});
  if (nft_ctx_buffer_output(context.ctx) != 0 || nft_ctx_buffer_error(context.ctx) != 0)
    return std::unexpected(Error{ENOMEM, "cannot buffer nftables output"});
  return {};
}

}  // namespace

LibNftBackend::~LibNftBackend() = default;

std::expected<std::unique_ptr<LibNftBackend>, Error> LibNftBackend::open() {
  // Whether libnftables works here at all, before the first run needs it.
  Context probe;
  if (auto opened = open_context(probe); !opened) return std::unexpected(opened.error());
  return std::unique_ptr<LibNftBackend>(new LibNftBackend());
}

std::expected<std::string, Error> LibNftBackend::run(const std::string& script) {
  Context context;
  if (auto opened = open_context(context); !opened) return std::unexpected(opened.error());
  const int rc = nft_run_cmd_from_buffer(context.ctx, script.c_str());
  // Reading a buffer resets it, so both are read on every run.
  std::string output = nft_ctx_get_output_buffer(context.ctx);
  std::string errors = trimmed(nft_ctx_get_error_buffer(context.ctx));
  if (rc != 0) {
    if (errors.empty()) errors = "nftables transaction failed";
    return std::unexpected(Error{code_of(errors), errors});
  }
  return output;
}

std::expected<void, Error> LibNftBackend::apply(const NftUpdate& update) {
  if (update.empty()) return {};
  auto done = run(render_nft_update(update));
  if (!done) return std::unexpected(std::move(done.error()));
  return {};
}

std::expected<void, Error> LibNftBackend::delete_table() {
  auto done = run(render_nft_delete_table());
  if (!done) return std::unexpected(std::move(done.error()));
  return {};
}

std::expected<std::string, Error> LibNftBackend::list_table() {
  return run(std::string("list table ") + std::string(kNftFamily) + " " + std::string(kNftTable) + "\n");
}

std::expected<bool, Error> LibNftBackend::table_present() {
  // One NFT_MSG_GETTABLE over a netfilter netlink socket. libnftables's
  // `list` commands fetch every set's elements first (seconds at 10,000
  // Services, on every resync).
  const int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (fd < 0)
    return std::unexpected(Error{errno, std::string("netfilter netlink socket: ") + std::strerror(errno)});
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  if (auto bounded = ipvs::set_socket_timeouts(fd, ipvs::kNetlinkTimeout, "nftables get table"); !bounded)
    return std::unexpected(bounded.error());
  const std::string name(kNftTable);
  const std::size_t attribute_length = NLA_HDRLEN + name.size() + 1;
  std::vector<char> request(NLMSG_SPACE(sizeof(nfgenmsg)) + NLA_ALIGN(attribute_length), 0);
  auto* header = reinterpret_cast<nlmsghdr*>(request.data());
  header->nlmsg_len = static_cast<std::uint32_t>(request.size());
  header->nlmsg_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE;
  header->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  header->nlmsg_seq = 1;
  auto* generic = static_cast<nfgenmsg*>(NLMSG_DATA(header));
  generic->nfgen_family = NFPROTO_INET;
  generic->version = NFNETLINK_V0;
  auto* attribute = reinterpret_cast<nlattr*>(request.data() + NLMSG_SPACE(sizeof(nfgenmsg)));
  attribute->nla_len = static_cast<std::uint16_t>(attribute_length);
  attribute->nla_type = NFTA_TABLE_NAME;
  std::memcpy(reinterpret_cast<char*>(attribute) + NLA_HDRLEN, name.c_str(), name.size() + 1);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(fd, request.data(), request.size(), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) <
      0)
    return std::unexpected(Error{errno, std::string("nftables get table: ") + std::strerror(errno)});
  // The table (NFT_MSG_NEWTABLE), then the acknowledgement; or an error.
  std::vector<char> answer(16384);
  bool found = false;
  while (true) {
    const ssize_t got = ::recv(fd, answer.data(), answer.size(), 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      return std::unexpected(Error{errno, std::string("nftables get table: ") + std::strerror(errno)});
    }
    auto length = static_cast<std::uint32_t>(got);
    for (auto* message = reinterpret_cast<nlmsghdr*>(answer.data()); NLMSG_OK(message, length);
         message = NLMSG_NEXT(message, length)) {
      if (message->nlmsg_type == NLMSG_ERROR) {
        const int error = -static_cast<const nlmsgerr*>(NLMSG_DATA(message))->error;
        if (error == 0) return found;
        if (error == ENOENT) return false;
        return std::unexpected(Error{error, std::string("nftables get table: ") + std::strerror(error)});
      }
      if (message->nlmsg_type == ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE)) found = true;
      if (message->nlmsg_type == NLMSG_DONE) return found;
    }
  }
}

// ---------------------------------------------------------------------------

}  // namespace kipvs::nftables
