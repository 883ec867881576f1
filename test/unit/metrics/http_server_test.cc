// The HTTP endpoints on loopback (ephemeral ports), spoken to with a raw
// socket so what is checked is what a client sees on the wire; the proxy
// health state with an injected clock; per-Service health-check ports.

#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <zlib.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <catch2/catch.hpp>

#include "http_exchange.h"
#include "metrics/health.h"
#include "metrics/http_server.h"
#include "metrics/metrics.h"
#include "metrics/service_health.h"

namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

std::string exchange(asio::io_context& io, const tcp::endpoint& server, const std::string& request) {
  return kipvs::test::exchange_raw(io, server, request).response;
}

std::string get(asio::io_context& io, const tcp::endpoint& server, const std::string& target,
                const std::string& method = "GET") {
  return exchange(io, server, method + " " + target + " HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
}

std::string status_line(const std::string& response) {
  return response.substr(0, response.find("\r\n"));
}

std::string body(const std::string& response) {
  const auto end = response.find("\r\n\r\n");
  return end == std::string::npos ? std::string() : response.substr(end + 4);
}

bool has_header(const std::string& response, const std::string& header) {
  return response.substr(0, response.find("\r\n\r\n") + 2).find("\r\n" + header + "\r\n") !=
         std::string::npos;
}

// A gzip member's contents, decoded with zlib ("<bad gzip>" if it is not one).
std::string gunzip(const std::string& compressed) {
  z_stream stream{};
  if (inflateInit2(&stream, 15 + 16) != Z_OK) return "<bad gzip>";
  std::string out;
  char buffer[16384];
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data()));
  stream.avail_in = static_cast<uInt>(compressed.size());
  int rc = Z_OK;
  while (rc == Z_OK) {
    stream.next_out = reinterpret_cast<Bytef*>(buffer);
    stream.avail_out = sizeof buffer;
    rc = inflate(&stream, Z_NO_FLUSH);
    out.append(buffer, sizeof buffer - stream.avail_out);
  }
  inflateEnd(&stream);
  return rc == Z_STREAM_END && stream.avail_in == 0 ? out : "<bad gzip>";
}

tcp::endpoint loopback() {
  return {asio::ip::make_address("127.0.0.1"), 0};
}

// A client connection opened on the test's thread (connect completes in the
// kernel before the server accepts), then the server's io_context runs a
// moment so that it accepts this one before the next.
// Runs the server until `done` holds, for at most `within`.
bool serve_until(asio::io_context& server_io, const std::function<bool()>& done,
                 std::chrono::milliseconds within = std::chrono::seconds(5)) {
  const auto deadline = std::chrono::steady_clock::now() + within;
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    server_io.restart();
    server_io.run_for(std::chrono::milliseconds(5));
  }
  return done();
}

struct RawClient {
  asio::io_context client_io;
  tcp::socket socket{client_io};
  std::string received;

  RawClient(asio::io_context& server_io, const tcp::endpoint& server, const std::string& sent = "") {
    socket.connect(server);
    if (!sent.empty()) asio::write(socket, asio::buffer(sent));
    socket.non_blocking(true);
    server_io.restart();
    server_io.run_for(20ms);
  }

  // Runs the server until this connection is closed by it (EOF or reset),
  // for at most `within`, keeping what it sent in `received`.
  bool closed_by_server(asio::io_context& server_io, std::chrono::milliseconds within) {
    const auto deadline = std::chrono::steady_clock::now() + within;
    char buffer[4096];
    while (std::chrono::steady_clock::now() < deadline) {
      boost::system::error_code ec;
      const auto n = socket.read_some(asio::buffer(buffer), ec);
      received.append(buffer, n);
      if (ec && ec != asio::error::would_block) return true;
      if (ec) {
        server_io.restart();
        server_io.run_for(5ms);
      }
    }
    return false;
  }
};

// A wall clock the test moves by hand.
struct ManualClock {
  std::chrono::system_clock::time_point now{std::chrono::sys_days{std::chrono::year{2026} / 11 / 26} + 12h};
  kipvs::metrics::HealthState::Clock fn() {
    return [this] { return now; };
  }
};

}  // namespace

