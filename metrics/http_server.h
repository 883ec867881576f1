#pragma once
// A small HTTP/1.1 server (Boost.Beast) on the agent's io_context, and the
// handlers for kipvs's two addresses:
//   metrics address: /metrics, /proxyMode, /healthz, /health, /livez, /configz
//   health address:  /healthz, /livez (kube-proxy's proxy health answers)
// Unknown paths get 404 and methods other than GET and HEAD get 405. HEAD
// answers carry the GET answer's headers and Content-Length without a body.
//
// A server runs on the thread of the io_context it is given. The agent gives
// its two servers a thread of their own, so a long sync on the sync thread
// does not delay /livez; /metrics is built on the Scraper's thread and
// answered asynchronously (a handler must not block the server's thread).

#include <chrono>
#include <cstddef>
#include <expected>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include "base/error.h"
#include "metrics/health.h"

namespace kipvs::metrics {

using Request = boost::beast::http::request<boost::beast::http::string_body>;
using Response = boost::beast::http::response<boost::beast::http::string_body>;
using Handler = std::function<Response(const Request&)>;
// An answer given later: call reply once, from any thread. The request stays
// valid until then.
using Reply = std::function<void(Response)>;
using AsyncHandler = std::function<void(const Request&, Reply reply)>;
// A Handler as an AsyncHandler that replies before it returns.
[[nodiscard]] AsyncHandler answered_at_once(Handler handler);

// Why the server closed a connection before answering it, for
// kipvs_http_connections_dropped_total.
enum class DropReason {
  kOverLimit,       // arrived while every allowed connection was being answered
  kReplaced,        // was waiting for a request and made room for a newer connection
  kRequestTimeout,  // a first or partly sent request did not complete in time
  kWriteTimeout,    // the client did not read its answer in time
};
[[nodiscard]] std::string_view drop_reason_label(DropReason reason);

// Limits that keep a few slow or idle clients from taking the server (and
// with it the kubelet's liveness probe) away.
struct HttpServerOptions {
  // Open connections. A connection arriving at the cap replaces the one that
  // has waited longest for its request; when every open connection is being
  // answered, the new one is closed unanswered.
  std::size_t max_connections = 64;
  // The whole request must arrive within this, counted from the connection's
  // opening or from the previous answer (so it bounds keep-alive idling too).
  std::chrono::milliseconds request_timeout = std::chrono::seconds{10};
  // Writing one answer to a client that reads it slowly.
  std::chrono::milliseconds write_timeout = std::chrono::seconds{60};
  // Told of each connection closed unanswered (optional; called on the
  // server's thread). An idle keep-alive connection timing out after its
  // answers is the normal end of one and is not reported.
  std::function<void(DropReason)> dropped = {};
};

// Listens on one address; each connection is served until the client closes
// it, a timeout passes, a newer connection replaces it, or close() is called.
class HttpServer {
 public:
  HttpServer(boost::asio::io_context& io, AsyncHandler handler, HttpServerOptions options = {});
  HttpServer(boost::asio::io_context& io, Handler handler, HttpServerOptions options = {});
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and starts accepting. Returns the bound endpoint (port 0 picks an
  // ephemeral one), or the error naming the address.
  [[nodiscard]] std::expected<boost::asio::ip::tcp::endpoint, Error> listen(
      const boost::asio::ip::tcp::endpoint& endpoint);
  // Stops accepting and closes open connections.
  void close();

  struct State;  // opaque; shared with open connections

 private:
  std::shared_ptr<State> state_;
};

// An HttpServer that keeps trying to bind while its port is taken (during a
// migration kube-proxy still holds 10249 and 10256; kube-proxy's own servers
// retry every 5 s too). log hears each failure once and the success.
class RetryingHttpServer {
 public:
  RetryingHttpServer(boost::asio::io_context& io, AsyncHandler handler,
                     boost::asio::ip::tcp::endpoint endpoint,
                     std::function<void(bool ok, const std::string& message)> log,
                     std::chrono::milliseconds retry_period = std::chrono::seconds{5},
                     HttpServerOptions options = {});
  ~RetryingHttpServer();
  RetryingHttpServer(const RetryingHttpServer&) = delete;
  RetryingHttpServer& operator=(const RetryingHttpServer&) = delete;

  // The bound endpoint, once bound.
  [[nodiscard]] std::optional<boost::asio::ip::tcp::endpoint> bound() const { return bound_; }
  void close();

 private:
  void attempt();

  boost::asio::steady_timer timer_;
  HttpServer server_;
  boost::asio::ip::tcp::endpoint endpoint_;
  std::function<void(bool, const std::string&)> log_;
  std::chrono::milliseconds retry_period_;
  std::optional<boost::asio::ip::tcp::endpoint> bound_;
  std::string last_error_;
  bool closed_ = false;
};

// "127.0.0.1:10249" or "[::]:10256" (the configuration's bind addresses) as
// an endpoint for listen().
[[nodiscard]] std::expected<boost::asio::ip::tcp::endpoint, Error> parse_endpoint(std::string_view host_port);

class Metrics;
class Scraper;

// What the metrics address serves; callbacks run per request.
struct MetricsEndpoints {
  // The text exposition (Metrics::serialize), built on the server's thread:
  // for small registries and tests.
  std::function<std::string()> metrics = {};
  std::function<std::string()> configz = {};  // the effective configuration, JSON
  // Builds /metrics on its own thread instead of calling metrics (the
  // agent's way: a scrape at 10,000 Services takes over a second).
  Scraper* scraper = nullptr;
};
[[nodiscard]] AsyncHandler metrics_handler(MetricsEndpoints endpoints);

// The health address: kube-proxy's /healthz and /livez from the state.
// counters (may be null) counts the answers by status code.
[[nodiscard]] Handler health_handler(const HealthState& state, Metrics* counters);

}  // namespace kipvs::metrics
