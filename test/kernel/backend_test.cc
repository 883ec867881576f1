#include <catch2/catch.hpp>

#include "netns.h"

using kipvs::test::run_ok;

TEST_CASE("each case starts with an empty IPVS table", "[kernel]") {
  const std::string before = run_ok("ipvsadm -Sn");
  CHECK(before.empty());
  run_ok("ipvsadm -A -t 10.0.0.1:80 -s rr");
  CHECK(run_ok("ipvsadm -Sn") == "-A -t 10.0.0.1:80 -s rr\n");
}

TEST_CASE("a second case does not see the first case's service", "[kernel]") {
  CHECK(run_ok("ipvsadm -Sn").empty());
}
