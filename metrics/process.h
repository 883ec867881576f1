#pragma once
// The process_* series that Prometheus client libraries export about their
// own process (client_golang's process collector, so kube-proxy has them and
// kube-prometheus-stack's "Kubernetes / Proxy" dashboard plots them): CPU
// seconds, resident and virtual memory, open and maximum file descriptors,
// and the start time. Read from /proc on each scrape.

#include <filesystem>
#include <optional>
#include <string>

#include "metrics/metrics.h"

namespace kipvs::metrics {

struct ProcessStats {
  double cpu_seconds = 0;         // user + system
  double resident_bytes = 0;      // RSS
  double virtual_bytes = 0;       // VSZ
  double open_fds = 0;            // entries of /proc/self/fd
  double max_fds = 0;             // RLIMIT_NOFILE, soft
  double start_time_seconds = 0;  // since the Unix epoch
};

// proc: where procfs is mounted (tests pass a folder of files). nullopt when
// /proc/self/stat or the boot time cannot be read. clock_ticks and page_size
// are the kernel's (sysconf), max_fds the soft RLIMIT_NOFILE.
[[nodiscard]] std::optional<ProcessStats> read_process_stats(const std::filesystem::path& proc,
                                                             long clock_ticks, long page_size,
                                                             double max_fds);
// For this process: /proc, sysconf and getrlimit.
[[nodiscard]] std::optional<ProcessStats> read_own_process_stats();

// The families in the text format, client_golang's names and help texts.
[[nodiscard]] std::string process_metrics_text(const ProcessStats& stats);

// Appends process_metrics_text(read_own_process_stats()) to each scrape;
// nothing when /proc cannot be read.
class ProcessCollector final : public TextCollectable {
 public:
  void append_text(std::string& out) const override;
};

}  // namespace kipvs::metrics
