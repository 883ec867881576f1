// The reflector against the fault-injecting HTTP server (fault_server.h), for
// what a real API server cannot be made to do on demand: a connection cut
// mid-frame, a frame delivered byte by byte, malformed JSON, 429/503, 410s
// at chosen moments, a refused field selector, a 401 before a token rotates.
#include "k8s/reflector.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/json/parse.hpp>
#include <catch2/catch.hpp>

#include "fault_server.h"
#include "gzip_encode.h"
#include "k8s/api_source.h"
#include "k8s/http_client.h"
#include "protobuf_encode.h"

namespace kipvs::k8s {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using namespace test;  // the fault-injecting server (fault_server.h)

std::string service(const std::string& name, const std::string& rv, int port = 80,
                    const std::string& cluster_ip = "10.96.0.10") {
  return R"({"metadata":{"name":")" + name + R"(","namespace":"ns","resourceVersion":")" + rv +
         R"("},"spec":{"clusterIP":")" + cluster_ip + R"(","ports":[{"port":)" + std::to_string(port) +
         "}]}}";
}
std::string event(const std::string& type, const std::string& object) {
  return R"({"type":")" + type + R"(","object":)" + object + "}\n";
}
std::string bookmark(const std::string& rv) {
  return event("BOOKMARK", R"({"kind":"Service","metadata":{"resourceVersion":")" + rv + R"("}})");
}
std::string list(const std::vector<std::string>& items, const std::string& rv, const std::string& cont = "") {
  std::string body = R"({"kind":"ServiceList","metadata":{"resourceVersion":")" + rv + R"(","continue":")" +
                     cont + R"("},"items":[)";
  for (std::size_t i = 0; i < items.size(); ++i) body += (i ? "," : "") + items[i];
  return body + "]}";
}
const std::string kExpired =
    R"({"kind":"Status","apiVersion":"v1","status":"Failure","message":"too old resource version","reason":"Expired","code":410})";

class RecordingSink final : public ObjectSink {
 public:
  void service_changed(const ObjectKey& key, const Service* now) override {
    events.push_back(key.name + (now ? "" : " deleted"));
  }
  void endpoint_slice_changed(const ObjectKey&, const EndpointSlice*) override {}
  void node_changed(const Node*) override {}
  void synced(ResourceKind) override { ++synced_count; }
  void object_skipped(ResourceKind, const std::string& what, const std::string& reason) override {
    skipped.push_back(what + " " + reason);
  }
  std::vector<std::string> events;
  std::vector<std::string> skipped;
  int synced_count = 0;
};

// A reflector for Services with kube-proxy's selectors, fast deterministic
// backoff (random() = 0: exactly 100 ms, 200 ms, ...), against the server.
struct Rig {
  asio::io_context io;
  std::unique_ptr<FaultServer> server;
  std::shared_ptr<TokenSource> tokens;
  std::unique_ptr<HttpClient> client;
  RecordingSink sink;
  std::unique_ptr<Reflector<Service>> reflector;
  std::vector<std::string> log;
  std::vector<std::string> hooks;  // what the metric hooks heard: "ADDED", "relist", ...

  explicit Rig(FaultServer::Handler handler, std::filesystem::path token_file = {},
               std::chrono::milliseconds watch_silence_limit = ReflectorOptions{}.watch_silence_limit,
               std::chrono::milliseconds service_handoff = 0ms,
               std::size_t max_page_memory = ReflectorOptions{}.max_page_memory) {
    server = std::make_unique<FaultServer>(io, std::move(handler));
    ClientConfig config;
    config.server = server->url();
    tokens = std::make_shared<TokenSource>("", token_file);
    client = std::move(*HttpClient::create(io, config, tokens));
    ApiSourceOptions options;
    options.tuning.backoff = {100ms, 400ms, 2.0, 1.0};
    options.tuning.random = [] { return 0.0; };
    options.tuning.watch_silence_limit = watch_silence_limit;
    options.service_handoff = service_handoff;
    options.tuning.max_page_memory = max_page_memory;
    options.tuning.log = [this](std::string_view line) { log.emplace_back(line); };
    options.tuning.on_watch_event = [this](ResourceKind kind, std::string_view type) {
      CHECK(kind == ResourceKind::kService);
      hooks.emplace_back(type);
    };
    options.tuning.on_relist = [this](ResourceKind) { hooks.emplace_back("relist"); };
    reflector = std::make_unique<Reflector<Service>>(io, *client, sink, service_reflector_options(options));
  }
  ~Rig() { reflector->stop(); }
};

bool is_watch(const std::string& target) {
  return target.find("watch=true") != std::string::npos;
}
bool has(const std::string& target, const std::string& part) {
  return target.find(part) != std::string::npos;
}

