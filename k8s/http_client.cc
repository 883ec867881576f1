#include "k8s/http_client.h"

#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <vector>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/version.hpp>

#include "k8s/gzip.h"

namespace kipvs::k8s {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

constexpr std::size_t kBodyBufferBytes = 64 * 1024;
constexpr const char* kUserAgent = "kipvs/0.1";

bool is_ip_literal(const std::string& host) {
  boost::system::error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

HttpError::Kind kind_of_failure(const boost::system::error_code& ec, HttpError::Kind otherwise) {
  if (ec == beast::error::timeout) return HttpError::Kind::kTimeout;
  if (ec == http::error::end_of_stream || ec == http::error::partial_message || ec == asio::error::eof ||
      ec == asio::error::connection_reset || ec == ssl::error::stream_truncated) {
    return HttpError::Kind::kClosed;
  }
  return otherwise;
}

// A connection: the stream (beast::tcp_stream or an SSL stream over one)
// with the bytes read past the last response.
template <typename Stream>
struct Connection {
  explicit Connection(Stream s) : stream(std::move(s)) {}
  Stream stream;
  beast::flat_buffer buffer;
  std::chrono::steady_clock::time_point idle_since{};
};

// Where a client's connections come from: it opens new ones to the server and
// keeps the idle ones, newest last. Shared by the client and its requests, so
// a request that outlives the client can still finish (and retry); close()
// from the client's destructor closes the idle ones and takes no more.
template <typename Stream>
class ConnectionPool : public std::enable_shared_from_this<ConnectionPool<Stream>> {
 public:
  ConnectionPool(asio::io_context& io, ServerUrl url, std::string verify_name,
                 std::optional<ssl::context> tls, bool verify, HttpClientOptions options)
      : io_(io),
        url_(std::move(url)),
        verify_name_(std::move(verify_name)),
        tls_(std::move(tls)),
        verify_(verify),
        options_(options),
        timer_(io) {}

  asio::io_context& io() { return io_; }
  const ServerUrl& url() const { return url_; }
  const std::string& verify_name() const { return verify_name_; }
  const HttpConnectionStats& stats() const { return stats_; }
  void count_opened() { ++stats_.opened; }
  void count_retried() { ++stats_.retried; }
  const HttpClientOptions& options() const { return options_; }

  // A new, unconnected stream.
  std::unique_ptr<Connection<Stream>> fresh() {
    if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
      return std::make_unique<Connection<Stream>>(beast::tcp_stream(io_));
    } else {
      Stream stream(io_, *tls_);
      if (verify_) stream.set_verify_callback(ssl::host_name_verification(verify_name_));
      return std::make_unique<Connection<Stream>>(std::move(stream));
    }
  }

  // The most recently used idle connection, or null.
  std::unique_ptr<Connection<Stream>> take() {
    close_expired();
    if (idle_.empty()) return nullptr;
    auto connection = std::move(idle_.back());
    idle_.pop_back();
    ++stats_.reused;
    return connection;
  }

  void put(std::unique_ptr<Connection<Stream>> connection) {
    if (closed_ || options_.max_idle_connections == 0) return;
    // A deadline left from the body would fail the next request at once.
    beast::get_lowest_layer(connection->stream).expires_never();
    connection->idle_since = std::chrono::steady_clock::now();
    if (idle_.size() >= options_.max_idle_connections) idle_.erase(idle_.begin());
    idle_.push_back(std::move(connection));
    arm_timer();
  }

  void close() {
    closed_ = true;
    idle_.clear();
    timer_.cancel();
  }

 private:
  void close_expired() {
    const auto now = std::chrono::steady_clock::now();
    std::erase_if(idle_, [&](const auto& c) { return now - c->idle_since >= options_.max_idle_time; });
  }

  // Idle connections are closed on time even when no request comes to take
  // them: the server is not left holding them.
  void arm_timer() {
    if (timer_armed_ || idle_.empty()) return;
    timer_armed_ = true;
    timer_.expires_at(idle_.front()->idle_since + options_.max_idle_time);
    timer_.async_wait([weak = this->weak_from_this()](const boost::system::error_code& ec) {
      auto self = weak.lock();
      if (!self) return;
      self->timer_armed_ = false;
      if (ec || self->closed_) return;
      self->close_expired();
      self->arm_timer();
    });
  }

  asio::io_context& io_;
  ServerUrl url_;
  std::string verify_name_;
  std::optional<ssl::context> tls_;
  bool verify_;
  HttpClientOptions options_;
  asio::steady_timer timer_;
  bool timer_armed_ = false;
  bool closed_ = false;
  std::vector<std::unique_ptr<Connection<Stream>>> idle_;
  HttpConnectionStats stats_;
};

// One request, on an idle connection from the pool or a new one. Keeps
// itself alive through the handlers it queues.
template <typename Stream>
class Session : public HttpCall, public std::enable_shared_from_this<Session<Stream>> {
 public:
  Session(std::shared_ptr<ConnectionPool<Stream>> pool, http::request<http::empty_body> request,
          const HttpRequestOptions& options, HttpHandlers handlers, std::shared_ptr<TokenSource> tokens)
      : pool_(std::move(pool)),
        resolver_(pool_->io()),
        request_(std::move(request)),
        options_(options),
        handlers_(std::move(handlers)),
        tokens_(std::move(tokens)) {
    parser_.body_limit(boost::none);  // a watch body has no end
  }

