#include "agent/sync_stats.h"

#include <algorithm>
#include <sstream>
#include <string>

namespace kipvs::agent {

using Kind = ipvs::Operation::Kind;

std::string plan_summary(const std::array<std::size_t, 6>& by_kind) {
  std::string out;
  for (auto kind : {Kind::kAddService, Kind::kEditService, Kind::kDeleteService, Kind::kAddDestination,
                    Kind::kEditDestination, Kind::kDeleteDestination}) {
    if (auto n = by_kind[static_cast<std::size_t>(kind)]; n != 0) {
      out += out.empty() ? " (" : ", ";
      out += std::to_string(n) + " " + ipvs::to_string(kind);
    }
  }
  return out.empty() ? out : out + ")";
}

void PhaseTimes::start() {
  spent.clear();
  mark = std::chrono::steady_clock::now();
}

void PhaseTimes::lap(const char* phase) {
  const auto now = std::chrono::steady_clock::now();
  add(phase, now - mark);
  mark = now;
}

void PhaseTimes::add(const char* phase, std::chrono::steady_clock::duration duration) {
  auto it = std::find_if(spent.begin(), spent.end(), [&](const auto& entry) { return entry.first == phase; });
  if (it == spent.end()) {
    spent.emplace_back(phase, duration);
  } else {
    it->second += duration;
  }
}

std::string PhaseTimes::summary() const {
  std::ostringstream out;
  for (const auto& [phase, duration] : spent) {
    out << (out.tellp() == 0 ? " (" : ", ") << phase << ' '
        << duration_cast<std::chrono::microseconds>(duration).count() / 1000 << " ms";
  }
  if (out.tellp() != 0) out << ')';
  return out.str();
}

void PlanCounts::add(const ipvs::Plan& plan) {
  total += plan.size();
  for (const auto& operation : plan.operations) ++by_kind[static_cast<std::size_t>(operation.kind)];
}

PlanCounts PlanCounts::of(const ipvs::Plan& plan) {
  PlanCounts counts;
  counts.add(plan);
  return counts;
}

}  // namespace kipvs::agent