TEST_CASE("the metrics address serves each path", "[metrics][http]") {
  asio::io_context io;
  kipvs::metrics::Metrics metrics;
  metrics.set_virtual_services(3);
  kipvs::metrics::HttpServer server(
      io, kipvs::metrics::metrics_handler(
              {[&] { return metrics.serialize(); }, [] { return "{\"mode\":\"ipvs\"}"; }}));
  const auto bound = server.listen(loopback());
  REQUIRE(bound);
  CHECK(bound->port() != 0);

  const auto scrape = get(io, *bound, "/metrics");
  CHECK(status_line(scrape) == "HTTP/1.1 200 OK");
  CHECK(has_header(scrape, "Content-Type: text/plain; version=0.0.4; charset=utf-8"));
  CHECK(body(scrape).find("\nkipvs_virtual_services 3\n") != std::string::npos);

  const auto mode = get(io, *bound, "/proxyMode");
  CHECK(status_line(mode) == "HTTP/1.1 200 OK");
  CHECK(body(mode) == "ipvs");

  for (const char* path : {"/healthz", "/health", "/livez"}) {
    INFO(path);
    const auto answer = get(io, *bound, path);
    CHECK(status_line(answer) == "HTTP/1.1 200 OK");
    CHECK(body(answer) == "ok");
  }

  const auto configz = get(io, *bound, "/configz");
  CHECK(status_line(configz) == "HTTP/1.1 200 OK");
  CHECK(has_header(configz, "Content-Type: application/json"));
  CHECK(body(configz) == "{\"mode\":\"ipvs\"}");

  CHECK(status_line(get(io, *bound, "/metrics?format=text")) == "HTTP/1.1 200 OK");
  CHECK(status_line(get(io, *bound, "/nope")) == "HTTP/1.1 404 Not Found");
  CHECK(status_line(get(io, *bound, "/")) == "HTTP/1.1 404 Not Found");

  for (const char* method : {"POST", "PUT", "DELETE", "PATCH", "OPTIONS"}) {
    INFO(method);
    const auto refused = get(io, *bound, "/metrics", method);
    CHECK(status_line(refused) == "HTTP/1.1 405 Method Not Allowed");
    CHECK(has_header(refused, "Allow: GET, HEAD"));
  }

  // HEAD: the GET answer's headers and length, no body.
  const auto head = get(io, *bound, "/proxyMode", "HEAD");
  INFO(head);
  CHECK(status_line(head) == "HTTP/1.1 200 OK");
  CHECK(has_header(head, "Content-Length: 4"));
  CHECK(body(head).empty());
}