TEST_CASE("reflector fault: pages, then a watch from the list's version, resumed from the last bookmark") {
  int watches = 0;
  Rig rig([&](const std::string& target, const std::string&) -> Script {
    if (!is_watch(target)) {
      if (has(target, "continue=p2")) return {{response(200, list({service("c", "9")}, "10"))}};
      return {{response(200, list({service("a", "5"), service("b", "6")}, "10", "p2"))}};
    }
    if (++watches == 1) {
      return {{chunked_head() +
               chunk(event("ADDED", service("d", "11")) + event("MODIFIED", service("a", "12", 81))) +
               chunk(event("DELETED", service("b", "13")) + bookmark("20")) + kLastChunk}};
    }
    return {{chunked_head()}};  // then silence
  });
  rig.reflector->start();
  REQUIRE(run_until(rig.io, [&] { return watches == 2; }));
  const auto& t = rig.server->targets;
  REQUIRE(t.size() == 4);
  CHECK(has(t[0], "limit=500"));
  CHECK(has(t[0], "labelSelector=%21service.kubernetes.io%2Fservice-proxy-name"));
  CHECK(has(t[0], "fieldSelector=spec.clusterIP%21%3DNone"));
  CHECK_FALSE(has(t[0], "continue="));
  CHECK(has(t[1], "continue=p2"));
  CHECK(has(t[2], "resourceVersion=10&"));
  CHECK(has(t[2], "allowWatchBookmarks=true"));
  const auto timeout = std::stoi(t[2].substr(t[2].find("timeoutSeconds=") + 15));
  CHECK(timeout >= 300);
  CHECK(timeout < 600);
  CHECK(has(t[3], "resourceVersion=20&"));
  CHECK(rig.sink.events == std::vector<std::string>{"a", "b", "c", "d", "a", "b deleted"});
  CHECK(rig.sink.synced_count == 1);
  CHECK(rig.reflector->cache().find({"ns", "a"})->ports.at(0).port == 81);
  CHECK(rig.reflector->status().bookmarks == 1);
  CHECK(rig.reflector->status().list_pages == 2);
  CHECK(rig.hooks == std::vector<std::string>{"ADDED", "MODIFIED", "DELETED", "BOOKMARK"});
}

TEST_CASE(
    "reflector fault: the pages of a list go over one kept-alive connection, and the watch after them") {
  Rig rig([&](const std::string& target, const std::string&) -> Script {
    if (is_watch(target)) return {{chunked_head()}};
    const bool kept = true;
    if (has(target, "continue=p3")) return {{response(200, list({service("c", "7")}, "10"), "", kept)}};
    if (has(target, "continue=p2")) return {{response(200, list({service("b", "6")}, "10", "p3"), "", kept)}};
    return {{response(200, list({service("a", "5")}, "10", "p2"), "", kept)}};
  });
  rig.reflector->start();
  REQUIRE(run_until(rig.io, [&] { return rig.server->targets.size() == 4; }));
  CHECK(rig.sink.events == std::vector<std::string>{"a", "b", "c"});
  CHECK(rig.server->accepted() == 1);
  CHECK(rig.server->connection_of == std::vector<std::size_t>{0, 0, 0, 0});
  CHECK(rig.reflector->status().list_pages == 3);
  CHECK(rig.reflector->status().reused_list_pages == 2);
  CHECK(rig.client->connection_stats().opened == 1);
  bool said = false;
  for (const auto& line : rig.log)
    said = said || has(line, "listed 3 objects at resourceVersion 10 over 1 new");
  CHECK(said);
}

TEST_CASE("reflector fault: a watch that ends leaves no connection for the next watch") {
  int watches = 0;
  Rig rig([&](const std::string& target, const std::string&) -> Script {
    if (!is_watch(target)) return {{response(200, list({}, "10"), "", true)}};
    // A whole chunked body, kept alive as far as HTTP goes.
    if (++watches == 1) return {{chunked_head() + chunk(event("ADDED", service("d", "11"))) + kLastChunk}};
    return {{chunked_head()}};
  });
  rig.reflector->start();
  REQUIRE(run_until(rig.io, [&] { return watches == 2; }));
  const auto& on = rig.server->connection_of;
  REQUIRE(on.size() == 3);
  CHECK(on[1] == on[0]);  // the first watch took the list's connection
  CHECK(on[2] != on[1]);
  CHECK(rig.server->accepted() == 2);
  CHECK(rig.reflector->status().failures == 1);  // it ended within a second: a backoff first
}

TEST_CASE("reflector fault: a list asks for gzip and a compressed page decodes, and a watch stays plain") {
  std::vector<std::string> heads;
  const std::string page = list({service("a", "5"), service("b", "6", 8080)}, "10");
  const std::string compressed = kipvs::test::gzip_encode(page);
  REQUIRE(compressed.size() > 20);
  Rig rig([&](const std::string& target, const std::string& head) -> Script {
    heads.push_back(head);
    if (!is_watch(target)) {
      // Split inside the deflate data: the decoder sees it in two reads.
      const std::string http_head =
          "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: "
          "gzip\r\nContent-Length: " +
          std::to_string(compressed.size()) + "\r\nConnection: close\r\n\r\n";
      return {{http_head + compressed.substr(0, 20)}, {compressed.substr(20)}};
    }
    return {{chunked_head()}};
  });
  rig.reflector->start();
  REQUIRE(run_until(rig.io, [&] { return heads.size() == 2; }));
  CHECK_THAT(heads[0], Catch::Contains("Accept-Encoding: gzip"));
  CHECK_THAT(heads[1], !Catch::Contains("Accept-Encoding"));
  CHECK(rig.sink.events == std::vector<std::string>{"a", "b"});
  CHECK(rig.reflector->cache().find({"ns", "b"})->ports.at(0).port == 8080);
  CHECK(rig.reflector->status().gzip_list_pages == 1);
}

