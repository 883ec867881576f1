#include "ipvs/ipvsadm_format.h"

#include <arpa/inet.h>

#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>

namespace kipvs::ipvs {
namespace {

// ---- Printing ---------------------------------------------------------------------

// option_from_protocol(); an unknown protocol prints as ipvsadm prints it.
std::string protocol_option(Protocol protocol) {
  switch (protocol) {
    case Protocol::kTcp:
      return "-t";
    case Protocol::kUdp:
      return "-u";
    case Protocol::kSctp:
      return "--sctp-service";
  }
  return "--xxx-service";
}

// addrport_to_anyname() with FMT_NUMERIC: brackets for anything not IPv4.
std::string address_port(const Address& address, std::uint16_t port) {
  if (address.family == Family::kIPv4) return address.to_string() + ":" + std::to_string(port);
  return "[" + address.to_string() + "]:" + std::to_string(port);
}

// svc_name in print_service_entry: what -A and -a lines share.
std::string service_name(const ServiceKey& key) {
  if (key.fwmark != 0) {
    return "-f " + std::to_string(key.fwmark) + (key.family == Family::kIPv6 ? " -6" : "");
  }
  return protocol_option(key.protocol) + " " + address_port(key.address, key.port);
}

// print_sched_flags(): names depend on the scheduler, order is fixed.
std::string sched_flags(const Service& service) {
  std::string out;
  auto add = [&](std::uint32_t bit, const char* name) {
    if ((service.flags & bit) == 0) return;
    if (!out.empty()) out += ',';
    out += name;
  };
  if (service.scheduler == "sh") {
    add(flags::kSchedShFallback, "sh-fallback");
    add(flags::kSchedShPort, "sh-port");
  } else if (service.scheduler == "mh") {
    add(flags::kSchedMhFallback, "mh-fallback");
    add(flags::kSchedMhPort, "mh-port");
  } else {
    add(flags::kSchedShFallback, "flag-1");
    add(flags::kSchedShPort, "flag-2");
    add(flags::kSched3, "flag-3");
  }
  return out;
}

std::string ipv4_mask(std::uint32_t host_order_mask) {
  Address mask;
  mask.family = Family::kIPv4;
  const std::uint32_t wire = htonl(host_order_mask);
  std::memcpy(mask.bytes.data(), &wire, 4);
  return mask.to_string();
}

// fwd_switch(): local and route both print as -g; anything else ipvsadm
// passes a NULL string to printf, which glibc prints as "(null)".
const char* forwarding_option(Forwarding forwarding) {
  switch (forwarding) {
    case Forwarding::kMasq:
      return "-m";
    case Forwarding::kTunnel:
      return "-i";
    case Forwarding::kLocal:
    case Forwarding::kRoute:
      return "-g";
  }
  return "(null)";
}

// ---- ipvsadm's ordering -----------------------------------------------------------------

// ipvsadm subtracts unsigned values and keeps the difference as an int.
int wrapped_difference(std::uint32_t a, std::uint32_t b) {
  return static_cast<int>(static_cast<std::int32_t>(a - b));
}

std::uint32_t word(const Address& address, std::size_t i) {
  return (std::uint32_t{address.bytes[i * 4]} << 24) | (std::uint32_t{address.bytes[i * 4 + 1]} << 16) |
         (std::uint32_t{address.bytes[i * 4 + 2]} << 8) | std::uint32_t{address.bytes[i * 4 + 3]};
}

// The address part of ipvs_cmp_services / ipvs_cmp_dests: the left side's
// family decides how many words count.
int compare_addresses(const Address& a, const Address& b, bool ipv6) {
  if (!ipv6) return wrapped_difference(word(a, 0), word(b, 0));
  int r = 0;
  for (std::size_t i = 0; r == 0 && i < 4; ++i) r = wrapped_difference(word(a, i), word(b, i));
  return r;
}

int compare_services(const ServiceWithDestinations& x, const ServiceWithDestinations& y) {
  const ServiceKey& a = x.service.service.key;
  const ServiceKey& b = y.service.service.key;
  int r = wrapped_difference(a.fwmark, b.fwmark);
  if (r != 0) return r;
  r = static_cast<int>(a.family) - static_cast<int>(b.family);
  if (r != 0) return r;
  // libipvs leaves protocol, address and port zero for a fwmark service.
  const auto protocol = [](const ServiceKey& k) { return k.fwmark != 0 ? 0 : static_cast<int>(k.protocol); };
  r = protocol(a) - protocol(b);
  if (r != 0) return r;
  r = compare_addresses(a.fwmark != 0 ? Address{} : a.address, b.fwmark != 0 ? Address{} : b.address,
                        a.family == Family::kIPv6);
  if (r != 0) return r;
  const auto port = [](const ServiceKey& k) { return k.fwmark != 0 ? 0 : static_cast<int>(k.port); };
  return port(a) - port(b);
}

int compare_destinations(const DestinationState& x, const DestinationState& y) {
  const DestinationKey& a = x.destination.key;
  const DestinationKey& b = y.destination.key;
  const int r = compare_addresses(a.address, b.address, a.address.family == Family::kIPv6);
  if (r != 0) return r;
  return static_cast<int>(a.port) - static_cast<int>(b.port);
}

// glibc's msort_with_tmp: split in halves (the first gets n/2), sort each,
// merge taking from the left while compare(left, right) <= 0. Replayed
// rather than std::stable_sort because with a non-transitive comparison the
// result depends on the exact sequence of comparisons.
template <typename T, typename Compare>
void glibc_merge_sort(std::span<T> items, std::vector<T>& scratch, Compare compare) {
  const std::size_t n = items.size();
  if (n <= 1) return;
  const std::size_t n1 = n / 2;
  glibc_merge_sort(items.first(n1), scratch, compare);
  glibc_merge_sort(items.subspan(n1), scratch, compare);
  scratch.clear();
  std::size_t i = 0;
  std::size_t j = n1;
  while (i < n1 && j < n) {
    if (compare(items[i], items[j]) <= 0) {
      scratch.push_back(std::move(items[i++]));
    } else {
      scratch.push_back(std::move(items[j++]));
    }
  }
  while (i < n1) scratch.push_back(std::move(items[i++]));
  // What is left of the right half is already in place.
  for (std::size_t k = 0; k < scratch.size(); ++k) items[k] = std::move(scratch[k]);
}

// ---- Parsing ------------------------------------------------------------------------

struct LineError {
  std::string message;
};

std::vector<std::string_view> split_words(std::string_view line) {
  std::vector<std::string_view> words;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) ++i;
    const std::size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t' && line[i] != '\r') ++i;
    if (i > start) words.push_back(line.substr(start, i - start));
  }
  return words;
}