TEST_CASE("a connection is kept alive across requests", "[metrics][http]") {
  asio::io_context io;
  kipvs::metrics::HttpServer server(io, kipvs::metrics::metrics_handler({}));
  const auto bound = server.listen(loopback());
  REQUIRE(bound);
  const auto answers = exchange(io, *bound,
                                "GET /proxyMode HTTP/1.1\r\nHost: a\r\n\r\n"
                                "GET /nope HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  CHECK(answers.find("HTTP/1.1 200 OK") == 0);
  CHECK(answers.find("HTTP/1.1 404 Not Found") != std::string::npos);
}

TEST_CASE("listening on a taken port reports the address", "[metrics][http]") {
  asio::io_context io;
  kipvs::metrics::HttpServer first(io, kipvs::metrics::metrics_handler({}));
  const auto bound = first.listen(loopback());
  REQUIRE(bound);
  kipvs::metrics::HttpServer second(io, kipvs::metrics::metrics_handler({}));
  const auto again = second.listen(*bound);
  REQUIRE_FALSE(again);
  CHECK(again.error().text().find("cannot bind 127.0.0.1:" + std::to_string(bound->port())) == 0);
}

TEST_CASE("Go's time format", "[metrics][health]") {
  using kipvs::metrics::go_time_string;
  const auto t = std::chrono::sys_days{std::chrono::year{2026} / 11 / 26} + 12h + 3min + 4s;
  CHECK(go_time_string(t) == "2026-11-26 12:03:04 +0000 UTC");
  CHECK(go_time_string(t + 123456789ns) == "2026-11-26 12:03:04.123456789 +0000 UTC");
  CHECK(go_time_string(t + 500ms) == "2026-11-26 12:03:04.5 +0000 UTC");
  CHECK(go_time_string(std::nullopt) == "0001-01-01 00:00:00 +0000 UTC");
}

TEST_CASE("health turns 503 when a queued sync stalls past the timeout, and back after an update",
          "[metrics][health]") {
  ManualClock clock;
  kipvs::metrics::HealthState health(60s, clock.fn());
  CHECK(health.healthy());  // starting up

  health.updated();
  const auto synced = clock.now;
  health.queued();
  clock.now += 59s;
  CHECK(health.healthy());  // pending, not late yet
  health.queued();          // a later change does not move the oldest
  clock.now += 1s;
  CHECK_FALSE(health.healthy());
  const auto stalled = health.healthz();
  CHECK(stalled.status == 503);
  CHECK(stalled.body == "{\"lastUpdated\": \"" + kipvs::metrics::go_time_string(synced) +
                            "\",\"currentTime\": \"" + kipvs::metrics::go_time_string(clock.now) +
                            "\", \"nodeEligible\": true}");
  CHECK(health.livez().status == 503);

  health.updated();
  CHECK(health.healthy());
  const auto ok = health.healthz();
  CHECK(ok.status == 200);
  // As kube-proxy: a healthy answer reports lastUpdated as the current time.
  const auto now = kipvs::metrics::go_time_string(clock.now);
  CHECK(ok.body ==
        "{\"lastUpdated\": \"" + now + "\",\"currentTime\": \"" + now + "\", \"nodeEligible\": true}");
  CHECK(health.livez().body == "{\"lastUpdated\": \"" + now + "\",\"currentTime\": \"" + now + "\"}");
}

TEST_CASE("the health address answers as kube-proxy's, and /healthz follows the node",
          "[metrics][health][http]") {
  asio::io_context io;
  ManualClock clock;
  kipvs::metrics::HealthState health(30s, clock.fn());
  kipvs::metrics::Metrics counters;
  kipvs::metrics::HttpServer server(io, kipvs::metrics::health_handler(health, &counters));
  const auto bound = server.listen(loopback());
  REQUIRE(bound);

  auto healthz = get(io, *bound, "/healthz");
  CHECK(status_line(healthz) == "HTTP/1.1 200 OK");
  CHECK(has_header(healthz, "Content-Type: application/json"));
  CHECK(has_header(healthz, "X-Content-Type-Options: nosniff"));
  CHECK(body(healthz).find("\"nodeEligible\": true}") != std::string::npos);

  health.queued();
  clock.now += 31s;  // the sync loop is stuck
  CHECK(status_line(get(io, *bound, "/healthz")) == "HTTP/1.1 503 Service Unavailable");
  CHECK(status_line(get(io, *bound, "/livez")) == "HTTP/1.1 503 Service Unavailable");
  health.updated();
  CHECK(status_line(get(io, *bound, "/healthz")) == "HTTP/1.1 200 OK");

  // The node is being deleted: /healthz fails so load balancers drain it,
  // /livez stays up so the kubelet does not restart a working proxy.
  health.set_node_eligible(false);
  healthz = get(io, *bound, "/healthz");
  CHECK(status_line(healthz) == "HTTP/1.1 503 Service Unavailable");
  CHECK(body(healthz).find("\"nodeEligible\": false}") != std::string::npos);
  CHECK(status_line(get(io, *bound, "/livez")) == "HTTP/1.1 200 OK");

  CHECK(status_line(get(io, *bound, "/metrics")) == "HTTP/1.1 404 Not Found");
  CHECK(status_line(get(io, *bound, "/healthz", "POST")) == "HTTP/1.1 405 Method Not Allowed");

  const auto scrape = counters.serialize();
  CHECK(scrape.find("kubeproxy_proxy_healthz_total{code=\"200\"} 2\n") != std::string::npos);
  CHECK(scrape.find("kubeproxy_proxy_healthz_total{code=\"503\"} 2\n") != std::string::npos);
  CHECK(scrape.find("kubeproxy_proxy_livez_total{code=\"503\"} 1\n") != std::string::npos);
  CHECK(scrape.find("kubeproxy_proxy_livez_total{code=\"200\"} 1\n") != std::string::npos);
}

TEST_CASE("per-Service health-check ports open, answer with local endpoints, and close",
          "[metrics][health][http]") {
  asio::io_context io;
  ManualClock clock;
  kipvs::metrics::HealthState health(30s, clock.fn());
  kipvs::metrics::ServiceHealthServer services(io, std::vector{asio::ip::make_address("127.0.0.1")}, health);
  const kipvs::metrics::ServiceName web{"default", "web"};
  const kipvs::metrics::ServiceName api{"prod", "api"};

  REQUIRE(services.sync_services({{web, 0}, {api, 0}}).empty());
  CHECK(services.size() == 2);
  const auto web_port = services.bound(web).at(0);
  const auto api_port = services.bound(api).at(0);
  services.sync_endpoints({{web, 2}});

  const auto up = get(io, web_port, "/any/path");
  CHECK(status_line(up) == "HTTP/1.1 200 OK");
  CHECK(body(up) == kipvs::metrics::service_health_body(web, 2, true));
  CHECK(body(up).find("\"localEndpoints\": 2") != std::string::npos);
  CHECK(body(up).find("\"namespace\": \"default\"") != std::string::npos);
  CHECK(up.find("\r\nX-Load-Balancing-Endpoint-Weight: 2\r\n") != std::string::npos);

  const auto none = get(io, api_port, "/");
  CHECK(status_line(none) == "HTTP/1.1 503 Service Unavailable");
  CHECK(body(none).find("\"localEndpoints\": 0") != std::string::npos);

  // With the proxy unhealthy even a Service with endpoints answers 503.
  health.queued();
  clock.now += 31s;
  const auto sick = get(io, web_port, "/");
  CHECK(status_line(sick) == "HTTP/1.1 503 Service Unavailable");
  CHECK(body(sick).find("\"serviceProxyHealthy\": false") != std::string::npos);
  health.updated();

  // api no longer needs a port: it is closed; web keeps its listener (and
  // its endpoint count).
  REQUIRE(services.sync_services({{web, 0}}).empty());
  CHECK(services.size() == 1);
  CHECK(services.bound(api).empty());
  CHECK(services.bound(web).at(0) == web_port);
  CHECK(get(io, api_port, "/").empty());  // connection refused
  CHECK(status_line(get(io, web_port, "/")) == "HTTP/1.1 200 OK");
}

TEST_CASE("a health-check port that cannot be opened is reported and retried", "[metrics][health][http]") {
  asio::io_context io;
  kipvs::metrics::HealthState health(30s);
  kipvs::metrics::HttpServer squatter(io, kipvs::metrics::metrics_handler({}));
  const auto taken = squatter.listen(loopback());
  REQUIRE(taken);
  kipvs::metrics::ServiceHealthServer services(io, std::vector{asio::ip::make_address("127.0.0.1")}, health);
  const kipvs::metrics::ServiceName web{"default", "web"};
  const auto errors = services.sync_services({{web, taken->port()}});
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].find("health check for Service default/web: cannot bind 127.0.0.1:") == 0);
  CHECK(services.size() == 0);
  squatter.close();
  CHECK(services.sync_services({{web, taken->port()}}).empty());
  CHECK(services.size() == 1);
}