TEST_CASE("reflector fault: a corrupt gzip page is a failed list, retried, nothing half-applied") {
  int lists = 0;
  const std::string page = list({service("a", "5")}, "10");
  std::string corrupt = kipvs::test::gzip_encode(page);
  corrupt[corrupt.size() - 8] ^= 0x01;  // the CRC-32
  Rig rig([&](const std::string& target, const std::string&) -> Script {
    if (is_watch(target)) return {{chunked_head()}};
    const std::string body = ++lists == 1 ? corrupt : kipvs::test::gzip_encode(page);
    return {{"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: " + std::to_string(body.size()) +
             "\r\nConnection: close\r\n\r\n" + body}};
  });
  rig.reflector->start();
  REQUIRE(run_until(rig.io, [&] { return rig.sink.synced_count == 1; }));
  CHECK(lists == 2);
  CHECK(rig.sink.events == std::vector<std::string>{"a"});
  CHECK(rig.reflector->status().failures == 1);
  REQUIRE_FALSE(rig.log.empty());
  CHECK_THAT(rig.log.front(), Catch::Contains("CRC-32 mismatch"));
}

TEST_CASE("reflector fault: a frame delivered byte by byte is applied once, whole") {
  Rig rig([&](const std::string& target, const std::string&) -> Script {
    if (!is_watch(target)) return {{response(200, list({}, "1"))}};
    return {{chunked_head()}, {chunk(event("ADDED", service("slow", "2", 8080))), true}};
  });
  rig.reflector->start();
  REQUIRE(run_until(
      rig.io, [&] { return !rig.sink.events.empty(); }, 20s));
  CHECK(rig.sink.events == std::vector<std::string>{"slow"});
  CHECK(rig.reflector->cache().find({"ns", "slow"})->ports.at(0).port == 8080);
  CHECK(rig.reflector->status().skipped == 0);
}

TEST_CASE("reflector fault: a connection cut mid-frame resumes from the last whole event") {
  int watches = 0;
  const std::string cut = event("ADDED", service("e", "12"));
  Rig rig([&](const std::string& target, const std::string&) -> Script {
    if (!is_watch(target)) return {{response(200, list({}, "10"))}};
    if (++watches == 1) {
      return {{chunked_head() + chunk(event("ADDED", service("d", "11")) + cut.substr(0, cut.size() / 2)),
               false, true}};
    }
    return {{chunked_head() + chunk(cut)}};
  });
  rig.reflector->start();
  REQUIRE(run_until(rig.io, [&] { return rig.sink.events.size() == 2; }));
  CHECK(rig.sink.events == std::vector<std::string>{"d", "e"});
  CHECK(has(rig.server->targets.at(2), "resourceVersion=11&"));
  CHECK(rig.reflector->status().failures == 1);
  CHECK(rig.reflector->status().lists == 1);  // resumed, not relisted
}

TEST_CASE("reflector fault: an undecodable object is skipped, the watch goes on") {
  Rig rig([&](const std::string& target, const std::string&) -> Script {
    if (!is_watch(target)) return {{response(200, list({}, "1"))}};
    const std::string bad_port =
        R"({"metadata":{"name":"bad","namespace":"ns","resourceVersion":"3"},"spec":{"ports":[{"port":"abc"}]}})";
    return {{chunked_head() + chunk(event("ADDED", bad_port)) + chunk(event("ADDED", service("good", "4")))}};
  });
  rig.reflector->start();
  REQUIRE(run_until(rig.io, [&] { return !rig.sink.events.empty(); }));
  CHECK(rig.sink.events == std::vector<std::string>{"good"});
  CHECK(rig.sink.skipped == std::vector<std::string>{"ns/bad bad_port"});
  CHECK(rig.reflector->status().skipped == 1);
  CHECK(rig.reflector->status().resource_version == "4");
  CHECK(rig.reflector->status().relists == 0);
  bool named = false;
  for (const auto& line : rig.log) named = named || (has(line, "skipping") && has(line, "ns/bad"));
  CHECK(named);
}

