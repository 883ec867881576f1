#pragma once
// A streaming gzip (RFC 1952) decoder for API responses: the API server
// compresses large lists when asked (Accept-Encoding: gzip, as client-go
// asks), which makes a list of 10,000 EndpointSlices about twenty times
// smaller on the wire. Raw deflate is zlib's inflater (it hands back exactly
// the bytes after the deflate data, however the stream was split: Beast's
// port kept some of the trailer's when fed in small pieces); the member's
// header and trailer (CRC-32 and size) are checked here.

#include <array>
#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <zlib.h>

#include "base/error.h"

namespace kipvs::k8s {

class GzipDecoder {
 public:
  using Output = std::function<void(std::string_view)>;

  // Feeds the next compressed bytes; the decoded bytes go to `out` as they
  // come. An error names what is wrong with the stream; after one, the
  // decoder refuses everything.
  [[nodiscard]] std::expected<void, Error> write(std::string_view compressed, const Output& out);
  // The whole stream has been fed: fails unless the member ended, with its
  // checksum and size right.
  [[nodiscard]] std::expected<void, Error> finish() const;

 private:
  enum class State : std::uint8_t { kHeader, kBody, kTrailer, kDone, kFailed };

  // How many bytes of header_ the header takes, 0 while incomplete.
  [[nodiscard]] std::expected<std::size_t, Error> header_size();
  std::expected<void, Error> fail(std::string message);

  State state_ = State::kHeader;
  std::string header_;  // buffered until it is complete (at most 64 KiB)
  // The name or comment starting at header_scan_start_ has no NUL before
  // header_scanned_.
  std::size_t header_scan_start_ = 0;
  std::size_t header_scanned_ = 0;
  std::string trailer_;  // the 8 bytes after the deflate data
  struct InflateEnd {
    void operator()(z_stream* stream) const;
  };
  // On the heap: zlib's state points back at its z_stream, which must not move.
  std::unique_ptr<z_stream, InflateEnd> inflate_;
  unsigned long crc_ = 0;   // zlib's crc32: a bytewise table was a fifth of a list's CPU
  std::uint32_t size_ = 0;  // decoded bytes, modulo 2^32 as ISIZE
  std::array<char, 64 * 1024> buffer_{};
};

}  // namespace kipvs::k8s
