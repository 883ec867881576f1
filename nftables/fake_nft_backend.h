#pragma once
// An in-memory nftables backend for unit tests (library kipvs_nftables_fakes,
// which production code does not link).
#include <cstddef>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "nftables/nft_backend.h"

namespace kipvs::nftables {

// In memory: the table as an NftState. An element change without a table, or
// the deletion of a missing element, fails the whole transaction (ENOENT),
// as the kernel does; adding an element that is there is not an error (nft's
// `add element`).
class FakeNftBackend final : public NftBackend {
 public:
  [[nodiscard]] std::expected<void, Error> apply(const NftUpdate& update) override;
  [[nodiscard]] std::expected<void, Error> delete_table() override;
  [[nodiscard]] std::expected<std::string, Error> list_table() override;
  [[nodiscard]] std::expected<bool, Error> table_present() override {
    const std::lock_guard lock(mutex_);
    return table_.has_value();
  }
  // Whether the table's set holds the element; safe while a worker applies.
  [[nodiscard]] bool holds(const std::string& set, const std::string& element) const;

  [[nodiscard]] const std::optional<NftState>& table() const { return table_; }
  // What `nft flush ruleset` does behind kipvs's back.
  void drop_table() { table_.reset(); }

  std::size_t transactions = 0;  // successful ones
  std::size_t full_writes = 0;
  std::size_t element_changes = 0;
  std::set<std::thread::id> apply_threads;  // which threads applied updates
  // errno for every apply while non-zero: a kernel without nf_tables answers
  // EOPNOTSUPP / EPROTONOSUPPORT.
  int fail_code = 0;

 private:
  std::optional<NftState> table_;
  // The table may be written on a worker thread while a test's checks read it.
  mutable std::mutex mutex_;
};

}  // namespace kipvs::nftables