TEST_CASE(
    "reflector fault: a frame skipped whole is counted, and the reflector relists instead of going on") {
  // The skipped frame carried "lost" (version 3); the frame after it would
  // move the resourceVersion past it. Only a list brings it back.
  const std::string bad =
      GENERATE(std::string(R"({"type":"ADDED","object":{"metadata":oops}})"),
               std::string(R"({"kind":"Service","metadata":{"resourceVersion":"3"}})"),
               R"({"type":"ADDED","object":{"x":")" +
                   std::string(JsonStream::kDefaultMaxValueBytes + (1 << 20), 'x') + R"("}})");
  CAPTURE(bad.substr(0, 60));
  int lists = 0;
  Rig rig([&](const std::string& target, const std::string&) -> Script {
    if (!is_watch(target)) {
      if (++lists == 1) return {{response(200, list({}, "1"))}};
      return {{response(200, list({service("lost", "3"), service("later", "4")}, "4"))}};
    }
    if (lists == 1)
      return {{chunked_head() + chunk(bad + "\n") + chunk(event("ADDED", service("later", "4")))}};
    return {{chunked_head()}};
  });
  rig.reflector->start();
  REQUIRE(run_until(rig.io, [&] { return lists == 2 && is_watch(rig.server->targets.back()); }));
  CHECK(rig.reflector->status().relists == 1);
  CHECK(rig.reflector->cache().find({"ns", "lost"}) != nullptr);
  CHECK(rig.sink.events == std::vector<std::string>{"later", "lost"});
  CHECK(rig.sink.skipped == std::vector<std::string>{"a watch frame bad_watch_frame"});
  CHECK(rig.reflector->status().skipped == 1);
  CHECK(has(rig.server->targets.back(), "resourceVersion=4&"));
}

TEST_CASE(
    "reflector fault: large pages are decoded on a worker thread, in order, with skips and the client "
    "filter") {
  // 2 pages of 150: the field selector refused, so a headless Service is
  // filtered here, on the worker; one object does not decode.
  const auto page = [](int first, const std::string& cont) {
    std::vector<std::string> items;
    for (int i = first; i < first + 150; ++i) {
      const std::string name = "s" + std::to_string(i);
      if (i == 7) {
        items.push_back(service(name, "1", 53, "None"));
      } else if (i == 160) {
        items.push_back(R"({"metadata":{"name":")" + name +
                        R"(","namespace":"ns","resourceVersion":"1"},"spec":{"ports":[{"port":"abc"}]}})");
      } else {
        items.push_back(service(name, "1"));
      }
    }
    return list(items, "2", cont);
  };
  Rig rig([&](const std::string& target, const std::string&) -> Script {
    if (has(target, "fieldSelector")) return {{response(400, R"({"kind":"Status","code":400})")}};
    if (is_watch(target)) return {{chunked_head()}};
    return {{response(200, has(target, "continue=p2") ? page(150, "") : page(0, "p2"))}};
  });
  rig.reflector->start();
  REQUIRE(run_until(rig.io, [&] { return rig.sink.synced_count == 1; }));
  std::vector<std::string> expected;
  for (int i = 0; i < 300; ++i) {
    if (i != 7 && i != 160) expected.push_back("s" + std::to_string(i));
  }
  CHECK(rig.sink.events == expected);  // the first list: page by page, in the list's order
  CHECK(rig.sink.skipped == std::vector<std::string>{"ns/s160 bad_port"});
  CHECK(rig.reflector->status().skipped == 1);
  CHECK(rig.reflector->status().list_pages == 2);
  CHECK(rig.reflector->status().worker_pages == 2);
  CHECK(rig.reflector->cache().size() == 298);
}

TEST_CASE("reflector fault: 429 and 5xx back off, then the list succeeds") {
  const int status = GENERATE(429, 500, 503);
  CAPTURE(status);
  int lists = 0;
  Rig rig([&](const std::string& target, const std::string&) -> Script {
    if (is_watch(target)) return {{chunked_head()}};
    if (++lists <= 2)
      return {{response(status,
                        R"({"kind":"Status","message":"slow down","code":)" + std::to_string(status) + "}")}};
    return {{response(200, list({service("a", "1")}, "1"))}};
  });
  rig.reflector->start();
  REQUIRE(run_until(rig.io, [&] { return rig.sink.synced_count == 1; }));
  CHECK(rig.reflector->status().failures == 2);
  const auto& times = rig.server->times;
  // random() = 0: the delays are exactly 100 ms, then 200 ms.
  CHECK(times.at(1) - times.at(0) >= 100ms);
  CHECK(times.at(2) - times.at(1) >= 200ms);
  CHECK(rig.reflector->status().last_error.empty());
}

std::string protobuf_response(int status, const std::string& body) {
  return "HTTP/1.1 " + std::to_string(status) +
         " X\r\nContent-Type: application/vnd.kubernetes.protobuf\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
}

Pb protobuf_service(const std::string& name, std::int64_t port) {
  return Pb()
      .message(1, pb_meta("ns", name))
      .message(2, Pb().message(1, Pb().integer(3, port)).string(3, "10.96.0.10"));
}

