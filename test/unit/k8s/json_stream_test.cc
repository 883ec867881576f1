#include "k8s/json_stream.h"

#include "k8s/parse_memory.h"

#include <string>
#include <string_view>
#include <vector>

#include <boost/json.hpp>
#include <catch2/catch.hpp>

namespace kipvs::k8s {
namespace {

// Three watch frames with the hard parts: escaped quotes and backslashes,
// braces and newlines (escaped) inside strings, unicode escapes, nesting,
// and whitespace of every kind between values.
constexpr std::string_view kStream =
    R"({"type":"ADDED","object":{"metadata":{"name":"a\"}{b","annotations":{"x":"{\"nested\":[1,2]}\\"}}}})"
    "\n"
    R"({"type":"MODIFIED","object":{"metadata":{"name":"caf\u00e9","resourceVersion":"12"},"spec":{"ports":[{"port":80},{"port":443}]}}})"
    "\r\n \t\n"
    R"({"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"13"}},"x":"line\nbreak ]}"})"
    "\n";

std::vector<std::string> expected_types() {
  return {"ADDED", "MODIFIED", "BOOKMARK"};
}

// Drains every complete value; fails the test on an error.
void drain(JsonStream& stream, std::vector<boost::json::value>& out) {
  for (;;) {
    auto next = stream.next();
    REQUIRE(next.has_value());
    if (!*next) return;
    out.push_back(std::move(**next));
  }
}

std::vector<std::string> types_of(const std::vector<boost::json::value>& values) {
  std::vector<std::string> types;
  for (const auto& v : values) types.emplace_back(v.at("type").as_string());
  return types;
}

TEST_CASE("json_stream: whole stream in one piece yields each value exactly") {
  JsonStream stream;
  stream.feed(kStream);
  std::vector<boost::json::value> values;
  drain(stream, values);
  REQUIRE(types_of(values) == expected_types());
  CHECK(values[0].at("object").at("metadata").at("name").as_string() == "a\"}{b");
  CHECK(values[0].at("object").at("metadata").at("annotations").at("x").as_string() ==
        "{\"nested\":[1,2]}\\");
  CHECK(values[1].at("object").at("metadata").at("name").as_string() == "caf\xc3\xa9");
  CHECK(values[2].at("x").as_string() == "line\nbreak ]}");
  CHECK(stream.buffered() == 0);
  auto end = stream.finish();
  REQUIRE(end.has_value());
  CHECK_FALSE(end->has_value());
}

TEST_CASE("json_stream: a split at any byte gives the same values") {
  const std::size_t split = GENERATE(range(std::size_t{0}, kStream.size() + 1));
  JsonStream stream;
  std::vector<boost::json::value> values;
  stream.feed(kStream.substr(0, split));
  drain(stream, values);
  stream.feed(kStream.substr(split));
  drain(stream, values);
  CHECK(types_of(values) == expected_types());
  CHECK(stream.buffered() == 0);
}

TEST_CASE("json_stream: two splits anywhere give the same values") {
  // Every pair of split points (about 40,000 small parses).
  std::size_t mismatches = 0;
  for (std::size_t i = 0; i <= kStream.size(); i += 1) {
    for (std::size_t j = i; j <= kStream.size(); j += 1) {
      JsonStream stream;
      std::vector<boost::json::value> values;
      stream.feed(kStream.substr(0, i));
      drain(stream, values);
      stream.feed(kStream.substr(i, j - i));
      drain(stream, values);
      stream.feed(kStream.substr(j));
      drain(stream, values);
      if (types_of(values) != expected_types()) ++mismatches;
    }
  }
  CHECK(mismatches == 0);
}

TEST_CASE("json_stream: byte by byte, each value appears when its last byte arrives") {
  JsonStream stream;
  std::vector<boost::json::value> values;
  std::vector<std::size_t> completed_at;
  for (std::size_t i = 0; i < kStream.size(); ++i) {
    stream.feed(kStream.substr(i, 1));
    const auto before = values.size();
    drain(stream, values);
    if (values.size() != before) completed_at.push_back(i);
  }
  REQUIRE(types_of(values) == expected_types());
  // An object is complete at its closing brace, not at the newline after it.
  for (std::size_t at : completed_at) CHECK(kStream[at] == '}');
}