TEST_CASE("a health-check port opens on each node address given, or once on every address",
          "[metrics][health][http]") {
  asio::io_context io;
  kipvs::metrics::HealthState health(30s);
  const kipvs::metrics::ServiceName web{"default", "web"};
  // Two node addresses inside nodePortAddresses: one listener each, same port.
  kipvs::metrics::ServiceHealthServer two(
      io, std::vector{asio::ip::make_address("127.0.0.1"), asio::ip::make_address("127.0.0.2")}, health);
  REQUIRE(two.sync_services({{web, 0}}).empty());
  const auto first = two.bound(web).at(0);
  REQUIRE(two.sync_services({}).empty());
  REQUIRE(two.sync_services({{web, first.port()}}).empty());
  REQUIRE(two.bound(web).size() == 2);
  CHECK(two.bound(web).at(1) == tcp::endpoint(asio::ip::make_address("127.0.0.2"), first.port()));
  two.sync_endpoints({{web, 1}});
  CHECK(status_line(get(io, two.bound(web).at(1), "/")) == "HTTP/1.1 200 OK");
  REQUIRE(two.sync_services({}).empty());

  // Every address: one [::] socket that IPv4 clients reach too (0.0.0.0 and
  // [::] both would clash on the port).
  kipvs::metrics::ServiceHealthServer any(io, std::nullopt, health);
  REQUIRE(any.sync_services({{web, first.port()}}).empty());
  REQUIRE(any.bound(web).size() == 1);
  CHECK(any.bound(web).at(0).address() == asio::ip::make_address("::"));
  CHECK(status_line(get(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), first.port()), "/")) ==
        "HTTP/1.1 503 Service Unavailable");

  // No node address inside nodePortAddresses: nothing is opened.
  kipvs::metrics::ServiceHealthServer none(io, std::vector<asio::ip::address>{}, health);
  REQUIRE(none.sync_services({{web, 0}}).empty());
  CHECK(none.bound(web).empty());
}

