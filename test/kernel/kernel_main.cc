// Catch2 main for the kernel tier. A listener moves the process into a fresh
// network namespace before each test case: IPVS state is per namespace, so no
// case sees another's services.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#include "netns.h"

namespace {

class FreshNetnsPerCase : public Catch::TestEventListenerBase {
 public:
  using TestEventListenerBase::TestEventListenerBase;
  void testCaseStarting(Catch::TestCaseInfo const& /*info*/) override { kipvs::test::enter_fresh_netns(); }
};

}  // namespace

CATCH_REGISTER_LISTENER(FreshNetnsPerCase)