template <typename T>
std::optional<T> number(std::string_view text) {
  T value{};
  const auto* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc{} || ptr != end || text.empty()) return std::nullopt;
  return value;
}

// host[:port] with IPv6 in brackets; the port is optional (nullopt).
std::optional<std::pair<Address, std::optional<std::uint16_t>>> address_and_port(std::string_view text) {
  std::string_view host = text;
  std::optional<std::uint16_t> port;
  if (!text.empty() && text.front() == '[') {
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    host = text.substr(1, close - 1);
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return std::nullopt;
      port = number<std::uint16_t>(rest.substr(1));
      if (!port) return std::nullopt;
    }
    auto address = Address::parse(host);
    if (!address || address->family != Family::kIPv6) return std::nullopt;
    return std::pair{*address, port};
  }
  const std::size_t colon = text.find(':');
  if (colon != std::string_view::npos && text.find(':', colon + 1) == std::string_view::npos) {
    host = text.substr(0, colon);
    port = number<std::uint16_t>(text.substr(colon + 1));
    if (!port) return std::nullopt;
  }
  auto address = Address::parse(host);
  if (!address) return std::nullopt;
  return std::pair{*address, port};
}

std::optional<std::uint32_t> parse_sched_flags(std::string_view text) {
  std::uint32_t bits = 0;
  while (!text.empty()) {
    const std::size_t comma = text.find(',');
    const std::string_view name = text.substr(0, comma);
    if (name == "sh-fallback" || name == "mh-fallback" || name == "flag-1") {
      bits |= flags::kSchedShFallback;
    } else if (name == "sh-port" || name == "mh-port" || name == "flag-2") {
      bits |= flags::kSchedShPort;
    } else if (name == "flag-3") {
      bits |= flags::kSched3;
    } else {
      return std::nullopt;
    }
    if (comma == std::string_view::npos) break;
    text = text.substr(comma + 1);
  }
  return bits;
}