TEST_CASE("reflector fault: protobuf list pages are decoded, a bad item skipped, and the watch stays JSON") {
  int lists = 0;
  std::vector<std::string> heads;
  Rig rig([&](const std::string& target, const std::string& head) -> Script {
    heads.push_back(head);
    if (is_watch(target)) {
      return {{chunked_head() + chunk(event("ADDED", service("d", "11"))) + kLastChunk}};
    }
    if (++lists == 1) {
      // A Status in protobuf: its message must reach the log.
      return {{protobuf_response(
          500,
          Pb().string(2, "Failure").string(3, "etcd is down").integer(6, 500).envelope("v1", "Status"))}};
    }
    if (has(target, "continue=p2")) {
      const Pb page = Pb().message(1, Pb().string(2, "10")).message(2, protobuf_service("c", 443));
      return {{protobuf_response(200, page.envelope("v1", "ServiceList"))}};
    }
    const Pb page = Pb().message(1, Pb().string(2, "10").string(3, "p2"))
                        .message(2, protobuf_service("a", 80))
                        .message(2, protobuf_service("b", 0));  // refused: port 0
    return {{protobuf_response(200, page.envelope("v1", "ServiceList"))}};
  });
  rig.reflector->start();
  REQUIRE(run_until(rig.io, [&] { return rig.sink.events.size() == 3; }));
  CHECK(rig.sink.events == std::vector<std::string>{"a", "c", "d"});
  CHECK(rig.sink.skipped == std::vector<std::string>{"ns/b bad_port"});
  CHECK(rig.reflector->cache().find({"ns", "c"})->ports.at(0).port == 443);
  CHECK(rig.reflector->status().protobuf_list_pages == 2);
  CHECK(rig.reflector->status().list_pages == 2);
  CHECK(std::ranges::any_of(rig.log, [](const std::string& line) {
    return line.find("HTTP 500 on list") != std::string::npos &&
           line.find("etcd is down") != std::string::npos;
  }));
  REQUIRE(heads.size() == 4);
  for (int i = 0; i < 3; ++i) {
    INFO(heads[i]);
    CHECK(has(heads[i], "application/vnd.kubernetes.protobuf, application/json"));
  }
  INFO(heads[3]);
  CHECK_FALSE(has(heads[3], "protobuf"));
}

TEST_CASE("reflector fault: a Retry-After longer than the backoff's cap waits only the cap") {
  // An hour, and a value whose milliseconds would overflow: both wait the
  // cap (400 ms here, 30 s by default), then the list goes on.
  const std::string retry_after = GENERATE("3600", "9223372036854775807");
  CAPTURE(retry_after);
  int lists = 0;
  Rig rig([&](const std::string& target, const std::string&) -> Script {
    if (is_watch(target)) return {{chunked_head()}};
    if (++lists == 1) {
      return {{response(429, R"({"kind":"Status","message":"slow down","code":429})",
                        "Retry-After: " + retry_after + "\r\n")}};
    }
    return {{response(200, list({service("a", "1")}, "1"))}};
  });
  rig.reflector->start();
  REQUIRE(run_until(
      rig.io, [&] { return rig.sink.synced_count == 1; }, 3s));
  const auto& times = rig.server->times;
  CHECK(times.at(1) - times.at(0) >= 400ms);
  CHECK(times.at(1) - times.at(0) < 2s);
}

TEST_CASE("reflector fault: an ERROR 410 on the watch relists and passes on only the differences") {
  int lists = 0;
  Rig rig([&](const std::string& target, const std::string&) -> Script {
    if (!is_watch(target)) {
      if (++lists == 1)
        return {{response(200, list({service("a", "1"), service("b", "2"), service("c", "3")}, "3"))}};
      return {{response(200, list({service("a", "1"), service("c", "7", 99), service("e", "8")}, "9"))}};
    }
    if (lists == 1) return {{chunked_head() + chunk(event("ERROR", kExpired))}};
    return {{chunked_head()}};
  });
  rig.reflector->start();
  // Wait for the new watch too: under load it can reach the server after the
  // relist's events reach the sink.
  REQUIRE(run_until(rig.io, [&] {
    return rig.reflector->status().relists == 1 && rig.sink.events.size() >= 6 &&
           has(rig.server->targets.back(), "resourceVersion=9&");
  }));
  CHECK(rig.sink.events == std::vector<std::string>{"a", "b", "c", "b deleted", "c", "e"});
  CHECK(rig.sink.synced_count == 1);
  CHECK(rig.hooks == std::vector<std::string>{"ERROR", "relist"});
  CHECK(has(rig.server->targets.back(), "resourceVersion=9&"));
  CHECK(rig.reflector->status().failures == 0);
}

// When each list (watches = false) or watch request reached the server.
std::vector<std::chrono::steady_clock::time_point> request_times(const FaultServer& server, bool watches) {
  std::vector<std::chrono::steady_clock::time_point> out;
  for (std::size_t i = 0; i < server.targets.size(); ++i) {
    if (is_watch(server.targets[i]) == watches) out.push_back(server.times[i]);
  }
  return out;
}