TEST_CASE("a server whose port is taken binds once it is free", "[metrics][http]") {
  asio::io_context io;
  kipvs::metrics::HttpServer squatter(io, kipvs::metrics::metrics_handler({}));  // kube-proxy, still running
  const auto taken = squatter.listen(loopback());
  REQUIRE(taken);
  std::vector<std::pair<bool, std::string>> log;
  kipvs::metrics::RetryingHttpServer server(
      io, kipvs::metrics::metrics_handler({.metrics = [] { return std::string("up 1\n"); }, .configz = {}}),
      *taken, [&](bool ok, const std::string& message) { log.emplace_back(ok, message); }, 20ms);
  io.restart();
  io.run_for(100ms);
  CHECK_FALSE(server.bound());
  REQUIRE(log.size() == 1);  // one line, not one per attempt
  CHECK_FALSE(log[0].first);
  CHECK_THAT(log[0].second, Catch::Contains("cannot bind 127.0.0.1:"));

  squatter.close();
  for (int i = 0; i < 50 && !server.bound(); ++i) {
    io.restart();
    io.run_for(20ms);
  }
  REQUIRE(server.bound());
  CHECK(*server.bound() == *taken);
  CHECK(log.back().first);
  CHECK(body(get(io, *taken, "/metrics")) == "up 1\n");
}

TEST_CASE("bind addresses as the configuration writes them", "[metrics][http]") {
  using kipvs::metrics::parse_endpoint;
  CHECK(parse_endpoint("127.0.0.1:10249").value() ==
        tcp::endpoint(asio::ip::make_address("127.0.0.1"), 10249));
  CHECK(parse_endpoint("[::]:10256").value() == tcp::endpoint(asio::ip::make_address("::"), 10256));
  CHECK(parse_endpoint("[fd00::1]:0").value().port() == 0);
  CHECK(parse_endpoint("::1:10256").error().text() == "\"::1:10256\" is not ip:port (IPv6 in brackets)");
  CHECK_FALSE(parse_endpoint("localhost:80"));
  CHECK_FALSE(parse_endpoint("10.0.0.1"));
  CHECK_FALSE(parse_endpoint("10.0.0.1:99999"));
  CHECK_FALSE(parse_endpoint("[::1]80"));
}

TEST_CASE("[::] serves IPv4 clients too", "[metrics][http]") {
  asio::io_context io;
  kipvs::metrics::HttpServer server(io, kipvs::metrics::metrics_handler({}));
  const auto bound = server.listen(kipvs::metrics::parse_endpoint("[::]:0").value());
  if (!bound) {
    WARN("no IPv6 here: " << bound.error().text());
    return;
  }
  const tcp::endpoint v4(asio::ip::make_address("127.0.0.1"), bound->port());
  CHECK(body(get(io, v4, "/proxyMode")) == "ipvs");
}

TEST_CASE("at the connection cap, the connection waiting longest for its request makes room",
          "[metrics][http]") {
  asio::io_context io;
  kipvs::metrics::HttpServer server(io, kipvs::metrics::metrics_handler({}), {.max_connections = 4});
  const auto bound = server.listen(loopback());
  REQUIRE(bound);
  // Four clients hold every slot: two idle, two with half a request head.
  RawClient oldest(io, *bound);
  RawClient idle(io, *bound);
  RawClient half(io, *bound, "GET /livez HTTP/1.1\r\nHo");
  RawClient newest(io, *bound, "GET /metr");

  // The liveness probe still gets its answer; the oldest waiter is closed.
  const auto probe = get(io, *bound, "/livez");
  CHECK(status_line(probe) == "HTTP/1.1 200 OK");
  CHECK(oldest.closed_by_server(io, 1s));
  CHECK_FALSE(idle.closed_by_server(io, 50ms));
  CHECK_FALSE(half.closed_by_server(io, 50ms));
  CHECK_FALSE(newest.closed_by_server(io, 50ms));
}

