#pragma once
// What the sync loop tells the metrics layer, and the labels it uses.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "ipvs/backend.h"
#include "ipvs/model.h"
#include "k8s/sink.h"

namespace kipvs::agent {

enum class SyncKind : std::uint8_t { kIncremental, kFull };
[[nodiscard]] std::string_view to_string(SyncKind kind);

// What happened to one kernel operation (a metric label).
enum class OperationOutcome : std::uint8_t {
  kOk,
  kExists,   // EEXIST: the kernel had it already; adopted and re-diffed
  kMissing,  // ESRCH/ENOENT: gone already (a delete), or re-added
  kFailed,   // anything else: retried with backoff
};
[[nodiscard]] std::string_view to_string(OperationOutcome outcome);

// What the metrics layer hears from the sync loop. Called on the io_context
// thread, synchronously: implementations must not block.
class SyncObserver {
 public:
  virtual ~SyncObserver() = default;
  virtual void sync_started(SyncKind kind) = 0;
  // ok is false when an operation failed or the kernel could not be read.
  virtual void sync_finished(SyncKind kind, std::chrono::nanoseconds duration, bool ok) = 0;
  // count operations of one kind with one outcome (a sync reports its
  // successes once per kind: counting 200,000 one by one costs seconds).
  virtual void operation_applied(ipvs::Operation::Kind kind, OperationOutcome outcome,
                                 std::uint64_t count) = 0;
  // An object (or part of one) that was skipped: undecodable, or a desired-
  // state Problem (reason is a kReason* label).
  virtual void object_skipped(k8s::ResourceKind kind, std::string_view reason) = 0;
  // From a slice's last-change-trigger-time to the sync that programmed it.
  virtual void network_programming_latency(ipvs::Family family, std::chrono::duration<double> latency) = 0;
  virtual void drains_in_progress(std::size_t destinations) = 0;
  // Changes received and not yet synced (gauges; reported after each change
  // and each sync).
  virtual void pending_changes(std::size_t services, std::size_t endpoint_slices) = 0;
  virtual void address_operation(bool add, bool ok) = 0;
  // After each sync, per family served: Services with a Local policy and
  // endpoints, none on this node (internal and external policy).
  virtual void no_local_endpoints(ipvs::Family family, std::size_t internal, std::size_t external) = 0;
  // One nftables transaction: the whole table (full) or set elements.
  virtual void nft_transaction(bool /*full*/, bool /*ok*/) {}
};

// Does nothing: until metrics are plugged in, and in tests.
class NoopSyncObserver : public SyncObserver {
 public:
  void sync_started(SyncKind) override {}
  void sync_finished(SyncKind, std::chrono::nanoseconds, bool) override {}
  void operation_applied(ipvs::Operation::Kind, OperationOutcome, std::uint64_t) override {}
  void object_skipped(k8s::ResourceKind, std::string_view) override {}
  void network_programming_latency(ipvs::Family, std::chrono::duration<double>) override {}
  void drains_in_progress(std::size_t) override {}
  void pending_changes(std::size_t, std::size_t) override {}
  void address_operation(bool, bool) override {}
  void no_local_endpoints(ipvs::Family, std::size_t, std::size_t) override {}
};

}  // namespace kipvs::agent
