#include "agent/sync.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <iostream>
#include <span>
#include <sstream>
#include <system_error>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <boost/asio/post.hpp>

#include "agent/nft_state.h"

namespace kipvs::agent {

namespace {

// Gives the pages of freed memory back to the system. A full sync's
// transient allocations (libnftables's parse of the table, the plan) are
// many small blocks that glibc keeps: without this, each adds to the
// resident size of the next, and the peak is their sum, not their maximum.
void release_free_memory() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

using Kind = ipvs::Operation::Kind;
using std::chrono::duration_cast;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;

bool is_delete(Kind kind) {
  return kind == Kind::kDeleteService || kind == Kind::kDeleteDestination;
}

template <typename T>
bool parse_int(std::string_view text, T& value) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  return ec == std::errc{} && end == text.data() + text.size();
}

}  // namespace

std::string_view to_string(SyncKind kind) {
  return kind == SyncKind::kFull ? "full" : "incremental";
}

std::string_view to_string(OperationOutcome outcome) {
  switch (outcome) {
    case OperationOutcome::kOk:
      return "ok";
    case OperationOutcome::kExists:
      return "exists";
    case OperationOutcome::kMissing:
      return "missing";
    case OperationOutcome::kFailed:
      return "error";
  }
  return "error";
}

std::optional<std::chrono::system_clock::time_point> parse_rfc3339(std::string_view text) {
  // YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)
  if (text.size() < 20 || text[4] != '-' || text[7] != '-' || (text[10] != 'T' && text[10] != 't') ||
      text[13] != ':' || text[16] != ':') {
    return std::nullopt;
  }
  int year = 0;
  unsigned month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (!parse_int(text.substr(0, 4), year) || !parse_int(text.substr(5, 2), month) ||
      !parse_int(text.substr(8, 2), day) || !parse_int(text.substr(11, 2), hour) ||
      !parse_int(text.substr(14, 2), minute) || !parse_int(text.substr(17, 2), second)) {
    return std::nullopt;
  }
  const std::chrono::year_month_day date{std::chrono::year{year}, std::chrono::month{month},
                                         std::chrono::day{day}};
  if (!date.ok() || hour > 23 || minute > 59 || second > 60) return std::nullopt;
  auto rest = text.substr(19);
  nanoseconds fraction{0};
  if (!rest.empty() && rest.front() == '.') {
    rest.remove_prefix(1);
    std::size_t digits = 0;
    std::int64_t value = 0;
    while (digits < rest.size() && rest[digits] >= '0' && rest[digits] <= '9') {
      if (digits < 9) value = value * 10 + (rest[digits] - '0');
      ++digits;
    }
    if (digits == 0) return std::nullopt;
    for (std::size_t i = digits; i < 9; ++i) value *= 10;
    fraction = nanoseconds{value};
    rest.remove_prefix(digits);
  }
  std::chrono::minutes offset{0};
  if (rest == "Z" || rest == "z") {
  } else if (rest.size() == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':') {
    unsigned oh = 0, om = 0;
    if (!parse_int(rest.substr(1, 2), oh) || !parse_int(rest.substr(4, 2), om)) return std::nullopt;
    offset = std::chrono::hours{oh} + std::chrono::minutes{om};
    if (rest[0] == '-') offset = -offset;
  } else {
    return std::nullopt;
  }
  auto time = std::chrono::sys_days{date} + std::chrono::hours{hour} + std::chrono::minutes{minute} +
              std::chrono::seconds{second} + fraction - offset;
  return std::chrono::time_point_cast<std::chrono::system_clock::duration>(time);
}

// ---------------------------------------------------------------------------

Sync::Sync(boost::asio::io_context& io, ipvs::Backend& backend, address::AddressBackend& addresses,
           SyncObserver& observer, SyncOptions options, nftables::NftBackend* nft,
           conntrack::ConntrackBackend& conntrack)
    : io_(io),
      backend_(backend),
      conntrack_(conntrack),
      observer_(observer),
      options_(std::move(options)),
      started_wall_(options_.wall_clock()),
      binder_(
          addresses, options_.interface_name, observer, [this](const std::string& line) { log(line); },
          options_.routes_first),
      nft_(nft, options_.nft, observer, [this](const std::string& line) { log(line); }),
      sync_timer_(io),
      resync_timer_(io),
      drain_timer_(io),
      retry_timer_(io) {
  if (auto recorded = options_.owned_services.load()) {
    recorded_ = std::move(*recorded);
  } else {
    log("cannot read the record of kipvs's virtual services; only those on its addresses count as its own: " +
        recorded.error().text());
  }
}

Sync::~Sync() {
  stop();
  alive_.reset();
  if (early_piece_) early_piece_->results.wait();  // the worker uses backend_
}

void Sync::stop() {
  stopped_ = true;
  sync_timer_.cancel();
  resync_timer_.cancel();
  drain_timer_.cancel();
  retry_timer_.cancel();
}

void Sync::log(const std::string& line) const {
  if (options_.log) {
    options_.log(line);
  } else {
    std::cerr << "kipvs: " << line << '\n';
  }
}

// ---------------------------------------------------------------------------
// ObjectSink

void Sync::service_changed(const k8s::ObjectKey& key, const k8s::Service* now) {
  if (now != nullptr) {
    services_.insert_or_assign(key, now);
  } else {
    services_.erase(key);
  }
  mark_dirty(key);
}

void Sync::endpoint_slice_changed(const k8s::ObjectKey& key, const k8s::EndpointSlice* now) {
  // The Service it belonged to and the one it belongs to now (the label may
  // change, or appear) are both dirty.
  if (auto old = slice_owners_.find(key); old != slice_owners_.end()) {
    const k8s::ObjectKey& owner = old->second;
    mark_dirty(owner);
    if (auto it = slices_by_service_.find(owner); it != slices_by_service_.end()) {
      it->second.erase(key);
      if (it->second.empty()) slices_by_service_.erase(it);
    }
    slice_owners_.erase(old);
  }
  slices_.erase(key);
  ++pending_slice_changes_;
  if (now == nullptr) {
    request_sync();
    report_pending();
    return;
  }
  slices_.insert_or_assign(key, now);
  auto owner = owning_service(*now);
  if (!owner) {
    observer_.object_skipped(k8s::ResourceKind::kEndpointSlice, kReasonNoServiceName);
    report_pending();
    return;
  }
  slices_by_service_[*owner].insert(key);
  slice_owners_.insert_or_assign(key, *owner);
  if (auto it = now->meta.annotations.find(std::string(kLastChangeTriggerTimeAnnotation));
      it != now->meta.annotations.end()) {
    // Changes older than this agent are not its latency (kube-proxy ignores
    // them too: the initial list would report the cluster's age).
    if (auto when = parse_rfc3339(it->second); when && *when >= started_wall_)
      triggers_[*owner].push_back(
          {*when, now->address_type.is(k8s::AddressType::kIPv6) ? ipvs::Family::kIPv6 : ipvs::Family::kIPv4});
  }
  mark_dirty(*owner);
}

