#include "nftables/fake_nft_backend.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

namespace kipvs::nftables {

std::expected<void, Error> FakeNftBackend::apply(const NftUpdate& update) {
  const std::lock_guard lock(mutex_);
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
  const std::lock_guard lock(mutex_);
  if (fail_code != 0) return std::unexpected(Error{fail_code, std::strerror(fail_code)});
  if (!table_) return std::unexpected(Error{ENOENT, "no table inet kipvs"});
  table_.reset();
  return {};
}

std::expected<std::string, Error> FakeNftBackend::list_table() {
  const std::lock_guard lock(mutex_);
  if (!table_) return std::unexpected(Error{ENOENT, "no table inet kipvs"});
  return render_nft_table(*table_);
}

bool FakeNftBackend::holds(const std::string& set, const std::string& element) const {
  const std::lock_guard lock(mutex_);
  if (!table_) return false;
  const auto found = table_->elements.find(set);
  return found != table_->elements.end() && found->second.contains(element);
}

}  // namespace kipvs::nftables
