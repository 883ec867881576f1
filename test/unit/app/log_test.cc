// The logger's two formats, levels and fields, with a fixed clock.

#include <sstream>
#include <string>

#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include "app/log.h"

namespace {

using namespace std::chrono_literals;
using kipvs::app::LogFormat;
using kipvs::app::Logger;

const auto kWhen = std::chrono::sys_days{std::chrono::year{2026} / 11 / 26} + 12h + 123456us;
Logger::Clock fixed() {
  return [] { return std::chrono::system_clock::time_point{kWhen}; };
}

}  // namespace

TEST_CASE("text lines look like klog's", "[log]") {
  std::ostringstream out;
  Logger log(out, 2, LogFormat::kText, fixed());
  log.info(0, "Synced", {{"services", 12}, {"service", "default/web"}, {"ok", true}});
  const std::string line = out.str();
  CHECK(line.starts_with("I1126 12:00:00.123456 "));
  CHECK(line.find(" log_test.cc:") != std::string::npos);
  CHECK(line.ends_with("] \"Synced\" services=12 service=\"default/web\" ok=true\n"));
}

TEST_CASE("levels above -v are dropped, warnings and errors always print", "[log]") {
  std::ostringstream out;
  Logger log(out, 1, LogFormat::kText, fixed());
  CHECK(log.enabled(1));
  CHECK_FALSE(log.enabled(2));
  log.info(2, "hidden");
  CHECK(out.str().empty());
  log.info(1, "shown");
  log.warning("careful");
  log.error("Sync failed", "EPERM", {{"operation", "add_service"}});
  std::istringstream lines(out.str());
  std::string a, b, c, extra;
  std::getline(lines, a);
  std::getline(lines, b);
  std::getline(lines, c);
  CHECK_FALSE(std::getline(lines, extra));
  CHECK(a.starts_with("I1126"));
  CHECK(a.ends_with("] \"shown\""));
  CHECK(b.starts_with("W1126"));
  CHECK(c.starts_with("E1126"));
  CHECK(c.ends_with("] \"Sync failed\" err=\"EPERM\" operation=\"add_service\""));
}

TEST_CASE("JSON lines carry ts, caller, msg, v and the fields", "[log]") {
  std::ostringstream out;
  Logger log(out, 3, LogFormat::kJson, fixed());
  log.info(3, "Relisted \"services\"", {{"resource", "services"}, {"items", 4}});
  log.error("Cannot open netlink", "EACCES");
  std::istringstream lines(out.str());
  std::string first, second;
  std::getline(lines, first);
  std::getline(lines, second);

  const auto info = boost::json::parse(first).as_object();
  CHECK(info.at("ts").as_double() == Approx(1795694400.123456));
  CHECK(info.at("caller").as_string().starts_with("log_test.cc:"));
  CHECK(info.at("msg") == "Relisted \"services\"");
  CHECK(info.at("v") == 3);
  CHECK(info.at("resource") == "services");
  CHECK(info.at("items") == 4);

  const auto error = boost::json::parse(second).as_object();
  CHECK(error.at("err") == "EACCES");
  CHECK_FALSE(error.contains("v"));
}
