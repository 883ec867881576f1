#pragma once
// An HTTPS client for the API server on Boost.Beast + OpenSSL, asynchronous
// on the io_context whose thread owns the agent's state (all callbacks run
// there). Only what list+watch needs: GET with the body streamed to the
// caller as it arrives (a watch body never ends on its own), a bearer token or
// a client certificate, TLS verified by default (the configured CA, else the
// system's; the host name or tls-server-name checked; SNI sent for names).
// "http://" servers are accepted for the fault-injecting test server.
//
// Connections are kept alive (HTTP/1.1): a response whose body ended cleanly
// leaves its connection in a small idle pool, and the next request takes it,
// so the pages of a list go over one connection instead of paying a TCP
// connect and a TLS handshake each (0.5-1 s apiece in an emulated guest).
// Only a complete body on a connection the server keeps open goes back: a
// cancelled call, an error, `Connection: close`, or a request that asked for
// no reuse (a watch) closes it. A request on a reused connection that the
// server had closed meanwhile is sent again, once, on a new connection, before
// any of the caller's handlers has run.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/io_context.hpp>

#include "base/error.h"
#include "k8s/kubeconfig.h"

namespace kipvs::k8s {

// Why a request failed before a complete response (an HTTP error status is
// not an HttpError: it arrives in on_head).
struct HttpError {
  enum class Kind { kResolve, kConnect, kTls, kTimeout, kClosed, kProtocol };
  Kind kind;
  std::string message;
};
[[nodiscard]] std::string_view kind_name(HttpError::Kind kind);  // "connect", "tls", ...

struct HttpResponseHead {
  unsigned status = 0;
  std::string content_type;
  std::optional<std::chrono::seconds> retry_after;  // 429/503 Retry-After, see parse_retry_after()
  std::string content_encoding;                     // "gzip" when the body came compressed
  bool reused_connection = false;                   // on a connection an earlier request used
};

struct HttpRequestOptions {
  std::string accept = "application/json";
  // Ask for a gzip body (as client-go does): the API server compresses large
  // lists, about twenty times smaller. on_body still gets the plain bytes.
  bool accept_gzip = false;
  // From the start until the response head has arrived.
  std::chrono::milliseconds head_timeout{std::chrono::seconds(30)};
  // The longest silence allowed while the body streams.
  std::chrono::milliseconds idle_timeout{std::chrono::seconds(60)};
  // Put the connection back in the idle pool when the body ends cleanly. A
  // watch says no: it ends after minutes, when the server or a proxy in
  // between chose to end it, and that connection is not worth trusting.
  bool keep_alive = true;
};

// The caller's side of a request: on_head once, then on_body for each piece,
// then on_done once (nullopt: the body is complete). After cancel() none of
// them is called again.
struct HttpHandlers {
  std::function<void(const HttpResponseHead&)> on_head;
  std::function<void(std::string_view)> on_body;
  std::function<void(std::optional<HttpError>)> on_done;
};

// The client's idle pool.
struct HttpClientOptions {
  std::size_t max_idle_connections = 4;
  // An idle connection older than this is closed: below the idle cuts of API
  // servers (90 s) and of most proxies, so a reused one is rarely dead.
  std::chrono::milliseconds max_idle_time{std::chrono::seconds(30)};
  // Hears each request once: the status of its head, or 0 when it failed
  // before one (client-go's "<error>"); the time to the head. Cancelled
  // requests are not heard. For rest_client_* metrics.
  std::function<void(unsigned status, std::chrono::steady_clock::duration elapsed)> on_response;
};

// How connections were used, for tests and logs.
struct HttpConnectionStats {
  std::uint64_t opened = 0;   // connections established (TCP connected)
  std::uint64_t reused = 0;   // requests sent on an idle connection from the pool
  std::uint64_t retried = 0;  // of those, found closed and sent again on a new one
};

// A request in flight.
class HttpCall {
 public:
  virtual ~HttpCall() = default;
  virtual void cancel() = 0;
};

class HttpClient {
 public:
  // Fails when the TLS material does not load, naming where it came from.
  [[nodiscard]] static std::expected<std::unique_ptr<HttpClient>, Error> create(
      boost::asio::io_context& io, const ClientConfig& config, std::shared_ptr<TokenSource> tokens,
      HttpClientOptions options = {});

  // Closes the idle connections; requests in flight go on to their end.
  virtual ~HttpClient() = default;

  // GET server prefix + target ("/api/v1/services?watch=true&...").
  virtual std::shared_ptr<HttpCall> get(std::string target, const HttpRequestOptions& options,
                                        HttpHandlers handlers) = 0;

  [[nodiscard]] virtual const std::string& server() const = 0;
  [[nodiscard]] virtual HttpConnectionStats connection_stats() const = 0;
};

// A Retry-After header's delay in seconds; nullopt for anything but digits
// (a negative number, an HTTP-date). Saturates at kMaxRetryAfter, so a huge
// value still converts to milliseconds without overflow; how long to wait at
// most is the caller's choice.
inline constexpr std::chrono::seconds kMaxRetryAfter{24 * 60 * 60};
[[nodiscard]] std::optional<std::chrono::seconds> parse_retry_after(std::string_view value);

// TCP keepalive and TCP_USER_TIMEOUT on a socket to the API server, so a
// connection whose peer vanished (no FIN, no RST) fails within about a minute
// whether it is idle or has data in flight. An error names the option.
[[nodiscard]] std::expected<void, Error> set_api_socket_options(int fd);

// A parsed server URL.
struct ServerUrl {
  bool tls = true;
  std::string host;  // without brackets
  std::string port;
  std::string prefix;  // path prefix without trailing '/', often ""
  friend bool operator==(const ServerUrl&, const ServerUrl&) = default;
};
[[nodiscard]] std::expected<ServerUrl, Error> parse_server_url(std::string_view url);

}  // namespace kipvs::k8s