// One -A or -a line.
struct Rule {
  bool is_service = false;
  Service service;
  Destination destination;
};

// A rule while its options are read.
struct RuleDraft {
  Rule rule;
  bool have_service = false;
  bool have_server = false;
  std::optional<std::uint16_t> server_port;
  std::optional<std::string_view> netmask_text;
  std::optional<std::string_view> sched_flags_text;
};

// An option's value: the next word (an error when there is none), or, for
// an optional value, the next word unless it is an option itself.
struct OptionValues {
  const std::vector<std::string_view>& words;
  std::size_t& i;
  std::string_view option;
  std::expected<std::string_view, LineError> next() const {
    if (i + 1 >= words.size()) return std::unexpected(LineError{std::string(option) + " needs a value"});
    return words[++i];
  }
  std::optional<std::string_view> next_if_value() const {
    if (i + 1 < words.size() && !words[i + 1].starts_with('-')) return words[++i];
    return std::nullopt;
  }
};

// Reads one of the virtual service's options; false when it is not one.
std::expected<bool, LineError> service_option(const OptionValues& values, RuleDraft& draft) {
  const std::string_view option = values.option;
  ServiceKey& key = draft.rule.service.key;
  if (option == "-t" || option == "--tcp-service" || option == "-u" || option == "--udp-service" ||
      option == "--sctp-service") {
    auto text = values.next();
    if (!text) return std::unexpected(text.error());
    auto parsed = address_and_port(*text);
    if (!parsed) return std::unexpected(LineError{"bad service address " + std::string(*text)});
    key.protocol = option == "-t" || option == "--tcp-service"   ? Protocol::kTcp
                   : option == "-u" || option == "--udp-service" ? Protocol::kUdp
                                                                 : Protocol::kSctp;
    key.family = parsed->first.family;
    key.address = parsed->first;
    key.port = parsed->second.value_or(0);
    key.fwmark = 0;
    draft.have_service = true;
  } else if (option == "-f" || option == "--fwmark-service") {
    auto text = values.next();
    if (!text) return std::unexpected(text.error());
    auto mark = number<std::uint32_t>(*text);
    if (!mark || *mark == 0) return std::unexpected(LineError{"bad firewall mark " + std::string(*text)});
    key = ServiceKey{};
    key.fwmark = *mark;
    draft.have_service = true;
  } else if (option == "-6" || option == "--ipv6") {
    if (key.fwmark == 0) return std::unexpected(LineError{"-6 used before -f"});
    key.family = Family::kIPv6;
    key.address.family = Family::kIPv6;
  } else if (option == "-s" || option == "--scheduler") {
    auto text = values.next();
    if (!text) return std::unexpected(text.error());
    draft.rule.service.scheduler = std::string(*text);
  } else if (option == "-p" || option == "--persistent") {
    draft.rule.service.flags |= flags::kPersistent;
    draft.rule.service.timeout = 300;  // ipvsadm's default for a bare -p
    if (auto text = values.next_if_value()) {
      auto timeout = number<std::uint32_t>(*text);
      if (!timeout) return std::unexpected(LineError{"bad persistence timeout " + std::string(*text)});
      draft.rule.service.timeout = *timeout;
    }
  } else if (option == "-M" || option == "--netmask") {
    auto text = values.next();
    if (!text) return std::unexpected(text.error());
    draft.netmask_text = *text;
  } else if (option == "-o" || option == "--ops") {
    draft.rule.service.flags |= flags::kOnePacket;
  } else if (option == "-b" || option == "--sched-flags") {
    auto text = values.next();
    if (!text) return std::unexpected(text.error());
    draft.sched_flags_text = *text;
  } else {
    return false;
  }
  return true;
}

