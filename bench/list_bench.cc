// Lists Services and EndpointSlices from an API server the way the agent
// does (kipvs_k8s's reflectors, one HTTP client), then stops: the list path
// alone, to profile it (perf, callgrind) without a kernel.
//
//   kipvs_list_bench KUBECONFIG [ROUNDS] [json|protobuf]
//
// The last word picks the encoding the lists are asked for (default
// protobuf, as the agent asks); the process's CPU time is printed at the end.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>

#include "k8s/api_source.h"
#include "k8s/http_client.h"
#include "k8s/kubeconfig.h"
#include "k8s/sink.h"

namespace {

using namespace kipvs;

// Counts what the sources tell, and stops the loop once both kinds are listed.
class CountingSink final : public k8s::ObjectSink {
 public:
  explicit CountingSink(boost::asio::io_context& io) : io_(io) {}
  void service_changed(const k8s::ObjectKey&, const k8s::Service*) override { ++services; }
  void endpoint_slice_changed(const k8s::ObjectKey&, const k8s::EndpointSlice*) override { ++slices; }
  void node_changed(const k8s::Node*) override {}
  void synced(k8s::ResourceKind kind) override {
    if (kind == k8s::ResourceKind::kNode) return;
    if (++synced_kinds == 2) io_.stop();
  }
  void object_skipped(k8s::ResourceKind, const std::string&, const std::string&) override { ++skipped; }

  std::size_t services = 0, slices = 0, skipped = 0;
  int synced_kinds = 0;

 private:
  boost::asio::io_context& io_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: kipvs_list_bench KUBECONFIG [ROUNDS] [json|protobuf]\n");
    return 2;
  }
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 1;
  const std::string encoding = argc > 3 ? argv[3] : "protobuf";
  if (encoding != "json" && encoding != "protobuf") {
    std::fprintf(stderr, "encoding: json or protobuf, not %s\n", encoding.c_str());
    return 2;
  }
  auto config = k8s::load_client_config({.kubeconfig = argv[1], .master = ""}, k8s::process_environment());
  if (!config) {
    std::fprintf(stderr, "%s\n", config.error().text().c_str());
    return 1;
  }
  for (int round = 0; round < rounds; ++round) {
    boost::asio::io_context io;
    auto tokens = std::make_shared<k8s::TokenSource>(config->token, config->token_file);
    auto client = k8s::HttpClient::create(io, *config, tokens);
    if (!client) {
      std::fprintf(stderr, "%s\n", client.error().text().c_str());
      return 1;
    }
    CountingSink sink(io);
    k8s::ApiSourceOptions options{.node_name = "", .proxy_name = "", .tuning = {}};
    options.tuning.protobuf_lists = encoding == "protobuf";
    options.tuning.log = [](std::string_view line) {
      std::fprintf(stderr, "%.*s\n", int(line.size()), line.data());
    };
    k8s::ApiSource source(io, **client, sink, options);
    const auto started = std::chrono::steady_clock::now();
    source.start();
    io.run();
    const auto ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
    std::printf("round %d: %zu services, %zu slices, %zu skipped in %.1f ms\n", round + 1, sink.services,
                sink.slices, sink.skipped, ms);
    source.stop();
  }
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const auto seconds = [](const timeval& t) { return double(t.tv_sec) + double(t.tv_usec) / 1e6; };
  std::printf("%s: CPU user %.2f s, system %.2f s over %d rounds\n", encoding.c_str(),
              seconds(usage.ru_utime), seconds(usage.ru_stime), rounds);
  return 0;
}
