#include "agent/address_binder.h"

#include <algorithm>
#include <cerrno>
#include <span>
#include <system_error>

namespace kipvs::agent {

AddressBinder::AddressBinder(address::AddressBackend& backend, std::string interface_name,
                             SyncObserver& observer, std::function<void(const std::string&)> log,
                             bool routes_first)
    : backend_(backend),
      interface_name_(std::move(interface_name)),
      observer_(observer),
      log_(std::move(log)),
      routes_first_(routes_first) {}

void AddressBinder::take(const std::set<ipvs::Address>& addresses) {
  for (const auto& address : addresses) {
    if (++refs_[address] == 1) {
      desired_.insert(address);
      owned_exact_ = false;
      flips_.try_emplace(address, false);
    }
  }
}

void AddressBinder::release(const std::set<ipvs::Address>& addresses) {
  for (const auto& address : addresses) {
    if (auto ref = refs_.find(address); ref != refs_.end() && --ref->second == 0) {
      refs_.erase(ref);
      desired_.erase(address);
      owned_exact_ = false;
      flips_.try_emplace(address, true);
    }
  }
}

bool AddressBinder::prepare_link() {
  if (link_ready_) return true;
  collect();  // the backend is the worker's until then
  if (auto ready = backend_.ensure_link(interface_name_); !ready) {
    log_("cannot set up " + interface_name_ + ": " + ready.error().message);
    return false;
  }
  link_ready_ = true;
  auto listed = backend_.list_addresses(interface_name_);
  if (listed && *listed != observed_) {
    observed_ = std::move(*listed);
    owned_exact_ = false;
  }
  // kipvs's routes found on the link: a restart may find a swap unfinished
  // (or a node bound with routes before).
  if (listed && routes_first_) to_promote_ = backend_.local_routes(interface_name_);
  return true;
}

void AddressBinder::forget_link() {
  link_ready_ = false;
}

void AddressBinder::bind(bool all, bool in_background, std::function<void()> before) {
  if (!link_ready_) {
    if (!prepare_link()) return;
    all = true;
  }
  std::vector<ipvs::Address> wanted;
  const auto want = [&](const ipvs::Address& address) {
    if (!observed_.contains(address) && desired_.contains(address) && !binding_.contains(address))
      wanted.push_back(address);
  };
  if (all) {
    for (const auto& address : desired_) want(address);
  } else {
    for (const auto& [address, was_desired] : flips_) want(address);
  }
  constexpr std::size_t kBackgroundBinds = 64;
  if (in_background && wanted.size() >= kBackgroundBinds) {
    return start_job(std::move(wanted), std::move(before));
  }
  collect();  // the backend is the jobs' until then
  if (before && !wanted.empty()) before();
  if (routes_first_ && wanted.size() >= kBackgroundBinds) {
    const auto results = add_many(wanted);
    for (std::size_t i = 0; i < results.size(); ++i) record_bind(wanted[i], results[i], true);
    return;
  }
  for (const auto& address : wanted)
    record_bind(address, backend_.add_address(interface_name_, address), false);
}

std::vector<std::expected<void, Error>> AddressBinder::add_many(std::span<const ipvs::Address> addresses) {
  return routes_first_ ? backend_.add_local_routes(interface_name_, addresses)
                       : backend_.add_addresses(interface_name_, addresses);
}

void AddressBinder::start_job(std::vector<ipvs::Address> wanted, std::function<void()> before) {
  auto& job = jobs_.emplace_back(BindJob{.addresses = std::move(wanted), .results = {}});
  try {
    // Jobs take turns on the backend (one socket); their addresses do not
    // overlap, so the order does not matter.
    job.results = std::async(std::launch::async,
                             [this, addresses = std::span<const ipvs::Address>(job.addresses), before] {
                               if (before) before();
                               std::vector<std::expected<void, Error>> results;
                               {
                                 const std::lock_guard turn(backend_turn_);
                                 results = add_many(addresses);
                               }
                               return results;
                             });
    binding_.insert(job.addresses.begin(), job.addresses.end());
  } catch (const std::system_error& error) {
    log_(std::string("cannot start a thread for the address binds (") + error.what() +
         "); binding them here");
    wanted = std::move(job.addresses);
    jobs_.pop_back();
    collect();
    if (before) before();
    for (const auto& address : wanted)
      record_bind(address, backend_.add_address(interface_name_, address), false);
  }
}

void AddressBinder::collect() {
  while (!jobs_.empty()) {
    auto& job = jobs_.front();
    const auto results = job.results.get();
    for (std::size_t i = 0; i < results.size(); ++i) {
      binding_.erase(job.addresses[i]);
      record_bind(job.addresses[i], results[i], routes_first_);
    }
    jobs_.pop_front();
  }
}

void AddressBinder::record_bind(const ipvs::Address& address, const std::expected<void, Error>& added,
                                bool as_route) {
  const bool ok = added || added.error().code == EEXIST;
  observer_.address_operation(true, ok);
  if (ok) {
    if (observed_.insert(address).second) owned_exact_ = false;
    if (as_route && added) to_promote_.insert(address);
  } else {
    log_(added.error().message);
  }
}

void AddressBinder::unbind_stale(bool all, const ipvs::Table& observed, const NodeFacts& facts) {
  if (!link_ready_) return;
  collect();
  const auto stale = [&](const ipvs::Address& address) {
    return observed_.contains(address) && !desired_.contains(address);
  };
  std::vector<ipvs::Address> candidates;
  if (all) {
    for (const auto& address : observed_) {
      if (stale(address)) candidates.push_back(address);
    }
  } else {
    for (const auto& [address, was_desired] : flips_) {
      if (stale(address)) candidates.push_back(address);
    }
  }
  if (candidates.empty()) return;
  // An owned service that could not be removed keeps its address (and so
  // stays kipvs's).
  std::set<ipvs::Address> in_use;
  for (const auto& [key, entry] : observed) {
    if (key.fwmark == 0) in_use.insert(key.address);
  }
  for (const auto& address : candidates) {
    // A node's own address (bound by an older kipvs) is never kept for its
    // services: those are not kipvs's by that address.
    if (in_use.contains(address) && !facts.is_node_address(address)) continue;
    auto deleted = backend_.delete_address(interface_name_, address);
    const bool ok = deleted || deleted.error().code == EADDRNOTAVAIL;
    observer_.address_operation(false, ok);
    if (ok) {
      observed_.erase(address);
      to_promote_.erase(address);
      owned_exact_ = false;
    } else {
      log_(deleted.error().message);
    }
  }
}

void AddressBinder::refresh_owned(bool all) {
  if (all) {
    if (owned_exact_) return;  // an idle resync: 10,000 addresses copied for nothing
    owned_ = desired_;
    owned_.insert(observed_.begin(), observed_.end());
    owned_exact_ = true;
    return;
  }
  for (const auto& [address, was_desired] : flips_) {
    if (desired_.contains(address) || observed_.contains(address)) {
      owned_.insert(address);
    } else {
      owned_.erase(address);
    }
  }
}

AddressBinder::Promoted AddressBinder::promote(std::size_t at_most) {
  Promoted promoted_now;
  if (to_promote_.empty() || !link_ready_) return promoted_now;
  collect();  // the backend is the jobs' until then
  for (auto it = to_promote_.begin(); it != to_promote_.end() && at_most > 0;) {
    const ipvs::Address address = *it;
    it = to_promote_.erase(it);
    if (!desired_.contains(address) || binding_.contains(address)) continue;
    --at_most;
    auto promoted = backend_.promote(interface_name_, address);
    observer_.address_operation(true, promoted.has_value());
    // One that fails stays a route (still local); the next full sync's
    // listing finds it again.
    if (promoted) {
      ++promoted_now.swapped;
    } else {
      ++promoted_now.failed;
      log_(promoted.error().message);
    }
  }
  return promoted_now;
}

bool AddressBinder::desired_changed() const {
  return std::ranges::any_of(flips_,
                             [&](const auto& flip) { return desired_.contains(flip.first) != flip.second; });
}

}  // namespace kipvs::agent
