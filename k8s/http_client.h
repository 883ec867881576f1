#pragma once
// An HTTPS client for the API server on Boost.Beast + OpenSSL, asynchronous
// on the io_context whose thread owns the agent's state (all callbacks run
// there). Only what list+watch needs: GET with the body streamed to the
// caller as it arrives (a watch body never ends on its own), a bearer token or
// a client certificate, TLS verified by default (the configured CA, else the
// system's; the host name or tls-server-name checked; SNI sent for names).
// "http://" servers are accepted for the fault-injecting test server.
// One connection per request: lists are few and watches long-lived.

#include <chrono>
#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/io_context.hpp>

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
  std::optional<std::chrono::seconds> retry_after;  // 429/503 Retry-After in seconds
  std::string content_encoding;                     // "gzip" when the body came compressed
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
};

// The caller's side of a request: on_head once, then on_body for each piece,
// then on_done once (nullopt: the body is complete). After cancel() none of
// them is called again.
struct HttpHandlers {
  std::function<void(const HttpResponseHead&)> on_head;
  std::function<void(std::string_view)> on_body;
  std::function<void(std::optional<HttpError>)> on_done;
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
  [[nodiscard]] static std::expected<std::unique_ptr<HttpClient>, ConfigError> create(
      boost::asio::io_context& io, const ClientConfig& config, std::shared_ptr<TokenSource> tokens);

  virtual ~HttpClient() = default;

  // GET server prefix + target ("/api/v1/services?watch=true&...").
  virtual std::shared_ptr<HttpCall> get(std::string target, const HttpRequestOptions& options,
                                        HttpHandlers handlers) = 0;

  [[nodiscard]] virtual const std::string& server() const = 0;
};

// A parsed server URL.
struct ServerUrl {
  bool tls = true;
  std::string host;  // without brackets
  std::string port;
  std::string prefix;  // path prefix without trailing '/', often ""
  friend bool operator==(const ServerUrl&, const ServerUrl&) = default;
};
[[nodiscard]] std::expected<ServerUrl, std::string> parse_server_url(std::string_view url);

}  // namespace kipvs::k8s
