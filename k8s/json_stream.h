#pragma once
// Splits a byte stream of concatenated JSON values (a watch response body)
// into whole values. The API server ends each frame with "\n", but frames are
// framed only by JSON value boundaries: a TCP read or an HTTP chunk may end
// anywhere, mid-string or mid-escape, and values may be pretty-printed. Bytes
// go in with feed(), in pieces of any size; next() hands out complete values.
//
// A malformed value is reported once as an error, and the splitter
// resynchronizes: it drops the bytes from the start of the bad value up to and
// including the first newline after that start, and parses again from there.
// A well-behaved server writes one value per line, so after one bad frame the
// next frame decodes; for garbage spanning several lines each line yields at
// most one error. A value longer than max_value_bytes, or one whose parse
// would take more than max_value_memory bytes (parse_memory.h), is treated as
// malformed too, which bounds memory.
//
// A value handed out lives in its own arena, freed with the value; it must
// not outlive its use (decode it, then drop it).
//
// Not thread-safe; owned by the io_context thread that reads the body.

#include <cstddef>
#include <expected>
#include <optional>
#include <string>
#include <string_view>

#include <boost/json/stream_parser.hpp>
#include <boost/json/value.hpp>

namespace kipvs::k8s {

struct JsonStreamError {
  std::string message;  // what the parser said, e.g. "syntax error"
  std::string excerpt;  // the first bytes of the bad value, for a log line
};

class JsonStream {
 public:
  static constexpr std::size_t kDefaultMaxValueBytes = 16u << 20;  // > etcd's 1.5 MiB object limit
  // Real objects take up to five times their text while parsed (a full
  // EndpointSlice: json_stream_test) and etcd keeps them under 1.5 MiB;
  // long arrays of empty values take sixteen times.
  static constexpr std::size_t kDefaultMaxValueMemory = 64u << 20;
  static constexpr std::size_t kMaxDepth = 128;  // managedFields nest deeper than Boost's default 32

  explicit JsonStream(std::size_t max_value_bytes = kDefaultMaxValueBytes,
                      std::size_t max_value_memory = kDefaultMaxValueMemory);

  // Appends bytes; nothing is parsed until next().
  void feed(std::string_view bytes);

  // A complete value; nullopt when more bytes are needed; an error when a
  // malformed value was dropped (call next() again to go on).
  [[nodiscard]] std::expected<std::optional<boost::json::value>, JsonStreamError> next();

  // The stream ended. Call once next() has returned nullopt: yields a last
  // value only a delimiter was missing for (a bare number at the very end),
  // or an error when a partial value is left (a cut connection). Resets the
  // splitter either way.
  [[nodiscard]] std::expected<std::optional<boost::json::value>, JsonStreamError> finish();

  // Bytes held for the value being assembled.
  [[nodiscard]] std::size_t buffered() const { return buffer_.size() - begin_; }

 private:
  JsonStreamError fail(std::string message);
  void drop_front(std::size_t count);
  void new_parser();
  void start_value();
  // write_some, with the memory cap's exception turned into an error.
  std::size_t write(std::size_t available, boost::system::error_code& ec);

  std::size_t max_value_bytes_;
  std::size_t max_value_memory_;
  boost::json::storage_ptr memory_;  // a CappedResource: the parser's stack and the value's arena
  std::optional<boost::json::stream_parser> parser_;
  bool over_memory_ = false;  // the last write ran out of memory_
  // buffer_[begin_..] holds the bytes from the start of the current value
  // (leading whitespace dropped), kept whole so a bad value can be dropped up
  // to its first newline. The consumed front is erased lazily.
  std::string buffer_;
  std::size_t begin_ = 0;
  std::size_t parsed_ = 0;  // bytes after begin_ already given to parser_
  bool skipping_ = false;   // dropping bytes up to the next newline
};

}  // namespace kipvs::k8s
