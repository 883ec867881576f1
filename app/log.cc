#include "app/log.h"

#include <cstdio>
#include <ctime>
#include <ostream>

#include <unistd.h>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>

namespace kipvs::app {
namespace {

std::string_view base_name(std::string_view path) {
  const auto slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

std::string quoted(std::string_view text) {
  return boost::json::serialize(boost::json::string(text));
}

}  // namespace

Logger::Logger(std::ostream& out, int verbosity, LogFormat format, Clock clock)
    : out_(out), verbosity_(verbosity), format_(format), clock_(std::move(clock)) {}

void Logger::info(int level, std::string_view message, LogFields fields, std::source_location where) {
  if (!enabled(level)) return;
  write('I', level, message, {}, fields, where);
}

void Logger::warning(std::string_view message, LogFields fields, std::source_location where) {
  write('W', 0, message, {}, fields, where);
}

void Logger::error(std::string_view message, std::string_view error, LogFields fields,
                   std::source_location where) {
  write('E', 0, message, error, fields, where);
}

void Logger::write(char severity, int level, std::string_view message, std::string_view error,
                   LogFields fields, const std::source_location& where) {
  const auto now = clock_();
  const auto since = now.time_since_epoch();
  const auto seconds = std::chrono::floor<std::chrono::seconds>(since);
  const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(since - seconds).count();
  const std::string caller = std::string(base_name(where.file_name())) + ":" + std::to_string(where.line());

  std::string line;
  if (format_ == LogFormat::kJson) {
    // component-base's JSON format: ts (seconds, float), caller, msg, then
    // v for info lines or err for errors, then the fields.
    char ts[48];
    std::snprintf(ts, sizeof ts, "%lld.%06lld", static_cast<long long>(seconds.count()),
                  static_cast<long long>(micros));
    line = "{\"ts\":";
    line += ts;
    line += ",\"caller\":" + quoted(caller) + ",\"msg\":" + quoted(message);
    if (severity == 'E') {
      line += ",\"err\":" + quoted(error);
    } else {
      line += ",\"v\":" + std::to_string(level);
    }
    if (severity == 'W') line += ",\"level\":\"warning\"";
    for (const auto& [key, value] : fields) line += "," + quoted(key) + ":" + boost::json::serialize(value);
    line += "}\n";
  } else {
    // klog's header: Lmmdd hh:mm:ss.uuuuuu threadid file:line] msg
    const std::time_t t = seconds.count();
    std::tm tm{};
    gmtime_r(&t, &tm);
    char head[64];
    std::snprintf(head, sizeof head, "%c%02d%02d %02d:%02d:%02d.%06lld %7d ", severity, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<long long>(micros),
                  static_cast<int>(::getpid()));
    line = head + caller + "] " + quoted(message);
    if (severity == 'E') line += " err=" + quoted(error);
    for (const auto& [key, value] : fields) {
      line += " " + std::string(key) + "=" + boost::json::serialize(value);
    }
    line += "\n";
  }
  // One write per line so lines from a crash or a second writer do not mix.
  const std::scoped_lock lock(out_mutex_);
  out_.write(line.data(), static_cast<std::streamsize>(line.size()));
  out_.flush();
}

}  // namespace kipvs::app