void Sync::node_changed(const k8s::Node* now) {
  if (now == nullptr) return;
  bool changed = false;
  if (options_.zone_from_node) {
    std::string zone;
    if (auto it = now->meta.labels.find("topology.kubernetes.io/zone"); it != now->meta.labels.end())
      zone = it->second;
    changed |= zone != options_.facts.zone;
    options_.facts.zone = zone;
  }
  if (options_.node_ips_from_node) {
    auto ips = node_ips_of(*now);
    changed |= ips != options_.facts.node_ips;
    options_.facts.node_ips = std::move(ips);
  }
  if (!changed) return;
  // Topology and node ports depend on these: every Service may change.
  for (const auto& [key, service] : services_) mark_dirty(key);
}

void Sync::synced(k8s::ResourceKind kind) {
  if (kind == k8s::ResourceKind::kService) services_synced_ = true;
  if (kind == k8s::ResourceKind::kEndpointSlice) slices_synced_ = true;
  if (initial_sync_done_ || !services_synced_ || !slices_synced_ || stopped_) return;
  // Posted, so that deliveries queued behind this call make the first sync.
  boost::asio::post(io_, [this] {
    if (!initial_sync_done_ && !stopped_) sync_full();
  });
}

void Sync::object_skipped(k8s::ResourceKind kind, const std::string& what, const std::string& reason) {
  log("skipped " + what + " (" + reason + ")");
  observer_.object_skipped(kind, reason);
}

void Sync::mark_dirty(const k8s::ObjectKey& service) {
  dirty_.insert(service);
  report_pending();
  if (!initial_sync_done_) {
    schedule_early_write();
    // A Service whose slices have not come yet waits for them (or for the
    // first sync, if it has none): computed now, it would be computed again
    // when they come, and its virtual services written twice over.
    if (cold_start_ == ColdStart::kEarly && (slices_synced_ || slices_by_service_.contains(service)))
      early_ready_.push_back(service);
  }
  request_sync();
}

void Sync::report_pending() {
  observer_.pending_changes(dirty_.size(), pending_slice_changes_);
}

// ---------------------------------------------------------------------------
// Scheduling

void Sync::request_sync() {
  if (!initial_sync_done_ || sync_pending_ || stopped_) return;
  sync_pending_ = true;
  // Coalesce: at most one sync per min_sync_period.
  const auto at = std::max(std::chrono::steady_clock::now(), last_sync_end_ + options_.min_sync_period);
  sync_timer_.expires_at(at);
  sync_timer_.async_wait([this](const boost::system::error_code& error) {
    if (error || stopped_) return;
    sync_pending_ = false;
    sync_dirty();
  });
}

void Sync::arm_resync(std::optional<std::chrono::milliseconds> delay) {
  if (stopped_) return;
  resync_timer_.expires_after(delay.value_or(options_.sync_period));
  resync_timer_.async_wait([this](const boost::system::error_code& error) {
    if (error || stopped_) return;
    if (!initial_sync_done_ || !start_resync()) sync_full();
  });
}

void Sync::arm_drain_check() {
  if (draining_.empty() || drain_armed_ || stopped_) return;
  drain_armed_ = true;
  drain_timer_.expires_after(options_.drain_check_period);
  drain_timer_.async_wait([this](const boost::system::error_code& error) {
    drain_armed_ = false;
    if (error || stopped_) return;
    for (const auto& [ref, since] : draining_) dirty_keys_.insert(ref.service);
    sync_dirty();
  });
}

void Sync::arm_retry() {
  if ((retry_keys_.empty() && !nft_.failed()) || retry_armed_ || stopped_) return;
  retry_armed_ = true;
  backoff_ = backoff_.count() == 0 ? options_.retry_min : std::min(backoff_ * 2, options_.retry_max);
  retry_timer_.expires_after(backoff_);
  retry_timer_.async_wait([this](const boost::system::error_code& error) {
    retry_armed_ = false;
    if (error || stopped_) return;
    dirty_keys_.insert(retry_keys_.begin(), retry_keys_.end());
    retry_keys_.clear();
    sync_dirty();
  });
}

void Sync::schedule_early_write() {
  if (initial_sync_done_ || stopped_ || early_posted_ || cold_start_ == ColdStart::kNo) return;
  if (cold_start_ == ColdStart::kUnknown) {
    // Anyone's virtual service (a restart's, another proxy's) may need an
    // edit or a delete, which only a sync that read the kernel can know.
    auto services = backend_.list_services();
    cold_start_ = services && services->empty() ? ColdStart::kEarly : ColdStart::kNo;
    if (cold_start_ == ColdStart::kNo) return;
    log("the IPVS table is empty: adding virtual services as the lists arrive");
  }
  early_posted_ = true;
  boost::asio::post(io_, [this] {
    early_posted_ = false;
    early_write(0);
  });
}

void Sync::schedule_promotion() {
  if (promotion_posted_ || stopped_ || binder_.routes_to_promote() == 0) return;
  promotion_posted_ = true;
  if (!promotion_started_) promotion_started_ = options_.clock();
  boost::asio::post(io_, [this, alive = std::weak_ptr<int>(alive_)] {
    if (!alive.expired()) promote_piece();
  });
}

void Sync::promote_piece() {
  promotion_posted_ = false;
  if (stopped_) return;
  // A piece of about this long: each address costs the kernel a walk of the
  // link's list (0.5 ms at 10,000 in the emulated guest, 5 ms at 30,000),
  // and a change waits for a piece at each of its steps through the loop
  // (the watch's reads, the decode, the sync): with 20 ms pieces a change
  // took 0.4-1 s at 30,000 while its sync took 1 ms.
  constexpr auto kPiece = milliseconds{2};
  constexpr std::size_t kStep = 1;
  constexpr std::size_t kMaxPiece = 64;  // on a fast machine, still a turn for others now and then
  const auto began = options_.clock();
  std::size_t left = binder_.routes_to_promote();
  for (std::size_t steps = 0; left > 0 && binder_.link_ready() && steps < kMaxPiece / kStep; ++steps) {
    const auto piece = binder_.promote(kStep);
    promoted_.swapped += piece.swapped;
    promoted_.failed += piece.failed;
    left = binder_.routes_to_promote();
    if (options_.clock() - began >= kPiece) break;
  }
  if (left > 0 && binder_.link_ready()) return schedule_promotion();
  if (left > 0) return;  // the link is to be read again: the next sync goes on
  const auto took = duration_cast<milliseconds>(options_.clock() - *promotion_started_);
  // (Nothing to say when every route left was no longer wanted: unbind_stale
  // deletes those.)
  if (promoted_.swapped + promoted_.failed > 0)
    log("bound " + std::to_string(promoted_.swapped) + " addresses to " + options_.interface_name +
        " in place of their local routes, in " + std::to_string(took.count()) + " ms" +
        (promoted_.failed == 0
             ? std::string()
             : " (" + std::to_string(promoted_.failed) +
                   " could not be: still local routes, tried again at the next full sync)"));
  promotion_started_.reset();
  promoted_ = {};
}

void Sync::land_early_piece() {
  auto results = early_piece_->results.get();
  const ipvs::Plan plan = std::move(early_piece_->plan);
  early_piece_.reset();
  // A failure is written again by the first sync.
  early_failed_.merge(apply(plan, binder_.owned(), /*reread=*/true, &results));
}

