// kipvs entry point: the agent (default, or `run`), and the `render` and
// `diff` dry runs. The lead swaps the agent's minimal flags for the
// configuration layer and plugs the metrics observer in here.

#include <iostream>
#include <span>
#include <string_view>
#include <vector>

#include "agent/agent.h"
#include "agent/render.h"
#include "agent/sync.h"

int main(int argc, char** argv) {
  const std::vector<std::string_view> args(argv + 1, argv + argc);
  if (!args.empty() && args.front() == "render") {
    return kipvs::agent::run_render(std::span(args).subspan(1), std::cout, std::cerr);
  }
  if (!args.empty() && args.front() == "diff") {
    return kipvs::agent::run_diff(std::span(args).subspan(1), std::cout, std::cerr);
  }
  // TODO(lead): a metrics::SyncObserver from the metrics layer.
  kipvs::agent::NoopSyncObserver observer;
  return kipvs::agent::run_agent(args, observer);
}
