#pragma once
// The API server's protobuf encoding of Service and EndpointSlice lists, as
// client-go asks for them. A list page of 500 slices decodes in a fraction of
// the time the same page takes as JSON (no text to scan, no DOM to build),
// and the server encodes it faster too; at a cold start of thousands of
// Services both run while the first IPVS writes compete for the same CPU.
//
// The body is "k8s\0" followed by a runtime.Unknown whose raw bytes are the
// list message (field numbers from kubernetes/api's generated.proto). Items
// decode into the same objects, with the same checks and the same
// DecodeError reasons and field paths, as decode.h's JSON decoders. Unknown
// fields are skipped; a malformed encoding refuses the item (or, in the
// envelope, the page).

#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "k8s/decode.h"
#include "k8s/objects.h"

namespace kipvs::k8s {

inline constexpr std::string_view kProtobufContentType = "application/vnd.kubernetes.protobuf";

// True for "application/vnd.kubernetes.protobuf" with or without parameters.
[[nodiscard]] bool is_protobuf(std::string_view content_type);

// A list page with its items still encoded: views into the body, which must
// outlive them.
struct ProtobufListPage {
  ListMeta meta;
  std::vector<std::string_view> items;
};

// Reads the envelope and the list's metadata, and finds the items without
// decoding them. `list_kind` is the kind the envelope must name
// ("ServiceList"); an error says what was wrong, for a log line.
[[nodiscard]] std::expected<ProtobufListPage, std::string> read_protobuf_list(std::string_view body,
                                                                              std::string_view list_kind);

// One list item (a Service or EndpointSlice message, without envelope).
[[nodiscard]] std::expected<Service, DecodeError> decode_service_protobuf(std::string_view message);
[[nodiscard]] std::expected<EndpointSlice, DecodeError> decode_endpoint_slice_protobuf(
    std::string_view message);

// A Status in its envelope (an error answer to a protobuf request); nullopt
// when the body is not one.
[[nodiscard]] std::optional<Status> decode_status_protobuf(std::string_view body);

}  // namespace kipvs::k8s