TEST_CASE("json_stream: a malformed value is reported once and the next frame decodes") {
  struct Case {
    const char* name;
    std::string bad;
  };
  const auto c = GENERATE(values<Case>({
      {"bad literal", R"({"type":"ADDED","object":{"a":tru}})"},
      {"unbalanced", R"({"type":"ADDED","object":{"a":1})"},
      {"garbage line", "hello world"},
      {"stray close", "}"},
      {"bad escape", R"({"type":"\q"})"},
      {"raw control character", "{\"type\":\"a\x01\"}"},
      {"missing colon", R"({"type" "ADDED"})"},
      {"two values glued by a comma", R"({"a":1},{"b":2})"},
  }));
  const bool byte_by_byte = GENERATE(false, true);
  CAPTURE(c.name, byte_by_byte);

  const std::string input = c.bad + "\n" + R"({"type":"MODIFIED","object":{}})" + "\n";
  JsonStream stream;
  std::vector<std::string> types;
  int errors = 0;
  auto pump = [&] {
    for (;;) {
      auto next = stream.next();
      if (!next) {
        ++errors;
        CHECK_FALSE(next.error().message.empty());
        continue;
      }
      if (!*next) return;
      if ((*next)->is_object() && (*next)->as_object().contains("type")) {
        types.emplace_back((*next)->at("type").as_string());
      }
    }
  };
  if (byte_by_byte) {
    for (char ch : input) {
      stream.feed(std::string_view(&ch, 1));
      pump();
    }
  } else {
    stream.feed(input);
    pump();
  }
  CHECK(errors == 1);
  REQUIRE_FALSE(types.empty());
  CHECK(types.back() == "MODIFIED");
  CHECK(stream.buffered() == 0);
}

TEST_CASE("json_stream: the error carries an excerpt of the bad value") {
  JsonStream stream;
  stream.feed("  {\"kind\":oops}\n{}\n");
  auto bad = stream.next();
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().excerpt.starts_with("{\"kind\":oops}"));
  auto good = stream.next();
  REQUIRE(good.has_value());
  REQUIRE(good->has_value());
  CHECK((*good)->is_object());
}

TEST_CASE("json_stream: a value over the size limit is dropped, the stream goes on") {
  JsonStream stream(64);
  const std::string big = "{\"pad\":\"" + std::string(200, 'x') + "\"}";
  stream.feed(big.substr(0, 100));
  auto first = stream.next();
  REQUIRE_FALSE(first.has_value());
  CHECK(first.error().message.find("longer than 64") != std::string::npos);
  stream.feed(big.substr(100) + "\n{\"ok\":true}\n");
  std::vector<boost::json::value> values;
  drain(stream, values);
  REQUIRE(values.size() == 1);
  CHECK(values[0].at("ok").as_bool());
}

TEST_CASE("json_stream: finish reports a value cut short and resets") {
  JsonStream stream;
  stream.feed(R"({"type":"ADDED","object":{"metadata":{"na)");
  auto none = stream.next();
  REQUIRE(none.has_value());
  CHECK_FALSE(none->has_value());
  auto end = stream.finish();
  REQUIRE_FALSE(end.has_value());
  CHECK(end.error().message.find("stream ended inside a value") != std::string::npos);
  CHECK(stream.buffered() == 0);
  // After the reset the splitter starts clean.
  stream.feed("{\"a\":1}");
  auto after = stream.next();
  REQUIRE(after.has_value());
  REQUIRE(after->has_value());
  CHECK((*after)->at("a").as_int64() == 1);
}

TEST_CASE("json_stream: a bare number needs a delimiter or finish") {
  JsonStream stream;
  stream.feed("12");
  auto pending = stream.next();
  REQUIRE(pending.has_value());
  CHECK_FALSE(pending->has_value());
  stream.feed("3");
  auto end = stream.finish();
  REQUIRE(end.has_value());
  REQUIRE(end->has_value());
  CHECK((*end)->as_int64() == 123);
}

TEST_CASE("json_stream: deep nesting within the limit parses") {
  const std::size_t depth = GENERATE(std::size_t{1}, std::size_t{40}, JsonStream::kMaxDepth);
  std::string value;
  for (std::size_t i = 0; i < depth; ++i) value += "[";
  for (std::size_t i = 0; i < depth; ++i) value += "]";
  JsonStream stream;
  stream.feed(value + "\n");
  auto next = stream.next();
  REQUIRE(next.has_value());
  CHECK(next->has_value());
}

TEST_CASE("json_stream: nesting past the limit is an error, not a crash") {
  JsonStream stream;
  stream.feed(std::string(100000, '[') + "\n{}\n");
  auto bad = stream.next();
  REQUIRE_FALSE(bad.has_value());
  auto good = stream.next();
  REQUIRE(good.has_value());
  CHECK(good->has_value());
}

