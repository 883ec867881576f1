#pragma once
// What the JSON and the protobuf decoders share: the field path of a failure
// and the first-failure collector, so an object refused in either encoding
// is refused for the same reason at the same path.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "k8s/decode.h"

namespace kipvs::k8s::detail {

// A field path built on the stack while descending ("spec.ports[2].port").
// Only rendered when something fails, so decoding a valid object costs no
// string building.
struct Path {
  const Path* parent = nullptr;
  std::string_view key;  // empty for an array index (or the root)
  std::size_t index = 0;

  [[nodiscard]] std::string render() const {
    std::string prefix = parent != nullptr ? parent->render() : std::string();
    if (parent == nullptr) return prefix;
    if (key.empty()) return prefix + "[" + std::to_string(index) + "]";
    return prefix.empty() ? std::string(key) : prefix + "." + std::string(key);
  }
};

// Collects the first failure; accessors return defaults after a failure so
// the decoders read straight through without checking after every field.
class Context {
 public:
  void fail(const Path& at, std::string_view reason, std::string_view what) {
    if (failure_) return;
    std::string where = at.render();
    failure_ =
        Failure{std::string(reason), where.empty() ? std::string(what) : where + ": " + std::string(what)};
  }
  [[nodiscard]] bool failed() const { return failure_.has_value(); }
  [[nodiscard]] DecodeError error(std::string object) const {
    return DecodeError{std::move(object), failure_->reason, failure_->message};
  }

 private:
  struct Failure {
    std::string reason;
    std::string message;
  };
  std::optional<Failure> failure_;
};

inline constexpr std::int64_t kMaxPort = 65535;
inline constexpr std::int64_t kMaxAffinityTimeout = 86400;
// kubectl apply's copy of the whole object: kilobytes per object, never read,
// and kept for every Service and slice it would be most of the cache.
inline constexpr std::string_view kLastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration";

// "namespace/name" for messages; "?" before the name is known.
inline std::string object_name(const ObjectMeta& meta) {
  if (meta.name.empty()) return "?";
  return meta.namespace_.empty() ? meta.name : meta.namespace_ + "/" + meta.name;
}

}  // namespace kipvs::k8s::detail
