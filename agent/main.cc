// kipvs entry point. Only the `render` dry run exists so far; the lead wires
// the agent (config, sources, sync loop) here later.

#include <cstdio>
#include <iostream>
#include <string_view>
#include <vector>

#include "agent/render.h"

int main(int argc, char** argv) {
  const std::vector<std::string_view> args(argv + 1, argv + argc);
  if (!args.empty() && args.front() == "render") {
    return kipvs::agent::run_render(std::span(args).subspan(1), std::cout, std::cerr);
  }
  std::puts("kipvs: not implemented yet (try: kipvs render --manifests DIR ...)");
  return 1;
}
