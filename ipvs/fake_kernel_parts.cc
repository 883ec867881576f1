#include "ipvs/fake_kernel_parts.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

namespace kipvs::ipvs {

std::expected<void, Error> FakeAddressBackend::ensure_link(const std::string& name) {
  if (!links_.contains(name)) {
    links_[name];
    ++links_created;
  }
  return {};
}

std::expected<std::set<Address>, Error> FakeAddressBackend::list_addresses(const std::string& name) {
  auto it = links_.find(name);
  if (it == links_.end()) return std::unexpected(Error{ENODEV, "get link " + name + ": no such device"});
  return it->second;
}

std::expected<void, Error> FakeAddressBackend::add_address(const std::string& name, const Address& address) {
  ++adds;
  add_threads.insert(std::this_thread::get_id());
  if (fail_writes != 0) return std::unexpected(Error{fail_writes, "add address (injected failure)"});
  auto it = links_.find(name);
  if (it == links_.end()) return std::unexpected(Error{ENODEV, "get link " + name + ": no such device"});
  if (!it->second.insert(address).second) return std::unexpected(Error{EEXIST, "add address: exists"});
  return {};
}

std::expected<void, Error> FakeAddressBackend::delete_address(const std::string& name,
                                                              const Address& address) {
  ++deletes;
  if (fail_writes != 0) return std::unexpected(Error{fail_writes, "delete address (injected failure)"});
  auto it = links_.find(name);
  if (it == links_.end()) return std::unexpected(Error{ENODEV, "get link " + name + ": no such device"});
  if (it->second.erase(address) == 0)
    return std::unexpected(Error{EADDRNOTAVAIL, "delete address: not there"});
  return {};
}

std::expected<void, Error> FakeAddressBackend::delete_link(const std::string& name) {
  if (links_.erase(name) == 0) return std::unexpected(Error{ENODEV, "get link " + name + ": no such device"});
  ++links_deleted;
  return {};
}

std::set<Address> FakeAddressBackend::addresses(const std::string& name) const {
  auto it = links_.find(name);
  return it == links_.end() ? std::set<Address>{} : it->second;
}

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
