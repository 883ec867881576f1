#pragma once
// The text format of `ipvsadm -Sn` (ipvsadm 1.31, print_service_entry with
// FMT_RULE | FMT_NUMERIC), printed and parsed. The kernel tests compare
// `ipvsadm -Sn` to this printer's output byte for byte, and `kipvs render`
// prints with it, so it follows ipvsadm exactly:
//
//   -A -t 10.96.12.34:80 -s rr -p 600
//   -a -t 10.96.12.34:80 -r 10.244.1.17:8080 -m -w 1
//   -A -u [fd00:10:96::10]:53 -s sh -b sh-fallback,sh-port
//   -A --sctp-service 10.0.0.1:9 -s wlc -o
//   -A -f 42 -6 -s rr -p 300 -M 64
//   -a -f 42 -6 -r [fd00::7]:0 -i -w 1 --tun-type ipip
//
// Service options come in ipvsadm's order: -s, then -p <timeout> and -M <mask>
// (only for persistent services, and -M only when it is not all ones / 128),
// then -o, then -b <flags> (sh-*, mh-* or flag-N depending on the scheduler).
// Destinations print -m (masq), -i (tunnel, always with --tun-type ipip as the
// kernel reports tunnel type 0) or -g (route and local), then -w. ipvsadm
// never prints thresholds (-x/-y) in this format, so neither does this; the
// parser accepts them.
//
// Order (the canonical sort): ipvsadm sorts services with ipvs_cmp_services
// (fwmark, family, protocol, then the address as big-endian 32-bit words,
// then port) and each service's destinations with ipvs_cmp_dests (address,
// then port). Each comparison is ipvsadm's: an unsigned 32-bit difference
// read as a signed int, so 10.96.0.1 sorts AFTER 192.168.0.1 (their
// difference exceeds 2^31). Because that order is not always transitive, the
// result also depends on the starting order and on the sort algorithm, so the
// printer replays glibc's qsort (a stable top-down merge sort) from the order
// it is given. Given a backend dump in the kernel's order, as ipvsadm sees it,
// the output is identical to ipvsadm's; given a Table, the start is the
// Table's key order.

#include <expected>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ipvs/backend.h"
#include "ipvs/model.h"
#include "ipvs/table.h"

namespace kipvs::ipvs {

// The whole table, one rule per line, each ending in '\n'.
[[nodiscard]] std::string format_ipvsadm_save(std::span<const ServiceWithDestinations> dump);
[[nodiscard]] std::string format_ipvsadm_save(const Table& table);

// Single lines, without the trailing newline.
[[nodiscard]] std::string format_service_rule(const Service& service);
[[nodiscard]] std::string format_destination_rule(const ServiceKey& service, const Destination& destination);

// Sorts services, and each service's destinations, the way ipvsadm does.
void sort_like_ipvsadm(std::vector<ServiceWithDestinations>& dump);

// Parses `ipvsadm -S` output (and the -A/-a subset of `ipvsadm -R` input):
// services in the order of their -A lines, destinations in the order of
// their -a lines. Blank lines and lines starting with '#' are skipped.
// Defaults are ipvsadm's: scheduler wlc, weight 1, forwarding -g, persistence
// 300 s for a bare -p. Errors name the line.
[[nodiscard]] std::expected<std::vector<ServiceWithDestinations>, Error> parse_ipvsadm_save(
    std::string_view text);

}  // namespace kipvs::ipvs
