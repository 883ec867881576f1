// Programs N virtual services with M masquerading destinations each, once
// with `ipvsadm -R` and once through kipvs's netlink backend, then dumps the
// table both ways; prints the times and the ratios. Runs inside the rig's
// guest (the host kernel has no IPVS): see bench/ipvs-backend.
//
// Each side gets a network namespace of its own, and both namespaces stay
// alive until the end: IPVS state is per namespace, and tearing one down
// while the other is measured would make the kernel's clean-up compete with
// the measurement. ipvsadm goes first, so any leftover cost of its rules
// falls on kipvs, never the other way round.

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "bench/fresh_netns.h"
#include "ipvs/ipvsadm_format.h"
#include "ipvs/netlink_backend.h"
#include "ipvs/table.h"

namespace {

using kipvs::ipvs::Address;
using kipvs::ipvs::Destination;
using kipvs::ipvs::NetlinkBackend;
using kipvs::ipvs::Operation;
using kipvs::ipvs::Service;
using kipvs::ipvs::Table;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

Address ipv4(std::uint32_t value) {
  Address address;
  address.bytes[0] = static_cast<std::uint8_t>(value >> 24);
  address.bytes[1] = static_cast<std::uint8_t>(value >> 16);
  address.bytes[2] = static_cast<std::uint8_t>(value >> 8);
  address.bytes[3] = static_cast<std::uint8_t>(value);
  return address;
}

// Services 10.96.0.0 upwards on port 80; destinations 10.244.0.0 upwards on 8080.
Table make_table(int services, int destinations) {
  Table table;
  std::uint32_t next_destination = (10u << 24) | (244u << 16);
  for (int s = 0; s < services; ++s) {
    Service service;
    service.key.address = ipv4((10u << 24) | (96u << 16) | static_cast<std::uint32_t>(s));
    service.key.port = 80;
    service.scheduler = "rr";
    std::vector<Destination> list;
    for (int d = 0; d < destinations; ++d) {
      Destination destination;
      destination.key.address = ipv4(next_destination++);
      destination.key.port = 8080;
      list.push_back(destination);
    }
    kipvs::ipvs::put(table, service, list);
  }
  return table;
}

std::vector<Operation> operations_for(const Table& table) {
  std::vector<Operation> operations;
  for (const auto& [key, entry] : table) {
    operations.push_back({Operation::Kind::kAddService, entry.service, {}});
    for (const auto& [dkey, destination] : entry.destinations) {
      operations.push_back({Operation::Kind::kAddDestination, entry.service, destination});
    }
  }
  return operations;
}

double timed_shell(const std::string& command) {
  const auto start = Clock::now();
  if (std::system(command.c_str()) != 0) {
    std::cerr << "bench: failed: " << command << "\n";
    std::exit(1);
  }
  return seconds_since(start);
}

}  // namespace

int main(int argc, char** argv) {
  int services = 10000;
  int destinations = 10;
  std::string work = "/tmp";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--services")
      services = std::atoi(argv[i + 1]);
    else if (flag == "--destinations")
      destinations = std::atoi(argv[i + 1]);
    else if (flag == "--work")
      work = argv[i + 1];
  }
  const Table table = make_table(services, destinations);
  const auto operations = operations_for(table);
  const std::string rules = work + "/kipvs-bench-rules.txt";
  {
    std::ofstream out(rules);
    out << kipvs::ipvs::format_ipvsadm_save(table);
  }
  std::cout << "objects: " << operations.size() << " (" << services << " services x " << destinations
            << " destinations + the services)\n";

  // ipvsadm, the reference.
  kipvs::bench::fresh_netns();
  const int ipvsadm_netns = open("/proc/self/ns/net", O_RDONLY);  // kept open: see the top comment
  const double ipvsadm_program = timed_shell("ipvsadm -R < " + rules);
  const double ipvsadm_dump = timed_shell("ipvsadm -Sn > " + work + "/kipvs-bench-ipvsadm-dump.txt");

  // kipvs.
  kipvs::bench::fresh_netns();
  auto opened = NetlinkBackend::open();
  if (!opened) {
    std::cerr << "bench: " << opened.error().message << "\n";
    return 1;
  }
  NetlinkBackend& backend = **opened;
  auto start = Clock::now();
  const auto results = backend.apply(operations);
  const double kipvs_program = seconds_since(start);
  const auto program_counters = backend.counters();
  std::size_t failures = 0;
  for (const auto& result : results) failures += result ? 0 : 1;
  start = Clock::now();
  const auto dump = backend.list_all();
  const double kipvs_dump = seconds_since(start);
  if (failures != 0 || !dump || kipvs::ipvs::table_from(*dump) != table) {
    std::cerr << "bench: kipvs did not program the table it was given (" << failures << " failures)\n";
    return 1;
  }
  // Both sides must have built the same table.
  std::ifstream by_ipvsadm(work + "/kipvs-bench-ipvsadm-dump.txt");
  const std::string ipvsadm_text((std::istreambuf_iterator<char>(by_ipvsadm)),
                                 std::istreambuf_iterator<char>());
  if (ipvsadm_text != kipvs::ipvs::format_ipvsadm_save(*dump)) {
    std::cerr << "bench: ipvsadm's table differs from kipvs's\n";
    return 1;
  }
  close(ipvsadm_netns);

  // The same writes with every request acknowledged (ipvsadm's way, and
  // kipvs's before it asked only for the last request's answer).
  kipvs::bench::fresh_netns();
  auto acknowledging = NetlinkBackend::open({.acknowledge_each = true});
  if (!acknowledging) {
    std::cerr << "bench: " << acknowledging.error().message << "\n";
    return 1;
  }
  start = Clock::now();
  const auto acknowledged_results = (*acknowledging)->apply(operations);
  const double acknowledged_program = seconds_since(start);
  failures = 0;
  for (const auto& result : acknowledged_results) failures += result ? 0 : 1;
  if (failures != 0) {
    std::cerr << "bench: " << failures << " failures with every request acknowledged\n";
    return 1;
  }

  const double messages_per_sendmsg =
      program_counters.sendmsg_calls
          ? double(program_counters.messages_sent) / double(program_counters.sendmsg_calls)
          : 0.0;
  std::printf("%-28s %10s %10s %8s\n", "", "ipvsadm", "kipvs", "ratio");
  std::printf("%-28s %9.2fs %9.2fs %7.3fx\n", "program (write every rule)", ipvsadm_program, kipvs_program,
              kipvs_program / ipvsadm_program);
  std::printf("%-28s %9.2fs %9.2fs %7.3fx\n", "  every request acknowledged", ipvsadm_program,
              acknowledged_program, acknowledged_program / ipvsadm_program);
  std::printf("%-28s %9.2fs %9.2fs %7.3fx\n", "dump (read every rule)", ipvsadm_dump, kipvs_dump,
              kipvs_dump / ipvsadm_dump);
  std::printf("kipvs: %llu messages in %llu sendmsg calls (%.0f per call)\n",
              static_cast<unsigned long long>(program_counters.messages_sent),
              static_cast<unsigned long long>(program_counters.sendmsg_calls), messages_per_sendmsg);
  std::printf("program_ratio_vs_ipvsadm=%.3f dump_ratio_vs_ipvsadm=%.3f\n", kipvs_program / ipvsadm_program,
              kipvs_dump / ipvsadm_dump);
  return 0;
}