  void start() {
    connection_ = pool_->take();
    if (connection_) {
      reused_ = true;
      beast::get_lowest_layer(connection_->stream).expires_after(options_.head_timeout);
      return write_request();
    }
    connect();
  }

  void cancel() override {
    if (done_) return;
    done_ = true;
    resolver_.cancel();
    close_connection();
  }

 private:
  void connect() {
    connection_ = pool_->fresh();
    const ServerUrl& url = pool_->url();
    resolver_.async_resolve(url.host, url.port,
                            [self = this->shared_from_this()](const boost::system::error_code& ec,
                                                              const tcp::resolver::results_type& results) {
                              self->on_resolve(ec, results);
                            });
  }

  void on_resolve(const boost::system::error_code& ec, const tcp::resolver::results_type& results) {
    if (done_) return;
    if (ec) return fail(HttpError::Kind::kResolve, "resolving " + pool_->url().host + ": " + ec.message());
    beast::get_lowest_layer(stream()).expires_after(options_.head_timeout);
    beast::get_lowest_layer(stream()).async_connect(
        results, [self = this->shared_from_this()](const boost::system::error_code& ec,
                                                   const tcp::endpoint&) { self->on_connect(ec); });
  }

  void on_connect(const boost::system::error_code& ec) {
    if (done_) return;
    if (ec) {
      return fail(kind_of_failure(ec, HttpError::Kind::kConnect),
                  "connecting to " + pool_->url().host + ":" + pool_->url().port + ": " + ec.message());
    }
    pool_->count_opened();
    if (auto set = set_api_socket_options(beast::get_lowest_layer(stream()).socket().native_handle()); !set) {
      return fail(HttpError::Kind::kConnect,
                  "connecting to " + pool_->url().host + ": " + set.error().message);
    }
    if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
      write_request();
    } else {
      if (!is_ip_literal(pool_->verify_name())) {
        // SNI carries names only (RFC 6066), never an address.
        SSL_set_tlsext_host_name(stream().native_handle(), pool_->verify_name().c_str());
      }
      stream().async_handshake(
          ssl::stream_base::client,
          [self = this->shared_from_this()](const boost::system::error_code& ec) { self->on_handshake(ec); });
    }
  }

  void on_handshake(const boost::system::error_code& ec) {
    if (done_) return;
    if (ec) {
      std::string message = ec.message();
      if constexpr (!std::is_same_v<Stream, beast::tcp_stream>) {
        const long verify = SSL_get_verify_result(stream().native_handle());
        if (verify != X509_V_OK) message += " (" + std::string(X509_verify_cert_error_string(verify)) + ")";
      }
      return fail(kind_of_failure(ec, HttpError::Kind::kTls),
                  "TLS handshake with " + pool_->url().host + ": " + message);
    }
    write_request();
  }

  void write_request() {
    http::async_write(stream(), request_,
                      [self = this->shared_from_this()](const boost::system::error_code& ec, std::size_t) {
                        self->on_write(ec);
                      });
  }

  void on_write(const boost::system::error_code& ec) {
    if (done_) return;
    if (ec) {
      if (retry_on_new_connection(ec)) return;
      return fail(kind_of_failure(ec, HttpError::Kind::kClosed), "sending the request: " + ec.message());
    }
    http::async_read_header(stream(), connection_->buffer, parser_,
                            [self = this->shared_from_this()](const boost::system::error_code& ec,
                                                              std::size_t) { self->on_header(ec); });
  }

  // A server may close an idle connection just as we reuse it (its idle
  // timeout, a restart): the request then fails before any response byte,
  // and was not acted on, so it goes again on a new connection. Only once,
  // and not on a timeout, which has used up the head's time.
  bool retry_on_new_connection(const boost::system::error_code& ec) {
    if (!reused_ || ec == beast::error::timeout || parser_.got_some() || connection_->buffer.size() > 0) {
      return false;
    }
    reused_ = false;
    pool_->count_retried();
    close_connection();
    connect();
    return true;
  }