TEST_CASE("at the connection cap with every connection being answered, a new one is closed unanswered",
          "[metrics][http]") {
  asio::io_context io;
  // An answer far larger than the loopback socket buffers: a client that
  // does not read it keeps its connection busy writing.
  const std::string large(64 * 1024 * 1024, 'x');
  kipvs::metrics::HttpServer server(
      io, kipvs::metrics::metrics_handler({.metrics = [&] { return large; }, .configz = {}}),
      {.max_connections = 2});
  const auto bound = server.listen(loopback());
  REQUIRE(bound);
  RawClient first(io, *bound, "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n");
  RawClient second(io, *bound, "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n");
  io.restart();
  io.run_for(100ms);

  CHECK(get(io, *bound, "/livez").empty());
}

TEST_CASE("a request that does not arrive in time closes its connection, as does an idle keep-alive",
          "[metrics][http]") {
  asio::io_context io;
  kipvs::metrics::HttpServer server(io, kipvs::metrics::metrics_handler({}), {.request_timeout = 200ms});
  const auto bound = server.listen(loopback());
  REQUIRE(bound);

  // One byte every 50 ms: each gap is well inside the bound, the whole head
  // (about 2 s) is not.
  const std::string request = "GET /livez HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
  const auto [response, sent] = kipvs::test::exchange_raw(io, *bound, request, 50ms);
  CHECK(sent < request.size());
  CHECK(response.empty());

  // A keep-alive connection gets its answer, then is closed once idle.
  RawClient keep_alive(io, *bound, "GET /livez HTTP/1.1\r\nHost: test\r\n\r\n");
  CHECK(keep_alive.closed_by_server(io, 2s));
  CHECK(status_line(keep_alive.received) == "HTTP/1.1 200 OK");
}

TEST_CASE("/metrics is gzipped for a client that accepts gzip, and only then", "[metrics][http]") {
  asio::io_context io;
  std::string text;
  for (int i = 0; i < 2000; ++i) text += "kipvs_test_series{n=\"" + std::to_string(i) + "\"} 1\n";
  kipvs::metrics::HttpServer server(
      io, kipvs::metrics::metrics_handler({.metrics = [&] { return text; }, .configz = {}}));
  const auto bound = server.listen(loopback());
  REQUIRE(bound);
  auto scrape = [&](const std::string& method, const std::string& accept_encoding) {
    return exchange(io, *bound,
                    method + " /metrics HTTP/1.1\r\nHost: test\r\n" +
                        (accept_encoding.empty() ? "" : "Accept-Encoding: " + accept_encoding + "\r\n") +
                        "Connection: close\r\n\r\n");
  };

  const auto plain = scrape("GET", "");
  CHECK(body(plain) == text);
  CHECK(plain.find("Content-Encoding") == std::string::npos);
  CHECK(has_header(plain, "Vary: Accept-Encoding"));

  const auto zipped = scrape("GET", "gzip");  // what Prometheus sends
  CHECK(has_header(zipped, "Content-Encoding: gzip"));
  CHECK(has_header(zipped, "Vary: Accept-Encoding"));
  CHECK(has_header(zipped, "Content-Type: text/plain; version=0.0.4; charset=utf-8"));
  CHECK(body(zipped).size() < text.size() / 4);
  CHECK(gunzip(body(zipped)) == text);

  // HEAD: the gzip answer's length, no body.
  const auto head = scrape("HEAD", "gzip");
  CHECK(has_header(head, "Content-Encoding: gzip"));
  CHECK(has_header(head, "Content-Length: " + std::to_string(body(zipped).size())));
  CHECK(body(head).empty());

  const auto [accept_encoding, gzipped] = GENERATE(table<std::string, bool>({
      {"gzip, deflate", true},
      {"deflate, gzip;q=1.0, *;q=0.5", true},
      {"GZip", true},
      {"x-gzip", true},
      {"*", true},
      {"gzip;q=0.5", true},
      {"gzip;q=0", false},
      {"gzip; q=0.000", false},
      {"identity", false},
      {"br, deflate", false},
      {"*;q=0", false},
      {"gzip;q=0, *", false},
  }));
  INFO("Accept-Encoding: " << accept_encoding);
  const auto answer = scrape("GET", accept_encoding);
  CHECK(has_header(answer, "Content-Encoding: gzip") == gzipped);
  CHECK((gzipped ? gunzip(body(answer)) : body(answer)) == text);
}

