// One HTTP exchange with a server on this thread's io_context, as a client
// on the wire sees it: shared by the HTTP server's tests and the promtool
// check.
#pragma once

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>

namespace kipvs::test {

struct Exchanged {
  std::string response;
  std::size_t sent = 0;  // request bytes written before the server closed
};

// Sends the raw request (a byte at a time with byte_gap between them, when
// non-zero: a slow client) and reads until the server closes the
// connection. The client runs on its own thread; the server's io_context
// runs here, so handlers run on the caller's thread as on the agent's.
inline Exchanged exchange_raw(boost::asio::io_context& io, const boost::asio::ip::tcp::endpoint& server,
                              const std::string& request,
                              std::chrono::milliseconds byte_gap = std::chrono::milliseconds{0}) {
  namespace asio = boost::asio;
  Exchanged out;
  std::atomic<bool> done{false};
  std::thread client([&] {
    asio::io_context client_io;
    asio::ip::tcp::socket socket(client_io);
    boost::system::error_code ec;
    socket.connect(server, ec);
    if (byte_gap.count() == 0) {
      if (!ec) out.sent = asio::write(socket, asio::buffer(request), ec);
    } else {
      for (; !ec && out.sent < request.size(); ++out.sent) {
        asio::write(socket, asio::buffer(request.data() + out.sent, 1), ec);
        std::this_thread::sleep_for(byte_gap);
      }
    }
    char buffer[65536];
    while (!ec) {
      const auto n = socket.read_some(asio::buffer(buffer), ec);
      out.response.append(buffer, n);
    }
    done = true;
  });
  while (!done) {
    io.restart();
    io.run_for(std::chrono::milliseconds(5));
  }
  client.join();
  return out;
}

}  // namespace kipvs::test
