// Table-driven desired-state cases: each directory under cases/ holds
// manifests (*.yaml), optional render flags (args.txt), and what `kipvs
// render` must produce for them:
//   expected.txt  the ipvsadm -Sn lines (compared as a set: every -a line names
//                 its service, so the set is the whole table)
//   problems.txt  the problem reasons, one a line (absent: none)
//   bound.txt     the addresses for the dummy interface (checked when present)
//   health.txt    "namespace/name nodePort localEndpoints" lines (absent: none)
// Every case runs with --hostname-override node-a --node-ip 192.168.0.10
// --zone zone-a first; args.txt can override those.

#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "app/render.h"

namespace kipvs::agent {
namespace {

namespace fs = std::filesystem;
using app::parse_render_args;
using app::render;
using app::RenderResult;

const fs::path kCases = KIPVS_AGENT_CASES_DIR;

std::vector<std::string> read_lines(const fs::path& file) {
  std::vector<std::string> lines;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line.starts_with('#')) continue;
    lines.push_back(line);
  }
  return lines;
}

std::vector<std::string> sorted(std::vector<std::string> lines) {
  std::ranges::sort(lines);
  return lines;
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::vector<fs::path> case_dirs() {
  std::vector<fs::path> dirs;
  for (const auto& entry : fs::directory_iterator(kCases)) {
    if (entry.is_directory()) dirs.push_back(entry.path());
  }
  std::ranges::sort(dirs);
  return dirs;
}

RenderResult render_case(const fs::path& dir) {
  std::vector<std::string> words{"--manifests", dir.string(), "--hostname-override",
                                 "node-a",      "--node-ip",  "192.168.0.10",
                                 "--zone",      "zone-a"};
  for (const auto& line : read_lines(dir / "args.txt")) {
    std::istringstream in(line);
    for (std::string word; in >> word;) words.push_back(word);
  }
  const std::vector<std::string_view> args(words.begin(), words.end());
  auto options = parse_render_args(args);
  REQUIRE(options.has_value());
  auto result = render(*options);
  REQUIRE(result.has_value());
  return std::move(*result);
}

TEST_CASE("desired-state cases render the expected ipvsadm rules", "[desired][cases]") {
  const auto dirs = case_dirs();
  REQUIRE(dirs.size() >= 25);
  for (const auto& dir : dirs) {
    DYNAMIC_SECTION(dir.filename().string()) {
      const RenderResult result = render_case(dir);

      std::vector<std::string> reasons;
      for (const auto& problem : result.state.problems) reasons.push_back(problem.reason);
      CAPTURE(result.warnings);
      // Manifests must load cleanly: every warning is a desired-state problem.
      CHECK(result.warnings.size() == result.state.problems.size());
      CHECK(sorted(reasons) == sorted(read_lines(dir / "problems.txt")));

      CHECK(sorted(split_lines(result.text)) == sorted(read_lines(dir / "expected.txt")));

      if (fs::exists(dir / "bound.txt")) {
        std::vector<std::string> bound;
        for (const auto& address : result.state.bound_addresses) bound.push_back(address.to_string());
        CHECK(sorted(bound) == sorted(read_lines(dir / "bound.txt")));
      }

      std::vector<std::string> health;
      for (const auto& [key, check] : result.state.health_checks) {
        health.push_back(key.namespace_ + "/" + key.name + " " + std::to_string(check.node_port) + " " +
                         std::to_string(check.local_endpoints));
      }
      CHECK(sorted(health) == sorted(read_lines(dir / "health.txt")));

      // Every virtual service has an origin, and only those.
      CHECK(result.state.origins.size() == result.state.table.size());
    }
  }
}

}  // namespace
}  // namespace kipvs::agent