void Sync::early_write(std::uint64_t finished_piece) {
  if (initial_sync_done_ || stopped_ || cold_start_ != ColdStart::kEarly) return;
  if (early_piece_) {
    const bool done = early_piece_->number == finished_piece ||
                      early_piece_->results.wait_for(std::chrono::seconds{0}) == std::future_status::ready;
    if (!done) return;  // its end posts early_write again
    land_early_piece();
  }
  std::set<ipvs::ServiceKey> affected;
  for (const auto& service : std::exchange(early_ready_, {})) {
    auto node = dirty_.extract(service);
    if (node.empty()) continue;  // marked twice, recomputed once
    recompute(node.value(), affected);
    early_recomputed_.insert(std::move(node));
  }
  early_keys_.merge(affected);
  // One piece of about kPieceOperations, in key order: smaller than a first
  // sync's, since landing a piece (its results into observed_) holds the
  // loop that is also receiving the lists and answering /livez.
  constexpr std::size_t kPieceOperations = 2048;
  std::set<ipvs::ServiceKey> piece;
  std::size_t operations = 0;
  while (!early_keys_.empty() && operations < kPieceOperations) {
    auto node = early_keys_.extract(early_keys_.begin());
    const auto* desired = desired_entry(node.value());
    operations += 1 + (desired == nullptr ? 0 : desired->destinations.size());
    piece.insert(std::move(node));
  }
  ipvs::Plan plan = plan_for(piece, binder_.owned());
  // Deletes wait for the first sync, which reads connection counts first;
  // so do services on addresses kipvs does not bind (node ports, a node's
  // external IP): reachable at once, they must not come before their
  // masquerade rules. A cluster IP is unbound until that sync.
  std::erase_if(plan.operations, [this](const ipvs::Operation& operation) {
    const auto& key = operation.service.key;
    return is_delete(operation.kind) || key.fwmark != 0 || !binder_.desired().contains(key.address);
  });
  if (plan.empty()) {
    if (!early_keys_.empty()) schedule_early_write();
    return;
  }
  early_counts_.add(plan);
  record_additions(plan);
  auto& in_flight =
      early_piece_.emplace(EarlyPiece{.number = ++early_pieces_, .plan = std::move(plan), .results = {}});
  try {
    in_flight.results = std::async(
        std::launch::async, [this, alive = std::weak_ptr<int>(alive_), number = in_flight.number,
                             operations = std::span<const ipvs::Operation>(in_flight.plan.operations)] {
          auto results = backend_.apply(operations);
          boost::asio::post(io_, [this, alive, number] {
            if (!alive.expired()) early_write(number);
          });
          return results;
        });
  } catch (const std::system_error&) {
    // No thread: written here.
    std::promise<std::vector<ipvs::OperationResult>> written;
    written.set_value(backend_.apply(in_flight.plan.operations));
    in_flight.results = written.get_future();
    land_early_piece();
    schedule_early_write();
  }
}

// ---------------------------------------------------------------------------
// Desired state

void Sync::recompute(const k8s::ObjectKey& service, std::set<ipvs::ServiceKey>& affected) {
  ++origins_generation_;
  if (auto old = parts_.find(service); old != parts_.end()) {
    for (const auto& [key, entry] : old->second.table) {
      affected.insert(key);
      if (auto claim = claims_.find(key); claim != claims_.end()) {
        claim->second.erase(service);
        if (claim->second.empty()) claims_.erase(claim);
      }
    }
    binder_.release(old->second.bound);
    for (const auto& [key, which] : old->second.no_local_endpoints) --no_local_counts_[which];
    parts_.erase(old);
  }
  auto found = services_.find(service);
  if (found == services_.end()) return;

  std::vector<const k8s::EndpointSlice*> slices;
  if (auto it = slices_by_service_.find(service); it != slices_by_service_.end()) {
    for (const auto& slice_key : it->second) {
      if (auto slice = slices_.find(slice_key); slice != slices_.end()) slices.push_back(slice->second);
    }
  }
  DesiredState state = desired_for_service(*found->second, slices, options_.facts);
  for (const auto& problem : state.problems) {
    log(problem.message + " (" + problem.reason + ")");
    observer_.object_skipped(problem.kind, problem.reason);
  }
  if (state.table.empty() && state.bound_addresses.empty() && state.health_checks.empty() &&
      state.no_local_endpoints.empty())
    return;
  const Part& part =
      parts_
          .emplace(service, Part{std::move(state.table), std::move(state.bound_addresses),
                                 std::make_shared<const OriginMap>(std::move(state.origins)),
                                 std::move(state.health_checks), std::move(state.no_local_endpoints)})
          .first->second;
  for (const auto& [key, which] : part.no_local_endpoints) ++no_local_counts_[which];
  for (const auto& [key, entry] : part.table) {
    affected.insert(key);
    if (!part.bound.contains(key.address)) wanted_unbound_.insert(key);
    auto& claimants = claims_[key];
    if (!claimants.empty() && claimants.begin()->first < service) {
      const auto& first = claimants.begin()->first;
      log("virtual service " + ipvs::to_string(key) + " is wanted by " + first.namespace_ + "/" + first.name +
          " and " + service.namespace_ + "/" + service.name + "; the first keeps it");
      observer_.object_skipped(k8s::ResourceKind::kService, kReasonDuplicateVirtualService);
    }
    claimants.emplace(service, &part);
  }
  binder_.take(part.bound);
}

const ipvs::TableEntry* Sync::desired_entry(const ipvs::ServiceKey& key) const {
  auto claim = claims_.find(key);
  if (claim == claims_.end() || claim->second.empty()) return nullptr;
  const auto& table = claim->second.begin()->second->table;
  auto entry = table.find(key);
  return entry == table.end() ? nullptr : &entry->second;
}

std::optional<ServiceOrigin> Sync::origin(const ipvs::ServiceKey& key) const {
  auto claim = claims_.find(key);
  if (claim == claims_.end() || claim->second.empty()) return std::nullopt;
  const auto& origins = *claim->second.begin()->second->origins;
  auto found = origins.find(key);
  if (found == origins.end()) return std::nullopt;
  return found->second;
}

std::map<k8s::ObjectKey, HealthCheck> Sync::health_checks() const {
  std::map<k8s::ObjectKey, HealthCheck> all;
  for (const auto& [service, part] : parts_) all.insert(part.health_checks.begin(), part.health_checks.end());
  return all;
}

std::vector<std::shared_ptr<const Sync::OriginMap>> Sync::origin_maps() const {
  std::vector<std::shared_ptr<const OriginMap>> maps;
  maps.reserve(parts_.size());
  for (const auto& [service, part] : parts_) maps.push_back(part.origins);
  return maps;
}

std::map<ipvs::ServiceKey, ServiceOrigin> Sync::origins() const {
  std::map<ipvs::ServiceKey, ServiceOrigin> all;
  for (const auto& [key, claimants] : claims_) {
    if (auto found = origin(key)) all.emplace(key, std::move(*found));
  }
  return all;
}

nftables::NftState Sync::desired_nft() const {
  return nft_state(origins(), binder_.desired(), options_.nft);
}

ipvs::Table Sync::desired() const {
  ipvs::Table table;
  for (const auto& [key, claimants] : claims_) {
    if (const auto* entry = desired_entry(key)) table.emplace(key, *entry);
  }
  return table;
}

