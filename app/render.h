#pragma once
// `kipvs render`: the desired IPVS table for a directory of Service and
// EndpointSlice manifests, printed in the text format of `ipvsadm -Sn`.
// A dry run that needs no cluster and no kernel; the desired-state case tests
// run through the same functions, so what they check is what render prints.
//
//   kipvs render --manifests DIR [--hostname-override NAME]
//                [--node-ip IP[,IP...]] [--zone ZONE]
//                [--ipvs-scheduler NAME] [--ipvs-scheduler-flags LIST]
//                [--affinity-mode persistence|hash] [--proxy-name NAME]
//                [--nodeport-addresses CIDR[,CIDR...]]
//                [--ipvs-exclude-cidrs CIDR[,CIDR...]]
//
// Flags take "--flag value" or "--flag=value". A Node named NAME in the
// manifests supplies the zone (topology.kubernetes.io/zone) and node IPs
// (InternalIP, ExternalIP) that the flags leave unset.

#include <expected>
#include <filesystem>
#include <iosfwd>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "agent/desired_state.h"
#include "agent/node_facts.h"
#include "base/error.h"

namespace kipvs::app {

struct RenderOptions {
  std::filesystem::path manifests;
  agent::NodeFacts facts;
  bool zone_set = false;      // --zone given (else the Node's label)
  bool node_ips_set = false;  // --node-ip given (else the Node's addresses)
};

// Parses the arguments after "render". Errors name the flag.
[[nodiscard]] std::expected<RenderOptions, Error> parse_render_args(std::span<const std::string_view> args);

struct RenderResult {
  agent::DesiredState state;
  std::string text;                   // ipvsadm -Sn lines
  std::vector<std::string> warnings;  // skipped documents and desired-state problems, one line each
};

// Loads the manifests and computes the table. Fails only when the directory
// cannot be read; bad documents and values become warnings.
[[nodiscard]] std::expected<RenderResult, Error> render(const RenderOptions& options);

// The subcommand: prints the table to out and warnings to err. Returns the
// process exit status (0, or 2 for a usage error, 1 when loading failed).
int run_render(std::span<const std::string_view> args, std::ostream& out, std::ostream& err);

}  // namespace kipvs::app
