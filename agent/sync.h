#pragma once
// The sync loop: Services and EndpointSlices in (as a k8s::ObjectSink), IPVS
// rules and kube-ipvs0 addresses out, incrementally.
//
//  - Changes mark Services dirty (a slice dirties the Service its
//    kubernetes.io/service-name label names). Dirty Services are recomputed
//    with desired_for_service and diffed, one virtual service at a time,
//    against an in-memory copy of the kernel's table (`observed`), kept up to
//    date from the results of every operation: an incremental sync does no
//    kernel dump, and costs operations proportional to the change.
//  - Changes that arrive within min_sync_period of the last sync are
//    coalesced into one.
//  - The first sync (once every kind has synced) dumps the kernel once,
//    rebuilds `observed`, and diffs the whole desired table: a restart
//    adopts what is there (no flush).
//  - A cold start (the kernel holds no virtual service when the first object
//    arrives) does not wait for the lists: what each page brings is added
//    as it comes, a piece at a time on a worker thread while the loop
//    receives the next pages (early_write). Adds and edits only: deletes
//    and drains wait for the first sync, which then takes `observed` as it
//    stands (kipvs wrote all of it) and writes what is left, with the
//    nftables table and then the addresses, so no address is reachable
//    before its rules.
//  - The periodic resync (every sync_period) reads the kernel a few services
//    at a time, and compares and repairs each service as it is read, the
//    loop running between pieces; at the end, desired services the kernel
//    lacks are added and kipvs's unwanted ones deleted. Drift is repaired,
//    nothing is written when nothing drifted, and no change waits for more
//    than a piece.
//  - Only virtual services kipvs owns are edited or removed: on an address
//    bound to the dummy interface, or node ports on node addresses, never in
//    excludeCIDRs (owns_service).
//  - Destinations that leave drain (apply_drain_policy): weight 0 until their
//    connections end or the grace period passes; UDP and SCTP ones go at once. Drains
//    are re-checked every drain_check_period with a per-service listing.
//  - Per operation: EEXIST on an add and ESRCH/ENOENT on an edit mean the
//    kernel differs from `observed` (someone else changed it): kipvs re-reads
//    those services and diffs them again. ESRCH/ENOENT on a delete means
//    already gone. Any other failure retries the Service with backoff.
//
// One io_context thread owns all of it: no locks. Timers are Asio's; the
// drain bookkeeping uses the injected clock so tests are deterministic.

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "address/address_backend.h"
#include "agent/address_binder.h"
#include "agent/desired_state.h"
#include "agent/kernel_read.h"
#include "agent/nft_writer.h"
#include "agent/node_facts.h"
#include "agent/owned_services.h"
#include "agent/sync_observer.h"
#include "agent/sync_stats.h"
#include "base/error.h"
#include "conntrack/conntrack.h"
#include "ipvs/backend.h"
#include "ipvs/diff.h"
#include "ipvs/table.h"
#include "k8s/sink.h"
#include "nftables/nft_backend.h"
#include "nftables/nft_ruleset.h"