bool Sync::owned(const ipvs::ServiceKey& key, const std::set<ipvs::Address>& addresses) const {
  if (owns_service(key, addresses, options_.facts)) return true;
  if (recorded_.contains(key) && !options_.facts.is_excluded(key.address)) return true;
  return key.fwmark == 0 && !options_.facts.is_excluded(key.address) && wanted_unbound_.contains(key);
}

ipvs::Plan Sync::plan_for(const std::set<ipvs::ServiceKey>& keys,
                          const std::set<ipvs::Address>& addresses) const {
  ipvs::Plan plan;
  ipvs::Plan deletes;
  for (const auto& key : keys) {
    const auto* desired = desired_entry(key);
    auto observed = observed_.find(key);
    const auto* current = observed == observed_.end() ? nullptr : &observed->second;
    if (desired == nullptr) {
      if (current != nullptr && owned(key, addresses))
        deletes.append(ipvs::diff_service(key, nullptr, current));
    } else {
      plan.append(ipvs::diff_service(key, desired, current));
    }
  }
  plan.append(deletes);  // as diff() orders them: adds before whole-service deletes
  return plan;
}

ipvs::ConnectionTable Sync::connections_for(const ipvs::Plan& plan) {
  // Only deletes of TCP destinations need counts (UDP and SCTP go at
  // once): read those services' destinations, one listing each.
  std::set<ipvs::ServiceKey> services;
  for (const auto& operation : plan.operations) {
    if (operation.kind == Kind::kDeleteDestination &&
        ipvs::drains_on_delete(operation.service.key.protocol)) {
      services.insert(operation.service.key);
    }
  }
  ipvs::ConnectionTable table;
  for (const auto& key : services) {
    auto listed = backend_.list_destinations(key);
    if (!listed) {
      // Unknown counts: assume busy, so nothing is cut; the next check retries.
      log("cannot read connection counts of " + ipvs::to_string(key) + ": " + listed.error().message);
      for (const auto& operation : plan.operations) {
        if (operation.service.key == key) table[{key, operation.destination.key}] = {1, 0};
      }
      continue;
    }
    for (const auto& state : *listed) {
      table[{key, state.destination.key}] = {state.active_connections, state.inactive_connections};
    }
  }
  return table;
}

void Sync::update_observed(const ipvs::Operation& operation) {
  const auto& key = operation.service.key;
  switch (operation.kind) {
    case Kind::kAddService:
      observed_[key] = ipvs::TableEntry{operation.service, {}};
      break;
    case Kind::kEditService:
      observed_[key].service = operation.service;
      break;
    case Kind::kDeleteService:
      observed_.erase(key);
      if (desired_entry(key) == nullptr) wanted_unbound_.erase(key);
      if (recorded_.erase(key) > 0) recorded_changed_ = true;
      break;
    case Kind::kAddDestination:
    case Kind::kEditDestination: {
      auto [entry, inserted] = observed_.try_emplace(key, ipvs::TableEntry{operation.service, {}});
      entry->second.destinations.insert_or_assign(operation.destination.key, operation.destination);
      break;
    }
    case Kind::kDeleteDestination:
      if (auto entry = observed_.find(key); entry != observed_.end()) {
        entry->second.destinations.erase(operation.destination.key);
      }
      break;
  }
}

std::set<ipvs::ServiceKey> Sync::apply(const ipvs::Plan& plan, const std::set<ipvs::Address>& addresses,
                                       bool reread, const std::vector<ipvs::OperationResult>* given) {
  std::set<ipvs::ServiceKey> failed;
  if (plan.empty()) return failed;
  if (given == nullptr) record_additions(plan);  // a pipelined piece was recorded before it went
  if (resync_) {
    for (const auto& operation : plan.operations) resync_->read.touch(operation.service.key);
  }
  stats_.operations += plan.size();
  std::set<ipvs::ServiceKey> stale;  // the kernel disagrees with observed_
  std::vector<conntrack::ConntrackFlow> gone;
  // In pieces, in order: a first sync's 200,000 results at once would be a
  // transient 20 MB; the backend batches within each piece.
  constexpr std::size_t kPiece = 8192;
  const std::span<const ipvs::Operation> all_operations(plan.operations);
  std::vector<ipvs::OperationResult> asked;
  const std::vector<ipvs::OperationResult>& results = given != nullptr ? *given : asked;
  for (std::size_t at = 0; at < all_operations.size(); ++at) {
    const std::size_t i = given != nullptr ? at : at % kPiece;
    if (given == nullptr && i == 0)
      asked = backend_.apply(all_operations.subspan(at, std::min(kPiece, all_operations.size() - at)));
    const auto& operation = all_operations[at];
    if (i < results.size() && results[i]) {
      applied(operation, gone);
    } else {
      const Error error = i < results.size() ? results[i].error() : Error{EIO, "no answer"};
      refused(operation, error, reread, stale, failed);
    }
  }
  report_applied();
  clear_conntrack(gone);
  if (!stale.empty()) failed.merge(reread_and_apply(stale, addresses));
  return failed;
}

void Sync::applied(const ipvs::Operation& operation, std::vector<conntrack::ConntrackFlow>& gone) {
  const auto& key = operation.service.key;
  if (key.protocol == ipvs::Protocol::kUdp && key.fwmark == 0) {
    if (operation.kind == Kind::kDeleteDestination) {
      gone.push_back(
          {key.address, key.port, operation.destination.key.address, operation.destination.key.port});
    } else if (operation.kind == Kind::kDeleteService) {
      if (auto entry = observed_.find(key); entry != observed_.end()) {
        for (const auto& [destination, unused] : entry->second.destinations)
          gone.push_back({key.address, key.port, destination.address, destination.port});
      }
    }
  }
  update_observed(operation);
  ++applied_[static_cast<std::size_t>(operation.kind)];
}

void Sync::report_applied() {
  for (std::size_t kind = 0; kind < applied_.size(); ++kind) {
    if (applied_[kind] == 0) continue;
    observer_.operation_applied(static_cast<Kind>(kind), OperationOutcome::kOk, applied_[kind]);
    applied_[kind] = 0;
  }
}

void Sync::refused(const ipvs::Operation& operation, const Error& error, bool reread,
                   std::set<ipvs::ServiceKey>& stale, std::set<ipvs::ServiceKey>& failed) {
  const auto& key = operation.service.key;
  const int code = error.code;
  if (is_delete(operation.kind) && (code == ESRCH || code == ENOENT)) {
    // Already gone: what the delete wanted.
    if (operation.kind == Kind::kDeleteService || code == ESRCH) {
      observed_.erase(key);
      if (operation.kind == Kind::kDeleteService && recorded_.erase(key) > 0) recorded_changed_ = true;
    } else {
      update_observed(operation);
    }
    observer_.operation_applied(operation.kind, OperationOutcome::kMissing, 1);
  } else if (reread && (code == EEXIST || code == ESRCH || code == ENOENT)) {
    log(error.message + ": the kernel differs from what kipvs saw; re-reading " + ipvs::to_string(key));
    stale.insert(key);
    observer_.operation_applied(operation.kind,
                                code == EEXIST ? OperationOutcome::kExists : OperationOutcome::kMissing, 1);
  } else {
    log(error.message + "; will retry");
    failed.insert(key);
    ++stats_.failed_operations;
    observer_.operation_applied(operation.kind, OperationOutcome::kFailed, 1);
  }
}

