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
    if (!fed) result.error = fed.error().text();
  }
  if (result.error.empty()) {
    if (auto done = decoder.finish(); !done) result.error = done.error().text();
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

TEST_CASE("gzip: how the stream is split changes nothing (the fuzz target's findings)", "[gzip]") {
  // gzip.compress(b'{"kind":"ServiceList","items":[]}' * 20, mtime=0): the
  // inflater once kept trailer bytes when fed 5 at a time.
  const std::string repeated(
      "\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\x03\xab\x56\xca\xce\xcc\x4b\x51\xb2\x52\x0a\x4e\x2d\x2a\xcb"
      "\x4c\x4e\xf5\xc9\x2c\x2e\x51\xd2\x51\xca\x2c\x49\xcd\x2d\x56\xb2\x8a\x8e\xad\xad\x1e\x55\x30\xaa"
      "\x80\xbe\x0a\x00\x73\x19\xa5\xd2\x94\x02\x00\x00",
      60);
  // Every optional header field (extra, name, comment, header CRC) ahead of
  // Python's deflate data and trailer: the resumed scan for a name's end
  // once skipped a field, or looked inside the extra field.
  std::string all_fields("\x1f\x8b\x08\x1e\x00\x00\x00\x00\x02\xff\x03\x00x\0y", 15);
  all_fields += std::string("name\0comment\0", 13) + "hc" + kFromPython.substr(20);
  for (const auto& stream : {repeated, all_fields}) {
    const auto whole = decode(stream, stream.size());
    REQUIRE(whole.error.empty());
    CHECK(whole.text.size() > 300);
    for (std::size_t piece = 1; piece <= 16; ++piece) {
      INFO("pieces of " << piece);
      const auto split = decode(stream, piece);
      CHECK(split.error == whole.error);
      CHECK(split.text == whole.text);
    }
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
  SECTION("a file name without end is refused at 64 KiB, fed a byte at a time") {
    std::string endless("\x1f\x8b\x08\x08\x00\x00\x00\x00\x02\xff", 10);
    endless += std::string(1024 * 1024, 'n');
    const auto decoded = decode(endless, 1);
    CHECK_THAT(decoded.error, Catch::Contains("header longer than 64 KiB"));
  }
  SECTION("a long comment within the bound decodes") {
    std::string header("\x1f\x8b\x08\x10\x00\x00\x00\x00\x02\xff", 10);
    header += std::string(60 * 1024, 'c') + '\0';
    // Python's member without its name: the same deflate data and trailer.
    const std::string body = good.substr(10 + std::string("list.json").size() + 1);
    const auto decoded = decode(header + body, 7);
    CHECK(decoded.error.empty());
    CHECK(decoded.text == decode(good, 64).text);
  }
  SECTION("bytes after the member") {
    CHECK_THAT(decode(good + "x", 64).error, Catch::Contains("data after the end"));
  }
}
