// The HTTP client's kept-alive connections against the fault-injecting
// server (fault_server.h), which counts the connections it accepts: which
// responses leave a connection for the next request, which do not, and a
// kept connection the server closed meanwhile.
#include "k8s/http_client.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>

#include "fault_server.h"

namespace kipvs::k8s {
namespace {

using namespace std::chrono_literals;
using namespace test;  // the fault-injecting server (fault_server.h)

constexpr bool kKeepAlive = true;

// What the caller's handlers saw for one request.
struct Outcome {
  std::vector<HttpResponseHead> heads;
  std::string body;
  std::vector<std::optional<HttpError>> dones;
  bool done() const { return !dones.empty(); }
  bool ok() const { return dones.size() == 1 && !dones[0]; }
};

struct ClientRig {
  boost::asio::io_context io;
  std::unique_ptr<FaultServer> server;
  std::unique_ptr<HttpClient> client;

  explicit ClientRig(FaultServer::Handler handler, HttpClientOptions options = {}) {
    server = std::make_unique<FaultServer>(io, std::move(handler));
    ClientConfig config;
    config.server = server->url();
    client = std::move(*HttpClient::create(io, config, nullptr, options));
  }

  std::shared_ptr<HttpCall> get(const std::string& target, Outcome& out, HttpRequestOptions options = {}) {
    HttpHandlers handlers;
    handlers.on_head = [&out](const HttpResponseHead& head) { out.heads.push_back(head); };
    handlers.on_body = [&out](std::string_view bytes) { out.body += bytes; };
    handlers.on_done = [&out](std::optional<HttpError> error) { out.dones.push_back(std::move(error)); };
    return client->get(target, options, std::move(handlers));
  }