TEST_CASE("reflector fault: a 410 that persists relists on a growing backoff, not back to back") {
  const bool http_410 = GENERATE(false, true);  // an ERROR frame, or the watch answered 410
  CAPTURE(http_410);
  Rig rig([&](const std::string& target, const std::string&) -> Script {
    if (!is_watch(target)) return {{response(200, list({service("a", "1")}, "5"))}};
    if (http_410) return {{response(410, kExpired)}};
    return {{chunked_head() + chunk(event("ERROR", kExpired))}};
  });
  rig.reflector->start();
  REQUIRE(run_until(
      rig.io, [&] { return request_times(*rig.server, false).size() >= 5; }, 4s));
  const auto lists = request_times(*rig.server, false);
  // random() = 0: 100, 200, 400 (the cap), 400 ms between lists.
  CHECK(lists[1] - lists[0] >= 100ms);
  CHECK(lists[2] - lists[1] >= 200ms);
  CHECK(lists[3] - lists[2] >= 400ms);
  CHECK(lists[4] - lists[3] >= 400ms);
  CHECK(rig.reflector->status().relists >= 3);
  CHECK(rig.reflector->status().failures == 0);  // a 410 is not a failure
  CHECK(rig.sink.events == std::vector<std::string>{"a"});
}

TEST_CASE("reflector fault: a watch that ends within a second backs off, even after a frame") {
  int watches = 0;
  Rig rig([&](const std::string& target, const std::string&) -> Script {
    if (!is_watch(target)) return {{response(200, list({}, "10"))}};
    if (++watches == 4) return {{chunked_head()}};  // then silence
    const std::string rv = std::to_string(10 + watches);
    return {{chunked_head() + chunk(event("ADDED", service("s" + rv, rv))) + kLastChunk}};
  });
  rig.reflector->start();
  REQUIRE(run_until(
      rig.io, [&] { return watches >= 4; }, 4s));
  const auto times = request_times(*rig.server, true);
  CHECK(times[1] - times[0] >= 100ms);
  CHECK(times[2] - times[1] >= 200ms);
  CHECK(times[3] - times[2] >= 400ms);
  // Each one resumed from the last frame's version; nothing was relisted.
  CHECK(has(rig.server->targets.back(), "resourceVersion=13&"));
  CHECK(rig.reflector->status().lists == 1);
  CHECK(rig.sink.events == std::vector<std::string>{"s11", "s12", "s13"});
}

TEST_CASE("reflector fault: a watch silent past the limit is taken for dead and resumed") {
  int watches = 0;
  Rig rig(
      [&](const std::string& target, const std::string&) -> Script {
        if (!is_watch(target)) return {{response(200, list({service("a", "10")}, "10"))}};
        // The first watch shows that this server sends bookmarks, and ends;
        // the second carries one event, then goes silent without closing (a
        // half-open connection); the third is healthy.
        ++watches;
        if (watches == 1) return {{chunked_head() + chunk(bookmark("10")) + kLastChunk}};
        if (watches == 2) return {{chunked_head() + chunk(event("ADDED", service("b", "11")))}};
        return {{chunked_head() + chunk(event("ADDED", service("c", "12")))}};
      },
      {}, 300ms);
  rig.reflector->start();
  REQUIRE(run_until(
      rig.io, [&] { return watches >= 3 && rig.sink.events.size() == 3; }, 4s));
  const auto times = request_times(*rig.server, true);
  REQUIRE(times.size() == 3);
  CHECK(times[2] - times[1] >= 300ms);
  // Resumed from the silent watch's last event, no relist.
  CHECK(has(rig.server->targets.back(), "resourceVersion=11&"));
  CHECK(rig.reflector->status().lists == 1);
  CHECK(rig.reflector->status().silent_watches == 1);
  CHECK(rig.sink.events == std::vector<std::string>{"a", "b", "c"});
  CHECK(std::ranges::any_of(
      rig.log, [](const std::string& l) { return l.find("watch silent") != std::string::npos; }));
}

TEST_CASE("reflector fault: a server that sends no bookmarks is not held to the silence limit") {
  // A resource the API server does not cache: its watch reads etcd and sends
  // no bookmarks, so it is quiet whenever nothing changes.
  int watches = 0;
  Rig rig(
      [&](const std::string& target, const std::string&) -> Script {
        if (!is_watch(target)) return {{response(200, list({service("a", "10")}, "10"))}};
        ++watches;
        return {{chunked_head() + chunk(event("ADDED", service("b", "11")))}};
      },
      {}, 300ms);
  rig.reflector->start();
  REQUIRE(run_until(rig.io, [&] { return rig.sink.events.size() == 2; }));
  run_until(
      rig.io, [] { return false; }, 1500ms);  // five silence limits
  CHECK(watches == 1);
  CHECK(rig.reflector->status().silent_watches == 0);
  CHECK(rig.reflector->status().failures == 0);
}

TEST_CASE("reflector: the default silence limit notices a dead watch within 90 s, past a bookmark's minute") {
  const ReflectorOptions defaults;
  CHECK(defaults.watch_silence_limit <= 90s);
  CHECK(defaults.watch_silence_limit > 60s);
}

std::string labelled(const std::string& name, const std::string& rv, const std::string& proxy) {
  return R"({"metadata":{"name":")" + name + R"(","namespace":"ns","resourceVersion":")" + rv +
         R"(","labels":{"service.kubernetes.io/service-proxy-name":")" + proxy +
         R"("}},"spec":{"clusterIP":"10.96.0.10","ports":[{"port":80}]}})";
}