// Reads one of the real server's options; false when it is not one.
std::expected<bool, LineError> server_option(const OptionValues& values, RuleDraft& draft) {
  const std::string_view option = values.option;
  Destination& destination = draft.rule.destination;
  if (option == "-r" || option == "--real-server") {
    auto text = values.next();
    if (!text) return std::unexpected(text.error());
    auto parsed = address_and_port(*text);
    if (!parsed) return std::unexpected(LineError{"bad real server address " + std::string(*text)});
    destination.key.address = parsed->first;
    draft.server_port = parsed->second;
    draft.have_server = true;
  } else if (option == "-m" || option == "--masquerading") {
    destination.forwarding = Forwarding::kMasq;
  } else if (option == "-i" || option == "--ipip") {
    destination.forwarding = Forwarding::kTunnel;
  } else if (option == "-g" || option == "--gatewaying") {
    destination.forwarding = Forwarding::kRoute;
  } else if (option == "-w" || option == "--weight" || option == "-x" || option == "--u-threshold" ||
             option == "-y" || option == "--l-threshold") {
    auto text = values.next();
    if (!text) return std::unexpected(text.error());
    auto parsed = number<std::uint32_t>(*text);
    if (!parsed) return std::unexpected(LineError{"bad value for " + std::string(option)});
    if (option == "-w" || option == "--weight") {
      if (*parsed > 65535) return std::unexpected(LineError{"weight out of range"});
      destination.weight = static_cast<std::int32_t>(*parsed);
    } else if (option == "-x" || option == "--u-threshold") {
      destination.upper_threshold = *parsed;
    } else {
      destination.lower_threshold = *parsed;
    }
  } else if (option == "--tun-type") {
    auto text = values.next();
    if (!text) return std::unexpected(text.error());
    // The model has no tunnel types besides the kernel's default, IPIP.
    if (*text != "ipip") return std::unexpected(LineError{"unsupported tunnel type " + std::string(*text)});
  } else {
    return false;
  }
  return true;
}

// The netmask in the model's form: a prefix length for IPv6, the mask as a
// host-order number for IPv4.
std::expected<std::uint32_t, LineError> parse_netmask(Family family, std::string_view text) {
  if (family == Family::kIPv6) {
    auto prefix = number<std::uint32_t>(text);
    if (!prefix || *prefix < 1 || *prefix > 128)
      return std::unexpected(LineError{"bad IPv6 netmask " + std::string(text)});
    return *prefix;
  }
  auto mask = Address::parse(text);
  if (!mask || mask->family != Family::kIPv4)
    return std::unexpected(LineError{"bad netmask " + std::string(text)});
  std::uint32_t wire = 0;
  std::memcpy(&wire, mask->bytes.data(), 4);
  return ntohl(wire);
}

std::expected<Rule, LineError> finish_rule(RuleDraft draft) {
  Rule& rule = draft.rule;
  if (!draft.have_service) return std::unexpected(LineError{"no service given"});
  ServiceKey& key = rule.service.key;
  if (key.fwmark != 0) key.address = Address{key.family, {}};
  rule.service.netmask = default_netmask(key.family);
  if (draft.netmask_text) {
    auto netmask = parse_netmask(key.family, *draft.netmask_text);
    if (!netmask) return std::unexpected(netmask.error());
    rule.service.netmask = *netmask;
  }
  if (draft.sched_flags_text) {
    auto bits = parse_sched_flags(*draft.sched_flags_text);
    if (!bits)
      return std::unexpected(LineError{"bad scheduler flags " + std::string(*draft.sched_flags_text)});
    rule.service.flags |= *bits;
  }
  if (!rule.is_service) {
    if (!draft.have_server) return std::unexpected(LineError{"-a needs -r"});
    // ipvsadm copies the service port when the real server has none.
    rule.destination.key.port = draft.server_port.value_or(key.port);
  }
  return std::move(rule);
}

std::expected<Rule, LineError> parse_rule(const std::vector<std::string_view>& words) {
  RuleDraft draft;
  const std::string_view command = words[0];
  if (command == "-A" || command == "--add-service") {
    draft.rule.is_service = true;
  } else if (command != "-a" && command != "--add-server") {
    return std::unexpected(LineError{"unsupported command " + std::string(command)});
  }
  draft.rule.service.scheduler = "wlc";
  draft.rule.destination.forwarding = Forwarding::kRoute;
  draft.rule.destination.weight = 1;
  for (std::size_t i = 1; i < words.size(); ++i) {
    const OptionValues values{words, i, words[i]};
    auto known = service_option(values, draft);
    if (known && !*known) known = server_option(values, draft);
    if (!known) return std::unexpected(known.error());
    if (!*known) return std::unexpected(LineError{"unsupported option " + std::string(values.option)});
  }
  return finish_rule(std::move(draft));
}

}  // namespace

