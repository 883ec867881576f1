#include "k8s/http_client.h"

#include <array>
#include <charconv>
#include <variant>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
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

// One request on one connection. Stream is beast::tcp_stream or an SSL
// stream over it. Keeps itself alive through the handlers it queues.
template <typename Stream>
class Session : public HttpCall, public std::enable_shared_from_this<Session<Stream>> {
 public:
  Session(asio::io_context& io, Stream stream, const ServerUrl& url, std::string verify_name,
          http::request<http::empty_body> request, const HttpRequestOptions& options, HttpHandlers handlers,
          std::shared_ptr<TokenSource> tokens)
      : resolver_(io),
        stream_(std::move(stream)),
        url_(url),
        verify_name_(std::move(verify_name)),
        request_(std::move(request)),
        options_(options),
        handlers_(std::move(handlers)),
        tokens_(std::move(tokens)) {
    parser_.body_limit(boost::none);  // a watch body has no end
  }

  void start() {
    resolver_.async_resolve(url_.host, url_.port,
                            [self = this->shared_from_this()](const boost::system::error_code& ec,
                                                              const tcp::resolver::results_type& results) {
                              self->on_resolve(ec, results);
                            });
  }

  void cancel() override {
    if (done_) return;
    done_ = true;
    resolver_.cancel();
    boost::system::error_code ignored;
    beast::get_lowest_layer(stream_).socket().close(ignored);
  }

 private:
  void on_resolve(const boost::system::error_code& ec, const tcp::resolver::results_type& results) {
    if (done_) return;
    if (ec) return fail(HttpError::Kind::kResolve, "resolving " + url_.host + ": " + ec.message());
    beast::get_lowest_layer(stream_).expires_after(options_.head_timeout);
    beast::get_lowest_layer(stream_).async_connect(
        results, [self = this->shared_from_this()](const boost::system::error_code& ec,
                                                   const tcp::endpoint&) { self->on_connect(ec); });
  }

