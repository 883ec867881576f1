#pragma once
// Decoding of Kubernetes API JSON (Boost.JSON values) into the plain object
// types of k8s/objects.h. Used by the API watch (list items, watch event
// objects) and by the static manifest source (after YAML -> JSON).
//
// Lenient where the API is lenient: missing optional fields take their API
// defaults, JSON null counts as absent, unknown fields are ignored, and list
// items without kind/apiVersion decode. Strict where a wrong value would
// mislead the proxy: a port outside its range or of the wrong JSON type, an
// unknown protocol, a session-affinity timeout outside 1..86400, a string
// where an object or array is required (and the reverse). Such an object is
// refused as a whole with a DecodeError naming the object and the field path.
// IP addresses and enum-like strings other than the protocol (type, policies,
// sessionAffinity, addressType) are recorded as given; the desired-state
// layer judges them (and counts what it skips).

#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include <boost/json/fwd.hpp>

#include "k8s/objects.h"
#include "k8s/sink.h"

namespace kipvs::k8s {

// Why an object was refused. `object` is "namespace/name" ("name" for a
// cluster-scoped object, "?" before the name is known); `reason` is a short,
// bounded label fit for a metric (see the kReason* constants); `message` says
// what was wrong at which field path, for a log line.
struct DecodeError {
  std::string object;
  std::string reason;
  std::string message;
  friend bool operator==(const DecodeError&, const DecodeError&) = default;
};

// The reasons decode functions return (the bounded set of metric labels).
inline constexpr std::string_view kReasonBadType = "bad_type";  // wrong JSON type or structure
inline constexpr std::string_view kReasonBadPort =
    "bad_port";  // port/nodePort out of range or not an integer
inline constexpr std::string_view kReasonBadProtocol = "bad_protocol";  // not TCP, UDP or SCTP
inline constexpr std::string_view kReasonBadTimeout = "bad_timeout";    // timeoutSeconds outside 1..86400
inline constexpr std::string_view kReasonMissingName = "missing_name";  // metadata.name absent or empty
inline constexpr std::string_view kReasonWrongKind = "wrong_kind";  // kind/apiVersion not the one expected
inline constexpr std::string_view kReasonUnknownKind =
    "unknown_kind";  // decode_object: not a kind kipvs reads

// "Service default/web: spec.ports[0].port: ... (bad_port)", for logs.
[[nodiscard]] std::string to_string(const DecodeError& error);

// One object of any kind kipvs reads (what a manifest file may hold).
using AnyObject = std::variant<Service, EndpointSlice, Node>;

[[nodiscard]] ResourceKind kind_of(const AnyObject& object);
[[nodiscard]] ObjectKey key_of(const AnyObject& object);
[[nodiscard]] std::string_view kind_name(ResourceKind kind);  // "Service", "EndpointSlice", "Node"

// Typed decoders. `kind` and `apiVersion` may be absent (list items carry
// neither); when present they must match (v1 Service, discovery.k8s.io/v1
// EndpointSlice, v1 Node), else kReasonWrongKind.
[[nodiscard]] std::expected<Service, DecodeError> decode_service(const boost::json::value& json);
[[nodiscard]] std::expected<EndpointSlice, DecodeError> decode_endpoint_slice(const boost::json::value& json);
[[nodiscard]] std::expected<Node, DecodeError> decode_node(const boost::json::value& json);

// Picks the decoder by `kind` (required here) and checks `apiVersion` when
// present. Any other kind (including "List") is kReasonUnknownKind.
[[nodiscard]] std::expected<AnyObject, DecodeError> decode_object(const boost::json::value& json);

// metav1.Status, as carried by a watch ERROR event or an error response body
// (e.g. code 410, reason "Expired"). Every field is optional.
struct Status {
  std::string status;  // "Success" or "Failure"
  std::int32_t code = 0;
  std::string reason;
  std::string message;
  friend bool operator==(const Status&, const Status&) = default;
};
[[nodiscard]] std::expected<Status, DecodeError> decode_status(const boost::json::value& json);

// The envelope of a list response: metadata.resourceVersion and
// metadata.continue ("" when this is the last page).
struct ListMeta {
  std::string resource_version;
  std::string continue_token;
  std::optional<std::int64_t> remaining_item_count;
  friend bool operator==(const ListMeta&, const ListMeta&) = default;
};
[[nodiscard]] std::expected<ListMeta, DecodeError> decode_list_meta(const boost::json::value& json);

// metadata.resourceVersion of any object, leniently (a BOOKMARK event's
// object carries little else); nullopt when absent or not a string.
[[nodiscard]] std::optional<std::string> resource_version_of(const boost::json::value& json);

}  // namespace kipvs::k8s
