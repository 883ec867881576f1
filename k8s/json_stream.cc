#include "k8s/json_stream.h"

#include <boost/json/error.hpp>
#include <boost/json/parse_options.hpp>

#include "k8s/parse_memory.h"

namespace kipvs::k8s {
namespace {

constexpr std::size_t kExcerptBytes = 80;
constexpr std::string_view kWhitespace = " \t\r\n";  // JSON's four

boost::json::parse_options parse_options() {
  boost::json::parse_options options;
  options.max_depth = JsonStream::kMaxDepth;
  return options;
}

}  // namespace

JsonStream::JsonStream(std::size_t max_value_bytes, std::size_t max_value_memory)
    : max_value_bytes_(max_value_bytes),
      max_value_memory_(max_value_memory),
      memory_(capped_resource(max_value_memory)) {
  new_parser();
}

void JsonStream::new_parser() {
  parser_.reset();  // its stack goes back to memory_ first
  parser_.emplace(memory_, parse_options());
  start_value();
}

void JsonStream::start_value() {
  parser_->reset(parse_arena(memory_));
}

std::size_t JsonStream::write(std::size_t available, boost::system::error_code& ec) {
  try {
    return parser_->write_some(buffer_.data() + begin_ + parsed_, available - parsed_, ec);
  } catch (const ParseMemoryExceeded&) {
    over_memory_ = true;
    ec = boost::json::error::exception;
    return 0;
  }
}

void JsonStream::feed(std::string_view bytes) {
  buffer_.append(bytes);
}

void JsonStream::drop_front(std::size_t count) {
  begin_ += count;
  // Erase the consumed front only when it is large, so a chunk holding many
  // small frames is not moved once per frame.
  if (begin_ == buffer_.size()) {
    buffer_.clear();
    begin_ = 0;
  } else if (begin_ > 4096 && begin_ * 2 > buffer_.size()) {
    buffer_.erase(0, begin_);
    begin_ = 0;
  }
}

JsonStreamError JsonStream::fail(std::string message) {
  if (over_memory_) {
    message = "value needs more than " + memory_text(max_value_memory_) + " to parse";
  }
  JsonStreamError error{std::move(message),
                        buffer_.substr(begin_, std::min(kExcerptBytes, buffer_.size() - begin_))};
  if (over_memory_) {
    new_parser();  // a stack grown to the cap is given back
    over_memory_ = false;
  } else {
    start_value();
  }
  parsed_ = 0;
  skipping_ = true;  // the bad value starts at begin_: drop up to its first newline
  return error;
}

std::expected<std::optional<boost::json::value>, JsonStreamError> JsonStream::next() {
  if (skipping_) {
    const auto newline = buffer_.find('\n', begin_);
    if (newline == std::string::npos) {
      buffer_.clear();
      begin_ = 0;
      return std::nullopt;
    }
    drop_front(newline + 1 - begin_);
    skipping_ = false;
  }
  if (parsed_ == 0) {
    const auto start = buffer_.find_first_not_of(kWhitespace, begin_);
    if (start == std::string::npos) {
      buffer_.clear();
      begin_ = 0;
      return std::nullopt;
    }
    drop_front(start - begin_);
  }
  const std::size_t available = buffer_.size() - begin_;
  if (parsed_ < available) {
    boost::system::error_code ec;
    parsed_ += write(available, ec);
    if (ec) return std::unexpected(fail(ec.message()));
    if (parser_->done()) {
      boost::json::value value = parser_->release();
      start_value();
      drop_front(parsed_);
      parsed_ = 0;
      return value;
    }
  }
  if (parsed_ > max_value_bytes_) {
    return std::unexpected(fail("value longer than " + std::to_string(max_value_bytes_) + " bytes"));
  }
  return std::nullopt;
}

std::expected<std::optional<boost::json::value>, JsonStreamError> JsonStream::finish() {
  std::expected<std::optional<boost::json::value>, JsonStreamError> result = std::nullopt;
  if (!skipping_ && parsed_ == 0) {
    const auto start = buffer_.find_first_not_of(kWhitespace, begin_);
    begin_ = start == std::string::npos ? buffer_.size() : start;
  }
  if (!skipping_ && begin_ < buffer_.size()) {
    boost::system::error_code ec;
    const std::size_t available = buffer_.size() - begin_;
    // Bytes fed since the last next() have not reached the parser yet.
    parsed_ += write(available, ec);
    if (!ec) {
      try {
        parser_->finish(ec);
      } catch (const ParseMemoryExceeded&) {
        over_memory_ = true;
        ec = boost::json::error::exception;
      }
    }
    if (over_memory_) {
      result = std::unexpected(fail(ec.message()));
    } else if (ec || !parser_->done()) {
      result = std::unexpected(
          JsonStreamError{"stream ended inside a value (" + std::to_string(parsed_) + " bytes)",
                          buffer_.substr(begin_, std::min(kExcerptBytes, buffer_.size() - begin_))});
    } else {
      result = std::optional<boost::json::value>(parser_->release());
    }
  }
  start_value();
  buffer_.clear();
  begin_ = 0;
  parsed_ = 0;
  skipping_ = false;
  return result;
}

}  // namespace kipvs::k8s