std::set<ipvs::ServiceKey> Sync::reread_and_apply(const std::set<ipvs::ServiceKey>& stale,
                                                  const std::set<ipvs::Address>& addresses) {
  // Adopt what the kernel has for those services, then diff them again.
  std::set<ipvs::ServiceKey> failed;
  auto services = backend_.list_services();
  if (!services) {
    log("cannot list IPVS services: " + services.error().message + "; will retry");
    for (const auto& key : stale) observed_.erase(key);
    return stale;
  }
  ipvs::ConnectionTable connections;
  for (const auto& key : stale) {
    observed_.erase(key);
    auto found =
        std::ranges::find_if(*services, [&key](const auto& state) { return state.service.key == key; });
    if (found == services->end()) continue;
    auto destinations = backend_.list_destinations(key);
    if (!destinations) {
      failed.insert(key);
      continue;
    }
    ipvs::TableEntry entry{found->service, {}};
    for (const auto& state : *destinations) {
      entry.destinations.emplace(state.destination.key, state.destination);
      connections[{key, state.destination.key}] = {state.active_connections, state.inactive_connections};
    }
    observed_.emplace(key, std::move(entry));
  }
  auto drained = ipvs::apply_drain_policy(plan_for(stale, addresses), observed_, connections, draining_,
                                          options_.clock(), {.grace_period = options_.grace_period});
  draining_ = std::move(drained.draining);
  failed.merge(apply(drained.plan, addresses, /*reread=*/false));
  return failed;
}

void Sync::clear_stale_conntrack(const std::set<ipvs::ServiceKey>& keys) {
  conntrack::UdpServing serving;
  for (const auto& key : keys) {
    if (key.protocol != ipvs::Protocol::kUdp || key.fwmark != 0) continue;
    const auto* entry = desired_entry(key);
    if (entry == nullptr || entry->destinations.empty()) continue;  // nothing to send them to yet
    auto& servers = serving[{key.address, key.port}];
    for (const auto& [destination, unused] : entry->destinations)
      servers.insert({destination.address, destination.port});
  }
  if (!serving.empty()) log_stale_conntrack(conntrack_.delete_stale_udp(serving));
}

void Sync::sweep_stale_conntrack() {
  // A family is swept when one of its UDP services has a real server. Keys
  // sort by family, then protocol: a family's UDP services are one run.
  std::vector<ipvs::Family> families;
  for (const auto family : {ipvs::Family::kIPv4, ipvs::Family::kIPv6}) {
    const ipvs::ServiceKey first{
        .family = family, .protocol = ipvs::Protocol::kUdp, .address = {.family = family}};
    for (auto claim = claims_.lower_bound(first); claim != claims_.end() && claim->first.family == family &&
                                                  claim->first.protocol == ipvs::Protocol::kUdp;
         ++claim) {
      const auto* entry = claim->first.fwmark == 0 ? desired_entry(claim->first) : nullptr;
      if (entry != nullptr && !entry->destinations.empty()) {
        families.push_back(family);
        break;
      }
    }
  }
  if (families.empty()) return;
  log_stale_conntrack(conntrack_.delete_unserved_udp(families, [this](const conntrack::ConntrackFlow& flow) {
    const auto* entry = desired_entry({.family = flow.service.family,
                                       .protocol = ipvs::Protocol::kUdp,
                                       .address = flow.service,
                                       .port = flow.service_port});
    return entry != nullptr && !entry->destinations.empty() &&
           !entry->destinations.contains(ipvs::DestinationKey{flow.endpoint, flow.endpoint_port});
  }));
}

void Sync::log_stale_conntrack(const std::expected<std::size_t, Error>& deleted) {
  if (!deleted) {
    log("cannot clear stale UDP conntrack entries: " + deleted.error().message);
  } else if (*deleted > 0) {
    log("cleared " + std::to_string(*deleted) +
        " stale UDP conntrack entries (to a Service, not answered by one of its endpoints)");
  }
}

void Sync::clear_conntrack(const std::vector<conntrack::ConntrackFlow>& flows) {
  if (flows.empty()) return;
  // A failure is logged only: the entries time out by themselves (udp
  // conntrack timeout), and the IPVS state is already right.
  if (auto deleted = conntrack_.delete_udp_flows(flows); !deleted) {
    log("cannot clear conntrack entries of " + std::to_string(flows.size()) +
        " removed UDP real server(s): " + deleted.error().message);
  } else if (*deleted > 0) {
    log("cleared " + std::to_string(*deleted) + " conntrack entries of removed UDP real servers");
  }
}

bool Sync::sync_nft(bool all, const std::set<ipvs::ServiceKey>& affected, bool in_background) {
  if (!nft_.enabled()) return true;
  if (!all && nft_.up_to_date() && !binder_.desired_changed() &&
      nft_.same_origins(affected, [this](const ipvs::ServiceKey& key) { return origin(key); }))
    return true;
  ++stats_.nft_computations;
  return nft_.write(origins(), binder_.desired(), in_background);
}

void Sync::record_additions(const ipvs::Plan& plan) {
  if (!options_.owned_services.enabled()) return;
  // Nothing but additions since the text was last written whole: the new
  // keys go at its end.
  const bool appending = record_text_exact_ && !recorded_changed_;
  bool added = false;
  for (const auto& operation : plan.operations) {
    if (operation.kind == Kind::kAddService && operation.service.key.fwmark == 0 &&
        recorded_.insert(operation.service.key).second) {
      added = true;
      if (appending) OwnedServicesFile::append_line(record_text_, operation.service.key);
    }
  }
  if (!added && !recorded_changed_) return;
  if (!appending) return store_record();
  report_stored(options_.owned_services.store_text(record_text_));
}

void Sync::store_record() {
  recorded_changed_ = false;
  record_text_ = OwnedServicesFile::render(recorded_);
  record_text_exact_ = true;
  report_stored(options_.owned_services.store_text(record_text_));
}

void Sync::report_stored(const std::expected<void, Error>& stored) {
  // Said once, not at every sync, until it works again.
  if (!stored && !record_failing_) {
    log("cannot record kipvs's virtual services (a crash before their addresses are bound would leave them "
        "to no one): " +
        stored.error().text());
  }
  record_failing_ = !stored;
}

// ---------------------------------------------------------------------------
// The syncs

