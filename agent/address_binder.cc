#include "agent/address_binder.h"

#include <algorithm>
#include <cerrno>
#include <span>
#include <system_error>

namespace kipvs::agent {

AddressBinder::AddressBinder(address::AddressBackend& backend, std::string interface_name,
                             SyncObserver& observer, std::function<void(const std::string&)> log)
    : backend_(backend),
      interface_name_(std::move(interface_name)),
      observer_(observer),
      log_(std::move(log)) {}

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
  if (auto ready = backend_.ensure_link(interface_name_); !ready) {
    log_("cannot set up " + interface_name_ + ": " + ready.error().message);
    return false;
  }
  link_ready_ = true;
  if (auto listed = backend_.list_addresses(interface_name_); listed && *listed != observed_) {
    observed_ = std::move(*listed);
    owned_exact_ = false;
  }
  return true;
}

void AddressBinder::forget_link() {
  link_ready_ = false;
}

void AddressBinder::bind(bool all, bool in_background) {
  if (!link_ready_) {
    if (!prepare_link()) return;
    all = true;
  }
  std::vector<ipvs::Address> wanted;
  const auto want = [&](const ipvs::Address& address) {
    if (!observed_.contains(address) && desired_.contains(address)) wanted.push_back(address);
  };
  if (all) {
    for (const auto& address : desired_) want(address);
  } else {
    for (const auto& [address, was_desired] : flips_) want(address);
  }
  constexpr std::size_t kBackgroundBinds = 64;
  if (in_background && wanted.size() >= kBackgroundBinds && !job_) {
    auto& job = job_.emplace(BindJob{.addresses = std::move(wanted), .results = {}});
    try {
      job.results =
          std::async(std::launch::async, [backend = &backend_, name = interface_name_,
                                          addresses = std::span<const ipvs::Address>(job.addresses)] {
            return backend->add_addresses(name, addresses);
          });
      return;
    } catch (const std::system_error& error) {
      log_(std::string("cannot start a thread for the address binds (") + error.what() +
           "); binding them here");
      wanted = std::move(job.addresses);
      job_.reset();
    }
  }
  for (const auto& address : wanted) record_bind(address, backend_.add_address(interface_name_, address));
}

void AddressBinder::collect() {
  if (!job_) return;
  const auto results = job_->results.get();
  for (std::size_t i = 0; i < results.size(); ++i) record_bind(job_->addresses[i], results[i]);
  job_.reset();
}

void AddressBinder::record_bind(const ipvs::Address& address, const std::expected<void, Error>& added) {
  const bool ok = added || added.error().code == EEXIST;
  observer_.address_operation(true, ok);
  if (ok) {
    if (observed_.insert(address).second) owned_exact_ = false;
  } else {
    log_(added.error().message);
  }
}

void AddressBinder::unbind_stale(bool all, const ipvs::Table& observed, const NodeFacts& facts) {
  if (!link_ready_) return;
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

bool AddressBinder::desired_changed() const {
  return std::ranges::any_of(flips_,
                             [&](const auto& flip) { return desired_.contains(flip.first) != flip.second; });
}

}  // namespace kipvs::agent