  void on_header(const boost::system::error_code& ec) {
    if (done_) return;
    if (ec) {
      if (retry_on_new_connection(ec)) return;
      return fail(kind_of_failure(ec, HttpError::Kind::kProtocol),
                  "reading the response head: " + ec.message());
    }
    const auto& response = parser_.get();
    HttpResponseHead head;
    head.status = response.result_int();
    head.content_type = std::string(response[http::field::content_type]);
    head.content_encoding = std::string(response[http::field::content_encoding]);
    head.reused_connection = reused_;
    if (beast::iequals(head.content_encoding, "gzip")) {
      gzip_.emplace();
    } else if (!head.content_encoding.empty() && !beast::iequals(head.content_encoding, "identity")) {
      return fail(HttpError::Kind::kProtocol,
                  "the response's Content-Encoding " + head.content_encoding + " was not asked for");
    }
    if (const auto retry = response[http::field::retry_after]; !retry.empty()) {
      head.retry_after = parse_retry_after(std::string_view(retry.data(), retry.size()));
    }
    // Bound tokens rotate: a 401 makes the next request re-read the file.
    if (head.status == 401 && tokens_) tokens_->invalidate();
    report(head.status);
    if (handlers_.on_head) handlers_.on_head(head);
    if (done_) return;  // cancelled from on_head
    read_body();
  }

  void read_body() {
    if (parser_.is_done()) return finish();
    parser_.get().body().data = body_.data();
    parser_.get().body().size = body_.size();
    beast::get_lowest_layer(stream()).expires_after(options_.idle_timeout);
    http::async_read_some(stream(), connection_->buffer, parser_,
                          [self = this->shared_from_this()](const boost::system::error_code& ec,
                                                            std::size_t) { self->on_body(ec); });
  }

  void on_body(boost::system::error_code ec) {
    if (done_) return;
    const std::size_t got = body_.size() - parser_.get().body().size;
    if (got > 0 && gzip_) {
      auto decoded = gzip_->write(std::string_view(body_.data(), got), [this](std::string_view plain) {
        if (!done_ && handlers_.on_body) handlers_.on_body(plain);
      });
      if (done_) return;
      if (!decoded) return fail(HttpError::Kind::kProtocol, "reading the body: " + decoded.error().message);
    } else if (got > 0 && handlers_.on_body) {
      handlers_.on_body(std::string_view(body_.data(), got));
    }
    if (done_) return;
    if (ec == http::error::need_buffer) ec = {};
    if (ec) return fail(kind_of_failure(ec, HttpError::Kind::kProtocol), "reading the body: " + ec.message());
    read_body();
  }

  void finish() {
    if (done_) return;
    if (gzip_) {
      if (auto complete = gzip_->finish(); !complete) {
        return fail(HttpError::Kind::kProtocol, "reading the body: " + complete.error().message);
      }
    }
    done_ = true;
    // Back to the pool before on_done: the caller asks for its next page
    // from there. Bytes past the response would be a broken server's.
    if (options_.keep_alive && parser_.get().version() == 11 && parser_.keep_alive() &&
        connection_->buffer.size() == 0) {
      pool_->put(std::move(connection_));
    } else {
      close_connection();
    }
    if (handlers_.on_done) handlers_.on_done(std::nullopt);
  }

  void fail(HttpError::Kind kind, std::string message) {
    if (done_) return;
    done_ = true;
    report(0);
    close_connection();
    if (handlers_.on_done) handlers_.on_done(HttpError{kind, std::move(message)});
  }

  Stream& stream() { return connection_->stream; }

  // Once per request: its status when the head came, or 0 when it failed
  // first; the time from the start (client-go's rest_client metrics).
  void report(unsigned status) {
    if (reported_) return;
    reported_ = true;
    if (const auto& hook = pool_->options().on_response)
      hook(status, std::chrono::steady_clock::now() - started_);
  }

  void close_connection() {
    if (!connection_) return;
    boost::system::error_code ignored;
    beast::get_lowest_layer(connection_->stream).socket().close(ignored);
  }

  std::shared_ptr<ConnectionPool<Stream>> pool_;
  tcp::resolver resolver_;
  std::unique_ptr<Connection<Stream>> connection_;
  bool reused_ = false;  // connection_ came from the pool
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  bool reported_ = false;
  http::request<http::empty_body> request_;
  HttpRequestOptions options_;
  HttpHandlers handlers_;
  std::shared_ptr<TokenSource> tokens_;
  http::response_parser<http::buffer_body> parser_;
  std::array<char, kBodyBufferBytes> body_{};
  std::optional<GzipDecoder> gzip_;
  bool done_ = false;
};