bool Sync::sync_dirty() {
  if (!initial_sync_done_) return sync_full();
  phases_.start();
  const auto started = options_.clock();
  observer_.sync_started(SyncKind::kIncremental);
  std::set<ipvs::ServiceKey> affected = std::move(dirty_keys_);
  dirty_keys_.clear();
  const std::set<k8s::ObjectKey> recomputed = std::move(dirty_);
  dirty_.clear();
  pending_slice_changes_ = 0;
  for (const auto& service : recomputed) recompute(service, affected);
  phases_.lap("state");

  // Only the addresses that came or went are looked at, unless the link
  // has to be (re)read. New addresses are bound after the IPVS apply below.
  const bool all_addresses = !binder_.link_ready();
  binder_.prepare_link();
  binder_.refresh_owned(all_addresses);
  phases_.lap("addresses");

  auto plan = plan_for(affected, binder_.owned());
  const auto connections = connections_for(plan);
  auto drained = ipvs::apply_drain_policy(std::move(plan), observed_, connections, draining_,
                                          options_.clock(), {.grace_period = options_.grace_period});
  draining_ = std::move(drained.draining);
  phases_.lap("diff");
  // Masquerade rules first: a virtual service never works without them.
  const bool nft_ok = sync_nft(/*all=*/false, affected);
  phases_.lap("nftables");
  // UDP services that had no real server until now: entries their clients
  // made meanwhile point nowhere (cleared once the servers are in).
  std::set<ipvs::ServiceKey> first_servers;
  for (const auto& key : affected) {
    if (key.protocol != ipvs::Protocol::kUdp || key.fwmark != 0) continue;
    const auto observed = observed_.find(key);
    if (observed == observed_.end() || observed->second.destinations.empty()) first_servers.insert(key);
  }
  const auto failed = apply(drained.plan, binder_.owned(), /*reread=*/true);
  if (recorded_changed_) store_record();  // deleted services leave the record
  if (!first_servers.empty()) clear_stale_conntrack(first_servers);
  phases_.lap("ipvs");
  // Bound only now that its virtual service is there: a cluster IP bound
  // first answers SYNs with a reset until then, which is what a client saw
  // when another proxy handed the Service over (it had already let go).
  binder_.bind(all_addresses);
  binder_.unbind_stale(all_addresses, observed_, options_.facts);
  binder_.refresh_owned(all_addresses);
  binder_.end_sync();
  phases_.lap("addresses");
  ++stats_.incremental_syncs;
  finish(SyncKind::kIncremental, started, PlanCounts::of(drained.plan), recomputed.size(), failed,
         recomputed);
  return failed.empty() && nft_ok;
}

bool Sync::sync_full() {
  phases_.start();
  const auto started = options_.clock();
  observer_.sync_started(SyncKind::kFull);
  if (cold_start_ == ColdStart::kEarly && !initial_sync_done_) {
    cold_start_ = ColdStart::kNo;
    if (early_piece_) land_early_piece();
    phases_.lap("ipvs");
    log("cold start: " + std::to_string(early_counts_.total) + " IPVS operations written during the lists (" +
        std::to_string(early_pieces_) + " pieces); the first sync writes the rest");
    // observed_ is what kipvs wrote into an empty table: nothing to read.
    return sync_full_adopted({}, started, /*reread_link=*/false, /*after_early_writes=*/true);
  }
  return sync_full_from(backend_.list_all(), started);
}

bool Sync::start_resync() {
  if (resync_ || stopped_) return true;  // one read at a time
  PhaseTimes phases;
  phases.start();
  // IPv6 services are none of kipvs's business on an IPv4 node that has
  // never seen one (the first sync reads every family): the kernel then
  // lists the IPv4 ones faster. Keys sort by family, IPv4 first.
  const auto has_ipv6 = [](const auto& keys) {
    return !keys.empty() && keys.rbegin()->first.family != ipvs::Family::kIPv4;
  };
  const bool ipv4_only = std::ranges::find(options_.facts.ip_families, ipvs::Family::kIPv6) ==
                             options_.facts.ip_families.end() &&
                         !has_ipv6(observed_) &&
                         (recorded_.empty() || recorded_.rbegin()->family == ipvs::Family::kIPv4);
  auto read = StepwiseKernelRead::begin(backend_, ipv4_only, options_.clock());
  if (!read) return false;
  phases.lap("read");
  observer_.sync_started(SyncKind::kFull);
  resync_.emplace(Resync{
      .read = std::move(*read), .phases = std::move(phases), .counts = {}, .failed = {}, .connections = {}});
  refresh_local_addresses();
  boost::asio::post(io_, [this] { read_kernel_piece(); });
  return true;
}

void Sync::read_kernel_piece() {
  if (!resync_ || stopped_) return;
  auto& resync = *resync_;
  resync.phases.resume();
  ipvs::Plan repairs;
  // The comparison counts as "read": a clock read per service would cost
  // more than the comparison in an emulated guest (HPET).
  const bool done =
      resync.read.read_piece(backend_, options_.resync_read_piece, [&](ipvs::ServiceWithDestinations&& read) {
        const auto key = read.service.service.key;
        ipvs::add_connections(resync.connections, read);
        // Newer than what observed_ had: a sync's writes happen on this
        // thread, so none came between the read and now.
        auto [observed, added] = observed_.try_emplace(key);
        if (added || !ipvs::same_as(observed->second, read)) observed->second = ipvs::entry_from(read);
        // kipvs's unwanted services go at the end, after every add.
        if (const auto* desired = desired_entry(key))
          repairs.append(ipvs::diff_service(key, desired, &observed->second));
      });
  resync.phases.lap("read");
  repair_piece(resync, std::move(repairs));
  if (!done) {
    boost::asio::post(io_, [this] { read_kernel_piece(); });
    return;
  }
  finish_resync();
}

void Sync::repair_piece(Resync& resync, ipvs::Plan repairs) {
  if (repairs.empty()) return;
  auto drained = ipvs::apply_drain_policy(std::move(repairs), observed_, resync.connections, draining_,
                                          options_.clock(), {.grace_period = options_.grace_period});
  draining_ = std::move(drained.draining);
  resync.phases.lap("diff");
  if (drained.plan.empty()) return;
  resync.counts.add(drained.plan);
  resync.failed.merge(apply(drained.plan, binder_.owned(), /*reread=*/true));
  resync.phases.lap("ipvs");
}

void Sync::finish_resync() {
  if (!resync_ || stopped_) return;
  Resync& resync = *resync_;
  resync.phases.resume();
  // Each step is one walk at most: at 10,000 Services in an emulated guest
  // two walks in one turn of the loop hold a change ~100 ms.
  switch (resync.step++) {
    case 0:
      // A piece that could not be read: what was read is repaired, the rest
      // (and anything that needs the whole table) waits for the next resync.
      if (resync.read.failure()) {
        Resync failed = std::move(*resync_);
        resync_.reset();
        phases_ = std::move(failed.phases);
        dump_failed(*failed.read.failure(), failed.read.started());
        return;
      }
      dump_backoff_ = milliseconds{0};
      // Gone from the kernel since the last look, behind kipvs's back.
      std::erase_if(observed_, [&resync](const auto& item) { return !resync.read.present(item.first); });
      resync.phases.lap("read");
      break;
    case 1:
      nft_.check_present();
      resync.phases.lap("nftables");
      break;
    case 2:
      binder_.forget_link();  // re-read: someone may have removed an address
      binder_.prepare_link();
      resync.phases.lap("addresses");
      break;
    case 3:
      binder_.bind(/*all=*/true);
      binder_.refresh_owned(/*all=*/true);
      resync.phases.lap("addresses");
      break;
    case 4:
      sync_nft(/*all=*/false, {});  // a failure is retried (finish() sees nft_.failed())
      resync.phases.lap("nftables");
      break;
    case 5: {
      const auto keys = full_sync_keys(/*every_wanted=*/false, resync.desired);
      resync.failed.merge(write_in_pieces(keys, resync.connections, resync.counts));
      resync.phases.lap("ipvs");
      break;
    }
    case 6:
      trim_record();
      resync.phases.lap("ipvs");
      break;
    case 7:
      sweep_stale_conntrack();
      resync.phases.lap("conntrack");
      break;
    case 8:
      binder_.unbind_stale(/*all=*/true, observed_, options_.facts);
      binder_.refresh_owned(/*all=*/true);
      binder_.end_sync();
      resync.phases.lap("addresses");
      break;
    default: {
      Resync done = std::move(*resync_);
      resync_.reset();
      phases_ = std::move(done.phases);
      ++stats_.full_syncs;
      finish(SyncKind::kFull, done.read.started(), done.counts, done.desired, done.failed, {});
      arm_resync();
      // A turn of its own: giving back a large heap's free pages takes a
      // while too.
      boost::asio::post(io_, [this] {
        if (!stopped_) release_free_memory();
      });
      return;
    }
  }
  boost::asio::post(io_, [this] { finish_resync(); });
}

