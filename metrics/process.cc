#include "metrics/process.h"

#include <sys/resource.h>
#include <unistd.h>

#include <charconv>
#include <fstream>
#include <iterator>
#include <sstream>
#include <vector>

namespace kipvs::metrics {
namespace {

std::optional<std::string> read_text(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) return std::nullopt;
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The shortest text that reads back as the same double.
std::string number(double value) {
  char buffer[64];
  const auto [end, error] = std::to_chars(buffer, buffer + sizeof buffer, value);
  return error == std::errc{} ? std::string(buffer, end) : "0";
}

void family(std::string& out, const char* name, const char* type, const char* help, double value) {
  out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name + " " +
         number(value) + "\n";
}

}  // namespace

std::optional<ProcessStats> read_process_stats(const std::filesystem::path& proc, long clock_ticks,
                                               long page_size, double max_fds) {
  const auto stat = read_text(proc / "self" / "stat");
  const auto system = read_text(proc / "stat");
  if (!stat || !system || clock_ticks <= 0) return std::nullopt;
  // The command name (field 2) is in parentheses and may hold spaces and
  // parentheses itself: the fields that follow start after the last ')'.
  const auto close = stat->rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(stat->substr(close + 1));
  std::vector<std::string> after{std::istream_iterator<std::string>(fields), {}};
  // after[0] is field 3 (state): utime 14, stime 15, starttime 22, vsize 23, rss 24.
  if (after.size() < 22) return std::nullopt;
  const auto field = [&after](std::size_t number) {
    double value = 0;
    const auto& text = after[number - 3];
    std::from_chars(text.data(), text.data() + text.size(), value);
    return value;
  };
  double boot_time = 0;
  std::istringstream lines(*system);
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with("btime ")) boot_time = std::stod(line.substr(6));
  }
  if (boot_time == 0) return std::nullopt;

  ProcessStats stats;
  const auto ticks = static_cast<double>(clock_ticks);
  stats.cpu_seconds = (field(14) + field(15)) / ticks;
  stats.start_time_seconds = boot_time + field(22) / ticks;
  stats.virtual_bytes = field(23);
  stats.resident_bytes = field(24) * static_cast<double>(page_size);
  std::error_code error;
  for (std::filesystem::directory_iterator it(proc / "self" / "fd", error), end; !error && it != end;
       it.increment(error))
    ++stats.open_fds;
  stats.max_fds = max_fds;
  return stats;
}

std::optional<ProcessStats> read_own_process_stats() {
  rlimit files{};
  const double max_fds = ::getrlimit(RLIMIT_NOFILE, &files) == 0 ? static_cast<double>(files.rlim_cur) : 0;
  return read_process_stats("/proc", ::sysconf(_SC_CLK_TCK), ::sysconf(_SC_PAGESIZE), max_fds);
}

std::string process_metrics_text(const ProcessStats& stats) {
  std::string out;
  family(out, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.",
         stats.cpu_seconds);
  family(out, "process_max_fds", "gauge", "Maximum number of open file descriptors.", stats.max_fds);
  family(out, "process_open_fds", "gauge", "Number of open file descriptors.", stats.open_fds);
  family(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
         stats.resident_bytes);
  family(out, "process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.",
         stats.start_time_seconds);
  family(out, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", stats.virtual_bytes);
  return out;
}

void ProcessCollector::append_text(std::string& out) const {
  if (const auto stats = read_own_process_stats()) out += process_metrics_text(*stats);
}

}  // namespace kipvs::metrics
