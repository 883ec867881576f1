// The HTTP client's TLS against a loopback TLS server whose certificates are
// made here with OpenSSL: the certificate's names against the URL's host or
// tls-server-name, the SNI the server receives, an expired certificate and
// one from another CA. Each case is one GET to its end.
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <catch2/catch.hpp>

#include "fault_server.h"
#include "k8s/http_client.h"

namespace kipvs::k8s {
namespace {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

using Key = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using Cert = std::unique_ptr<X509, decltype(&X509_free)>;

Key make_key() {
  return Key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"), &EVP_PKEY_free);
}

std::string pem_of(X509* cert) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
  PEM_write_bio_X509(bio.get(), cert);
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  return {data, static_cast<std::size_t>(size)};
}

std::string pem_of(EVP_PKEY* key) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  return {data, static_cast<std::size_t>(size)};
}

void add_extension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* extension = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  REQUIRE(extension != nullptr);
  X509_add_ext(cert, extension, -1);
  X509_EXTENSION_free(extension);
}

// A certificate for `key`, signed by issuer (self-signed when null). san:
// "DNS:a,IP:127.0.0.1"; empty for a CA. Valid from `from` to `to` seconds
// relative to now.
Cert make_cert(EVP_PKEY* key, const std::string& common_name, const std::string& san, X509* issuer,
               EVP_PKEY* issuer_key, long from = -3600, long to = 3600) {
  Cert cert(X509_new(), &X509_free);
  X509_set_version(cert.get(), 2);
  static long serial = 1;
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial++);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), from);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), to);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1, 0);
  X509* signer = issuer != nullptr ? issuer : cert.get();
  X509_set_issuer_name(cert.get(), X509_get_subject_name(signer));
  if (san.empty()) {
    add_extension(cert.get(), signer, NID_basic_constraints, "critical,CA:TRUE");
    add_extension(cert.get(), signer, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_extension(cert.get(), signer, NID_basic_constraints, "critical,CA:FALSE");
    add_extension(cert.get(), signer, NID_subject_alt_name, san.c_str());
  }
  REQUIRE(X509_sign(cert.get(), issuer_key != nullptr ? issuer_key : key, EVP_sha256()) > 0);
  return cert;
}

struct Authority {
  Key key = make_key();
  Cert cert = make_cert(key.get(), "test CA", "", nullptr, nullptr);
  std::string pem() const { return pem_of(cert.get()); }
};

// Serves one answer per connection over TLS, and records the SNI each
// handshake carried ("" for none).
class TlsServer {
 public:
  TlsServer(asio::io_context& io, const std::string& cert_pem, const std::string& key_pem)
      : io_(io),
        context_(ssl::context::tls_server),
        acceptor_(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    context_.use_certificate_chain(asio::buffer(cert_pem));
    context_.use_private_key(asio::buffer(key_pem), ssl::context::pem);
    SSL_CTX_set_tlsext_servername_callback(context_.native_handle(), &TlsServer::on_servername);
    SSL_CTX_set_tlsext_servername_arg(context_.native_handle(), this);
    accept();
  }
  std::string url(const std::string& host) const {
    return "https://" + host + ":" + std::to_string(acceptor_.local_endpoint().port());
  }

  std::vector<std::string> server_names;  // per handshake
  std::size_t answered = 0;

 private:
  struct Connection {
    Connection(asio::io_context& io, ssl::context& context) : stream(io, context) {}
    ssl::stream<tcp::socket> stream;
    asio::streambuf request;
  };

  static int on_servername(SSL* ssl, int*, void* arg) {
    const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    static_cast<TlsServer*>(arg)->server_names.emplace_back(name != nullptr ? name : "");
    return SSL_TLSEXT_ERR_OK;
  }

  void accept() {
    auto connection = std::make_shared<Connection>(io_, context_);
    acceptor_.async_accept(
        connection->stream.lowest_layer(), [this, connection](boost::system::error_code ec) {
          if (ec) return;
          connection->stream.async_handshake(
              ssl::stream_base::server, [this, connection](boost::system::error_code ec) {
                if (ec) return;
                asio::async_read_until(
                    connection->stream, connection->request, "\r\n\r\n",
                    [this, connection](boost::system::error_code ec, std::size_t) {
                      if (ec) return;
                      static const std::string answer =
                          "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
                      ++answered;
                      asio::async_write(connection->stream, asio::buffer(answer),
                                        [connection](boost::system::error_code, std::size_t) {});
                    });
              });
          accept();
        });
  }

  asio::io_context& io_;
  ssl::context context_;
  tcp::acceptor acceptor_;
};

struct Fetched {
  std::optional<unsigned> status;
  std::string body;
  std::optional<HttpError> error;
  bool done = false;
};

Fetched fetch(asio::io_context& io, const ClientConfig& config) {
  auto client = HttpClient::create(io, config, nullptr);
  REQUIRE(client);
  Fetched out;
  HttpHandlers handlers;
  handlers.on_head = [&out](const HttpResponseHead& head) { out.status = head.status; };
  handlers.on_body = [&out](std::string_view bytes) { out.body += bytes; };
  handlers.on_done = [&out](std::optional<HttpError> error) {
    out.error = std::move(error);
    out.done = true;
  };
  auto call = (*client)->get("/version", {}, std::move(handlers));
  REQUIRE(test::run_until(io, [&] { return out.done; }));
  return out;
}

