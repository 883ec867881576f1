// The gzip decoder: a member written by another implementation (Python's
// gzip module, with a file name in its header), fed whole and byte by byte;
// a large stream made with Beast's deflater in uneven pieces; and the ways a
// stream can be broken.

#include "k8s/gzip.h"

#include <catch2/catch.hpp>
#include <string>

#include "gzip_encode.h"

namespace {

using kipvs::k8s::GzipDecoder;

// Python: gzip.GzipFile(filename="list.json", mtime=0) over kPlain.
const std::string kFromPython(
    "\x1f\x8b\x08\x08\x00\x00\x00\x00\x02\xff\x6c\x69\x73\x74\x2e\x6a\x73\x6f\x6e\x00\x3d\xd0\x3b\x0e\xc2\x40"
    "\x10"
    "\x04\xd1\xbb\x4c\xec\x80\x99\xe6\xe7\x3d\x03\x19\x21\x22\x82\x0d\x56\x08\x07\xd8\x22\xb1\xf6\xee\x48\x68"
    "\xca"
    "\x51\x65\x4f\xad\x5e\xed\xd5\xa6\xa7\x15\xbb\xd6\xcf\xb7\x3d\xea\xa5\xcd\x8b\x0d\xd6\x96\xfa\x9e\xad\xdc"
    "\x56"
    "\x9b\xac\xec\xfa\xf0\xaf\x67\x23\xab\xec\x3e\x7b\xc8\x1e\xb3\xa7\xec\x39\x3b\xe2\x6c\x20\xa2\x43\x3a\xa6"
    "\x83"
    "\x3a\xaa\xc3\x3a\xae\x03\x3b\x72\x20\xc7\xb6\x15\x39\x90\x03\x39\x90\x03\x39\x90\x03\x39\x90\x85\x2c\x64"
    "\x6d"
    "\x37\x20\x0b\x59\xc8\x42\x16\xb2\x90\x35\xf6\x7b\xff\x01\xf8\xbd\xaa\x3d\x7e\x01\x00\x00",
    157);

std::string plain_list() {
  std::string text = R"({"kind":"ServiceList","items":[)";
  for (int i = 0; i < 40; ++i) text += (i ? "," : "") + std::string(R"({"n":)") + std::to_string(i) + "}";
  return text + "]}";
}

struct Decoded {
  std::string text;
  std::string error;  // the first error, if any
};

Decoded decode(const std::string& stream, std::size_t piece) {
  GzipDecoder decoder;
  Decoded result;
  for (std::size_t at = 0; at < stream.size() && result.error.empty(); at += piece) {
    auto fed = decoder.write(std::string_view(stream).substr(at, piece),
                             [&](std::string_view bytes) { result.text.append(bytes); });
    if (!fed) result.error = fed.error();
  }
  if (result.error.empty()) {
    if (auto done = decoder.finish(); !done) result.error = done.error();
  }
  return result;
}

}  // namespace

TEST_CASE("gzip: a member from another implementation decodes whole and byte by byte", "[gzip]") {
  for (const std::size_t piece : {kFromPython.size(), std::size_t{1}, std::size_t{7}}) {
    INFO("pieces of " << piece << " bytes");
    const auto decoded = decode(kFromPython, piece);
    CHECK(decoded.error.empty());
    CHECK(decoded.text == plain_list());
  }
}

TEST_CASE("gzip: a large list in uneven pieces", "[gzip]") {
  std::string plain;
  for (int i = 0; i < 20000; ++i) {
    plain += R"({"metadata":{"name":"s-)" + std::to_string(i) + R"("},"endpoints":[{"addresses":["10.128.)" +
             std::to_string(i / 256) + "." + std::to_string(i % 256) + R"("]}]},)";
  }
  const auto stream = kipvs::test::gzip_encode(plain);
  CHECK(stream.size() < plain.size() / 5);
  for (const std::size_t piece : {std::size_t{4093}, std::size_t{65536}, stream.size()}) {
    INFO("pieces of " << piece << " bytes");
    const auto decoded = decode(stream, piece);
    CHECK(decoded.error.empty());
    CHECK(decoded.text == plain);
  }
}

TEST_CASE("gzip: broken streams are refused with what is wrong", "[gzip]") {
  const std::string good = kFromPython;
  SECTION("not gzip at all") {
    CHECK_THAT(decode(R"({"kind":"List"})", 64).error, Catch::Contains("not a gzip stream"));
  }
  SECTION("a corrupted checksum") {
    auto bad = good;
    bad[bad.size() - 8] ^= 0x01;
    CHECK_THAT(decode(bad, 64).error, Catch::Contains("CRC-32 mismatch"));
  }
  SECTION("a wrong size") {
    auto bad = good;
    bad[bad.size() - 4] ^= 0x01;
    CHECK_THAT(decode(bad, 64).error, Catch::Contains("size mismatch"));
  }
  SECTION("cut short, in the data or in the trailer") {
    CHECK_THAT(decode(good.substr(0, 60), 64).error, Catch::Contains("ends early"));
    CHECK_THAT(decode(good.substr(0, good.size() - 3), 64).error, Catch::Contains("ends early"));
    CHECK_THAT(decode(good.substr(0, 12), 64).error, Catch::Contains("ends early"));
  }
  SECTION("corrupt deflate data") {
    auto bad = good;
    for (std::size_t i = 24; i < 40; ++i) bad[i] = static_cast<char>(0xff);
    CHECK_FALSE(decode(bad, 64).error.empty());
  }
  SECTION("bytes after the member") {
    CHECK_THAT(decode(good + "x", 64).error, Catch::Contains("data after the end"));
  }
}