  void on_connect(const boost::system::error_code& ec) {
    if (done_) return;
    if (ec) {
      return fail(kind_of_failure(ec, HttpError::Kind::kConnect),
                  "connecting to " + url_.host + ":" + url_.port + ": " + ec.message());
    }
    if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
      write_request();
    } else {
      if (!is_ip_literal(verify_name_)) {
        // SNI carries names only (RFC 6066), never an address.
        SSL_set_tlsext_host_name(stream_.native_handle(), verify_name_.c_str());
      }
      stream_.async_handshake(
          ssl::stream_base::client,
          [self = this->shared_from_this()](const boost::system::error_code& ec) { self->on_handshake(ec); });
    }
  }

  void on_handshake(const boost::system::error_code& ec) {
    if (done_) return;
    if (ec) {
      std::string message = ec.message();
      if constexpr (!std::is_same_v<Stream, beast::tcp_stream>) {
        const long verify = SSL_get_verify_result(stream_.native_handle());
        if (verify != X509_V_OK) message += " (" + std::string(X509_verify_cert_error_string(verify)) + ")";
      }
      return fail(kind_of_failure(ec, HttpError::Kind::kTls),
                  "TLS handshake with " + url_.host + ": " + message);
    }
    write_request();
  }

  void write_request() {
    http::async_write(stream_, request_,
                      [self = this->shared_from_this()](const boost::system::error_code& ec, std::size_t) {
                        self->on_write(ec);
                      });
  }

  void on_write(const boost::system::error_code& ec) {
    if (done_) return;
    if (ec)
      return fail(kind_of_failure(ec, HttpError::Kind::kClosed), "sending the request: " + ec.message());
    http::async_read_header(stream_, buffer_, parser_,
                            [self = this->shared_from_this()](const boost::system::error_code& ec,
                                                              std::size_t) { self->on_header(ec); });
  }

  void on_header(const boost::system::error_code& ec) {
    if (done_) return;
    if (ec) {
      return fail(kind_of_failure(ec, HttpError::Kind::kProtocol),
                  "reading the response head: " + ec.message());
    }
    const auto& response = parser_.get();
    HttpResponseHead head;
    head.status = response.result_int();
    head.content_type = std::string(response[http::field::content_type]);
    head.content_encoding = std::string(response[http::field::content_encoding]);
    if (beast::iequals(head.content_encoding, "gzip")) {
      gzip_.emplace();
    } else if (!head.content_encoding.empty() && !beast::iequals(head.content_encoding, "identity")) {
      return fail(HttpError::Kind::kProtocol,
                  "the response's Content-Encoding " + head.content_encoding + " was not asked for");
    }
    if (const auto retry = response[http::field::retry_after]; !retry.empty()) {
      long seconds = 0;
      if (auto [ptr, err] = std::from_chars(retry.data(), retry.data() + retry.size(), seconds);
          err == std::errc() && seconds >= 0) {
        head.retry_after = std::chrono::seconds(seconds);
      }
    }
    // Bound tokens rotate: a 401 makes the next request re-read the file.
    if (head.status == 401 && tokens_) tokens_->invalidate();
    if (handlers_.on_head) handlers_.on_head(head);
    if (done_) return;  // cancelled from on_head
    read_body();
  }

  void read_body() {
    if (parser_.is_done()) return finish();
    parser_.get().body().data = body_.data();
    parser_.get().body().size = body_.size();
    beast::get_lowest_layer(stream_).expires_after(options_.idle_timeout);
    http::async_read_some(stream_, buffer_, parser_,
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
      if (!decoded) return fail(HttpError::Kind::kProtocol, "reading the body: " + decoded.error());
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
        return fail(HttpError::Kind::kProtocol, "reading the body: " + complete.error());
      }
    }
    done_ = true;
    boost::system::error_code ignored;
    beast::get_lowest_layer(stream_).socket().close(ignored);
    if (handlers_.on_done) handlers_.on_done(std::nullopt);
  }

  void fail(HttpError::Kind kind, std::string message) {
    if (done_) return;
    done_ = true;
    boost::system::error_code ignored;
    beast::get_lowest_layer(stream_).socket().close(ignored);
    if (handlers_.on_done) handlers_.on_done(HttpError{kind, std::move(message)});
  }

  tcp::resolver resolver_;
  Stream stream_;
  ServerUrl url_;
  std::string verify_name_;
  http::request<http::empty_body> request_;
  HttpRequestOptions options_;
  HttpHandlers handlers_;
  std::shared_ptr<TokenSource> tokens_;
  beast::flat_buffer buffer_;
  http::response_parser<http::buffer_body> parser_;
  std::array<char, kBodyBufferBytes> body_{};
  std::optional<GzipDecoder> gzip_;
  bool done_ = false;
};

class BeastHttpClient final : public HttpClient {
 public:
  BeastHttpClient(asio::io_context& io, std::string server, ServerUrl url, std::string verify_name,
                  std::optional<ssl::context> tls, std::shared_ptr<TokenSource> tokens)
      : io_(io),
        server_(std::move(server)),
        url_(std::move(url)),
        verify_name_(std::move(verify_name)),
        tls_(std::move(tls)),
        tokens_(std::move(tokens)) {}

  std::shared_ptr<HttpCall> get(std::string target, const HttpRequestOptions& options,
                                HttpHandlers handlers) override {
    http::request<http::empty_body> request{http::verb::get, url_.prefix + target, 11};
    const bool default_port = url_.port == (url_.tls ? "443" : "80");
    const std::string host = url_.host.find(':') != std::string::npos ? "[" + url_.host + "]" : url_.host;
    request.set(http::field::host, default_port ? host : host + ":" + url_.port);
    request.set(http::field::user_agent, kUserAgent);
    request.set(http::field::accept, options.accept);
    if (options.accept_gzip) request.set(http::field::accept_encoding, "gzip");
    if (tokens_) {
      if (const std::string token = tokens_->token(); !token.empty()) {
        request.set(http::field::authorization, "Bearer " + token);
      }
    }
    if (!tls_) {
      auto session = std::make_shared<Session<beast::tcp_stream>>(io_, beast::tcp_stream(io_), url_,
                                                                  verify_name_, std::move(request), options,
                                                                  std::move(handlers), tokens_);
      session->start();
      return session;
    }
    beast::ssl_stream<beast::tcp_stream> stream(io_, *tls_);
    if (verify_) stream.set_verify_callback(ssl::host_name_verification(verify_name_));
    auto session = std::make_shared<Session<beast::ssl_stream<beast::tcp_stream>>>(
        io_, std::move(stream), url_, verify_name_, std::move(request), options, std::move(handlers),
        tokens_);
    session->start();
    return session;
  }