namespace kipvs::agent {

inline constexpr std::string_view kLastChangeTriggerTimeAnnotation =
    "endpoints.kubernetes.io/last-change-trigger-time";

struct SyncOptions {
  NodeFacts facts;
  std::chrono::milliseconds min_sync_period{0};
  std::chrono::milliseconds sync_period{30'000};
  // How long a periodic resync reads (and compares) before the loop runs
  // again (at least one service each time).
  std::chrono::milliseconds resync_read_piece{5};
  // nullopt: wait for connections however long they last (kube-proxy).
  std::optional<std::chrono::seconds> grace_period = std::chrono::seconds{900};
  std::chrono::milliseconds drain_check_period{5'000};
  std::chrono::milliseconds retry_min{1'000};
  std::chrono::milliseconds retry_max{30'000};
  std::string interface_name = "kube-ipvs0";
  // Many binds at once (a first sync's, a repair's) as local routes, swapped
  // for addresses afterwards a piece at a time between other work
  // (AddressBinder): the binding kube-proxy's users know, without a cold
  // start waiting for the kernel's walk of the link's address list per
  // address.
  bool routes_first = false;
  // The nftables table's shape (clusterCIDR, masqueradeAll, masqueradeBit).
  nftables::NftConfig nft;
  // Take zone and node IPs from the Node object (when flags left them unset).
  bool zone_from_node = false;
  bool node_ips_from_node = false;
  // Reads facts.local_addresses again at each full sync (they change with
  // DHCP, a new interface); null keeps them as given.
  std::function<std::vector<ipvs::Address>()> local_addresses;
  // One log line, no newline; default stderr.
  std::function<void(std::string_view)> log;
  std::function<ipvs::DrainClock::time_point()> clock = [] { return ipvs::DrainClock::now(); };
  std::function<std::chrono::system_clock::time_point()> wall_clock = [] {
    return std::chrono::system_clock::now();
  };
  // Where the virtual services kipvs adds are recorded before they are
  // added (agent/owned_services.h); default: nowhere.
  OwnedServicesFile owned_services;
};

// Parses RFC 3339 ("2026-11-27T00:21:06.123456789Z", "...+02:00").
[[nodiscard]] std::optional<std::chrono::system_clock::time_point> parse_rfc3339(std::string_view text);

class Sync final : public k8s::ObjectSink {
 public:
  // nft may be null: no nftables table is written, none is computed, and
  // the metrics count no transaction (a backend that pretended to write
  // would report tables that do not exist). conntrack may be a
  // conntrack::NoConntrack.
  Sync(boost::asio::io_context& io, ipvs::Backend& backend, address::AddressBackend& addresses,
       SyncObserver& observer, SyncOptions options, nftables::NftBackend* nft,
       conntrack::ConntrackBackend& conntrack);
  ~Sync() override;
  Sync(const Sync&) = delete;
  Sync& operator=(const Sync&) = delete;

  void service_changed(const k8s::ObjectKey& key, const k8s::Service* now) override;
  void endpoint_slice_changed(const k8s::ObjectKey& key, const k8s::EndpointSlice* now) override;
  void node_changed(const k8s::Node* now) override;
  void synced(k8s::ResourceKind kind) override;
  void object_skipped(k8s::ResourceKind kind, const std::string& what, const std::string& reason) override;

  // Run a sync now (the timers call these; tests call them directly). They
  // return false when an operation failed or the kernel could not be read.
  bool sync_dirty();
  bool sync_full();
  // The periodic resync: the kernel read, compared and repaired a few
  // services at a time, the loop running between pieces (at 10,000 Services
  // the read is seconds, and a change must not wait for it). False: the
  // services could not be listed (sync_full then reports it).
  bool start_resync();
  [[nodiscard]] bool resync_reading() const { return resync_.has_value(); }
  // A cold start's piece is being written on a worker thread.
  [[nodiscard]] bool cold_start_writing() const { return early_piece_.has_value(); }
  // Cancels the timers; the sink may still be called but nothing syncs.
  void stop();

  [[nodiscard]] bool initial_sync_done() const { return initial_sync_done_; }
  [[nodiscard]] const ipvs::Table& observed() const { return observed_; }
  [[nodiscard]] ipvs::Table desired() const;
  [[nodiscard]] const std::set<ipvs::Address>& desired_addresses() const { return binder_.desired(); }
  [[nodiscard]] const ipvs::DrainSet& draining() const { return draining_; }
  [[nodiscard]] const SyncStats& stats() const { return stats_; }
  [[nodiscard]] std::size_t dirty_services() const { return dirty_.size(); }
  // Which Service port a desired virtual service implements (metric labels).
  [[nodiscard]] std::optional<ServiceOrigin> origin(const ipvs::ServiceKey& key) const;
  // The health-check node ports of LoadBalancer Services with
  // externalTrafficPolicy Local, with this node's local endpoint counts.
  [[nodiscard]] std::map<k8s::ObjectKey, HealthCheck> health_checks() const;
  // The nftables table kipvs wants now, and what it last wrote (nullopt
  // before the first write and after a failed one).
  [[nodiscard]] nftables::NftState desired_nft() const;
  // Every virtual service's part of the nftables table, by key.
  [[nodiscard]] std::map<ipvs::ServiceKey, ServiceOrigin> origins() const;
  // The same as each Service's immutable map, shared (in Service order: where
  // two claim a key, the first one's origin is the one above); and a number
  // that changes whenever they may have (so a reader can keep what it built
  // from them). Cheap to take on the sync thread, safe to read on any.
  using OriginMap = std::map<ipvs::ServiceKey, ServiceOrigin>;
  [[nodiscard]] std::vector<std::shared_ptr<const OriginMap>> origin_maps() const;
  [[nodiscard]] std::uint64_t origins_generation() const { return origins_generation_; }
  [[nodiscard]] const std::optional<nftables::NftState>& written_nft() const { return nft_.written(); }

 private:
  // One Service's contribution.
  struct Part {
    ipvs::Table table;
    std::set<ipvs::Address> bound;
    std::shared_ptr<const OriginMap> origins;  // never null
    std::map<k8s::ObjectKey, HealthCheck> health_checks;
    std::set<std::pair<k8s::ObjectKey, NoLocalEndpoints>> no_local_endpoints;
  };

  void log(const std::string& line) const;
  void mark_dirty(const k8s::ObjectKey& service);
  void request_sync();
  // The next full sync after delay (default: the sync period).
  void arm_resync(std::optional<std::chrono::milliseconds> delay = std::nullopt);
  void arm_drain_check();
  void arm_retry();
  void report_pending();
  // Recomputes a Service's Part; adds the virtual services it had or has now.
  void recompute(const k8s::ObjectKey& service, std::set<ipvs::ServiceKey>& affected);
  [[nodiscard]] const ipvs::TableEntry* desired_entry(const ipvs::ServiceKey& key) const;
  [[nodiscard]] bool owned(const ipvs::ServiceKey& key, const std::set<ipvs::Address>& addresses) const;
  [[nodiscard]] ipvs::Plan plan_for(const std::set<ipvs::ServiceKey>& keys,
                                    const std::set<ipvs::Address>& addresses) const;
  // Counts for the destinations a plan deletes, read per service.
  [[nodiscard]] ipvs::ConnectionTable connections_for(const ipvs::Plan& plan);
  // Applies a plan, updates `observed`, re-reads and re-diffs services the
  // kernel disagreed about; returns the virtual services that failed.
  // given: the backend's results for the whole plan, already obtained (a
  // piece written on a worker thread); otherwise they are asked for here.
  std::set<ipvs::ServiceKey> apply(const ipvs::Plan& plan, const std::set<ipvs::Address>& addresses,
                                   bool reread, const std::vector<ipvs::OperationResult>* given = nullptr);
  // apply's answers: an operation done (observed_ follows; a UDP real server
  // gone adds its flows to `gone`), or refused (already gone, the kernel
  // differs: `stale`, or failed).
  void applied(const ipvs::Operation& operation, std::vector<conntrack::ConntrackFlow>& gone);
  void refused(const ipvs::Operation& operation, const Error& error, bool reread,
               std::set<ipvs::ServiceKey>& stale, std::set<ipvs::ServiceKey>& failed);
  // Adopts what the kernel has for `stale` and diffs them again, once.
  std::set<ipvs::ServiceKey> reread_and_apply(const std::set<ipvs::ServiceKey>& stale,
                                              const std::set<ipvs::Address>& addresses);
  void update_observed(const ipvs::Operation& operation);
  // The cold start's writes during the first lists. schedule_early_write
  // decides once whether this is a cold start, and posts early_write, which
  // lands the piece in flight (if done), recomputes the dirty Services and
  // sends the next piece; a piece that ends posts early_write again.
  void schedule_early_write();
  void early_write(std::uint64_t finished_piece);
  // Swaps the binder's routes for addresses a piece at a time, each in a
  // turn of its own; posted after a sync that left some.
  void schedule_promotion();
  void promote_piece();
  void land_early_piece();
  // The successes applied() counted, to the observer, once per kind.
  void report_applied();
  using Dump = std::expected<std::vector<ipvs::ServiceWithDestinations>, Error>;
  // The rest of a full sync, once the kernel is read.
  bool sync_full_from(Dump dump, ipvs::DrainClock::time_point started);
  // The same with observed_ already what the kernel has.
  // reread_link: read the dummy interface's addresses again first (not
  // after a cold start, whose binds read it moments ago).
  // after_early_writes: a cold start's first sync, observed_ being what it
  // wrote.
  bool sync_full_adopted(const ipvs::ConnectionTable& connections, ipvs::DrainClock::time_point started,
                         bool reread_link = true, bool after_early_writes = false);
  // Its steps, in order.
  bool dump_failed(const Error& error, ipvs::DrainClock::time_point started);
  // observed_ from the dump; the dump's connection counts (for the drains).
  ipvs::ConnectionTable adopt_dump(std::vector<ipvs::ServiceWithDestinations>& dump);
  // Reads the node's local addresses again; when they changed, every
  // Service is dirty (whether an external IP is bound depends on them).
  void refresh_local_addresses();
  // Every dirty Service (all of them when the node's local addresses
  // changed) recomputed; returns which.
  std::set<k8s::ObjectKey> recompute_all_dirty(std::set<ipvs::ServiceKey>& affected);
  struct FullSyncKeys {
    std::vector<ipvs::ServiceKey> wanted;    // desired
    std::vector<ipvs::ServiceKey> unwanted;  // observed, owned, no longer desired
  };
  // The desired services to write (every one for a sync that compares them
  // all here; a resync's pieces compared what the kernel has, and it wants
  // only those the kernel lacks, and those in `also`) and kipvs's unwanted
  // ones; desired counts the desired services.
  FullSyncKeys full_sync_keys(bool every_wanted, std::size_t& desired,
                              const std::set<ipvs::ServiceKey>* also = nullptr);
  // At most how many operations bring one virtual service (or these, counted
  // until the total passes `enough`) to its desired state.
  [[nodiscard]] std::size_t most_operations(const ipvs::ServiceKey& key) const;
  [[nodiscard]] std::size_t most_operations(std::span<const ipvs::ServiceKey> keys, std::size_t enough) const;
  std::set<ipvs::ServiceKey> write_in_pieces(const FullSyncKeys& keys,
                                             const ipvs::ConnectionTable& connections, PlanCounts& counts);
  void trim_record();
  // A periodic resync in progress: what it read, wrote and spent so far.
  struct Resync {
    StepwiseKernelRead read;
    PhaseTimes phases;
    PlanCounts counts;
    std::set<ipvs::ServiceKey> failed;
    ipvs::ConnectionTable connections;  // busy destinations read
    // After the last piece: finish_resync's steps.
    int step = 0;
    std::size_t desired = 0;
  };
  void read_kernel_piece();
  // Applies what the comparison of one piece's services found.
  void repair_piece(Resync& resync, ipvs::Plan repairs);
  // What the pieces cannot see: desired services the kernel lacks, and
  // kipvs's unwanted ones; addresses, nftables and conntrack as a full sync
  // has them. One step per turn of the loop: each walks every service or
  // address (together half a second at 10,000 Services in an emulated
  // guest), and a change must not wait for all of them.
  void finish_resync();
  // kube-proxy's stale UDP entries: to one of these UDP services and not
  // answered by one of its real servers.
  void clear_stale_conntrack(const std::set<ipvs::ServiceKey>& keys);
  // The same for every UDP service: each UDP entry is looked up in the
  // desired table (the cost is the conntrack table's UDP entries, not a map
  // of every UDP service's servers built at each resync).
  void sweep_stale_conntrack();
  void log_stale_conntrack(const std::expected<std::size_t, Error>& deleted);
  void clear_conntrack(const std::vector<conntrack::ConntrackFlow>& flows);
  // The nftables table through nft_ (see NftWriter::write); all: the whole
  // table is computed and compared; otherwise only when a changed virtual
  // service's nftables part (or a bound address) changed.
  bool sync_nft(bool all, const std::set<ipvs::ServiceKey>& affected, bool in_background = false);
  // Records the services a plan adds before it goes to the kernel, and
  // writes the record after deletes took some out.
  void record_additions(const ipvs::Plan& plan);
  void store_record();
  void report_stored(const std::expected<void, Error>& stored);
  void finish(SyncKind kind, ipvs::DrainClock::time_point started, const PlanCounts& plan,
              std::size_t services, const std::set<ipvs::ServiceKey>& failed,
              const std::set<k8s::ObjectKey>& recomputed);

  boost::asio::io_context& io_;
  ipvs::Backend& backend_;
  conntrack::ConntrackBackend& conntrack_;
  SyncObserver& observer_;
  SyncOptions options_;
  std::chrono::system_clock::time_point started_wall_;
  PhaseTimes phases_;
  AddressBinder binder_;
  NftWriter nft_;

  // The sources' own copies (the sink contract: valid until that key's next
  // change): at 10,000 Services a second copy of every slice costs tens of MB.
  std::map<k8s::ObjectKey, const k8s::Service*> services_;
  std::map<k8s::ObjectKey, const k8s::EndpointSlice*> slices_;
  std::map<k8s::ObjectKey, std::set<k8s::ObjectKey>> slices_by_service_;
  // Each slice's Service when it was last seen: the source has already
  // overwritten the slice when it tells of a change.
  std::map<k8s::ObjectKey, k8s::ObjectKey> slice_owners_;
  bool services_synced_ = false;
  bool slices_synced_ = false;
  bool initial_sync_done_ = false;
  bool stopped_ = false;

  std::set<k8s::ObjectKey> dirty_;
  std::set<ipvs::ServiceKey> dirty_keys_;  // virtual services to re-diff (drains, retries)
  std::size_t pending_slice_changes_ = 0;
  // Per Service: each changed slice's trigger time and address family.
  std::map<k8s::ObjectKey, std::vector<std::pair<std::chrono::system_clock::time_point, ipvs::Family>>>
      triggers_;

  std::map<k8s::ObjectKey, Part> parts_;
  std::map<NoLocalEndpoints, std::size_t> no_local_counts_;  // summed over parts_
  // Which Services want a virtual service, each with its part (in parts_,
  // whose nodes stay put); the first (smallest key) gets it, as in
  // compute_desired_state.
  std::map<ipvs::ServiceKey, std::map<k8s::ObjectKey, const Part*>> claims_;
  std::uint64_t origins_generation_ = 0;
  // The keys in options_.owned_services: kipvs's whether or not their
  // address is bound (a crash can come between the add and the bind).
  std::set<ipvs::ServiceKey> recorded_;
  bool recorded_changed_ = false;
  // recorded_ as the file's text, and whether it still is (additions are
  // appended to it; a removal makes the next store render it again).
  std::string record_text_;
  bool record_text_exact_ = false;
  bool record_failing_ = false;
  // Virtual services kipvs wanted on addresses it does not bind (node ports,
  // external IPs that are node addresses) and has not deleted since: its own
  // whatever the port, so they go when no longer wanted.
  std::set<ipvs::ServiceKey> wanted_unbound_;

  ipvs::Table observed_;
  std::array<std::uint64_t, 6> applied_{};  // successes by Operation::Kind, not yet reported

  enum class ColdStart : std::uint8_t { kUnknown, kEarly, kNo };
  ColdStart cold_start_ = ColdStart::kUnknown;
  bool early_posted_ = false;
  bool promotion_posted_ = false;
  // Since the swap of routes for addresses began, and how many it swapped.
  std::optional<ipvs::DrainClock::time_point> promotion_started_;
  AddressBinder::Promoted promoted_;
  // Dirty Services whose slices have come (or whose slice list is done): the
  // next early write recomputes these, not every dirty one again.
  std::vector<k8s::ObjectKey> early_ready_;
  std::set<ipvs::ServiceKey> early_keys_;      // recomputed, not yet written
  std::set<k8s::ObjectKey> early_recomputed_;  // for the first sync's latencies
  PlanCounts early_counts_;                    // what the early pieces wrote
  struct EarlyPiece {
    std::uint64_t number = 0;
    ipvs::Plan plan;
    std::future<std::vector<ipvs::OperationResult>> results;
  };
  std::optional<EarlyPiece> early_piece_;
  // The cold start's keys whose writes failed (even after a re-read):
  // compared again by the first sync.
  std::set<ipvs::ServiceKey> early_failed_;
  std::uint64_t early_pieces_ = 0;
  // A finished piece tells the loop through a post; the post checks this,
  // since the Sync may be gone by then.
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
  std::optional<Resync> resync_;
  ipvs::DrainSet draining_;
  std::set<ipvs::ServiceKey> retry_keys_;
  std::chrono::milliseconds backoff_{0};
  std::chrono::milliseconds dump_backoff_{0};  // after failed kernel dumps

  boost::asio::steady_timer sync_timer_;
  boost::asio::steady_timer resync_timer_;
  boost::asio::steady_timer drain_timer_;
  boost::asio::steady_timer retry_timer_;
  bool sync_pending_ = false;
  bool drain_armed_ = false;
  bool retry_armed_ = false;
  std::chrono::steady_clock::time_point last_sync_end_{};
  SyncStats stats_;
};

}  // namespace kipvs::agent
