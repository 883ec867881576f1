#pragma once
// Leveled logging, one line per event, as kube-proxy logs: klog-like text by
// default, JSON lines with --logging-format=json. Synchronous to one stream
// (stderr in the agent), no globals: main builds one Logger and passes it to
// what logs. Messages name the objects involved through key/value pairs
// ("service", "default/web"), as kube-proxy's structured logs do. Safe to
// call from any thread (the HTTP servers' thread logs too).
//
//   text: I1126 12:00:00.123456   12345 sync.cc:42] "Synced" services=12 duration="3ms"
//   json: {"ts":1795694400.123456,"caller":"sync.cc:42","msg":"Synced","v":0,"services":12,"duration":"3ms"}

#include <chrono>
#include <functional>
#include <initializer_list>
#include <iosfwd>
#include <mutex>
#include <source_location>
#include <string>
#include <string_view>
#include <utility>

#include <boost/json/value.hpp>

namespace kipvs::app {

enum class LogFormat { kText, kJson };

// A key and its value; strings, numbers and booleans keep their JSON types.
using LogField = std::pair<std::string_view, boost::json::value>;
using LogFields = std::initializer_list<LogField>;

class Logger {
 public:
  using Clock = std::function<std::chrono::system_clock::time_point()>;

  Logger(std::ostream& out, int verbosity, LogFormat format, Clock clock = std::chrono::system_clock::now);

  // Whether info(level, ...) would print: check before building costly fields.
  [[nodiscard]] bool enabled(int level) const { return level <= verbosity_; }
  [[nodiscard]] int verbosity() const { return verbosity_; }

  // Printed when level <= -v. Level 0 is always printed.
  void info(int level, std::string_view message, LogFields fields = {},
            std::source_location where = std::source_location::current());
  // Always printed.
  void warning(std::string_view message, LogFields fields = {},
               std::source_location where = std::source_location::current());
  void error(std::string_view message, std::string_view error, LogFields fields = {},
             std::source_location where = std::source_location::current());

 private:
  void write(char severity, int level, std::string_view message, std::string_view error, LogFields fields,
             const std::source_location& where);

  std::ostream& out_;
  std::mutex out_mutex_;
  int verbosity_;
  LogFormat format_;
  Clock clock_;
};

}  // namespace kipvs::app