TEST_CASE(
    "an answer given later from another thread is written, and other connections are answered meanwhile",
    "[metrics][http]") {
  asio::io_context io;
  std::optional<kipvs::metrics::Reply> held;
  kipvs::metrics::HttpServer server(
      io, [&](const kipvs::metrics::Request& request, kipvs::metrics::Reply reply) {
        if (request.target() == "/slow") {
          held = std::move(reply);
          return;
        }
        kipvs::metrics::Response fast{boost::beast::http::status::ok, request.version()};
        fast.keep_alive(false);
        fast.body() = "fast";
        reply(std::move(fast));
      });
  const auto bound = server.listen(loopback());
  REQUIRE(bound);
  RawClient slow(io, *bound, "GET /slow HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  REQUIRE(held);
  CHECK_FALSE(slow.closed_by_server(io, 50ms));
  CHECK(body(get(io, *bound, "/fast")) == "fast");

  std::thread answering([&] {
    kipvs::metrics::Response late{boost::beast::http::status::ok, 11};
    late.keep_alive(false);
    late.body() = "late";
    (*held)(std::move(late));
  });
  answering.join();
  CHECK(slow.closed_by_server(io, 1s));
  CHECK(status_line(slow.received) == "HTTP/1.1 200 OK");
  CHECK(body(slow.received) == "late");
}

TEST_CASE("connections closed unanswered are reported with their reason, an idle keep-alive's end is not",
          "[metrics][http]") {
  using kipvs::metrics::DropReason;
  asio::io_context io;
  std::vector<DropReason> dropped;
  std::vector<kipvs::metrics::Reply> held;  // answers never given: those connections stay busy
  kipvs::metrics::HttpServer server(io,
                                    [&](const kipvs::metrics::Request& request, kipvs::metrics::Reply reply) {
                                      if (request.target() == "/hold") {
                                        held.push_back(std::move(reply));
                                        return;
                                      }
                                      kipvs::metrics::metrics_handler({})(request, std::move(reply));
                                    },
                                    {.max_connections = 2,
                                     .request_timeout = 300ms,
                                     .dropped = [&](DropReason r) { dropped.push_back(r); }});
  const auto bound = server.listen(loopback());
  REQUIRE(bound);

  // A keep-alive client answered, then idle until the timeout: not a drop.
  RawClient answered(io, *bound, "GET /livez HTTP/1.1\r\nHost: a\r\n\r\n");
  CHECK(answered.closed_by_server(io, 2s));
  CHECK(status_line(answered.received) == "HTTP/1.1 200 OK");
  CHECK(dropped.empty());

  // A connection that never sends a request times out: a drop.
  RawClient silent(io, *bound);
  CHECK(silent.closed_by_server(io, 2s));
  // The timer closes the socket; the read's handler, which reports the
  // drop, runs after it.
  REQUIRE(serve_until(io, [&] { return !dropped.empty(); }));
  REQUIRE(dropped.size() == 1);
  CHECK(dropped[0] == DropReason::kRequestTimeout);

  // At the cap (2): one waiting is replaced by a newer one; with both being
  // answered, the next is refused. A server whose timeout cannot pass
  // between these steps on a loaded machine.
  dropped.clear();
  kipvs::metrics::HttpServer capped(
      io,
      [&](const kipvs::metrics::Request&, kipvs::metrics::Reply reply) { held.push_back(std::move(reply)); },
      {.max_connections = 2, .request_timeout = 30s, .dropped = [&](DropReason r) { dropped.push_back(r); }});
  const auto capped_bound = capped.listen(loopback());
  REQUIRE(capped_bound);
  RawClient busy(io, *capped_bound, "GET /hold HTTP/1.1\r\nHost: a\r\n\r\n");
  REQUIRE(serve_until(io, [&] { return held.size() == 1; }));
  RawClient waiting(io, *capped_bound);
  RawClient newer(io, *capped_bound, "GET /hold HTTP/1.1\r\nHost: a\r\n\r\n");
  CHECK(waiting.closed_by_server(io, 5s));
  REQUIRE(serve_until(io, [&] { return held.size() == 2; }));
  REQUIRE(dropped.size() == 1);
  CHECK(dropped[0] == DropReason::kReplaced);
  RawClient refused(io, *capped_bound);
  CHECK(refused.closed_by_server(io, 5s));
  REQUIRE(serve_until(io, [&] { return dropped.size() >= 2; }));
  REQUIRE(dropped.size() == 2);
  CHECK(dropped[1] == DropReason::kOverLimit);
  CHECK(kipvs::metrics::drop_reason_label(DropReason::kOverLimit) == "over_limit");
  CHECK(kipvs::metrics::drop_reason_label(DropReason::kWriteTimeout) == "write_timeout");
}