template <typename Stream>
class BeastHttpClient final : public HttpClient {
 public:
  BeastHttpClient(std::string server, std::shared_ptr<TokenSource> tokens,
                  std::shared_ptr<ConnectionPool<Stream>> pool)
      : server_(std::move(server)), tokens_(std::move(tokens)), pool_(std::move(pool)) {}

  ~BeastHttpClient() override { pool_->close(); }

  std::shared_ptr<HttpCall> get(std::string target, const HttpRequestOptions& options,
                                HttpHandlers handlers) override {
    const ServerUrl& url = pool_->url();
    http::request<http::empty_body> request{http::verb::get, url.prefix + target, 11};
    const bool default_port = url.port == (url.tls ? "443" : "80");
    const std::string host = url.host.find(':') != std::string::npos ? "[" + url.host + "]" : url.host;
    request.set(http::field::host, default_port ? host : host + ":" + url.port);
    request.set(http::field::user_agent, kUserAgent);
    request.set(http::field::accept, options.accept);
    if (options.accept_gzip) request.set(http::field::accept_encoding, "gzip");
    if (tokens_) {
      if (const std::string token = tokens_->token(); !token.empty()) {
        request.set(http::field::authorization, "Bearer " + token);
      }
    }
    auto session =
        std::make_shared<Session<Stream>>(pool_, std::move(request), options, std::move(handlers), tokens_);
    session->start();
    return session;
  }

  const std::string& server() const override { return server_; }
  HttpConnectionStats connection_stats() const override { return pool_->stats(); }

 private:
  std::string server_;
  std::shared_ptr<TokenSource> tokens_;
  std::shared_ptr<ConnectionPool<Stream>> pool_;
};

}  // namespace

std::string_view kind_name(HttpError::Kind kind) {
  switch (kind) {
    case HttpError::Kind::kResolve:
      return "resolve";
    case HttpError::Kind::kConnect:
      return "connect";
    case HttpError::Kind::kTls:
      return "tls";
    case HttpError::Kind::kTimeout:
      return "timeout";
    case HttpError::Kind::kClosed:
      return "closed";
    case HttpError::Kind::kProtocol:
      return "protocol";
  }
  return "unknown";
}

std::expected<void, Error> set_api_socket_options(int fd) {
  // Probes after 30 s idle, every 10 s (client-go's dialer also keeps alive
  // at 30 s); TCP_USER_TIMEOUT bounds both unacknowledged data and
  // unanswered probes to 60 s.
  struct Option {
    int level, name, value;
    const char* what;
  };
  const Option options[] = {{SOL_SOCKET, SO_KEEPALIVE, 1, "SO_KEEPALIVE"},
                            {IPPROTO_TCP, TCP_KEEPIDLE, 30, "TCP_KEEPIDLE"},
                            {IPPROTO_TCP, TCP_KEEPINTVL, 10, "TCP_KEEPINTVL"},
                            {IPPROTO_TCP, TCP_KEEPCNT, 3, "TCP_KEEPCNT"},
                            {IPPROTO_TCP, TCP_USER_TIMEOUT, 60000, "TCP_USER_TIMEOUT"}};
  for (const auto& o : options) {
    if (setsockopt(fd, o.level, o.name, &o.value, sizeof o.value) != 0) {
      return std::unexpected(
          Error{.message = std::string("setting ") + o.what + ": " + std::strerror(errno)});
    }
  }
  return {};
}

std::optional<std::chrono::seconds> parse_retry_after(std::string_view value) {
  // RFC 9110 delay-seconds: digits only. An HTTP-date is not worth a clock
  // comparison here; it falls back to the backoff, as does anything else.
  if (value.empty() || value.find_first_not_of("0123456789") != std::string_view::npos) return std::nullopt;
  std::uint64_t seconds = 0;
  const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), seconds);
  if (error == std::errc::result_out_of_range ||
      seconds > static_cast<std::uint64_t>(kMaxRetryAfter.count())) {
    return kMaxRetryAfter;
  }
  return std::chrono::seconds(static_cast<std::int64_t>(seconds));
}

