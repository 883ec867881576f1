#pragma once
// A streaming gzip (RFC 1952) decoder for API responses: the API server
// compresses large lists when asked (Accept-Encoding: gzip, as client-go
// asks), which makes a list of 10,000 EndpointSlices about twenty times
// smaller on the wire. Raw deflate is Boost.Beast's inflater; the member's
// header and trailer (CRC-32 and size) are checked here.

#include <array>
#include <cstdint>
#include <expected>
#include <functional>
#include <string>
#include <string_view>

#include <boost/beast/zlib/inflate_stream.hpp>

namespace kipvs::k8s {

class GzipDecoder {
 public:
  using Output = std::function<void(std::string_view)>;

  // Feeds the next compressed bytes; the decoded bytes go to `out` as they
  // come. An error names what is wrong with the stream; after one, the
  // decoder refuses everything.
  [[nodiscard]] std::expected<void, std::string> write(std::string_view compressed, const Output& out);
  // The whole stream has been fed: fails unless the member ended, with its
  // checksum and size right.
  [[nodiscard]] std::expected<void, std::string> finish() const;

 private:
  enum class State : std::uint8_t { kHeader, kBody, kTrailer, kDone, kFailed };

  // How many bytes of header_ the header takes, 0 while incomplete.
  [[nodiscard]] std::expected<std::size_t, std::string> header_size() const;
  std::expected<void, std::string> fail(std::string message);

  State state_ = State::kHeader;
  std::string header_;   // buffered until it is complete
  std::string trailer_;  // the 8 bytes after the deflate data
  boost::beast::zlib::inflate_stream inflate_;
  unsigned long crc_ = 0;   // zlib's crc32: a bytewise table was a fifth of a list's CPU
  std::uint32_t size_ = 0;  // decoded bytes, modulo 2^32 as ISIZE
  std::array<char, 64 * 1024> buffer_{};
};

}  // namespace kipvs::k8s