TEST_CASE("reflector fault: a Service moved to another proxy by its label keeps its rules for the hand-off") {
  // a moves away and stays away; b moves away and comes back; c is deleted.
  Rig rig(
      [&](const std::string& target, const std::string&) -> Script {
        if (!is_watch(target))
          return {{response(200, list({service("a", "1"), service("b", "2"), service("c", "3")}, "3"))}};
        if (!has(target, "resourceVersion=3&")) return {{chunked_head()}};
        return {{chunked_head() +
                 chunk(event("DELETED", labelled("a", "4", "other")) +
                       event("DELETED", labelled("b", "5", "other")) + event("DELETED", service("c", "6")) +
                       event("ADDED", service("b", "7")))}};
      },
      {}, ReflectorOptions{}.watch_silence_limit, 400ms);
  rig.reflector->start();
  REQUIRE(run_until(
      rig.io, [&] { return rig.sink.events.size() >= 5; }, 4s));
  const auto moved_at = std::chrono::steady_clock::now();
  // c went at once; a and b stayed (b's ADDED is an update of a kept object).
  CHECK(rig.sink.events == std::vector<std::string>{"a", "b", "c", "c deleted", "b"});
  CHECK(rig.reflector->cache().find({"ns", "a"}) != nullptr);
  REQUIRE(run_until(
      rig.io, [&] { return rig.sink.events.size() >= 6; }, 4s));
  CHECK(std::chrono::steady_clock::now() - moved_at >= 300ms);
  // Only a, once; b came back before its hand-off ended and stays.
  run_until(
      rig.io, [] { return false; }, 600ms);
  CHECK(rig.sink.events == std::vector<std::string>{"a", "b", "c", "c deleted", "b", "a deleted"});
  CHECK(rig.reflector->cache().find({"ns", "b"}) != nullptr);
  CHECK(rig.reflector->cache().find({"ns", "a"}) == nullptr);
}

TEST_CASE("service selector: moved away means the service-proxy-name label no longer selects it") {
  ApiSourceOptions defaults;
  const auto mine = service_reflector_options(defaults);
  REQUIRE(mine.moved_away);
  CHECK(mine.moved_away(boost::json::parse(labelled("a", "1", "other"))));
  CHECK_FALSE(mine.moved_away(boost::json::parse(service("a", "1"))));
  ApiSourceOptions named;
  named.proxy_name = "kipvs";
  const auto theirs = service_reflector_options(named);
  CHECK(theirs.moved_away(boost::json::parse(service("a", "1"))));
  CHECK(theirs.moved_away(boost::json::parse(labelled("a", "1", "other"))));
  CHECK_FALSE(theirs.moved_away(boost::json::parse(labelled("a", "1", "kipvs"))));
  CHECK(defaults.service_handoff >= 10s);
}

TEST_CASE("reflector fault: an expired continue token restarts the list from the first page") {
  int firsts = 0;
  Rig rig([&](const std::string& target, const std::string&) -> Script {
    if (is_watch(target)) return {{chunked_head()}};
    if (has(target, "continue=p2")) {
      if (firsts == 1) return {{response(410, kExpired)}};
      return {{response(200, list({service("b", "6")}, "12"))}};
    }
    ++firsts;
    // Between the two tries, a was deleted and c created.
    return {{response(200, list({service(firsts == 1 ? "a" : "c", "5")}, firsts == 1 ? "10" : "12", "p2"))}};
  });
  rig.reflector->start();
  REQUIRE(
      run_until(rig.io, [&] { return rig.sink.synced_count == 1 && is_watch(rig.server->targets.back()); }));
  CHECK(firsts == 2);
  // The first list goes to the sink page by page: the abandoned try's a,
  // then the second try's pages, then a's removal when that list is whole.
  CHECK(rig.sink.events == std::vector<std::string>{"a", "c", "b", "a deleted"});
  CHECK(rig.reflector->cache().size() == 2);
  CHECK(has(rig.server->targets.back(), "resourceVersion=12&"));
}

