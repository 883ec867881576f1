// A cold start's own work without a kernel: Services and EndpointSlices
// listed from an API server as the agent lists them, into kipvs's sync with
// in-memory IPVS, address and nftables backends, until its first sync ends.
// What is left is kipvs's user-space part of a cold start (decoding, the
// desired state, the diff, the bookkeeping of what was written), natively,
// to profile and compare builds (perf, callgrind) without the emulated guest.
//
//   kipvs_cold_start_bench KUBECONFIG [ROUNDS]
//
// Prints per round the lists' and the first sync's wall time and the
// process's CPU over each.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "address/fake_address_backend.h"
#include "agent/sync.h"
#include "agent/sync_observer.h"
#include "conntrack/conntrack.h"
#include "ipvs/fake_backend.h"
#include "k8s/api_source.h"
#include "k8s/http_client.h"
#include "k8s/kubeconfig.h"
#include "k8s/sink.h"
#include "nftables/fake_nft_backend.h"

namespace {

using namespace kipvs;
using Clock = std::chrono::steady_clock;

double cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const auto seconds = [](const timeval& t) { return double(t.tv_sec) + double(t.tv_usec) / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

// Passes everything on to the sync and notes when both lists are done.
class TimingSink final : public k8s::ObjectSink {
 public:
  explicit TimingSink(k8s::ObjectSink& next) : next_(next) {}
  void service_changed(const k8s::ObjectKey& key, const k8s::Service* now) override {
    next_.service_changed(key, now);
  }
  void endpoint_slice_changed(const k8s::ObjectKey& key, const k8s::EndpointSlice* now) override {
    next_.endpoint_slice_changed(key, now);
  }
  void node_changed(const k8s::Node* now) override { next_.node_changed(now); }
  void synced(k8s::ResourceKind kind) override {
    if (kind != k8s::ResourceKind::kNode && ++synced_kinds_ == 2) {
      lists_done = Clock::now();
      lists_cpu = cpu_seconds();
    }
    next_.synced(kind);
  }
  void object_skipped(k8s::ResourceKind kind, const std::string& what, const std::string& reason) override {
    next_.object_skipped(kind, what, reason);
  }

  Clock::time_point lists_done{};
  double lists_cpu = 0;

 private:
  k8s::ObjectSink& next_;
  int synced_kinds_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: kipvs_cold_start_bench KUBECONFIG [ROUNDS]\n");
    return 2;
  }
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 1;
  auto config = k8s::load_client_config({.kubeconfig = argv[1], .master = ""}, k8s::process_environment());
  if (!config) {
    std::fprintf(stderr, "%s\n", config.error().text().c_str());
    return 1;
  }
  for (int round = 0; round < rounds; ++round) {
    boost::asio::io_context io;
    ipvs::FakeBackend kernel;
    address::FakeAddressBackend links;
    nftables::FakeNftBackend nft;
    conntrack::NoConntrack no_conntrack;
    agent::NoopSyncObserver observer;
    agent::SyncOptions options;
    options.facts.node_name = "kipvs-node";
    options.facts.node_ips = {*ipvs::Address::parse("10.0.2.15")};
    options.log = [](std::string_view line) {
      if (line.starts_with("sync ") || line.starts_with("cold start"))
        std::fprintf(stderr, "  %.*s\n", int(line.size()), line.data());
    };
    agent::Sync sync(io, kernel, links, observer, std::move(options), &nft, no_conntrack);
    TimingSink sink(sync);

    auto tokens = std::make_shared<k8s::TokenSource>(config->token, config->token_file);
    auto client = k8s::HttpClient::create(io, *config, tokens);
    if (!client) {
      std::fprintf(stderr, "%s\n", client.error().text().c_str());
      return 1;
    }
    k8s::ApiSourceOptions source_options{.node_name = "", .proxy_name = "", .tuning = {}};
    k8s::ApiSource source(io, **client, sink, source_options);

    // The first sync ends on the loop; look for it between handlers.
    boost::asio::steady_timer poll(io);
    std::function<void()> wait_for_sync = [&] {
      poll.expires_after(std::chrono::milliseconds(5));
      poll.async_wait([&](const boost::system::error_code& ec) {
        if (ec) return;
        if (sync.initial_sync_done()) {
          io.stop();
          return;
        }
        wait_for_sync();
      });
    };
    const double cpu_start = cpu_seconds();
    const auto started = Clock::now();
    source.start();
    wait_for_sync();
    io.run();
    const auto ended = Clock::now();
    const double cpu_end = cpu_seconds();
    const auto ms = [](Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); };
    std::printf(
        "round %d: lists %.0f ms (CPU %.2f s), first sync %.0f ms (CPU %.2f s); %zu virtual services in "
        "the fake kernel\n",
        round + 1, ms(sink.lists_done - started), sink.lists_cpu - cpu_start, ms(ended - sink.lists_done),
        cpu_end - sink.lists_cpu, sync.observed().size());
    sync.stop();
    source.stop();
  }
  return 0;
}
