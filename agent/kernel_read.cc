#include "agent/kernel_read.h"

#include <cerrno>
#include <utility>

namespace kipvs::agent {

StepwiseKernelRead::StepwiseKernelRead(std::vector<ipvs::ServiceState> services,
                                       ipvs::DrainClock::time_point started)
    : services_(std::move(services)), started_(started) {
  read_.reserve(services_.size());
}

std::expected<StepwiseKernelRead, Error> StepwiseKernelRead::begin(ipvs::Backend& backend, bool ipv4_only,
                                                                   ipvs::DrainClock::time_point started) {
  auto services = backend.list_service_settings(ipv4_only);
  if (!services) return std::unexpected(services.error());
  return StepwiseKernelRead(std::move(*services), started);
}

bool StepwiseKernelRead::read_piece(ipvs::Backend& backend, std::chrono::milliseconds budget,
                                    const Visit& visit) {
  const auto piece_started = std::chrono::steady_clock::now();
  // The clock is read every few services: in an emulated guest a read
  // costs about what a service's comparison does.
  constexpr std::size_t kServicesPerClockRead = 4;
  for (std::size_t taken = 0;
       next_ < services_.size() &&
       (taken == 0 || (budget.count() > 0 && (taken % kServicesPerClockRead != 0 ||
                                              std::chrono::steady_clock::now() - piece_started < budget)));
       ++taken) {
    auto& service = services_[next_++];
    auto destinations = backend.list_destinations(service.service.key);
    if (!destinations) {
      // Deleted since the list (by a sync of ours: touched; or by someone
      // else: absent is what the kernel now holds).
      if (destinations.error().code == ENOENT || destinations.error().code == ESRCH) continue;
      failed_ = destinations.error();
      break;
    }
    read_.push_back(service.service.key);
    visit(ipvs::ServiceWithDestinations{std::move(service), std::move(*destinations)});
  }
  const bool done = failed_.has_value() || next_ == services_.size();
  if (done) {
    services_ = {};
    std::ranges::sort(read_);
  }
  return done;
}

}  // namespace kipvs::agent