TEST_CASE(
    "reflector fault: a page too large to parse within its memory cap is asked for again at half the size") {
  // 40 Services of 4 KiB each; the server pages by the limit it is asked
  // for, and its continue token is the next offset.
  std::vector<std::string> items;
  for (int i = 0; i < 40; ++i) {
    std::string name = "s" + std::to_string(100 + i);
    std::string item = service(name, std::to_string(100 + i));
    item.insert(item.find(R"("namespace")"), R"("annotations":{"big":")" + std::string(4096, 'x') + R"("},)");
    items.push_back(std::move(item));
  }
  std::vector<std::size_t> limits;
  Rig rig(
      [&](const std::string& target, const std::string&) -> Script {
        if (is_watch(target)) return {{chunked_head()}};
        const std::size_t limit = std::stoul(target.substr(target.find("limit=") + 6));
        const auto at = target.find("continue=o");
        const std::size_t from = at == std::string::npos ? 0 : std::stoul(target.substr(at + 10));
        limits.push_back(limit);
        const std::size_t to = std::min(items.size(), from + limit);
        return {{response(200, list(std::vector<std::string>(items.begin() + from, items.begin() + to), "50",
                                    to < items.size() ? "o" + std::to_string(to) : ""))}};
      },
      {}, ReflectorOptions{}.watch_silence_limit, 0ms, 64 * 1024);
  rig.reflector->start();
  REQUIRE(run_until(rig.io, [&] { return rig.sink.synced_count == 1; }));
  std::vector<std::string> expected;
  for (int i = 0; i < 40; ++i) expected.push_back("s" + std::to_string(100 + i));
  CHECK(rig.sink.events == expected);
  const auto& status = rig.reflector->status();
  CHECK(status.oversized_pages >= 1);
  CHECK(status.page_size < 40);
  CHECK(status.failures == 0);
  // 500 refused, then halved until a page fits; every later page asks for
  // what fitted.
  REQUIRE(limits.size() > status.oversized_pages);
  for (std::size_t i = 0; i < status.oversized_pages; ++i) CHECK(limits[i] == (500u >> i));
  for (std::size_t i = status.oversized_pages; i < limits.size(); ++i) CHECK(limits[i] == status.page_size);
  bool said = false;
  for (const auto& line : rig.log)
    said = said || has(line, "needs more than 64 KiB to parse; asking again for");
  CHECK(said);
}

TEST_CASE("reflector fault: a refused field selector falls back to filtering on the client") {
  Rig rig([&](const std::string& target, const std::string&) -> Script {
    if (has(target, "fieldSelector")) {
      return {{response(
          400, R"({"kind":"Status","message":"field label not supported: spec.clusterIP","code":400})")}};
    }
    if (is_watch(target)) {
      return {{chunked_head() + chunk(event("ADDED", service("headless2", "4", 53, "None")) +
                                      event("ADDED", service("web2", "5")))}};
    }
    return {{response(200, list({service("headless", "1", 53, "None"), service("web", "2")}, "3"))}};
  });
  rig.reflector->start();
  REQUIRE(run_until(rig.io, [&] { return rig.sink.events.size() == 2; }));
  CHECK(rig.sink.events == std::vector<std::string>{"web", "web2"});
  CHECK(rig.reflector->status().field_selector_dropped);
  CHECK_FALSE(has(rig.server->targets.back(), "fieldSelector"));
  CHECK(has(rig.server->targets.back(), "labelSelector"));
}

TEST_CASE("reflector fault: a 401 makes the client re-read a rotated token file") {
  const auto dir = std::filesystem::current_path() / "reflector_fault_scratch";
  std::filesystem::create_directories(dir);
  const auto file = dir / "token";
  std::ofstream(file, std::ios::trunc) << "old\n";
  std::vector<std::string> auth;
  Rig rig(
      [&](const std::string& target, const std::string& head) -> Script {
        const bool fresh = has(head, "Authorization: Bearer new\r\n");
        auth.push_back(fresh ? "new" : "old");
        if (!fresh) return {{response(401, R"({"kind":"Status","message":"Unauthorized","code":401})")}};
        if (is_watch(target)) return {{chunked_head()}};
        return {{response(200, list({service("a", "1")}, "1"))}};
      },
      file);
  rig.reflector->start();                           // reads "old"
  std::ofstream(file, std::ios::trunc) << "new\n";  // rotated on disk
  REQUIRE(run_until(rig.io, [&] { return rig.sink.synced_count == 1; }));
  CHECK(auth.at(0) == "old");
  CHECK(auth.at(1) == "new");
  CHECK(rig.reflector->status().failures == 1);
}

TEST_CASE("backoff: doubles from the initial delay to the cap, jitter on top, reset") {
  double r = 0.0;
  Backoff backoff({800ms, 30000ms, 2.0, 1.0}, [&] { return r; });
  const std::chrono::steady_clock::time_point t{};
  std::vector<long> seen;
  for (int i = 0; i < 8; ++i) seen.push_back(static_cast<long>(backoff.next(t).count()));
  CHECK(seen == std::vector<long>{800, 1600, 3200, 6400, 12800, 25600, 30000, 30000});
  backoff.reset();
  r = 0.5;
  CHECK(backoff.next(t) == 1200ms);  // 800 ms + 50 % jitter
  r = 0.999;
  for (int i = 0; i < 10; ++i) CHECK(backoff.next(t) <= 30000ms);
}

TEST_CASE("backoff: starts over only when the last delay began more than reset_after ago") {
  Backoff backoff({800ms, 30000ms, 2.0, 0.0, 120s}, [] { return 0.0; });
  const std::chrono::steady_clock::time_point t{};
  CHECK(backoff.next(t) == 800ms);
  CHECK(backoff.next(t + 1s) == 1600ms);
  CHECK(backoff.next(t + 121s) == 3200ms);  // exactly reset_after since the last: not yet
  CHECK(backoff.next(t + 242s) == 800ms);   // longer: healthy, start over
  CHECK(backoff.next(t + 243s) == 1600ms);
}

}  // namespace
}  // namespace kipvs::k8s
