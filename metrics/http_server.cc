#include "metrics/http_server.h"

#include <charconv>
#include <vector>

#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include "metrics/metrics.h"
#include "metrics/scraper.h"

namespace kipvs::metrics {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

Response text_response(const Request& request, http::status status, std::string content_type,
                       std::string body) {
  Response response{status, request.version()};
  response.set(http::field::content_type, content_type);
  response.set("X-Content-Type-Options", "nosniff");
  response.keep_alive(request.keep_alive());
  response.body() = std::move(body);
  return response;
}

// The answers every handler shares: 405 for other methods.
std::optional<Response> check_method(const Request& request) {
  if (request.method() == http::verb::get || request.method() == http::verb::head) return std::nullopt;
  auto response = text_response(request, http::status::method_not_allowed, "text/plain; charset=utf-8",
                                "405 method not allowed\n");
  response.set(http::field::allow, "GET, HEAD");
  return response;
}

std::string path_of(const Request& request) {
  std::string path(request.target());
  if (const auto query = path.find('?'); query != std::string::npos) path.resize(query);
  return path;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

// Whether an Accept-Encoding value admits gzip: gzip (or x-gzip) listed
// with a non-zero quality, or failing that a non-zero "*".
bool accepts_gzip(std::string_view accept_encoding) {
  std::optional<bool> gzip_listed;
  bool any = false;
  while (!accept_encoding.empty()) {
    const auto comma = accept_encoding.find(',');
    const std::string_view item = accept_encoding.substr(0, comma);
    accept_encoding =
        comma == std::string_view::npos ? std::string_view() : accept_encoding.substr(comma + 1);
    const auto semicolon = item.find(';');
    const std::string_view coding = trim(item.substr(0, semicolon));
    bool wanted = true;
    if (semicolon != std::string_view::npos) {
      const std::string_view parameter = trim(item.substr(semicolon + 1));
      if (parameter.size() > 2 && (parameter[0] == 'q' || parameter[0] == 'Q') && parameter[1] == '=') {
        double quality = 1;
        const auto value = trim(parameter.substr(2));
        const auto parsed = std::from_chars(value.data(), value.data() + value.size(), quality);
        wanted = parsed.ec == std::errc{} && quality > 0;
      }
    }
    if (beast::iequals(coding, "gzip") || beast::iequals(coding, "x-gzip")) {
      gzip_listed = gzip_listed.value_or(false) || wanted;
    } else if (coding == "*") {
      any = wanted;
    }
  }
  return gzip_listed.value_or(any);
}

Response not_found(const Request& request) {
  return text_response(request, http::status::not_found, "text/plain; charset=utf-8", "404 page not found\n");
}

}  // namespace

namespace {
struct Session;
}  // namespace

// Shared by the server and its connections, so a connection outliving a
// closed server stays valid.
struct HttpServer::State {
  asio::io_context& io;
  AsyncHandler handler;
  HttpServerOptions options;
  tcp::acceptor acceptor;
  std::vector<std::weak_ptr<Session>> sessions;  // open connections, oldest first
  std::uint64_t reads_started = 0;               // orders connections by when they began to wait
  bool closed = false;

  State(asio::io_context& context, AsyncHandler h, HttpServerOptions o)
      : io(context), handler(std::move(h)), options(o), acceptor(context) {}
};

namespace {

struct Session : std::enable_shared_from_this<Session> {
  std::shared_ptr<HttpServer::State> state;
  std::shared_ptr<beast::tcp_stream> stream;
  beast::flat_buffer buffer;
  std::optional<http::request_parser<http::string_body>> parser;
  std::shared_ptr<Response> response;
  // Waiting for (or receiving) a request, since the reads_started'th read:
  // such a connection may be closed to make room for a new one.
  bool waiting = false;
  std::uint64_t waiting_since = 0;
  std::size_t answered = 0;  // requests answered on this connection
  bool dropped = false;      // reported to options.dropped already

  Session(std::shared_ptr<HttpServer::State> s, tcp::socket socket)
      : state(std::move(s)), stream(std::make_shared<beast::tcp_stream>(std::move(socket))) {}

