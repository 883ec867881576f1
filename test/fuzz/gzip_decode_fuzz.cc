// libFuzzer target for the gzip decoder (k8s/gzip.h). Beyond "does not
// crash": the decoded bytes and whether the stream is refused must not depend
// on how it was split, so the input is fed once whole and once in pieces
// whose sizes come from the input itself. The first two bytes are replaced
// by gzip's magic so that the header and the deflate data get explored.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "k8s/gzip.h"

namespace {

struct Decoded {
  std::string text;
  bool refused = false;
};

Decoded decode(std::string_view stream, std::string_view piece_sizes) {
  kipvs::k8s::GzipDecoder decoder;
  Decoded result;
  std::size_t next_size = 0;
  while (!stream.empty() && !result.refused) {
    std::size_t piece = stream.size();
    if (!piece_sizes.empty()) {
      piece = 1 + static_cast<unsigned char>(piece_sizes[next_size++ % piece_sizes.size()]) % 64;
      piece = std::min(piece, stream.size());
    }
    if (!decoder.write(stream.substr(0, piece), [&](std::string_view bytes) { result.text.append(bytes); }))
      result.refused = true;
    stream.remove_prefix(piece);
  }
  if (!result.refused && !decoder.finish()) result.refused = true;
  return result;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 3) return 0;
  // Byte 0: how many of the last bytes are piece sizes (not part of the stream).
  const std::size_t sizes = std::min<std::size_t>(data[0] % 16, size - 1);
  std::string stream(reinterpret_cast<const char*>(data) + 1, size - 1 - sizes);
  const std::string_view piece_sizes(reinterpret_cast<const char*>(data) + size - sizes, sizes);
  if (stream.size() >= 2) {
    stream[0] = '\x1f';
    stream[1] = static_cast<char>(0x8b);
  }
  const Decoded whole = decode(stream, {});
  const Decoded split = decode(stream, piece_sizes.empty() ? std::string_view("\x01", 1) : piece_sizes);
  if (whole.refused != split.refused) std::abort();
  // A refused stream may have produced a different prefix before the error
  // was noticed; an accepted one must decode to the same bytes.
  if (!whole.refused && whole.text != split.text) std::abort();
  return 0;
}
