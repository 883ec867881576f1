#include "k8s/gzip.h"

#include <algorithm>

namespace kipvs::k8s {
namespace {

constexpr unsigned char kId1 = 0x1f, kId2 = 0x8b, kDeflate = 8;
constexpr unsigned char kFlagHeaderCrc = 0x02, kFlagExtra = 0x04, kFlagName = 0x08, kFlagComment = 0x10;
constexpr unsigned char kFlagsReserved = 0xe0;
constexpr std::size_t kFixedHeader = 10, kTrailer = 8;
// An API server's header is the fixed 10 bytes; a file name or comment is
// allowed, but not an unbounded one.
constexpr std::size_t kMaxHeader = 64 * 1024;

std::uint32_t little_endian32(std::string_view bytes) {
  std::uint32_t value = 0;
  for (int i = 3; i >= 0; --i) value = (value << 8) | static_cast<unsigned char>(bytes[i]);
  return value;
}

}  // namespace

void GzipDecoder::InflateEnd::operator()(z_stream* stream) const {
  inflateEnd(stream);
  delete stream;
}

std::expected<void, Error> GzipDecoder::fail(std::string message) {
  state_ = State::kFailed;
  return std::unexpected(Error{.message = "gzip: " + std::move(message)});
}

std::expected<std::size_t, Error> GzipDecoder::header_size() {
  if (header_.size() < kFixedHeader) return 0;
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(header_[i]); };
  if (byte(0) != kId1 || byte(1) != kId2) return std::unexpected(Error{.message = "not a gzip stream"});
  if (byte(2) != kDeflate)
    return std::unexpected(Error{.message = "compression method " + std::to_string(byte(2))});
  const unsigned char flags = byte(3);
  if ((flags & kFlagsReserved) != 0) return std::unexpected(Error{.message = "reserved header flags set"});
  std::size_t at = kFixedHeader;
  if ((flags & kFlagExtra) != 0) {
    if (header_.size() < at + 2) return 0;
    at += 2 + (byte(at) | (static_cast<std::size_t>(byte(at + 1)) << 8));
  }
  for (const unsigned char flag : {kFlagName, kFlagComment}) {
    if ((flags & flag) == 0) continue;
    // Resumed where the last call stopped looking: fed a byte at a time, a
    // rescan from the start each time would be quadratic.
    const auto end = header_.find('\0', at == header_scan_start_ ? std::max(at, header_scanned_) : at);
    if (end == std::string::npos) {
      header_scan_start_ = at;
      header_scanned_ = header_.size();
      return 0;
    }
    at = end + 1;
  }
  if ((flags & kFlagHeaderCrc) != 0) at += 2;
  return header_.size() < at ? 0 : at;
}

std::expected<void, Error> GzipDecoder::write(std::string_view compressed, const Output& out) {
  if (state_ == State::kFailed) return std::unexpected(Error{.message = "gzip: the stream failed earlier"});
  if (state_ == State::kHeader) {
    header_.append(compressed);
    auto size = header_size();
    if (!size) return fail(size.error().message);
    if (*size == 0) {
      if (header_.size() > kMaxHeader)
        return fail("header longer than " + std::to_string(kMaxHeader / 1024) +
                    " KiB (file name, comment or extra field)");
      return {};
    }
    // The rest of what was buffered is deflate data.
    const std::string rest = header_.substr(*size);
    header_.clear();
    state_ = State::kBody;
    return write(rest, out);
  }
  if (state_ == State::kBody) {
    if (!inflate_) {
      auto stream = std::unique_ptr<z_stream, InflateEnd>(new z_stream{});
      if (inflateInit2(stream.get(), -MAX_WBITS) != Z_OK) return fail("cannot set up zlib's inflater");
      inflate_ = std::move(stream);
    }
    z_stream& zs = *inflate_;
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data()));
    zs.avail_in = static_cast<uInt>(compressed.size());
    while (true) {
      zs.next_out = reinterpret_cast<Bytef*>(buffer_.data());
      zs.avail_out = static_cast<uInt>(buffer_.size());
      const int result = inflate(&zs, Z_SYNC_FLUSH);
      const std::size_t produced = buffer_.size() - zs.avail_out;
      if (produced > 0) {
        crc_ = crc32(crc_, reinterpret_cast<const Bytef*>(buffer_.data()), static_cast<uInt>(produced));
        size_ += static_cast<std::uint32_t>(produced);
        out(std::string_view(buffer_.data(), produced));
      }
      if (result == Z_STREAM_END) {
        state_ = State::kTrailer;
        const auto* next = reinterpret_cast<const char*>(zs.next_in);
        return write(std::string_view(next, zs.avail_in), out);
      }
      if (result == Z_BUF_ERROR && zs.avail_in == 0) return {};  // wants more input
      if (result != Z_OK) {
        return fail(std::string("corrupt deflate data: ") + (zs.msg != nullptr ? zs.msg : "zlib error"));
      }
      if (zs.avail_in == 0 && zs.avail_out != 0) return {};
    }
  }
  if (state_ == State::kTrailer) {
    const std::size_t take = std::min(compressed.size(), kTrailer - trailer_.size());
    trailer_.append(compressed.substr(0, take));
    compressed.remove_prefix(take);
    if (trailer_.size() < kTrailer) return {};
    if (little_endian32(trailer_) != crc_) return fail("CRC-32 mismatch");
    if (little_endian32(std::string_view(trailer_).substr(4)) != size_) return fail("size mismatch");
    state_ = State::kDone;
  }
  // The API server sends one member; anything after it is not JSON we asked for.
  if (state_ == State::kDone && !compressed.empty()) return fail("data after the end of the stream");
  return {};
}

std::expected<void, Error> GzipDecoder::finish() const {
  switch (state_) {
    case State::kDone:
      return {};
    case State::kFailed:
      return std::unexpected(Error{.message = "gzip: the stream failed"});
    default:
      return std::unexpected(Error{.message = "gzip: the stream ends early"});
  }
}

}  // namespace kipvs::k8s