std::expected<ServerUrl, Error> parse_server_url(std::string_view url) {
  ServerUrl out;
  if (url.starts_with("https://")) {
    url.remove_prefix(8);
  } else if (url.starts_with("http://")) {
    out.tls = false;
    url.remove_prefix(7);
  } else {
    return std::unexpected(Error{.message = "the server URL must start with https:// (or http://)"});
  }
  const auto slash = url.find('/');
  std::string_view authority = url.substr(0, slash);
  if (slash != std::string_view::npos) {
    out.prefix = std::string(url.substr(slash));
    while (!out.prefix.empty() && out.prefix.back() == '/') out.prefix.pop_back();
  }
  if (authority.empty()) return std::unexpected(Error{.message = "the server URL has no host"});
  std::string_view port;
  if (authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos)
      return std::unexpected(Error{.message = "unclosed '[' in the server URL"});
    out.host = std::string(authority.substr(1, close - 1));
    std::string_view rest = authority.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':')
        return std::unexpected(Error{.message = "unexpected text after ']' in the server URL"});
      port = rest.substr(1);
    }
  } else {
    const auto colon = authority.rfind(':');
    if (colon != std::string_view::npos) {
      if (authority.find(':') != colon)
        return std::unexpected(Error{.message = "an IPv6 address in a URL goes in brackets"});
      port = authority.substr(colon + 1);
      authority = authority.substr(0, colon);
    }
    out.host = std::string(authority);
  }
  if (out.host.empty()) return std::unexpected(Error{.message = "the server URL has no host"});
  if (port.empty()) {
    out.port = out.tls ? "443" : "80";
  } else {
    unsigned value = 0;
    auto [ptr, err] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (err != std::errc() || ptr != port.data() + port.size() || value == 0 || value > 65535) {
      return std::unexpected(Error{.message = "bad port in the server URL: " + std::string(port)});
    }
    out.port = std::string(port);
  }
  return out;
}

std::expected<std::unique_ptr<HttpClient>, Error> HttpClient::create(asio::io_context& io,
                                                                     const ClientConfig& config,
                                                                     std::shared_ptr<TokenSource> tokens,
                                                                     HttpClientOptions options) {
  auto url = parse_server_url(config.server);
  if (!url)
    return std::unexpected(Error{
        .message = url.error().message + ": " + config.server, .field = "server", .source = config.source});
  std::string verify_name = config.tls_server_name.empty() ? url->host : config.tls_server_name;
  std::optional<ssl::context> tls;
  if (url->tls) {
    tls.emplace(ssl::context::tls_client);
    tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                     ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    auto load = [&](const PemSource& pem, const char* what, auto&& use) -> std::optional<Error> {
      boost::system::error_code ec;
      use(asio::buffer(pem.pem), ec);
      if (ec)
        return Error{
            .message = "OpenSSL could not load it: " + ec.message(), .field = what, .source = pem.origin};
      return std::nullopt;
    };
    if (config.insecure_skip_tls_verify) {
      tls->set_verify_mode(ssl::verify_none);
    } else {
      tls->set_verify_mode(ssl::verify_peer);
      if (config.certificate_authority) {
        if (auto error = load(*config.certificate_authority, "certificate-authority",
                              [&](auto buffer, auto& ec) { tls->add_certificate_authority(buffer, ec); })) {
          return std::unexpected(*error);
        }
      } else {
        tls->set_default_verify_paths();
      }
    }
    if (config.client_certificate && config.client_key) {
      if (auto error = load(*config.client_certificate, "client-certificate",
                            [&](auto buffer, auto& ec) { tls->use_certificate_chain(buffer, ec); })) {
        return std::unexpected(*error);
      }
      if (auto error = load(*config.client_key, "client-key", [&](auto buffer, auto& ec) {
            tls->use_private_key(buffer, ssl::context::pem, ec);
          })) {
        return std::unexpected(*error);
      }
      if (SSL_CTX_check_private_key(tls->native_handle()) != 1) {
        return std::unexpected(Error{.message = "does not match the client certificate",
                                     .field = "client-key",
                                     .source = config.client_key->origin});
      }
    }
  }
  const bool verify = !config.insecure_skip_tls_verify;
  if (!url->tls) {
    using Stream = beast::tcp_stream;
    return std::make_unique<BeastHttpClient<Stream>>(
        config.server, std::move(tokens),
        std::make_shared<ConnectionPool<Stream>>(io, std::move(*url), std::move(verify_name), std::nullopt,
                                                 verify, options));
  }
  using Stream = beast::ssl_stream<beast::tcp_stream>;
  return std::make_unique<BeastHttpClient<Stream>>(
      config.server, std::move(tokens),
      std::make_shared<ConnectionPool<Stream>>(io, std::move(*url), std::move(verify_name), std::move(tls),
                                               verify, options));
}

}  // namespace kipvs::k8s
