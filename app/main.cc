// kipvs entry point: the agent (default, or `run`), `check-config`, and the
// `render` and `diff` dry runs.

#include <iostream>
#include <span>

#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <string_view>
#include <vector>

#include "app/agent.h"
#include "app/render.h"

int main(int argc, char** argv) {
#if defined(__GLIBC__)
  // Large blocks (a 12 MB /metrics body at 10,000 Services, a sync's plan
  // pieces) are mapped and unmapped, never kept: glibc otherwise raises this
  // threshold after the first such free, and the memory then stays resident.
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);
#endif
  const std::vector<std::string_view> args(argv + 1, argv + argc);
  if (!args.empty() && args.front() == "render") {
    return kipvs::app::run_render(std::span(args).subspan(1), std::cout, std::cerr);
  }
  if (!args.empty() && args.front() == "diff") {
    return kipvs::app::run_diff(std::span(args).subspan(1), std::cout, std::cerr);
  }
  return kipvs::app::run_main(args, std::cout, std::cerr);
}
