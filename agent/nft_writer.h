#pragma once
// Writes kipvs's nftables table (inet kipvs): the whole table or only the
// set elements that changed, in one transaction each, and remembers what the
// kernel holds so the next write is a diff. A failed transaction changed
// nothing; the next write is then the whole table again.
//
// Owned by the sync thread. A full sync's write (and a cold start's rounds)
// may be computed and written on a worker thread (write(..., true)); the
// nftables backend, the origins and what was written are that thread's
// alone until collect().
#include <functional>
#include <future>
#include <map>
#include <optional>
#include <set>
#include <string>

#include "agent/desired_state.h"
#include "agent/sync_observer.h"
#include "base/error.h"
#include "nftables/nft_backend.h"
#include "nftables/nft_ruleset.h"

namespace kipvs::agent {

class NftWriter {
 public:
  // backend may be null: no table is written.
  NftWriter(nftables::NftBackend* backend, nftables::NftConfig config, SyncObserver& observer,
            std::function<void(const std::string&)> log);

  [[nodiscard]] bool enabled() const { return backend_ != nullptr; }
  // The last write went through and nothing is pending.
  [[nodiscard]] bool up_to_date() const { return written_.has_value() && !failed_; }
  [[nodiscard]] bool failed() const { return failed_; }
  // Whether each of `keys` contributes now (origin_of) what it did to the
  // table last written.
  [[nodiscard]] bool same_origins(
      const std::set<ipvs::ServiceKey>& keys,
      const std::function<std::optional<ServiceOrigin>(const ipvs::ServiceKey&)>& origin_of) const;

  // Brings the table to what these virtual services and bound addresses
  // want; false when the transaction failed (logged, counted, retried at the
  // next write; IPVS goes on regardless). in_background: a whole table for
  // many services (a first sync's, where libnftables's parse takes seconds)
  // is written on a worker thread; collect() waits for it.
  bool write(std::map<ipvs::ServiceKey, ServiceOrigin> origins, const std::set<ipvs::Address>& addresses,
             bool in_background = false);
  bool collect();
  // Waits, on any thread, for the background write in flight now (if any)
  // to end; collect() is still needed to take its result.
  [[nodiscard]] std::function<void()> waiter() const;
  // Drift repair: a flushed ruleset (a firewall reload) makes the next write
  // the whole table. Elements are not compared.
  void check_present();

  // What it last wrote (nullopt before the first write and after a failed one).
  [[nodiscard]] const std::optional<nftables::NftState>& written() const { return written_; }

 private:
  bool record(nftables::NftState desired, bool full, const std::expected<void, Error>& done);

  nftables::NftBackend* backend_;
  nftables::NftConfig config_;
  SyncObserver& observer_;
  std::function<void(const std::string&)> log_;
  std::optional<nftables::NftState> written_;
  bool failed_ = false;
  // What each virtual service contributed to the table last written.
  std::map<ipvs::ServiceKey, ServiceOrigin> origins_;
  using Written = std::expected<void, Error>;
  struct Job {
    nftables::NftState desired;  // written_ once the job succeeds
    nftables::NftUpdate update;
    std::shared_future<std::optional<Written>> done;  // nullopt: nothing differed, nothing written
  };
  std::optional<Job> job_;
};

}  // namespace kipvs::agent
