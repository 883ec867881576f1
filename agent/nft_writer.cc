#include "agent/nft_writer.h"

#include <algorithm>
#include <chrono>
#include <system_error>

#include "agent/nft_state.h"

namespace kipvs::agent {

NftWriter::NftWriter(nftables::NftBackend* backend, nftables::NftConfig config, SyncObserver& observer,
                     std::function<void(const std::string&)> log)
    : backend_(backend), config_(std::move(config)), observer_(observer), log_(std::move(log)) {}

bool NftWriter::same_origins(
    const std::set<ipvs::ServiceKey>& keys,
    const std::function<std::optional<ServiceOrigin>(const ipvs::ServiceKey&)>& origin_of) const {
  return std::ranges::all_of(keys, [&](const ipvs::ServiceKey& key) {
    const auto now = origin_of(key);
    const auto before = origins_.find(key);
    return before == origins_.end() ? !now.has_value() : now == before->second;
  });
}

bool NftWriter::write(std::map<ipvs::ServiceKey, ServiceOrigin> origins,
                      const std::set<ipvs::Address>& addresses, bool in_background) {
  if (backend_ == nullptr) return true;
  bool ok = collect();  // the worker reads origins_ and written_
  origins_ = std::move(origins);
  constexpr std::size_t kBackgroundServices = 64;
  if (in_background && origins_.size() >= kBackgroundServices) {
    // The state, the diff and the transaction on a worker: at 10,000
    // services the first two alone hold a loop for a good part of a second
    // in an emulated guest. origins_ and written_ stay as they are until
    // collect().
    auto& job = job_.emplace();
    try {
      job.done = std::async(std::launch::async, [this, &job, addresses]() -> std::optional<Written> {
        job.desired = nft_state(origins_, addresses, config_);
        job.update = nftables::nft_diff(written_, job.desired);
        std::optional<Written> done;
        if (!job.update.empty()) done = backend_->apply(job.update);
        return done;
      });
      return ok;
    } catch (const std::system_error& error) {
      log_(std::string("cannot start a thread for the nftables table (") + error.what() +
           "); writing it here");
      job_.reset();
    }
  }
  auto desired = nft_state(origins_, addresses, config_);
  auto update = nftables::nft_diff(written_, desired);
  if (update.empty()) return ok;
  const bool full = update.full.has_value();
  const auto done = backend_->apply(update);
  update = {};
  return record(std::move(desired), full, done) && ok;
}

std::function<void()> NftWriter::waiter() const {
  if (!job_) return {};
  return [done = job_->done] { done.wait(); };
}

bool NftWriter::collect() {
  if (!job_) return true;
  const auto done = job_->done.get();  // a copy: waiters may hold the shared state
  const bool full = job_->update.full.has_value();
  auto desired = std::move(job_->desired);
  job_.reset();
  if (!done) return true;  // nothing differed
  return record(std::move(desired), full, *done);
}

bool NftWriter::record(nftables::NftState desired, bool full, const std::expected<void, Error>& done) {
  observer_.nft_transaction(full, done.has_value());
  if (!done) {
    // The transaction changed nothing; the next attempt rewrites the whole
    // table, since what the kernel holds is no longer certain.
    written_.reset();
    failed_ = true;
    log_(
        "nftables transaction failed (" + std::string(full ? "whole table" : "set elements") +
        "), masquerading and filtering may be stale; IPVS rules are kept, retrying: " + done.error().message);
    return false;
  }
  failed_ = false;
  written_ = std::move(desired);
  return true;
}

void NftWriter::check_present() {
  (void)collect();  // the backend is the worker's until then; a failure is logged and counted
  if (backend_ == nullptr || !written_) return;
  if (auto present = backend_->table_present(); present && !*present) {
    log_("the nftables table inet kipvs is gone; writing it again");
    written_.reset();
  }
}

}  // namespace kipvs::agent