bool Sync::sync_full_from(Dump dump, ipvs::DrainClock::time_point started) {
  if (!dump) return dump_failed(dump.error(), started);
  dump_backoff_ = milliseconds{0};
  const auto connections = adopt_dump(*dump);
  phases_.lap("read");  // the kernel's dump and the table made from it
  return sync_full_adopted(connections, started);
}

bool Sync::sync_full_adopted(const ipvs::ConnectionTable& connections, ipvs::DrainClock::time_point started,
                             bool reread_link, bool after_early_writes) {
  nft_.check_present();
  phases_.lap("nftables");
  if (reread_link) binder_.forget_link();  // someone may have removed an address

  std::set<ipvs::ServiceKey> affected;
  std::set<k8s::ObjectKey> recomputed = recompute_all_dirty(affected);
  recomputed.merge(early_recomputed_);  // the cold start's: their latencies end here
  early_recomputed_.clear();
  // After a cold start's writes, observed_ is what they wrote: only what
  // they have not written as wanted needs comparing (at 10,000 Services the
  // comparison of every key costs a second in an emulated guest): what is
  // absent, what changed since (recomputed now, or recomputed and not yet
  // written), and what failed. The first periodic resync reads the kernel.
  std::optional<std::set<ipvs::ServiceKey>> to_compare;
  if (after_early_writes) {
    to_compare = affected;
    to_compare->merge(early_keys_);
    to_compare->merge(early_failed_);
  }
  early_keys_.clear();
  early_failed_.clear();
  early_ready_ = {};
  phases_.lap("state");

  // The nftables table is written in the same sync as the virtual services:
  // a whole table (a first sync's) on a worker thread while the IPVS rules
  // are written below, since both are seconds at 10,000 Services and share
  // nothing; the sync ends only when both are done. The plan is made in
  // pieces, so libnftables's parse and the plan stay small together.
  // A resync compares the table only where something changed (the table's
  // presence was checked above): recomputing it all costs seconds at 10,000
  // Services in an emulated guest, for nothing.
  bool nft_ok = sync_nft(/*all=*/false, affected, /*in_background=*/true);
  phases_.lap("nftables");

  // The binds wait for that table on their worker: a bound address is
  // reachable at once, and its rules must be there first.
  binder_.bind(/*all=*/true, /*in_background=*/true, nft_.waiter());
  binder_.refresh_owned(/*all=*/true);
  phases_.lap("addresses");

  std::size_t desired = 0;
  const auto keys =
      full_sync_keys(/*every_wanted=*/!to_compare, desired, to_compare ? &*to_compare : nullptr);
  PlanCounts counts = std::exchange(early_counts_, {});  // a cold start's writes are this sync's too
  const auto failed = write_in_pieces(keys, connections, counts);
  trim_record();
  sweep_stale_conntrack();
  nft_ok = nft_.collect() && nft_ok;  // the time spent waiting counts as "nftables"
  release_free_memory();
  phases_.lap("nftables");
  binder_.collect();  // the time spent waiting counts as "addresses"
  binder_.unbind_stale(/*all=*/true, observed_, options_.facts);
  binder_.refresh_owned(/*all=*/true);
  binder_.end_sync();
  phases_.lap("addresses");
  ++stats_.full_syncs;
  const bool first = !initial_sync_done_;
  initial_sync_done_ = true;
  finish(SyncKind::kFull, started, counts, desired, failed, recomputed);
  release_free_memory();
  if (first && !dirty_.empty()) request_sync();
  arm_resync();
  return failed.empty() && nft_ok;
}

bool Sync::dump_failed(const Error& error, ipvs::DrainClock::time_point started) {
  // Back off from retry_min, but never wait longer than a resync would:
  // until the first dump succeeds nothing is programmed.
  dump_backoff_ = dump_backoff_.count() == 0 ? options_.retry_min
                                             : std::min({dump_backoff_ * 2, options_.retry_max,
                                                         duration_cast<milliseconds>(options_.sync_period)});
  log("cannot read the IPVS table: " + error.message + "; retrying in " +
      std::to_string(dump_backoff_.count()) + " ms");
  observer_.sync_finished(SyncKind::kFull, duration_cast<nanoseconds>(options_.clock() - started), false);
  arm_resync(dump_backoff_);
  return false;
}

ipvs::ConnectionTable Sync::adopt_dump(std::vector<ipvs::ServiceWithDestinations>& dump) {
  observed_.clear();  // not two whole tables at once
  observed_ = ipvs::table_from(dump);
  auto connections = ipvs::connections_from(dump);
  dump.clear();
  return connections;
}

void Sync::refresh_local_addresses() {
  if (!options_.local_addresses) return;
  auto local = options_.local_addresses();
  if (local == options_.facts.local_addresses) return;
  options_.facts.local_addresses = std::move(local);
  for (const auto& [key, service] : services_) dirty_.insert(key);
  report_pending();
  request_sync();
}

std::set<k8s::ObjectKey> Sync::recompute_all_dirty(std::set<ipvs::ServiceKey>& affected) {
  refresh_local_addresses();
  std::set<k8s::ObjectKey> recomputed = std::move(dirty_);
  dirty_.clear();
  dirty_keys_.clear();
  pending_slice_changes_ = 0;
  for (const auto& service : recomputed) recompute(service, affected);
  return recomputed;
}

Sync::FullSyncKeys Sync::full_sync_keys(bool every_wanted, std::size_t& desired,
                                        const std::set<ipvs::ServiceKey>* also) {
  std::erase_if(wanted_unbound_, [this](const auto& key) {
    return desired_entry(key) == nullptr && !observed_.contains(key);
  });
  // Both maps are sorted by key: one walk of the two, no lookups.
  FullSyncKeys keys;
  desired = 0;
  auto claim = claims_.begin();
  auto seen = observed_.begin();
  while (claim != claims_.end() || seen != observed_.end()) {
    const bool claimed = claim != claims_.end() && (seen == observed_.end() || claim->first <= seen->first);
    const bool present = seen != observed_.end() && (claim == claims_.end() || seen->first <= claim->first);
    const ipvs::ServiceKey& key = claimed ? claim->first : seen->first;
    // A claim names Services whose part has the key (recompute keeps it so).
    const bool wanted = claimed && !claim->second.empty();
    desired += wanted ? 1 : 0;
    if (wanted && (every_wanted || !present || (also != nullptr && also->contains(key))))
      keys.wanted.push_back(key);
    if (!wanted && present && owned(key, binder_.owned())) keys.unwanted.push_back(key);
    if (claimed) ++claim;
    if (present) ++seen;
  }
  return keys;
}

