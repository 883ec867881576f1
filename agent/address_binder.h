#pragma once
// The dummy interface's addresses (kube-ipvs0): which ones kipvs wants,
// counted per Service that binds them; which the link holds; and the binds
// and unbinds that bring the one to the other. Whose an IPVS service is
// follows from them (owned()): a service on an address kipvs binds is
// kipvs's.
//
// Owned by the sync thread. A first sync's many binds may run on a worker
// thread (bind(all, true)); the address backend is lent to that thread alone
// until collect().
//
// routes_first: many binds at once (a first sync's, a repair after the link
// was deleted) make each IP local with a local route, whose cost does not
// grow with the link's address count, and promote() swaps them for
// addresses afterwards, a few at a time: the Services answer at once, and
// the link ends up holding the addresses, as kube-proxy's does.
#include <cstddef>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "address/address_backend.h"
#include "agent/node_facts.h"
#include "agent/sync_observer.h"
#include "base/error.h"
#include "ipvs/table.h"

namespace kipvs::agent {

class AddressBinder {
 public:
  AddressBinder(address::AddressBackend& backend, std::string interface_name, SyncObserver& observer,
                std::function<void(const std::string&)> log, bool routes_first = false);

  // A Service takes or lets go of the addresses it binds.
  void take(const std::set<ipvs::Address>& addresses);
  void release(const std::set<ipvs::Address>& addresses);

  // Whether the link has been set up and read since forget_link().
  [[nodiscard]] bool link_ready() const { return link_ready_; }
  // Sets up the interface and reads its addresses, once until forget_link();
  // false when it cannot be set up (logged).
  bool prepare_link();
  // Read the link again before the next bind (someone may have removed an
  // address behind kipvs's back).
  void forget_link();

  // all: every desired and observed address is checked; otherwise only the
  // addresses that came or went since end_sync(). in_background: when there
  // are many to add (a first sync binds one per cluster IP, and the kernel's
  // cost per address grows with their number), they are added on a worker
  // thread while this one goes on; collect() waits for them.
  // before: run on the worker first (to wait for the nftables table).
  void bind(bool all, bool in_background = false, std::function<void()> before = {});
  // Waits for every job and records what they bound.
  void collect();
  // Deletes addresses kipvs no longer wants, except one still used by a
  // service in `observed` that could not be removed (it keeps the service
  // kipvs's); a node's own address is never kept that way.
  void unbind_stale(bool all, const ipvs::Table& observed, const NodeFacts& facts);
  // Brings owned() up to date with what is wanted and what is bound.
  void refresh_owned(bool all);
  // Whether the wanted set differs from what it was at the last end_sync().
  [[nodiscard]] bool desired_changed() const;
  void end_sync() { flips_.clear(); }

  // routes_first: swaps up to `at_most` of the wanted IPs bound with kipvs's
  // local route for addresses (a route no longer wanted is left to
  // unbind_stale).
  struct Promoted {
    std::size_t swapped = 0;
    std::size_t failed = 0;  // logged; still routes, found again by the next listing
  };
  Promoted promote(std::size_t at_most);
  [[nodiscard]] std::size_t routes_to_promote() const { return to_promote_.size(); }

  [[nodiscard]] const std::set<ipvs::Address>& desired() const { return desired_; }
  // desired() with what the link holds: whose services are kipvs's.
  [[nodiscard]] const std::set<ipvs::Address>& owned() const { return owned_; }

 private:
  void record_bind(const ipvs::Address& address, const std::expected<void, Error>& added, bool as_route);
  void start_job(std::vector<ipvs::Address> wanted, std::function<void()> before);
  // Many binds at once: local routes when routes_first_.
  [[nodiscard]] std::vector<std::expected<void, Error>> add_many(std::span<const ipvs::Address> addresses);

  address::AddressBackend& backend_;
  std::string interface_name_;
  SyncObserver& observer_;
  std::function<void(const std::string&)> log_;
  bool routes_first_;

  std::map<ipvs::Address, std::size_t> refs_;
  // refs_'s keys, kept as it changes, and those that came or went since
  // end_sync(): an incremental sync at 10,000 Services must not walk every
  // address to change one endpoint.
  std::set<ipvs::Address> desired_;
  // Each with whether it was desired before (a recomputed Service lets go of
  // its addresses and takes them again: no net change).
  std::map<ipvs::Address, bool> flips_;
  std::set<ipvs::Address> owned_;
  std::set<ipvs::Address> observed_;  // on the link
  // Of observed_, those made local by kipvs's route, to be swapped for
  // addresses (routes_first_ only).
  std::set<ipvs::Address> to_promote_;
  // owned_ is desired_ with observed_, as neither changed since it was made.
  bool owned_exact_ = false;
  bool link_ready_ = false;
  struct BindJob {
    std::vector<ipvs::Address> addresses;
    std::future<std::vector<std::expected<void, Error>>> results;  // one per address
  };
  std::set<ipvs::Address> binding_;  // in a job that has not been collected
  std::mutex backend_turn_;
  // Last: destroyed first, waiting for the workers that use the members above.
  std::deque<BindJob> jobs_;
};

}  // namespace kipvs::agent
