#include "address/fake_address_backend.h"

#include <cerrno>
#include <cstring>
#include <mutex>
#include <thread>

namespace kipvs::address {

std::expected<void, Error> FakeAddressBackend::ensure_link(const std::string& name) {
  const std::lock_guard lock(mutex_);
  if (!links_.contains(name)) {
    links_[name];
    ++links_created;
  }
  return {};
}

std::expected<std::set<ipvs::Address>, Error> FakeAddressBackend::list_addresses(const std::string& name) {
  const std::lock_guard lock(mutex_);
  auto it = links_.find(name);
  if (it == links_.end()) return std::unexpected(Error{ENODEV, "get link " + name + ": no such device"});
  auto listed = it->second;
  if (auto routes = routes_.find(name); routes != routes_.end())
    listed.insert(routes->second.begin(), routes->second.end());
  return listed;
}

std::expected<void, Error> FakeAddressBackend::add_address(const std::string& name,
                                                           const ipvs::Address& address) {
  const std::lock_guard lock(mutex_);
  ++adds;
  add_threads.insert(std::this_thread::get_id());
  if (fail_writes != 0) return std::unexpected(Error{fail_writes, "add address (injected failure)"});
  auto it = links_.find(name);
  if (it == links_.end()) return std::unexpected(Error{ENODEV, "get link " + name + ": no such device"});
  if (!it->second.insert(address).second) return std::unexpected(Error{EEXIST, "add address: exists"});
  return {};
}

std::expected<void, Error> FakeAddressBackend::delete_address(const std::string& name,
                                                              const ipvs::Address& address) {
  const std::lock_guard lock(mutex_);
  ++deletes;
  if (fail_writes != 0) return std::unexpected(Error{fail_writes, "delete address (injected failure)"});
  auto it = links_.find(name);
  if (it == links_.end()) return std::unexpected(Error{ENODEV, "get link " + name + ": no such device"});
  // Whichever is there, as the kernel's backend deletes.
  if (it->second.erase(address) == 0 && routes_[name].erase(address) == 0)
    return std::unexpected(Error{EADDRNOTAVAIL, "delete address: not there"});
  return {};
}

std::expected<void, Error> FakeAddressBackend::delete_link(const std::string& name) {
  const std::lock_guard lock(mutex_);
  if (links_.erase(name) == 0) return std::unexpected(Error{ENODEV, "get link " + name + ": no such device"});
  routes_.erase(name);
  ++links_deleted;
  return {};
}

std::vector<std::expected<void, Error>> FakeAddressBackend::add_local_routes(
    const std::string& name, std::span<const ipvs::Address> addresses) {
  const std::lock_guard lock(mutex_);
  add_threads.insert(std::this_thread::get_id());
  std::vector<std::expected<void, Error>> results;
  for (const auto& address : addresses) {
    ++route_adds;
    if (fail_writes != 0) {
      results.emplace_back(std::unexpected(Error{fail_writes, "add local route (injected failure)"}));
    } else if (!links_.contains(name)) {
      results.emplace_back(std::unexpected(Error{ENODEV, "get link " + name + ": no such device"}));
    } else if (!routes_[name].insert(address).second) {
      results.emplace_back(std::unexpected(Error{EEXIST, "add local route: exists"}));
    } else {
      results.emplace_back();
    }
  }
  return results;
}

std::set<ipvs::Address> FakeAddressBackend::local_routes(const std::string& name) const {
  const std::lock_guard lock(mutex_);
  auto it = routes_.find(name);
  return it == routes_.end() ? std::set<ipvs::Address>{} : it->second;
}

std::expected<void, Error> FakeAddressBackend::promote(const std::string& name,
                                                       const ipvs::Address& address) {
  const std::lock_guard lock(mutex_);
  ++promotions;
  if (fail_writes != 0) return std::unexpected(Error{fail_writes, "promote (injected failure)"});
  auto it = links_.find(name);
  if (it == links_.end()) return std::unexpected(Error{ENODEV, "get link " + name + ": no such device"});
  it->second.insert(address);
  routes_[name].erase(address);
  return {};
}

std::set<ipvs::Address> FakeAddressBackend::addresses(const std::string& name) const {
  const std::lock_guard lock(mutex_);
  auto it = links_.find(name);
  return it == links_.end() ? std::set<ipvs::Address>{} : it->second;
}

}  // namespace kipvs::address
