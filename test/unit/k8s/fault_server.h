#pragma once
// A small fault-injecting HTTP/1.1 server on loopback, for what a real API
// server cannot be made to do on demand: a connection cut mid-frame, a frame
// delivered byte by byte, a connection closed while the client holds it idle.
// A handler scripts each response; a connection serves the next request once
// its script has played out without a cut.

#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/buffers_iterator.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

namespace kipvs::test {

// What the server writes for one request, step by step.
struct Step {
  std::string bytes;
  bool byte_by_byte = false;  // one write per byte, 1 ms apart
  bool close = false;         // then cut the connection (no HTTP end)
};
using Script = std::vector<Step>;

// A response with a Content-Length; `Connection: close` unless kept alive.
inline std::string response(int status, const std::string& body, const std::string& headers = "",
                            bool keep_alive = false) {
  return "HTTP/1.1 " + std::to_string(status) +
         " X\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" +
         (keep_alive ? "" : "Connection: close\r\n") + headers + "\r\n" + body;
}
inline std::string chunked_head() {
  return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
}
inline std::string chunk(const std::string& data) {
  char size[16];
  std::snprintf(size, sizeof size, "%zx", data.size());
  return std::string(size) + "\r\n" + data + "\r\n";
}
inline const std::string kLastChunk = "0\r\n\r\n";

class FaultServer {
 public:
  using Handler = std::function<Script(const std::string& target, const std::string& head)>;

  FaultServer(boost::asio::io_context& io, Handler handler)
      : io_(io),
        acceptor_(io, tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0)),
        handler_(std::move(handler)) {
    accept();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port()); }
  std::size_t accepted() const { return connections_.size(); }

  // Per request, in arrival order (the handler sees its own at the back).
  std::vector<std::string> targets;
  std::vector<std::chrono::steady_clock::time_point> times;
  std::vector<std::size_t> connection_of;  // the connection's number, in accept order
  std::size_t closed_by_client = 0;        // connections the client closed between requests

 private:
  using tcp = boost::asio::ip::tcp;
  struct Connection {
    explicit Connection(boost::asio::io_context& io, std::size_t number)
        : socket(io), timer(io), number(number) {}
    tcp::socket socket;
    boost::asio::steady_timer timer;
    std::size_t number;
    boost::asio::streambuf request;
    Script script;
    std::size_t step = 0, byte = 0;
  };

  void accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
      if (ec) return;
      auto c = std::make_shared<Connection>(io_, connections_.size());
      c->socket = std::move(socket);
      connections_.push_back(c);
      read_request(c);
      accept();
    });
  }

  void read_request(const std::shared_ptr<Connection>& c) {
    boost::asio::async_read_until(
        c->socket, c->request, "\r\n\r\n", [this, c](boost::system::error_code ec, std::size_t size) {
          if (ec) {
            if (ec == boost::asio::error::eof || ec == boost::asio::error::connection_reset)
              ++closed_by_client;
            return;
          }
          const auto data = c->request.data();
          std::string head(boost::asio::buffers_begin(data), boost::asio::buffers_begin(data) + size);
          c->request.consume(size);
          const auto sp1 = head.find(' ');
          targets.push_back(head.substr(sp1 + 1, head.find(' ', sp1 + 1) - sp1 - 1));
          times.push_back(std::chrono::steady_clock::now());
          connection_of.push_back(c->number);
          c->script = handler_(targets.back(), head);
          c->step = 0;
          c->byte = 0;
          play(c);
        });
  }

  void play(const std::shared_ptr<Connection>& c) {
    if (c->step == c->script.size()) return read_request(c);  // keep the connection for the next one
    Step& step = c->script[c->step];
    if (!step.byte_by_byte) {
      boost::asio::async_write(c->socket, boost::asio::buffer(step.bytes),
                               [this, c](boost::system::error_code ec, std::size_t) {
                                 if (!ec) next_step(c);
                               });
      return;
    }
    if (c->byte == step.bytes.size()) {
      c->byte = 0;
      return next_step(c);
    }
    boost::asio::async_write(c->socket, boost::asio::buffer(&step.bytes[c->byte], 1),
                             [this, c](boost::system::error_code ec, std::size_t) {
                               if (ec) return;
                               ++c->byte;
                               c->timer.expires_after(std::chrono::milliseconds(1));
                               c->timer.async_wait([this, c](boost::system::error_code) { play(c); });
                             });
  }

  void next_step(const std::shared_ptr<Connection>& c) {
    if (c->script[c->step].close) {
      boost::system::error_code ignored;
      c->socket.shutdown(tcp::socket::shutdown_both, ignored);
      c->socket.close(ignored);
      return;
    }
    ++c->step;
    play(c);
  }

  boost::asio::io_context& io_;
  tcp::acceptor acceptor_;
  Handler handler_;
  std::vector<std::shared_ptr<Connection>> connections_;
};

// Runs io until done() or the limit; false on the limit.
template <typename Predicate>
bool run_until(boost::asio::io_context& io, Predicate done,
               std::chrono::milliseconds limit = std::chrono::seconds(5)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    io.restart();
    io.run_for(std::chrono::milliseconds(5));
  }
  return true;
}

}  // namespace kipvs::test