// What a full EndpointSlice looks like: 1,000 endpoints (the API's maximum),
// each with its conditions, topology and target reference.
std::string big_endpoint_slice() {
  std::string text =
      R"({"type":"MODIFIED","object":{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1",)"
      R"("metadata":{"name":"web-abcde","namespace":"default","resourceVersion":"123456",)"
      R"("labels":{"kubernetes.io/service-name":"web"}},"addressType":"IPv4","ports":[{"name":"http",)"
      R"("port":8080,"protocol":"TCP"}],"endpoints":[)";
  for (int i = 0; i < 1000; ++i) {
    if (i) text += ",";
    text += R"({"addresses":["10.244.)" + std::to_string(i / 250) + "." + std::to_string(i % 250) +
            R"("],"conditions":{"ready":true,"serving":true,"terminating":false},"nodeName":"node-)" +
            std::to_string(i % 7) +
            R"(","zone":"zone-a","targetRef":{"kind":"Pod","namespace":"default",)"
            R"("name":"web-7d4b9c6f5-)" +
            std::to_string(100000 + i) + R"(","uid":"4f1c2d3e-0000-4000-8000-)" +
            std::to_string(100000000000 + i) + R"("}})";
  }
  return text + "]}}\n";
}

TEST_CASE("json_stream: a real object parses within six times its text") {
  const std::string slice = big_endpoint_slice();
  JsonStream stream(JsonStream::kDefaultMaxValueBytes, 6 * slice.size());
  stream.feed(slice);
  auto next = stream.next();
  REQUIRE(next.has_value());
  REQUIRE(next->has_value());
  CHECK((*next)->at("object").at("endpoints").as_array().size() == 1000);
}

TEST_CASE("json_stream: a frame that parses into more than its memory cap is dropped, the stream goes on") {
  // 15 MiB of text, under the byte cap, that Boost.JSON would turn into
  // 120 MiB of values plus as much stack: refused at the 64 MiB default.
  std::string bomb = R"({"type":"ADDED","object":{"a":[)";
  const std::size_t zeros = (15u << 20) / 2;
  bomb.reserve(bomb.size() + 2 * zeros + 8);
  for (std::size_t i = 0; i < zeros; ++i) bomb += "0,";
  bomb += "0]}}\n";
  REQUIRE(bomb.size() < JsonStream::kDefaultMaxValueBytes);
  JsonStream stream;
  stream.feed(bomb);
  auto bad = stream.next();
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().message == "value needs more than 64 MiB to parse");
  CHECK(bad.error().excerpt.starts_with(R"({"type":"ADDED")"));
  stream.feed(R"({"type":"DELETED","object":{}})"
              "\n");
  std::vector<boost::json::value> values;
  drain(stream, values);
  CHECK(types_of(values) == std::vector<std::string>{"DELETED"});
}

TEST_CASE("json_stream: the memory cap holds when the stream ends inside the frame too") {
  std::string bomb = "[";
  for (int i = 0; i < 100000; ++i) bomb += "[],";
  JsonStream stream(JsonStream::kDefaultMaxValueBytes, 256 * 1024);
  stream.feed(bomb + "[]]");
  auto end = stream.finish();
  REQUIRE_FALSE(end.has_value());
  CHECK(end.error().message == "value needs more than 256 KiB to parse");
  stream.feed("{\"a\":1}\n");
  auto after = stream.next();
  REQUIRE(after.has_value());
  REQUIRE(after->has_value());
}

TEST_CASE("capped resource: refuses past its cap, counts what is given back") {
  CappedResource memory(1000);
  void* a = memory.allocate(600, 8);
  CHECK(memory.live() == 600);
  CHECK_THROWS_AS(memory.allocate(401, 8), ParseMemoryExceeded);
  CHECK(memory.live() == 600);
  void* b = memory.allocate(400, 8);
  CHECK(memory.live() == 1000);
  memory.deallocate(a, 600, 8);
  memory.deallocate(b, 400, 8);
  CHECK(memory.live() == 0);
  CHECK(memory.peak() == 1000);
}

TEST_CASE("capped resource: a value's arena goes back to the cap when the value is dropped") {
  CappedResource capped(1u << 20);
  auto* memory = &capped;
  {
    boost::json::value value(parse_arena(boost::json::storage_ptr(memory)));
    auto& array = value.emplace_array();
    for (int i = 0; i < 1000; ++i) array.emplace_back("a string longer than the small buffer");
    CHECK(memory->live() > 1000 * 16);
  }
  CHECK(memory->live() == 0);
}

}  // namespace
}  // namespace kipvs::k8s
