// Runs `promtool check metrics` on a live scrape: kipvs's registry (with
// throughput series) served by its HTTP server on loopback and fetched over
// TCP, as Prometheus's own linter sees it. Exit status: 0
// clean, 1 problems, 77 (ctest's skip) when promtool is missing outside CI.
//
// Any finding fails, and so does a non-zero exit: kube-proxy's
// no_local_endpoints_total gauge is exposed untyped so that it lints clean.

#include <unistd.h>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>

#include "http_exchange.h"
#include "metrics/http_server.h"
#include "metrics/metrics.h"
#include "metrics/process.h"
#include "metrics/throughput.h"

int main() {
  const char* promtool = "/usr/bin/promtool";
  const char* ci = std::getenv("CI");
  if (!std::filesystem::exists(promtool)) {
    if (ci != nullptr && std::string(ci) == "true") {
      std::cerr << "promtool is required in CI but " << promtool << " is missing\n";
      return 1;
    }
    std::cerr << "skipped: " << promtool << " is missing\n";
    return 77;
  }

  using namespace std::chrono_literals;
  kipvs::metrics::Metrics metrics({"IPv4", "IPv6"});
  metrics.observe_sync(12ms);
  metrics.synced_at(std::chrono::system_clock::now());
  metrics.queued_at(std::chrono::system_clock::now());
  metrics.observe_network_programming("IPv4", 2s);
  metrics.endpoint_changes(4);
  metrics.netlink_operations("add_service", "ok", 3);
  metrics.object_skipped("Service", "bad_cluster_ip");
  metrics.watch_event("services", "ADDED");
  metrics.relisted("services");
  metrics.healthz_answered(200);
  metrics.livez_answered(200);
  metrics.rest_client_request("10.96.0.1:443", "GET", 200, 40ms);
  metrics.rest_client_request("10.96.0.1:443", "GET", 0, 30s);
  metrics.add_text_collectable(std::make_shared<kipvs::metrics::ProcessCollector>());
  metrics.add_text_collectable(std::make_shared<kipvs::metrics::ThroughputCollector>([] {
    kipvs::metrics::ServiceThroughput svc;
    svc.namespace_name = "kube-system";
    svc.name = "kube-dns";
    svc.port_name = "dns";
    svc.protocol = kipvs::ipvs::Protocol::kUdp;
    svc.address = *kipvs::ipvs::Address::parse("10.96.0.10");
    svc.port = 53;
    svc.stats.bytes_in = 100;
    kipvs::metrics::DestinationThroughput dst;
    dst.address = *kipvs::ipvs::Address::parse("10.244.1.5");
    dst.port = 53;
    dst.weight = 1;
    svc.destinations.push_back(dst);
    return kipvs::metrics::ThroughputSnapshot{svc};
  }));

  const auto path =
      std::filesystem::temp_directory_path() / ("kipvs-scrape-" + std::to_string(::getpid()) + ".txt");
  // Serve it and fetch /metrics as a scraper would.
  namespace asio = boost::asio;
  asio::io_context io;
  kipvs::metrics::HttpServer server(
      io, kipvs::metrics::metrics_handler({[&] { return metrics.serialize(); }, {}}));
  const auto bound = server.listen({asio::ip::make_address("127.0.0.1"), 0});
  if (!bound) {
    std::cerr << bound.error().text() << "\n";
    return 1;
  }
  const std::string response =
      kipvs::test::exchange_raw(io, *bound,
                                "GET /metrics HTTP/1.1\r\nHost: kipvs\r\nConnection: close\r\n\r\n")
          .response;
  const auto header_end = response.find("\r\n\r\n");
  if (!response.starts_with("HTTP/1.1 200 OK\r\n") || header_end == std::string::npos) {
    std::cerr << "scrape failed: " << response.substr(0, 200) << "\n";
    return 1;
  }
  const std::string body = response.substr(header_end + 4);
  if (body.find("kipvs_service_bytes_total{") == std::string::npos) {
    std::cerr << "the scrape has no throughput series\n";
    return 1;
  }
  std::ofstream(path) << body;
  const std::string command = std::string(promtool) + " check metrics < " + path.string() + " 2>&1";
  std::FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return 1;
  std::string output;
  char buffer[4096];
  while (std::fgets(buffer, sizeof buffer, pipe) != nullptr) output += buffer;
  const int status = ::pclose(pipe);
  std::filesystem::remove(path);
  std::cout << output;
  std::istringstream lines(output);
  int problems = 0;
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty()) ++problems;
  }
  if (problems > 0 || status != 0) {
    std::cerr << "promtool check metrics found " << problems << " problem(s) (status " << status << ")\n";
    return 1;
  }
  std::cout << "promtool check metrics: clean\n";
  return 0;
}
