#include "ipvs/fake_backend.h"

#include <cerrno>
#include <climits>
#include <system_error>

namespace kipvs::ipvs {
namespace {

std::size_t index(Operation::Kind kind) {
  return static_cast<std::size_t>(kind);
}

Error read_error(int code, const std::string& what) {
  return Error{code, what + ": " + std::generic_category().message(code)};
}

bool valid_family(Family family) {
  return family == Family::kIPv4 || family == Family::kIPv6;
}

// ip_vs_set_timeout rejects values that overflow jiffies; Debian's kernel
// runs with HZ=250.
constexpr std::uint32_t kMaxTimeoutSeconds = INT_MAX / 250;

}  // namespace

std::set<std::string> FakeBackend::default_schedulers() {
  return {"rr", "wrr", "lc", "wlc", "fo", "ovf", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh"};
}

FakeBackend::FakeBackend(std::set<std::string> schedulers) : schedulers_(std::move(schedulers)) {}

std::vector<OperationResult> FakeBackend::apply(std::span<const Operation> operations) {
  ++apply_calls_;
  std::vector<OperationResult> results;
  results.reserve(operations.size());
  for (const Operation& operation : operations) {
    const std::size_t kind = index(operation.kind);
    ++counts_[kind];
    if (failures_left_[kind] > 0) {
      --failures_left_[kind];
      results.emplace_back(std::unexpected(operation_error(operation, failure_code_[kind])));
      continue;
    }
    results.push_back(apply_one(operation));
  }
  return results;
}

int FakeBackend::check_service_options(const Service& service) const {
  // ip_vs_add_service / ip_vs_edit_service: the scheduler first, then the
  // IPv6 prefix.
  if (service.scheduler != "none" && !schedulers_.contains(service.scheduler)) return ENOENT;
  if (service.key.family == Family::kIPv6 && (service.netmask < 1 || service.netmask > 128)) return EINVAL;
  return 0;
}

OperationResult FakeBackend::apply_one(const Operation& operation) {
  const ServiceKey& key = operation.service.key;
  auto fail = [&](int code) -> OperationResult { return std::unexpected(operation_error(operation, code)); };

  // ip_vs_genl_parse_service: the family is checked before anything else.
  if (!valid_family(key.family)) return fail(EAFNOSUPPORT);
  auto found = services_.find(key);

  if (operation.kind == Operation::Kind::kAddService) {
    if (found != services_.end()) return fail(EEXIST);
    if (const int code = check_service_options(operation.service); code != 0) return fail(code);
    Entry entry;
    entry.state.service = operation.service;
    entry.state.service.flags &= ~flags::kHashed;
    services_.emplace(key, std::move(entry));
    return {};
  }
  // Every other command needs an existing service (ip_vs_genl_set_cmd).
  if (found == services_.end()) return fail(ESRCH);
  Entry& entry = found->second;

  switch (operation.kind) {
    case Operation::Kind::kAddService:
      break;  // handled above
    case Operation::Kind::kEditService: {
      if (const int code = check_service_options(operation.service); code != 0) return fail(code);
      entry.state.service = operation.service;
      entry.state.service.flags &= ~flags::kHashed;
      return {};
    }
    case Operation::Kind::kDeleteService:
      services_.erase(found);
      return {};
    case Operation::Kind::kAddDestination:
    case Operation::Kind::kEditDestination:
    case Operation::Kind::kDeleteDestination: {
      const Destination& destination = operation.destination;
      if (!valid_family(destination.key.address.family)) return fail(EAFNOSUPPORT);
      const bool del = operation.kind == Operation::Kind::kDeleteDestination;
      // Mixed families are only possible through a tunnel.
      if (!del && destination.key.address.family != key.family &&
          destination.forwarding != Forwarding::kTunnel) {
        return fail(EINVAL);
      }
      auto existing = entry.destinations.find(destination.key);
      if (del) {
        if (existing == entry.destinations.end()) return fail(ENOENT);
        entry.destinations.erase(existing);
        return {};
      }
      // ip_vs_add_dest / ip_vs_edit_dest check ranges before the lookup.
      if (destination.weight < 0) return fail(ERANGE);
      if (destination.lower_threshold > destination.upper_threshold) return fail(ERANGE);
      if (operation.kind == Operation::Kind::kAddDestination) {
        if (existing != entry.destinations.end()) return fail(EEXIST);
        DestinationState state;
        state.destination = destination;
        entry.destinations.emplace(destination.key, state);
        return {};
      }
      if (existing == entry.destinations.end()) return fail(ENOENT);
      existing->second.destination = destination;
      return {};
    }
  }
  return fail(EINVAL);
}

std::expected<std::vector<ServiceState>, Error> FakeBackend::list_services() {
  if (read_failure_ != 0) return std::unexpected(read_error(read_failure_, "list services"));
  std::vector<ServiceState> out;
  out.reserve(services_.size());
  for (const auto& [key, entry] : services_) out.push_back(entry.state);
  return out;
}

std::expected<std::vector<ServiceState>, Error> FakeBackend::list_service_settings(bool ipv4_only) {
  last_settings_ipv4_only_ = ipv4_only;
  auto services = list_services();
  if (services && ipv4_only) {
    std::erase_if(*services,
                  [](const ServiceState& state) { return state.service.key.family != Family::kIPv4; });
  }
  return services;
}

std::expected<std::vector<DestinationState>, Error> FakeBackend::list_destinations(
    const ServiceKey& service) {
  if (read_failure_ != 0) return std::unexpected(read_error(read_failure_, "list destinations"));
  std::vector<DestinationState> out;
  // ip_vs_genl_dump_dests ends an unknown service's dump with nothing in it.
  auto found = services_.find(service);
  if (found == services_.end()) return out;
  for (const auto& [key, state] : found->second.destinations) out.push_back(state);
  return out;
}

std::expected<std::vector<ServiceWithDestinations>, Error> FakeBackend::list_all() {
  ++list_all_calls_;
  if (read_failure_ != 0) return std::unexpected(read_error(read_failure_, "list services"));
  std::vector<ServiceWithDestinations> out;
  out.reserve(services_.size());
  for (const auto& [key, entry] : services_) {
    ServiceWithDestinations item;
    item.service = entry.state;
    for (const auto& [dkey, state] : entry.destinations) item.destinations.push_back(state);
    out.push_back(std::move(item));
  }
  return out;
}

std::expected<Timeouts, Error> FakeBackend::get_timeouts() {
  if (read_failure_ != 0) return std::unexpected(read_error(read_failure_, "get timeouts"));
  return timeouts_;
}

std::expected<void, Error> FakeBackend::set_timeouts(const Timeouts& timeouts) {
  if (read_failure_ != 0) return std::unexpected(read_error(read_failure_, "set timeouts"));
  if (timeouts.tcp > kMaxTimeoutSeconds || timeouts.tcp_fin > kMaxTimeoutSeconds ||
      timeouts.udp > kMaxTimeoutSeconds) {
    return std::unexpected(read_error(EINVAL, "set timeouts"));
  }
  if (timeouts.tcp != 0) timeouts_.tcp = timeouts.tcp;
  if (timeouts.tcp_fin != 0) timeouts_.tcp_fin = timeouts.tcp_fin;
  if (timeouts.udp != 0) timeouts_.udp = timeouts.udp;
  return {};
}

std::expected<Info, Error> FakeBackend::get_info() {
  if (read_failure_ != 0) return std::unexpected(read_error(read_failure_, "get info"));
  return Info{0x010201, 4096};  // IP_VS_VERSION_CODE 1.2.1, the default table size
}

std::expected<void, Error> FakeBackend::flush() {
  if (read_failure_ != 0) return std::unexpected(read_error(read_failure_, "flush"));
  services_.clear();
  return {};
}

std::size_t FakeBackend::count(Operation::Kind kind) const {
  return counts_[index(kind)];
}

std::size_t FakeBackend::total_operations() const {
  std::size_t total = 0;
  for (std::size_t n : counts_) total += n;
  return total;
}

void FakeBackend::reset_counts() {
  counts_ = {};
  apply_calls_ = 0;
  list_all_calls_ = 0;
}

void FakeBackend::fail_next(Operation::Kind kind, int code, std::size_t times) {
  failures_left_[index(kind)] = times;
  failure_code_[index(kind)] = code;
}

bool FakeBackend::set_connections(const ServiceKey& service, const DestinationKey& destination,
                                  std::uint32_t active, std::uint32_t inactive) {
  auto found = services_.find(service);
  if (found == services_.end()) return false;
  auto dest = found->second.destinations.find(destination);
  if (dest == found->second.destinations.end()) return false;
  dest->second.active_connections = active;
  dest->second.inactive_connections = inactive;
  return true;
}

bool FakeBackend::set_stats(const ServiceKey& service, const Stats& stats) {
  auto found = services_.find(service);
  if (found == services_.end()) return false;
  found->second.state.stats = stats;
  return true;
}

std::size_t FakeBackend::destination_count() const {
  std::size_t total = 0;
  for (const auto& [key, entry] : services_) total += entry.destinations.size();
  return total;
}

}  // namespace kipvs::ipvs
