// libFuzzer target for the watch-stream splitter (k8s/json_stream.h).
// Beyond "does not crash": the values and errors must not depend on how the
// bytes were split, so the input is fed once whole and once in pieces whose
// sizes come from the input itself, and both results must be equal.
// Doubles are compared with a small relative tolerance: Boost.JSON 1.81
// rounds a number split across two buffers differently in the last digit
// (its slow path); Kubernetes objects carry no floating-point fields kipvs
// reads (quantities are strings).

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/value.hpp>
// Boost.JSON compiled into this target, so the parser is instrumented too.
#include <boost/json/src.hpp>

#include "k8s/json_stream.h"

namespace {

bool same(const boost::json::value& a, const boost::json::value& b) {
  if (a.is_double() && b.is_double()) {
    const double x = a.get_double(), y = b.get_double();
    if (std::isnan(x) || std::isnan(y)) return std::isnan(x) && std::isnan(y);  // "0e99999" is NaN in 1.81
    if (std::isinf(x) || std::isinf(y)) return x == y;
    return std::fabs(x - y) <= 1e-12 * std::fmax(std::fabs(x), std::fabs(y));
  }
  if (a.kind() != b.kind()) return false;
  if (a.is_array()) {
    const auto &p = a.get_array(), &q = b.get_array();
    if (p.size() != q.size()) return false;
    for (std::size_t i = 0; i < p.size(); ++i) {
      if (!same(p[i], q[i])) return false;
    }
    return true;
  }
  if (a.is_object()) {
    const auto &p = a.get_object(), &q = b.get_object();
    if (p.size() != q.size()) return false;
    for (auto i = p.begin(), j = q.begin(); i != p.end(); ++i, ++j) {
      if (i->key() != j->key() || !same(i->value(), j->value())) return false;
    }
    return true;
  }
  return a == b;
}

struct Outcome {
  std::vector<boost::json::value> values;
  std::size_t errors = 0;
  friend bool operator==(const Outcome& a, const Outcome& b) {
    if (a.errors != b.errors || a.values.size() != b.values.size()) return false;
    for (std::size_t i = 0; i < a.values.size(); ++i) {
      if (!same(a.values[i], b.values[i])) return false;
    }
    return true;
  }
};

void drain(kipvs::k8s::JsonStream& stream, Outcome& out) {
  for (;;) {
    auto next = stream.next();
    if (!next) {
      ++out.errors;
      continue;
    }
    if (!*next) return;
    out.values.push_back(std::move(**next));
  }
}

void finish(kipvs::k8s::JsonStream& stream, Outcome& out) {
  auto last = stream.finish();
  if (!last) {
    ++out.errors;
  } else if (*last) {
    out.values.push_back(std::move(**last));
  }
  if (stream.buffered() != 0) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  // The first byte seeds the piece sizes; the rest is the stream.
  std::uint32_t seed = data[0] | 1u;
  const std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);

  Outcome whole;
  {
    kipvs::k8s::JsonStream stream;
    stream.feed(input);
    drain(stream, whole);
    finish(stream, whole);
  }
  Outcome pieces;
  {
    kipvs::k8s::JsonStream stream;
    std::size_t at = 0;
    while (at < input.size()) {
      seed = seed * 1103515245u + 12345u;
      const std::size_t len = 1 + (seed >> 16) % 17;
      stream.feed(input.substr(at, len));
      at += len;
      drain(stream, pieces);
    }
    finish(stream, pieces);
  }
  if (!(whole == pieces)) std::abort();
  return 0;
}
