#pragma once
// An in-memory IPVS table behind the Backend interface, for unit tests of the
// layers above (the sync loop, the reconciler). It enforces the kernel's rules
// with the kernel's errno values (net/netfilter/ipvs/ip_vs_ctl.c,
// ip_vs_genl_set_cmd and the functions it calls):
//   add service that exists                      -> EEXIST
//   edit/delete a missing service                -> ESRCH
//   any destination operation, missing service   -> ESRCH
//   add a destination that exists                -> EEXIST
//   edit/delete a missing destination            -> ENOENT
//   unknown scheduler on add/edit                -> ENOENT ("none" means no scheduler)
//   IPv6 persistence prefix outside 1..128       -> EINVAL
//   weight < 0, lower threshold > upper          -> ERANGE
//   destination family != service family, unless tunnelling -> EINVAL
//   address family other than IPv4/IPv6          -> EAFNOSUPPORT
// and the kernel's quirks: listing the destinations of a missing service is an
// empty list, not an error; zero timeouts in set_timeouts leave values as
// they are. Lists come back sorted by key (the kernel's order is its hash
// order: callers must not depend on either).
//
// It counts operations by kind, so a test can say "one endpoint added costs
// exactly one destination add", and it can fail the next N operations of a
// kind with a chosen errno. Not thread-safe, like the agent that uses it.

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>

#include "ipvs/backend.h"

namespace kipvs::ipvs {

class FakeBackend : public Backend {
 public:
  // The schedulers Debian's 6.1 kernel ships as modules.
  static std::set<std::string> default_schedulers();

  explicit FakeBackend(std::set<std::string> schedulers = default_schedulers());

  [[nodiscard]] std::vector<OperationResult> apply(std::span<const Operation> operations) override;
  [[nodiscard]] std::expected<std::vector<ServiceState>, Error> list_services() override;
  // As the kernel's socket options would: IPv4 services alone when asked.
  [[nodiscard]] std::expected<std::vector<ServiceState>, Error> list_service_settings(
      bool ipv4_only) override;
  [[nodiscard]] std::expected<std::vector<DestinationState>, Error> list_destinations(
      const ServiceKey& service) override;
  [[nodiscard]] std::expected<std::vector<ServiceWithDestinations>, Error> list_all() override;
  [[nodiscard]] std::expected<Timeouts, Error> get_timeouts() override;
  [[nodiscard]] std::expected<void, Error> set_timeouts(const Timeouts& timeouts) override;
  [[nodiscard]] std::expected<Info, Error> get_info() override;
  [[nodiscard]] std::expected<void, Error> flush() override;

  // Operations of a kind passed to apply() so far, failed ones included.
  [[nodiscard]] std::size_t count(Operation::Kind kind) const;
  [[nodiscard]] std::size_t total_operations() const;
  [[nodiscard]] std::size_t apply_calls() const { return apply_calls_; }
  [[nodiscard]] std::size_t list_all_calls() const { return list_all_calls_; }
  // What the last list_service_settings() call asked for.
  [[nodiscard]] std::optional<bool> last_settings_ipv4_only() const { return last_settings_ipv4_only_; }
  void reset_counts();

  // The next `times` operations of `kind` fail with `code` and change nothing.
  void fail_next(Operation::Kind kind, int code, std::size_t times = 1);
  // Every call of the listing/config methods fails with `code` until cleared
  // with 0 (a dead socket, for tests of the degraded paths).
  void fail_reads(int code) { read_failure_ = code; }

  // Sets what the kernel would count for a destination (graceful termination
  // looks at connection counts). Returns false if it does not exist.
  bool set_connections(const ServiceKey& service, const DestinationKey& destination, std::uint32_t active,
                       std::uint32_t inactive);
  bool set_stats(const ServiceKey& service, const Stats& stats);

  // Direct, rule-free access for arranging a test.
  [[nodiscard]] bool has_service(const ServiceKey& key) const { return services_.contains(key); }
  [[nodiscard]] std::size_t service_count() const { return services_.size(); }
  [[nodiscard]] std::size_t destination_count() const;

 private:
  struct Entry {
    ServiceState state;
    std::map<DestinationKey, DestinationState> destinations;
  };

  [[nodiscard]] OperationResult apply_one(const Operation& operation);
  [[nodiscard]] int check_service_options(const Service& service) const;

  static constexpr std::size_t kKinds = 6;
  std::set<std::string> schedulers_;
  std::map<ServiceKey, Entry> services_;
  Timeouts timeouts_{900, 120, 300};  // the kernel's defaults
  std::array<std::size_t, kKinds> counts_{};
  std::array<std::size_t, kKinds> failures_left_{};
  std::array<int, kKinds> failure_code_{};
  std::size_t apply_calls_ = 0;
  std::size_t list_all_calls_ = 0;
  std::optional<bool> last_settings_ipv4_only_;
  int read_failure_ = 0;
};

}  // namespace kipvs::ipvs
