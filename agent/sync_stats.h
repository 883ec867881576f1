#pragma once
// What a sync did, for its log line, tests and metrics: operations by kind,
// time by phase, and counters over the agent's life.
#include <array>
#include <chrono>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "ipvs/diff.h"

namespace kipvs::agent {

// Counters for tests and logs.
struct SyncStats {
  std::size_t incremental_syncs = 0;
  std::size_t full_syncs = 0;
  std::size_t operations = 0;         // sent to the backend, re-diff rounds included
  std::size_t failed_operations = 0;  // outcome kFailed
  std::size_t last_operations = 0;    // of the last sync
  std::size_t nft_computations = 0;   // whole nftables tables computed and compared
};

// How many operations of each kind a sync's plan (or its pieces) had.
struct PlanCounts {
  std::size_t total = 0;
  std::array<std::size_t, 6> by_kind{};  // by Operation::Kind
  void add(const ipvs::Plan& plan);
  static PlanCounts of(const ipvs::Plan& plan);
};

// Where the current sync's time went, by phase, for its log line: the
// kernel's share (reading, writing) against kipvs's own (planning).
struct PhaseTimes {
  std::vector<std::pair<const char*, std::chrono::steady_clock::duration>> spent;
  std::chrono::steady_clock::time_point mark;
  void start();
  // Goes on after a pause (the loop's turns between a resync's pieces do
  // not count).
  void resume() { mark = std::chrono::steady_clock::now(); }
  void lap(const char* phase);
  void add(const char* phase, std::chrono::steady_clock::duration duration);
  [[nodiscard]] std::string summary() const;
};

// " (3 add service, 40 add destination)": the kinds a plan had, for a log
// line; "" for none.
[[nodiscard]] std::string plan_summary(const std::array<std::size_t, 6>& by_kind);

}  // namespace kipvs::agent