  const std::string& server() const override { return server_; }

  bool verify_ = true;

 private:
  asio::io_context& io_;
  std::string server_;
  ServerUrl url_;
  std::string verify_name_;
  std::optional<ssl::context> tls_;
  std::shared_ptr<TokenSource> tokens_;
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

std::expected<ServerUrl, std::string> parse_server_url(std::string_view url) {
  ServerUrl out;
  if (url.starts_with("https://")) {
    url.remove_prefix(8);
  } else if (url.starts_with("http://")) {
    out.tls = false;
    url.remove_prefix(7);
  } else {
    return std::unexpected("the server URL must start with https:// (or http://)");
  }
  const auto slash = url.find('/');
  std::string_view authority = url.substr(0, slash);
  if (slash != std::string_view::npos) {
    out.prefix = std::string(url.substr(slash));
    while (!out.prefix.empty() && out.prefix.back() == '/') out.prefix.pop_back();
  }
  if (authority.empty()) return std::unexpected("the server URL has no host");
  std::string_view port;
  if (authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return std::unexpected("unclosed '[' in the server URL");
    out.host = std::string(authority.substr(1, close - 1));
    std::string_view rest = authority.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return std::unexpected("unexpected text after ']' in the server URL");
      port = rest.substr(1);
    }
  } else {
    const auto colon = authority.rfind(':');
    if (colon != std::string_view::npos) {
      if (authority.find(':') != colon) return std::unexpected("an IPv6 address in a URL goes in brackets");
      port = authority.substr(colon + 1);
      authority = authority.substr(0, colon);
    }
    out.host = std::string(authority);
  }
  if (out.host.empty()) return std::unexpected("the server URL has no host");
  if (port.empty()) {
    out.port = out.tls ? "443" : "80";
  } else {
    unsigned value = 0;
    auto [ptr, err] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (err != std::errc() || ptr != port.data() + port.size() || value == 0 || value > 65535) {
      return std::unexpected("bad port in the server URL: " + std::string(port));
    }
    out.port = std::string(port);
  }
  return out;
}

std::expected<std::unique_ptr<HttpClient>, ConfigError> HttpClient::create(
    asio::io_context& io, const ClientConfig& config, std::shared_ptr<TokenSource> tokens) {
  auto url = parse_server_url(config.server);
  if (!url) return std::unexpected(ConfigError{config.source, "server", url.error() + ": " + config.server});
  std::string verify_name = config.tls_server_name.empty() ? url->host : config.tls_server_name;
  std::optional<ssl::context> tls;
  if (url->tls) {
    tls.emplace(ssl::context::tls_client);
    tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                     ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    auto load = [&](const PemSource& pem, const char* what, auto&& use) -> std::optional<ConfigError> {
      boost::system::error_code ec;
      use(asio::buffer(pem.pem), ec);
      if (ec) return ConfigError{pem.origin, what, "OpenSSL could not load it: " + ec.message()};
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
        return std::unexpected(
            ConfigError{config.client_key->origin, "client-key", "does not match the client certificate"});
      }
    }
  }
  auto client = std::make_unique<BeastHttpClient>(io, config.server, std::move(*url), std::move(verify_name),
                                                  std::move(tls), std::move(tokens));
  client->verify_ = !config.insecure_skip_tls_verify;
  return client;
}

}  // namespace kipvs::k8s