ClientConfig config_for(const std::string& server, const Authority& ca) {
  ClientConfig config;
  config.server = server;
  config.certificate_authority = PemSource{.pem = ca.pem(), .origin = "the test's CA"};
  return config;
}

}  // namespace

TEST_CASE("tls: the certificate must name the host the URL names", "[tls]") {
  asio::io_context io;
  Authority ca;
  auto key = make_key();

  SECTION("an IP address in the certificate's names: accepted, and no SNI (names only)") {
    auto cert = make_cert(key.get(), "apiserver", "DNS:kubernetes,IP:127.0.0.1", ca.cert.get(), ca.key.get());
    TlsServer server(io, pem_of(cert.get()), pem_of(key.get()));
    const auto got = fetch(io, config_for(server.url("127.0.0.1"), ca));
    CHECK_FALSE(got.error.has_value());
    CHECK(got.status == 200u);
    CHECK(got.body == "ok");
    CHECK(server.server_names == std::vector<std::string>{""});
  }
  SECTION("a certificate for another host: refused as a TLS error, nothing sent") {
    auto cert = make_cert(key.get(), "apiserver", "DNS:other.example", ca.cert.get(), ca.key.get());
    TlsServer server(io, pem_of(cert.get()), pem_of(key.get()));
    const auto got = fetch(io, config_for(server.url("127.0.0.1"), ca));
    REQUIRE(got.error.has_value());
    CHECK(got.error->kind == HttpError::Kind::kTls);
    CHECK_FALSE(got.status.has_value());
    CHECK(server.answered == 0);
  }
  SECTION("a host name: sent as SNI and checked against the certificate") {
    auto cert = make_cert(key.get(), "apiserver", "DNS:localhost", ca.cert.get(), ca.key.get());
    TlsServer server(io, pem_of(cert.get()), pem_of(key.get()));
    const auto got = fetch(io, config_for(server.url("localhost"), ca));
    CHECK_FALSE(got.error.has_value());
    CHECK(got.status == 200u);
    CHECK(server.server_names == std::vector<std::string>{"localhost"});
  }
}

TEST_CASE("tls: tls-server-name replaces the host for SNI and verification", "[tls]") {
  asio::io_context io;
  Authority ca;
  auto key = make_key();
  auto cert = make_cert(key.get(), "apiserver", "DNS:kubernetes.default.svc", ca.cert.get(), ca.key.get());
  TlsServer server(io, pem_of(cert.get()), pem_of(key.get()));

  auto config = config_for(server.url("127.0.0.1"), ca);
  SECTION("without it the address does not match the certificate") {
    const auto got = fetch(io, config);
    REQUIRE(got.error.has_value());
    CHECK(got.error->kind == HttpError::Kind::kTls);
  }
  SECTION("with it the name does, and the server sees it as SNI") {
    config.tls_server_name = "kubernetes.default.svc";
    const auto got = fetch(io, config);
    CHECK_FALSE(got.error.has_value());
    CHECK(got.status == 200u);
    CHECK(server.server_names == std::vector<std::string>{"kubernetes.default.svc"});
  }
  SECTION("a tls-server-name the certificate does not carry is refused") {
    config.tls_server_name = "kubernetes.example";
    const auto got = fetch(io, config);
    REQUIRE(got.error.has_value());
    CHECK(got.error->kind == HttpError::Kind::kTls);
    CHECK(server.answered == 0);
  }
}

TEST_CASE("tls: an expired certificate, or one from another CA, is refused", "[tls]") {
  asio::io_context io;
  Authority ca;
  auto key = make_key();
  SECTION("expired an hour ago") {
    auto cert = make_cert(key.get(), "apiserver", "IP:127.0.0.1", ca.cert.get(), ca.key.get(), -7200, -3600);
    TlsServer server(io, pem_of(cert.get()), pem_of(key.get()));
    const auto got = fetch(io, config_for(server.url("127.0.0.1"), ca));
    REQUIRE(got.error.has_value());
    CHECK(got.error->kind == HttpError::Kind::kTls);
    CHECK(server.answered == 0);
  }
  SECTION("not valid for another hour") {
    auto cert = make_cert(key.get(), "apiserver", "IP:127.0.0.1", ca.cert.get(), ca.key.get(), 3600, 7200);
    TlsServer server(io, pem_of(cert.get()), pem_of(key.get()));
    const auto got = fetch(io, config_for(server.url("127.0.0.1"), ca));
    REQUIRE(got.error.has_value());
    CHECK(got.error->kind == HttpError::Kind::kTls);
  }
  SECTION("signed by a CA the client does not trust") {
    Authority other;
    auto cert = make_cert(key.get(), "apiserver", "IP:127.0.0.1", other.cert.get(), other.key.get());
    TlsServer server(io, pem_of(cert.get()), pem_of(key.get()));
    const auto got = fetch(io, config_for(server.url("127.0.0.1"), ca));
    REQUIRE(got.error.has_value());
    CHECK(got.error->kind == HttpError::Kind::kTls);
    CHECK(server.answered == 0);
  }
}

}  // namespace kipvs::k8s