std::string format_service_rule(const Service& service) {
  std::string line = "-A " + service_name(service.key) + " -s " + service.scheduler;
  if ((service.flags & flags::kPersistent) != 0) {
    line += " -p " + std::to_string(service.timeout);
    if (service.key.family == Family::kIPv4 && service.netmask != 0xffffffffU) {
      line += " -M " + ipv4_mask(service.netmask);
    }
    if (service.key.family == Family::kIPv6 && service.netmask != 128) {
      line += " -M " + std::to_string(static_cast<std::int32_t>(service.netmask));  // printed with %i
    }
  }
  if ((service.flags & flags::kOnePacket) != 0) line += " -o";
  if ((service.flags & (flags::kSchedShFallback | flags::kSchedShPort | flags::kSched3)) != 0) {
    line += " -b " + sched_flags(service);
  }
  return line;
}

std::string format_destination_rule(const ServiceKey& service, const Destination& destination) {
  std::string line = "-a " + service_name(service) + " -r " +
                     address_port(destination.key.address, destination.key.port) + " " +
                     forwarding_option(destination.forwarding) + " -w " + std::to_string(destination.weight);
  // print_tunnel_rule(): the kernel reports tunnel type 0 (IPIP) for every
  // tunnel kipvs creates, and ipvsadm names it.
  if (destination.forwarding == Forwarding::kTunnel) line += " --tun-type ipip";
  return line;
}

void sort_like_ipvsadm(std::vector<ServiceWithDestinations>& dump) {
  std::vector<ServiceWithDestinations> scratch;
  scratch.reserve(dump.size());
  glibc_merge_sort(std::span<ServiceWithDestinations>(dump), scratch, compare_services);
  std::vector<DestinationState> dest_scratch;
  for (ServiceWithDestinations& entry : dump) {
    dest_scratch.reserve(entry.destinations.size());
    glibc_merge_sort(std::span<DestinationState>(entry.destinations), dest_scratch, compare_destinations);
  }
}

std::string format_ipvsadm_save(std::span<const ServiceWithDestinations> dump) {
  std::vector<ServiceWithDestinations> sorted(dump.begin(), dump.end());
  sort_like_ipvsadm(sorted);
  std::string out;
  for (const ServiceWithDestinations& entry : sorted) {
    const Service& service = entry.service.service;
    out += format_service_rule(service);
    out += '\n';
    for (const DestinationState& destination : entry.destinations) {
      out += format_destination_rule(service.key, destination.destination);
      out += '\n';
    }
  }
  return out;
}

std::string format_ipvsadm_save(const Table& table) {
  std::vector<ServiceWithDestinations> dump;
  dump.reserve(table.size());
  for (const auto& [key, entry] : table) {
    ServiceWithDestinations item;
    item.service.service = entry.service;
    for (const auto& [dkey, destination] : entry.destinations) {
      DestinationState state;
      state.destination = destination;
      item.destinations.push_back(state);
    }
    dump.push_back(std::move(item));
  }
  return format_ipvsadm_save(dump);
}

std::expected<std::vector<ServiceWithDestinations>, Error> parse_ipvsadm_save(std::string_view text) {
  std::vector<ServiceWithDestinations> out;
  std::map<ServiceKey, std::size_t> index;  // position in out
  std::set<std::pair<std::size_t, DestinationKey>> seen;
  std::size_t line_number = 0;
  while (!text.empty()) {
    const std::size_t newline = text.find('\n');
    const std::string_view line = text.substr(0, newline);
    text = newline == std::string_view::npos ? std::string_view{} : text.substr(newline + 1);
    ++line_number;
    const auto words = split_words(line);
    if (words.empty() || words[0].starts_with('#')) continue;
    auto fail = [&](const std::string& message) {
      return std::unexpected(
          Error{EINVAL, "ipvsadm rules line " + std::to_string(line_number) + ": " + message});
    };
    auto rule = parse_rule(words);
    if (!rule) return fail(rule.error().message);
    const ServiceKey& key = rule->service.key;
    auto found = index.find(key);
    if (rule->is_service) {
      if (found != index.end()) return fail("service defined twice");
      index.emplace(key, out.size());
      ServiceWithDestinations entry;
      entry.service.service = rule->service;
      out.push_back(std::move(entry));
      continue;
    }
    if (found == index.end()) return fail("destination for a service not defined above");
    if (!seen.emplace(found->second, rule->destination.key).second) return fail("destination defined twice");
    DestinationState state;
    state.destination = rule->destination;
    out[found->second].destinations.push_back(state);
  }
  return out;
}

}  // namespace kipvs::ipvs
