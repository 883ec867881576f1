#include "metrics/health.h"

#include <cstdio>
#include <ctime>

namespace kipvs::metrics {

void HealthState::queued() {
  const auto now = clock_();
  const std::scoped_lock lock(mutex_);
  if (!oldest_queued_) oldest_queued_ = now;
}

void HealthState::updated() {
  const auto now = clock_();
  const std::scoped_lock lock(mutex_);
  oldest_queued_.reset();
  last_updated_ = now;
}

void HealthState::set_node_eligible(bool eligible) {
  const std::scoped_lock lock(mutex_);
  node_eligible_ = eligible;
}

bool HealthState::node_eligible() const {
  const std::scoped_lock lock(mutex_);
  return node_eligible_;
}

bool HealthState::healthy_locked(std::chrono::system_clock::time_point now) const {
  // Healthy while starting up and while fully synced; a pending change is
  // only a problem once it is late.
  if (!oldest_queued_) return true;
  return now - *oldest_queued_ < timeout_;
}

bool HealthState::healthy() const {
  const auto now = clock_();
  const std::scoped_lock lock(mutex_);
  return healthy_locked(now);
}

HealthState::Answer HealthState::healthz() const {
  const auto now = clock_();
  const std::scoped_lock lock(mutex_);
  const bool ok = healthy_locked(now) && node_eligible_;
  // As kube-proxy: a healthy answer reports lastUpdated as now (older
  // clients read it as "the sync loop is alive").
  const auto last = ok ? std::optional(now) : last_updated_;
  return {ok ? 200 : 503, "{\"lastUpdated\": \"" + go_time_string(last) + "\",\"currentTime\": \"" +
                              go_time_string(now) +
                              "\", \"nodeEligible\": " + (node_eligible_ ? "true" : "false") + "}"};
}

HealthState::Answer HealthState::livez() const {
  const auto now = clock_();
  const std::scoped_lock lock(mutex_);
  const bool ok = healthy_locked(now);
  const auto last = ok ? std::optional(now) : last_updated_;
  return {ok ? 200 : 503, "{\"lastUpdated\": \"" + go_time_string(last) + "\",\"currentTime\": \"" +
                              go_time_string(now) + "\"}"};
}

std::string go_time_string(std::optional<std::chrono::system_clock::time_point> when) {
  if (!when) return "0001-01-01 00:00:00 +0000 UTC";
  const auto since = when->time_since_epoch();
  auto secs = std::chrono::floor<std::chrono::seconds>(since);
  const auto nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(since - secs).count();
  const std::time_t t = secs.count();
  std::tm tm{};
  gmtime_r(&t, &tm);
  char head[32];
  std::strftime(head, sizeof head, "%Y-%m-%d %H:%M:%S", &tm);
  std::string out = head;
  if (nanos != 0) {
    char fraction[16];
    std::snprintf(fraction, sizeof fraction, ".%09lld", static_cast<long long>(nanos));
    std::string f = fraction;
    while (f.back() == '0') f.pop_back();
    out += f;
  }
  return out + " +0000 UTC";
}

}  // namespace kipvs::metrics