  // A GET run to its end; then the io runs a little more, so a second done
  // would show.
  Outcome fetch(const std::string& target, HttpRequestOptions options = {}) {
    Outcome out;
    auto call = get(target, out, options);
    REQUIRE(run_until(io, [&] { return out.done(); }));
    run_until(
        io, [] { return false; }, 20ms);
    return out;
  }
};

std::string kept_response(const std::string& body) {
  return response(200, body, "", kKeepAlive);
}

TEST_CASE("http client: two requests in a row go over one kept-alive connection") {
  const bool chunked = GENERATE(false, true);
  CAPTURE(chunked);
  ClientRig rig([&](const std::string& target, const std::string&) -> Script {
    if (chunked) return {{chunked_head() + chunk("body " + target) + kLastChunk}};
    return {{kept_response("body " + target)}};
  });
  const Outcome a = rig.fetch("/a");
  const Outcome b = rig.fetch("/b");
  CHECK(a.ok());
  CHECK(a.body == "body /a");
  CHECK(b.ok());
  CHECK(b.body == "body /b");
  CHECK(rig.server->accepted() == 1);
  CHECK(rig.server->connection_of == std::vector<std::size_t>{0, 0});
  REQUIRE(a.heads.size() == 1);
  REQUIRE(b.heads.size() == 1);
  CHECK_FALSE(a.heads[0].reused_connection);
  CHECK(b.heads[0].reused_connection);
  const auto stats = rig.client->connection_stats();
  CHECK(stats.opened == 1);
  CHECK(stats.reused == 1);
  CHECK(stats.retried == 0);
}

TEST_CASE("http client: a kept connection the server closed is replaced once, unseen by the caller") {
  // Closed right after the first response (an idle timeout), or on reading
  // the next request, before any answer (the close crossing the request).
  const bool on_next_request = GENERATE(false, true);
  CAPTURE(on_next_request);
  ClientRig rig([&](const std::string& target, const std::string&) -> Script {
    if (target == "/a") return {{kept_response("first"), false, !on_next_request}};
    if (on_next_request && rig.server->connection_of.back() == 0) return {{"", false, true}};
    return {{kept_response("second")}};
  });
  REQUIRE(rig.fetch("/a").ok());
  const Outcome b = rig.fetch("/b");
  CHECK(b.heads.size() == 1);
  CHECK(b.dones.size() == 1);
  CHECK(b.ok());
  CHECK(b.body == "second");
  CHECK(rig.server->accepted() == 2);
  CHECK(rig.server->connection_of.back() == 1);
  REQUIRE(b.heads.size() == 1);
  CHECK_FALSE(b.heads[0].reused_connection);
  const auto stats = rig.client->connection_stats();
  CHECK(stats.opened == 2);
  CHECK(stats.reused == 1);
  CHECK(stats.retried == 1);
}

TEST_CASE("http client: once a response byte has come on a kept connection there is no retry") {
  // Cut inside the head, or after the head, inside the body.
  const bool in_head = GENERATE(true, false);
  CAPTURE(in_head);
  ClientRig rig([&](const std::string& target, const std::string&) -> Script {
    if (target == "/a") return {{kept_response("first")}};
    if (in_head) return {{"HTTP/1.1 200 O", false, true}};
    return {{"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", false, true}};
  });
  REQUIRE(rig.fetch("/a").ok());
  const Outcome b = rig.fetch("/b");
  CHECK(b.heads.size() == (in_head ? 0 : 1));
  REQUIRE(b.dones.size() == 1);
  REQUIRE(b.dones[0].has_value());
  CHECK(b.dones[0]->kind == HttpError::Kind::kClosed);
  CHECK(rig.server->targets.size() == 2);
  CHECK(rig.client->connection_stats().retried == 0);
}

TEST_CASE("http client: a kept connection that stays silent times out, without a retry") {
  ClientRig rig([&](const std::string& target, const std::string&) -> Script {
    if (target == "/a") return {{kept_response("first")}};
    return {};  // never answers
  });
  REQUIRE(rig.fetch("/a").ok());
  HttpRequestOptions options;
  options.head_timeout = 200ms;
  const Outcome b = rig.fetch("/b", options);
  CHECK(b.heads.empty());
  REQUIRE(b.dones.size() == 1);
  REQUIRE(b.dones[0].has_value());
  CHECK(b.dones[0]->kind == HttpError::Kind::kTimeout);
  CHECK(rig.server->targets.size() == 2);
  CHECK(rig.server->accepted() == 1);
}

TEST_CASE("http client: a response with Connection: close, or from HTTP/1.0, is not reused") {
  const bool http10 = GENERATE(false, true);
  CAPTURE(http10);
  ClientRig rig([&](const std::string&, const std::string&) -> Script {
    if (http10) return {{"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"}};
    return {{response(200, "ok")}};  // Connection: close
  });
  CHECK(rig.fetch("/a").ok());
  CHECK(rig.fetch("/b").ok());
  CHECK(rig.server->accepted() == 2);
  CHECK(rig.client->connection_stats().reused == 0);
}

TEST_CASE(
    "http client: a cancelled call, a failed call and a call that asked for no reuse close the connection") {
  const std::string ending = GENERATE("cancelled", "failed", "keep_alive = false");
  CAPTURE(ending);
  ClientRig rig([&](const std::string& target, const std::string&) -> Script {
    if (target == "/a" && ending == "cancelled") {
      return {{"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf."}};  // then holds
    }
    if (target == "/a" && ending == "failed") {
      // Complete and kept alive, but in an encoding the client did not ask for.
      return {{"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 2\r\n\r\nok"}};
    }
    return {{kept_response("ok")}};
  });
  Outcome a;
  std::shared_ptr<HttpCall> call;
  HttpRequestOptions options;
  options.keep_alive = ending != "keep_alive = false";
  call = rig.get("/a", a, options);
  if (ending == "cancelled") {
    REQUIRE(run_until(rig.io, [&] { return !a.body.empty(); }));
    call->cancel();
  } else {
    REQUIRE(run_until(rig.io, [&] { return a.done(); }));
    CHECK(a.ok() == (ending == "keep_alive = false"));
  }
  // The server sees the connection closed, not merely left idle.
  REQUIRE(run_until(rig.io, [&] { return rig.server->closed_by_client == 1; }));
  CHECK(rig.fetch("/b").ok());
  CHECK(rig.server->accepted() == 2);
  CHECK(rig.client->connection_stats().reused == 0);
}

TEST_CASE("http client: idle connections close after max_idle_time, and with the client") {
  HttpClientOptions pool;
  pool.max_idle_time = 100ms;
  ClientRig rig([&](const std::string&, const std::string&) -> Script { return {{kept_response("ok")}}; },
                pool);
  REQUIRE(rig.fetch("/a").ok());
  REQUIRE(run_until(
      rig.io, [&] { return rig.server->closed_by_client == 1; }, 2s));
  REQUIRE(rig.fetch("/b").ok());
  CHECK(rig.server->accepted() == 2);
  CHECK(rig.client->connection_stats().reused == 0);
  rig.client.reset();
  CHECK(run_until(rig.io, [&] { return rig.server->closed_by_client == 2; }));
}

TEST_CASE("http client: the pool keeps at most max_idle_connections") {
  HttpClientOptions pool;
  pool.max_idle_connections = 1;
  ClientRig rig([&](const std::string&, const std::string&) -> Script { return {{kept_response("ok")}}; },
                pool);
  Outcome a, b;
  auto call_a = rig.get("/a", a);
  auto call_b = rig.get("/b", b);  // at the same time: a second connection
  REQUIRE(run_until(rig.io, [&] { return a.done() && b.done(); }));
  CHECK(rig.server->accepted() == 2);
  REQUIRE(run_until(rig.io, [&] { return rig.server->closed_by_client == 1; }));
  CHECK(rig.fetch("/c").ok());
  CHECK(rig.server->accepted() == 2);
  CHECK(rig.client->connection_stats().reused == 1);
}

TEST_CASE("http client: Retry-After is whole seconds, saturated, and nothing else") {
  // Saturated at a day (kMaxRetryAfter): seconds that still convert to
  // milliseconds without overflow. A negative number, a fraction, trailing
  // text or an HTTP-date is no delay at all.
  struct Case {
    std::string header;
    std::optional<long> seconds;
  };
  const Case c = GENERATE(values<Case>({{"120", 120},
                                        {"0", 0},
                                        {"86401", 86400},
                                        {"9223372036854775807", 86400},
                                        {"99999999999999999999999999", 86400},
                                        {"-5", std::nullopt},
                                        {"1.5", std::nullopt},
                                        {"30s", std::nullopt},
                                        {"Wed, 21 Oct 2015 07:28:00 GMT", std::nullopt}}));
  CAPTURE(c.header);
  ClientRig rig([&](const std::string&, const std::string&) -> Script {
    return {{response(429, "{}", "Retry-After: " + c.header + "\r\n")}};
  });
  const Outcome out = rig.fetch("/");
  REQUIRE(out.heads.size() == 1);
  CHECK(out.heads[0].status == 429);
  if (c.seconds) {
    REQUIRE(out.heads[0].retry_after);
    CHECK(out.heads[0].retry_after->count() == *c.seconds);
  } else {
    CHECK_FALSE(out.heads[0].retry_after);
  }
}

TEST_CASE("http client: API sockets probe a silent peer and give up on it within a minute") {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  REQUIRE(set_api_socket_options(fd).has_value());
  auto get = [&](int level, int name) {
    int value = -1;
    socklen_t size = sizeof value;
    REQUIRE(::getsockopt(fd, level, name, &value, &size) == 0);
    return value;
  };
  CHECK(get(SOL_SOCKET, SO_KEEPALIVE) == 1);
  const int idle = get(IPPROTO_TCP, TCP_KEEPIDLE);
  const int interval = get(IPPROTO_TCP, TCP_KEEPINTVL);
  const int count = get(IPPROTO_TCP, TCP_KEEPCNT);
  CHECK(idle + interval * count <= 60);
  CHECK(get(IPPROTO_TCP, TCP_USER_TIMEOUT) == 60000);
  ::close(fd);
  // A closed descriptor is an error naming the option, not a silent success.
  const auto refused = set_api_socket_options(fd);
  REQUIRE_FALSE(refused.has_value());
  CHECK(refused.error().text().find("SO_KEEPALIVE") != std::string::npos);
}

}  // namespace
}  // namespace kipvs::k8s