std::size_t Sync::most_operations(const ipvs::ServiceKey& key) const {
  const auto* entry = desired_entry(key);
  auto observed = observed_.find(key);
  return 1 + entry->destinations.size() +
         (observed == observed_.end() ? 0 : observed->second.destinations.size());
}

std::size_t Sync::most_operations(std::span<const ipvs::ServiceKey> keys, std::size_t enough) const {
  std::size_t total = 0;
  for (const auto& key : keys) {
    if (total > enough) break;
    total += most_operations(key);
  }
  return total;
}

std::set<ipvs::ServiceKey> Sync::write_in_pieces(const FullSyncKeys& keys,
                                                 const ipvs::ConnectionTable& connections,
                                                 PlanCounts& counts) {
  // Planned and applied a piece at a time, in key order: a first sync at
  // 10,000 Services plans 200,000 operations, and a whole plan (or a merged
  // copy of the desired table to diff against) would be tens of MB at once.
  // Whole-service deletes still come last, after every add, as in diff().
  auto draining = ipvs::prune_drains(draining_, observed_);
  std::set<ipvs::ServiceKey> failed;
  constexpr std::size_t kPieceOperations = 8192;
  const auto estimate = [&](const ipvs::ServiceKey& key) { return most_operations(key); };
  // With more than one piece to write (a first sync), a piece's writes go to
  // a worker thread while the next piece is planned here. The worker has
  // the IPVS backend to itself until its results are recorded here, before
  // the next piece goes: the kernel still sees the pieces in order.
  const bool pipelined = most_operations(keys.wanted, kPieceOperations) > kPieceOperations;
  struct PieceInFlight {
    ipvs::Plan plan;
    std::future<std::vector<ipvs::OperationResult>> results;
  };
  std::optional<PieceInFlight> in_flight;
  const auto land = [&] {
    if (!in_flight) return;
    const auto results = in_flight->results.get();
    failed.merge(apply(in_flight->plan, binder_.owned(), /*reread=*/true, &results));
    in_flight.reset();
    phases_.lap("ipvs");
  };
  const auto plan_and_apply = [&](std::span<const ipvs::ServiceKey> piece_keys) {
    auto drained = ipvs::apply_drain_policy(plan_for({piece_keys.begin(), piece_keys.end()}, binder_.owned()),
                                            observed_, connections, draining, options_.clock(),
                                            {.grace_period = options_.grace_period});
    draining = std::move(drained.draining);
    counts.add(drained.plan);
    phases_.lap("diff");
    land();
    if (drained.plan.empty()) return;
    if (pipelined) {
      record_additions(drained.plan);
      auto& piece = in_flight.emplace(PieceInFlight{.plan = std::move(drained.plan), .results = {}});
      try {
        piece.results = std::async(
            std::launch::async,
            [backend = &backend_, operations = std::span<const ipvs::Operation>(piece.plan.operations)] {
              return backend->apply(operations);
            });
        return;
      } catch (const std::system_error&) {
        drained.plan = std::move(piece.plan);  // no thread: written here
        in_flight.reset();
      }
    }
    failed.merge(apply(drained.plan, binder_.owned(), /*reread=*/true));
    phases_.lap("ipvs");
  };
  const auto& wanted = keys.wanted;
  std::size_t piece_start = 0;
  std::size_t piece_operations = 0;  // at most this many
  for (std::size_t i = 0; i < wanted.size(); ++i) {
    piece_operations += estimate(wanted[i]);
    if (piece_operations >= kPieceOperations || i + 1 == wanted.size()) {
      plan_and_apply(std::span(wanted).subspan(piece_start, i + 1 - piece_start));
      piece_start = i + 1;
      piece_operations = 0;
    }
  }
  land();  // every add before the deletes
  if (!keys.unwanted.empty()) plan_and_apply(keys.unwanted);
  land();
  draining_ = std::move(draining);
  return failed;
}

void Sync::trim_record() {
  // Recorded, yet not in the kernel: added by no one (a crash before the
  // add) or deleted by someone else.
  if (std::erase_if(recorded_, [this](const auto& key) { return !observed_.contains(key); }) > 0)
    recorded_changed_ = true;
  if (recorded_changed_) store_record();
}

void Sync::finish(SyncKind kind, ipvs::DrainClock::time_point started, const PlanCounts& plan,
                  std::size_t services, const std::set<ipvs::ServiceKey>& failed,
                  const std::set<k8s::ObjectKey>& recomputed) {
  const auto elapsed = duration_cast<nanoseconds>(options_.clock() - started);
  stats_.last_operations = plan.total;
  last_sync_end_ = std::chrono::steady_clock::now();

  if (!failed.empty() || nft_.failed()) {
    retry_keys_.insert(failed.begin(), failed.end());
    arm_retry();
  } else if (retry_keys_.empty()) {
    backoff_ = milliseconds{0};
  }
  // Latency: a Service counts as programmed when none of its virtual
  // services failed.
  const auto wall_now = options_.wall_clock();
  for (const auto& service : recomputed) {
    auto it = triggers_.find(service);
    if (it == triggers_.end()) continue;
    bool ok = true;
    if (auto part = parts_.find(service); part != parts_.end()) {
      for (const auto& [key, entry] : part->second.table) ok &= !failed.contains(key);
    }
    if (!ok) continue;
    for (const auto& [when, family] : it->second)
      observer_.network_programming_latency(family, wall_now - when);
    triggers_.erase(it);
  }
  observer_.drains_in_progress(draining_.size());
  for (const auto family : options_.facts.families()) {
    const auto count = [&](bool internal) {
      auto it = no_local_counts_.find(NoLocalEndpoints{family, internal});
      return it == no_local_counts_.end() ? std::size_t{0} : it->second;
    };
    observer_.no_local_endpoints(family, count(true), count(false));
  }
  report_pending();
  observer_.sync_finished(kind, elapsed, failed.empty() && !nft_.failed());
  arm_drain_check();
  schedule_promotion();

  if (kind == SyncKind::kFull || plan.total != 0 || !failed.empty() || !recomputed.empty()) {
    std::ostringstream line;
    line << "sync " << to_string(kind) << ": " << (kind == SyncKind::kFull ? services : recomputed.size())
         << (kind == SyncKind::kFull ? " virtual services" : " services changed") << ", " << plan.total
         << " operations" << plan_summary(plan.by_kind) << ", " << draining_.size() << " draining, "
         << (failed.empty() ? std::string("ok") : std::to_string(failed.size()) + " failed") << ", "
         << duration_cast<std::chrono::microseconds>(elapsed).count() / 1000.0 << " ms" << phases_.summary();
    log(line.str());
  }
}

}  // namespace kipvs::agent