  void read() {
    parser.emplace();
    parser->body_limit(64 * 1024);  // every endpoint is a GET; bodies are noise
    waiting = true;
    waiting_since = ++state->reads_started;
    // One deadline for the whole request, not per read: a client trickling
    // a byte at a time must not hold the connection open.
    stream->expires_after(state->options.request_timeout);
    http::async_read(*stream, buffer, *parser,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    waiting = false;
    if (ec || state->closed) {
      // A timeout on a connection's first request, or in the middle of one,
      // is a client that did not manage to ask; an idle keep-alive
      // connection expiring after its answers is not.
      if (ec == beast::error::timeout && (answered == 0 || parser->got_some() || buffer.size() > 0))
        drop(DropReason::kRequestTimeout);
      beast::error_code ignored;
      stream->socket().shutdown(tcp::socket::shutdown_both, ignored);
      return;
    }
    // The reply may come from another thread: it goes back to this
    // connection's thread before anything touches the connection.
    state->handler(parser->get(), [self = shared_from_this()](Response answer) {
      auto executor = self->stream->get_executor();
      asio::post(executor, [self = std::move(self), answer = std::move(answer)]() mutable {
        self->write(std::move(answer));
      });
    });
  }

  void write(Response answer) {
    if (state->closed || !stream->socket().is_open()) return;
    if (parser->get().method() == http::verb::head) {
      // The GET answer's length, no body.
      const auto length = answer.body().size();
      answer.body().clear();
      answer.content_length(length);
    } else {
      answer.prepare_payload();
    }
    response = std::make_shared<Response>(std::move(answer));
    stream->expires_after(state->options.write_timeout);
    http::async_write(
        *stream, *response,
        [self = shared_from_this()](beast::error_code write_ec, std::size_t) { self->on_write(write_ec); });
  }

  void drop(DropReason reason) {
    if (dropped) return;
    dropped = true;
    if (state->options.dropped) state->options.dropped(reason);
  }

  void on_write(beast::error_code ec) {
    const bool keep_alive = response->keep_alive();
    response.reset();
    if (ec == beast::error::timeout) drop(DropReason::kWriteTimeout);
    if (!ec) ++answered;
    if (ec || !keep_alive || state->closed) {
      beast::error_code ignored;
      stream->socket().shutdown(tcp::socket::shutdown_send, ignored);
      return;
    }
    read();
  }
};

// Closes the connection that has waited longest for its request; false if
// every open connection is being answered.
bool make_room(HttpServer::State& state) {
  auto oldest = state.sessions.end();
  for (auto it = state.sessions.begin(); it != state.sessions.end(); ++it) {
    const auto session = it->lock();
    if (!session || !session->waiting) continue;
    if (oldest == state.sessions.end() || session->waiting_since < oldest->lock()->waiting_since) oldest = it;
  }
  if (oldest == state.sessions.end()) return false;
  const auto session = oldest->lock();
  session->drop(DropReason::kReplaced);
  beast::error_code ignored;
  session->stream->socket().close(ignored);
  state.sessions.erase(oldest);
  return true;
}

void accept(const std::shared_ptr<HttpServer::State>& state) {
  state->acceptor.async_accept([state](beast::error_code ec, tcp::socket socket) {
    if (state->closed || ec == asio::error::operation_aborted) return;
    if (ec) {
      // Out of file descriptors, or a connection reset before it was
      // accepted: try again shortly rather than stop serving for good.
      auto timer = std::make_shared<asio::steady_timer>(state->io, std::chrono::milliseconds(100));
      timer->async_wait([state, timer](beast::error_code) {
        if (!state->closed) accept(state);
      });
      return;
    }
    std::erase_if(state->sessions, [](const auto& weak) { return weak.expired(); });
    if (state->sessions.size() >= state->options.max_connections && !make_room(*state)) {
      // Every connection is busy answering: this one is closed unanswered.
      if (state->options.dropped) state->options.dropped(DropReason::kOverLimit);
      beast::error_code ignored;
      socket.close(ignored);
      accept(state);
      return;
    }
    auto session = std::make_shared<Session>(state, std::move(socket));
    state->sessions.push_back(session);
    session->read();
    accept(state);
  });
}

}  // namespace

HttpServer::HttpServer(asio::io_context& io, AsyncHandler handler, HttpServerOptions options)
    : state_(std::make_shared<State>(io, std::move(handler), std::move(options))) {}

HttpServer::HttpServer(asio::io_context& io, Handler handler, HttpServerOptions options)
    : HttpServer(io, answered_at_once(std::move(handler)), std::move(options)) {}

AsyncHandler answered_at_once(Handler handler) {
  return [handler = std::move(handler)](const Request& request, Reply reply) { reply(handler(request)); };
}

HttpServer::~HttpServer() {
  close();
}

std::expected<tcp::endpoint, Error> HttpServer::listen(const tcp::endpoint& endpoint) {
  auto fail = [&](const char* what, const beast::error_code& ec) -> std::expected<tcp::endpoint, Error> {
    beast::error_code ignored;
    state_->acceptor.close(ignored);
    std::string address = endpoint.address().to_string();
    if (endpoint.address().is_v6()) address = "[" + address + "]";
    return std::unexpected(Error{.message = std::string(what) + " " + address + ":" +
                                            std::to_string(endpoint.port()) + ": " + ec.message()});
  };
  beast::error_code ec;
  state_->acceptor.open(endpoint.protocol(), ec);
  if (ec) return fail("cannot open a socket for", ec);
  state_->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (endpoint.address().is_v6()) {
    // "[::]:10256" serves IPv4 too, as Go's listener does.
    state_->acceptor.set_option(asio::ip::v6_only(false), ec);
  }
  state_->acceptor.bind(endpoint, ec);
  if (ec) return fail("cannot bind", ec);
  state_->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return fail("cannot listen on", ec);
  const auto bound = state_->acceptor.local_endpoint(ec);
  if (ec) return fail("cannot read the address of", ec);
  state_->closed = false;
  accept(state_);
  return bound;
}

RetryingHttpServer::RetryingHttpServer(asio::io_context& io, AsyncHandler handler, tcp::endpoint endpoint,
                                       std::function<void(bool, const std::string&)> log,
                                       std::chrono::milliseconds retry_period, HttpServerOptions options)
    : timer_(io),
      server_(io, std::move(handler), std::move(options)),
      endpoint_(endpoint),
      log_(std::move(log)),
      retry_period_(retry_period) {
  attempt();
}

RetryingHttpServer::~RetryingHttpServer() {
  close();
}

void RetryingHttpServer::close() {
  closed_ = true;
  timer_.cancel();
  server_.close();
}

void RetryingHttpServer::attempt() {
  if (closed_) return;
  auto bound = server_.listen(endpoint_);
  if (bound) {
    bound_ = *bound;
    log_(true, last_error_.empty() ? "" : "bound after: " + last_error_);
    return;
  }
  if (bound.error().text() != last_error_) {
    last_error_ = bound.error().text();
    log_(false, last_error_ + "; trying again every " + std::to_string(retry_period_.count()) + " ms");
  }
  timer_.expires_after(retry_period_);
  timer_.async_wait([this](const beast::error_code& ec) {
    if (!ec) attempt();
  });
}

std::expected<tcp::endpoint, Error> parse_endpoint(std::string_view host_port) {
  std::string_view host;
  std::string_view port;
  if (host_port.starts_with('[')) {
    const auto close = host_port.find("]:");
    if (close == std::string_view::npos)
      return std::unexpected(Error{.message = "\"" + std::string(host_port) + "\" is not [ipv6]:port"});
    host = host_port.substr(1, close - 1);
    port = host_port.substr(close + 2);
  } else {
    const auto colon = host_port.rfind(':');
    if (colon == std::string_view::npos || host_port.substr(0, colon).find(':') != std::string_view::npos) {
      return std::unexpected(
          Error{.message = "\"" + std::string(host_port) + "\" is not ip:port (IPv6 in brackets)"});
    }
    host = host_port.substr(0, colon);
    port = host_port.substr(colon + 1);
  }
  beast::error_code ec;
  const auto address = asio::ip::make_address(std::string(host), ec);
  unsigned number = 0;
  const auto [end, parse_ec] = std::from_chars(port.data(), port.data() + port.size(), number);
  if (ec || port.empty() || parse_ec != std::errc{} || end != port.data() + port.size() || number > 65535) {
    return std::unexpected(
        Error{.message = "\"" + std::string(host_port) + "\" is not ip:port (IPv6 in brackets)"});
  }
  return tcp::endpoint(address, static_cast<std::uint16_t>(number));
}

void HttpServer::close() {
  state_->closed = true;
  beast::error_code ignored;
  state_->acceptor.close(ignored);
  for (const auto& weak : state_->sessions) {
    if (auto session = weak.lock()) session->stream->socket().close(ignored);
  }
  state_->sessions.clear();
}

namespace {

Response metrics_response(const Request& request, std::string text, std::optional<std::string> gzipped) {
  auto response = text_response(request, http::status::ok, "text/plain; version=0.0.4; charset=utf-8",
                                gzipped ? std::move(*gzipped) : std::move(text));
  response.set(http::field::vary, "Accept-Encoding");
  if (gzipped) response.set(http::field::content_encoding, "gzip");
  return response;
}

}  // namespace

AsyncHandler metrics_handler(MetricsEndpoints endpoints) {
  return [endpoints = std::move(endpoints)](const Request& request, Reply reply) {
    if (auto refused = check_method(request)) return reply(std::move(*refused));
    const std::string path = path_of(request);
    if (path == "/metrics") {
      const bool wants_gzip = accepts_gzip(request[http::field::accept_encoding]);
      if (endpoints.scraper != nullptr) {
        // Only what the answer needs crosses to the scraper's thread.
        Request head;
        head.version(request.version());
        head.keep_alive(request.keep_alive());
        endpoints.scraper->scrape(wants_gzip, [head = std::move(head), wants_gzip, reply = std::move(reply)](
                                                  std::shared_ptr<const Exposition> exposition) {
          std::optional<std::string> gzipped;
          if (wants_gzip) gzipped = exposition->gzipped;
          reply(metrics_response(head, gzipped ? std::string() : exposition->text, std::move(gzipped)));
        });
        return;
      }
      std::string text = endpoints.metrics ? endpoints.metrics() : std::string();
      std::optional<std::string> gzipped;
      if (wants_gzip) gzipped = gzip(text);
      return reply(metrics_response(request, std::move(text), std::move(gzipped)));
    }
    if (path == "/proxyMode")
      return reply(text_response(request, http::status::ok, "text/plain; charset=utf-8", "ipvs"));
    // kube-proxy's metrics address answers /healthz with the generic "ok";
    // /health and /livez are the same answer under the names people type.
    if (path == "/healthz" || path == "/health" || path == "/livez") {
      return reply(text_response(request, http::status::ok, "text/plain; charset=utf-8", "ok"));
    }
    if (path == "/configz") {
      return reply(text_response(request, http::status::ok, "application/json",
                                 endpoints.configz ? endpoints.configz() : std::string("{}")));
    }
    reply(not_found(request));
  };
}

std::string_view drop_reason_label(DropReason reason) {
  switch (reason) {
    case DropReason::kOverLimit:
      return "over_limit";
    case DropReason::kReplaced:
      return "replaced";
    case DropReason::kRequestTimeout:
      return "request_timeout";
    case DropReason::kWriteTimeout:
      return "write_timeout";
  }
  return "unknown";
}

Handler health_handler(const HealthState& state, Metrics* counters) {
  return [&state, counters](const Request& request) -> Response {
    if (auto refused = check_method(request)) return *refused;
    const std::string path = path_of(request);
    if (path != "/healthz" && path != "/livez") return not_found(request);
    const bool livez = path == "/livez";
    const auto answer = livez ? state.livez() : state.healthz();
    if (counters != nullptr) {
      if (livez) {
        counters->livez_answered(answer.status);
      } else {
        counters->healthz_answered(answer.status);
      }
    }
    return text_response(request, static_cast<http::status>(answer.status), "application/json", answer.body);
  };
}

}  // namespace kipvs::metrics
