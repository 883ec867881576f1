#pragma once
// In-memory stand-ins for the address, nftables and conntrack backends, for
// unit tests (library kipvs_ipvs_fakes, which production code does not link).
// Each keeps what a test needs to check: what was written, from which thread,
// and an errno to fail with.
#include <cstddef>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "ipvs/address_backend.h"
#include "ipvs/conntrack.h"
#include "ipvs/nft_backend.h"

namespace kipvs::ipvs {

// In memory, for unit tests: links, their up state and addresses, with
// counters of the writes.
class FakeAddressBackend final : public AddressBackend {
 public:
  [[nodiscard]] std::expected<void, Error> ensure_link(const std::string& name) override;
  [[nodiscard]] std::expected<std::set<Address>, Error> list_addresses(const std::string& name) override;
  [[nodiscard]] std::expected<void, Error> add_address(const std::string& name,
                                                       const Address& address) override;
  [[nodiscard]] std::expected<void, Error> delete_address(const std::string& name,
                                                          const Address& address) override;
  [[nodiscard]] std::expected<void, Error> delete_link(const std::string& name) override;

  [[nodiscard]] bool has_link(const std::string& name) const { return links_.contains(name); }
  [[nodiscard]] std::set<Address> addresses(const std::string& name) const;
  // Direct access for arranging a test (an address left by a previous run).
  void put(const std::string& name, const Address& address) { links_[name].insert(address); }

  std::size_t links_created = 0;
  std::size_t links_deleted = 0;
  std::size_t adds = 0;
  std::size_t deletes = 0;
  int fail_writes = 0;                    // errno for every add/delete while non-zero
  std::set<std::thread::id> add_threads;  // which threads added addresses

 private:
  std::map<std::string, std::set<Address>> links_;
};

// In memory: the table as an NftState. An element change without a table, or
// the deletion of a missing element, fails the whole transaction (ENOENT),
// as the kernel does; adding an element that is there is not an error (nft's
// `add element`).
class FakeNftBackend final : public NftBackend {
 public:
  [[nodiscard]] std::expected<void, Error> apply(const NftUpdate& update) override;
  [[nodiscard]] std::expected<void, Error> delete_table() override;
  [[nodiscard]] std::expected<std::string, Error> list_table() override;
  [[nodiscard]] std::expected<bool, Error> table_present() override { return table_.has_value(); }

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
};

// Records the flows it was asked to clear.
class FakeConntrackBackend final : public ConntrackBackend {
 public:
  [[nodiscard]] std::expected<std::size_t, Error> delete_udp_flows(
      std::span<const ConntrackFlow> flows) override {
    if (fail_code != 0) return std::unexpected(Error{fail_code, "conntrack"});
    cleared.insert(cleared.end(), flows.begin(), flows.end());
    return flows.size();
  }
  [[nodiscard]] std::expected<std::size_t, Error> delete_stale_udp(const UdpServing& serving) override {
    if (fail_code != 0) return std::unexpected(Error{fail_code, "conntrack"});
    stale_cleanups.push_back(serving);
    return 0;
  }
  std::vector<ConntrackFlow> cleared;
  std::vector<UdpServing> stale_cleanups;
  int fail_code = 0;
};

}  // namespace kipvs::ipvs
