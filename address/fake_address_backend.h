#pragma once
// An in-memory address backend for unit tests (library kipvs_address_fakes,
// which production code does not link).
#include <cstddef>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "address/address_backend.h"

namespace kipvs::address {

// In memory, for unit tests: links, their up state and addresses, with
// counters of the writes.
class FakeAddressBackend final : public AddressBackend {
 public:
  [[nodiscard]] std::expected<void, Error> ensure_link(const std::string& name) override;
  [[nodiscard]] std::expected<std::set<ipvs::Address>, Error> list_addresses(
      const std::string& name) override;
  [[nodiscard]] std::expected<void, Error> add_address(const std::string& name,
                                                       const ipvs::Address& address) override;
  [[nodiscard]] std::expected<void, Error> delete_address(const std::string& name,
                                                          const ipvs::Address& address) override;
  [[nodiscard]] std::expected<void, Error> delete_link(const std::string& name) override;
  [[nodiscard]] std::vector<std::expected<void, Error>> add_local_routes(
      const std::string& name, std::span<const ipvs::Address> addresses) override;
  [[nodiscard]] std::set<ipvs::Address> local_routes(const std::string& name) const override;
  [[nodiscard]] std::expected<void, Error> promote(const std::string& name,
                                                   const ipvs::Address& address) override;

  [[nodiscard]] bool has_link(const std::string& name) const { return links_.contains(name); }
  // The link's addresses alone (local_routes() are the routes).
  [[nodiscard]] std::set<ipvs::Address> addresses(const std::string& name) const;
  // Direct access for arranging a test (an address left by a previous run).
  void put(const std::string& name, const ipvs::Address& address) { links_[name].insert(address); }

  std::size_t links_created = 0;
  std::size_t links_deleted = 0;
  std::size_t adds = 0;
  std::size_t deletes = 0;
  std::size_t route_adds = 0;
  std::size_t promotions = 0;
  int fail_writes = 0;                    // errno for every add/delete while non-zero
  std::set<std::thread::id> add_threads;  // which threads added addresses

 private:
  std::map<std::string, std::set<ipvs::Address>> links_;
  std::map<std::string, std::set<ipvs::Address>> routes_;  // kipvs's local routes through each link
  // Binds run on worker threads while a test's checks read the links.
  mutable std::mutex mutex_;
};

}  // namespace kipvs::address
