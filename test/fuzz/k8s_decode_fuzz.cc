// libFuzzer target for the object decoders (k8s/decode.h) over arbitrary
// JSON text. Beyond "does not crash": a refusal must carry a reason from the
// bounded set (it becomes a metric label) and a message; a success through
// decode_object must agree with the typed decoder its kind names; and
// decoding must not depend on anything but the input (decoding twice gives
// the same answer).

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
// Boost.JSON compiled into this target, so the parser is instrumented too.
#include <boost/json/src.hpp>

#include "k8s/decode.h"

namespace {

using kipvs::k8s::DecodeError;

void check_error(const DecodeError& e) {
  using namespace kipvs::k8s;
  const bool known = e.reason == kReasonBadType || e.reason == kReasonBadPort ||
                     e.reason == kReasonBadProtocol || e.reason == kReasonBadTimeout ||
                     e.reason == kReasonMissingName || e.reason == kReasonWrongKind ||
                     e.reason == kReasonUnknownKind;
  if (!known || e.message.empty() || e.object.empty()) std::abort();
}

template <typename Decoded>
void check(const Decoded& once, const Decoded& twice) {
  if (once.has_value() != twice.has_value()) std::abort();
  if (once.has_value()) {
    if (!(*once == *twice)) std::abort();
  } else {
    check_error(once.error());
    if (!(once.error() == twice.error())) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace kipvs::k8s;
  boost::system::error_code ec;
  const boost::json::value json =
      boost::json::parse(std::string_view(reinterpret_cast<const char*>(data), size), ec);
  if (ec) return 0;

  auto object = decode_object(json);
  check(object, decode_object(json));
  if (object.has_value()) {
    // decode_object took the kind's own decoder: the typed one must agree.
    switch (kind_of(*object)) {
      case ResourceKind::kService: {
        auto s = decode_service(json);
        if (!s.has_value() || !(*s == std::get<Service>(*object))) std::abort();
        break;
      }
      case ResourceKind::kEndpointSlice: {
        auto s = decode_endpoint_slice(json);
        if (!s.has_value() || !(*s == std::get<EndpointSlice>(*object))) std::abort();
        break;
      }
      case ResourceKind::kNode: {
        auto n = decode_node(json);
        if (!n.has_value() || !(*n == std::get<Node>(*object))) std::abort();
        break;
      }
    }
    if (key_of(*object).name.empty()) std::abort();  // a decoded object always has a name
  }
  check(decode_service(json), decode_service(json));
  check(decode_endpoint_slice(json), decode_endpoint_slice(json));
  check(decode_node(json), decode_node(json));
  check(decode_status(json), decode_status(json));
  check(decode_list_meta(json), decode_list_meta(json));
  (void)resource_version_of(json);
  return 0;
}
