#pragma once
// The proxy's health as kube-proxy's health server reports it
// (pkg/proxy/healthcheck/proxy_health.go): the sync loop calls queued() when
// a change needs a sync and updated() when the rules are in the kernel; the
// proxy is unhealthy once a queued change has waited longer than the health
// timeout (kube-proxy uses twice the sync period). /healthz is also unhealthy
// while the node is being deleted or is tainted ToBeDeletedByClusterAutoscaler,
// so load balancers drain the node first; /livez ignores the node.
//
// Time comes from an injected wall clock, so tests can stall a sync.
//
// Thread-safe: the sync loop's thread writes it, the health server's thread
// reads it (so /livez answers while a long sync holds the sync thread).

#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string>

namespace kipvs::metrics {

class HealthState {
 public:
  using Clock = std::function<std::chrono::system_clock::time_point()>;

  explicit HealthState(std::chrono::nanoseconds timeout, Clock clock = std::chrono::system_clock::now)
      : timeout_(timeout), clock_(std::move(clock)) {}

  // A change arrived that needs a sync; the oldest pending one counts.
  void queued();
  // A sync put the rules into the kernel: nothing is pending any more.
  void updated();
  // From the Node object: false while it is being deleted or tainted
  // ToBeDeletedByClusterAutoscaler. True until told otherwise.
  void set_node_eligible(bool eligible);

  [[nodiscard]] bool healthy() const;  // the proxier only (/livez, service health)
  [[nodiscard]] bool node_eligible() const;

  struct Answer {
    int status = 200;  // 200 or 503
    std::string body;  // kube-proxy's JSON
  };
  // /healthz: {"lastUpdated": "...","currentTime": "...", "nodeEligible": true}
  [[nodiscard]] Answer healthz() const;
  // /livez: {"lastUpdated": "...","currentTime": "..."}
  [[nodiscard]] Answer livez() const;

  [[nodiscard]] std::chrono::system_clock::time_point now() const { return clock_(); }

 private:
  [[nodiscard]] bool healthy_locked(std::chrono::system_clock::time_point now) const;

  const std::chrono::nanoseconds timeout_;
  const Clock clock_;
  mutable std::mutex mutex_;
  std::optional<std::chrono::system_clock::time_point> last_updated_;
  std::optional<std::chrono::system_clock::time_point> oldest_queued_;
  bool node_eligible_ = true;
};

// A time as Go's time.Time.String() prints it in UTC, which is what
// kube-proxy's health JSON carries: "2024-05-01 12:00:00.123456789 +0000 UTC"
// (trailing zeros of the fraction dropped; Go's monotonic "m=+..." suffix is
// left out). The zero time (never updated) prints as Go's zero time.
[[nodiscard]] std::string go_time_string(std::optional<std::chrono::system_clock::time_point> when);

}  // namespace kipvs::metrics
