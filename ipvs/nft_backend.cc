#include "ipvs/nft_backend.h"

#include <cerrno>
#include <cstring>
#include <utility>

#include <nftables/libnftables.h>

namespace kipvs::ipvs {

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

}  // namespace

struct LibNftBackend::Context {
  nft_ctx* ctx = nullptr;
  ~Context() {
    if (ctx != nullptr) nft_ctx_free(ctx);
  }
};

LibNftBackend::LibNftBackend(std::unique_ptr<Context> context) : context_(std::move(context)) {}
LibNftBackend::~LibNftBackend() = default;

std::expected<std::unique_ptr<LibNftBackend>, Error> LibNftBackend::open() {
  auto context = std::make_unique<Context>();
  context->ctx = nft_ctx_new(NFT_CTX_DEFAULT);
  if (context->ctx == nullptr) return std::unexpected(Error{ENOMEM, "cannot create an nftables context"});
  if (nft_ctx_buffer_output(context->ctx) != 0 || nft_ctx_buffer_error(context->ctx) != 0)
    return std::unexpected(Error{ENOMEM, "cannot buffer nftables output"});
  return std::unique_ptr<LibNftBackend>(new LibNftBackend(std::move(context)));
}

std::expected<std::string, Error> LibNftBackend::run(const std::string& script) {
  const int rc = nft_run_cmd_from_buffer(context_->ctx, script.c_str());
  // Reading a buffer resets it, so both are read on every run.
  std::string output = nft_ctx_get_output_buffer(context_->ctx);
  std::string errors = trimmed(nft_ctx_get_error_buffer(context_->ctx));
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
  // `list tables` fetches the tables alone; listing even one chain of ours
  // fetched every set's elements too, seconds at 10,000 Services.
  auto listed = run("list tables " + std::string(kNftFamily) + "\n");
  if (!listed) return std::unexpected(std::move(listed.error()));
  const std::string line = "table " + std::string(kNftFamily) + " " + std::string(kNftTable);
  std::string_view rest = *listed;
  while (!rest.empty()) {
    const auto end = rest.find('\n');
    if (rest.substr(0, end) == line) return true;
    if (end == std::string_view::npos) break;
    rest.remove_prefix(end + 1);
  }
  return false;
}

// ---------------------------------------------------------------------------

std::expected<void, Error> FakeNftBackend::apply(const NftUpdate& update) {
  apply_threads.insert(std::this_thread::get_id());
  if (fail_code != 0) return std::unexpected(Error{fail_code, std::strerror(fail_code)});
  if (update.empty()) return {};
  if (update.full) {
    table_ = *update.full;
    ++full_writes;
    ++transactions;
    return {};
  }
  if (!table_) return std::unexpected(Error{ENOENT, "no table inet kipvs"});
  auto next = *table_;
  for (const auto& change : update.removed) {
    if (next.elements[change.set].erase(change.element) == 0)
      return std::unexpected(Error{
          ENOENT, "delete element " + change.set + " { " + change.element + " }: " + std::strerror(ENOENT)});
  }
  for (const auto& change : update.added) next.elements[change.set].insert(change.element);
  std::erase_if(next.elements, [](const auto& item) { return item.second.empty(); });
  table_ = std::move(next);
  element_changes += update.removed.size() + update.added.size();
  ++transactions;
  return {};
}

std::expected<void, Error> FakeNftBackend::delete_table() {
  if (fail_code != 0) return std::unexpected(Error{fail_code, std::strerror(fail_code)});
  if (!table_) return std::unexpected(Error{ENOENT, "no table inet kipvs"});
  table_.reset();
  return {};
}

std::expected<std::string, Error> FakeNftBackend::list_table() {
  if (!table_) return std::unexpected(Error{ENOENT, "no table inet kipvs"});
  return render_nft_table(*table_);
}

}  // namespace kipvs::ipvs
