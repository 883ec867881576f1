#include "k8s/protobuf.h"

#include <cstddef>
#include <cstdint>
#include <limits>
#include <utility>

#include "k8s/decode_context.h"

namespace kipvs::k8s {
namespace {

using detail::Context;
using detail::Path;

constexpr std::string_view kMagic{"k8s\0", 4};
constexpr std::uint64_t kMaxFieldNumber = (std::uint64_t{1} << 29) - 1;

// The wire types the API's messages use; groups (3, 4) never appear.
enum WireType : std::uint8_t { kVarint = 0, kFixed64 = 1, kLen = 2, kFixed32 = 5 };

struct Field {
  std::uint32_t number = 0;
  std::uint8_t wire = kVarint;
  std::uint64_t varint = 0;  // kVarint
  std::string_view bytes;    // kLen
};

// A message's fields in order. A truncated varint or length, a field number
// 0 or a group ends it with malformed() set.
class Reader {
 public:
  explicit Reader(std::string_view message) : at_(message.data()), end_(message.data() + message.size()) {}

  bool next(Field& field) {
    if (at_ == end_ || malformed_) return false;
    std::uint64_t tag = 0;
    if (!read_varint(tag) || (tag >> 3) == 0 || (tag >> 3) > kMaxFieldNumber) return fail();
    field.number = static_cast<std::uint32_t>(tag >> 3);
    field.wire = static_cast<std::uint8_t>(tag & 7);
    switch (field.wire) {
      case kVarint:
        return read_varint(field.varint) || fail();
      case kFixed64:
        return skip(8) || fail();
      case kFixed32:
        return skip(4) || fail();
      case kLen: {
        std::uint64_t length = 0;
        if (!read_varint(length) || length > static_cast<std::uint64_t>(end_ - at_)) return fail();
        field.bytes = std::string_view(at_, static_cast<std::size_t>(length));
        at_ += length;
        return true;
      }
      default:
        return fail();
    }
  }
  [[nodiscard]] bool malformed() const { return malformed_; }

 private:
  bool read_varint(std::uint64_t& value) {
    value = 0;
    for (unsigned shift = 0; shift < 64 && at_ != end_; shift += 7) {
      const auto byte = static_cast<std::uint8_t>(*at_++);
      value |= static_cast<std::uint64_t>(byte & 0x7fu) << shift;
      if ((byte & 0x80u) == 0) return true;
    }
    return false;
  }
  bool skip(std::size_t count) {
    if (static_cast<std::size_t>(end_ - at_) < count) return false;
    at_ += count;
    return true;
  }
  bool fail() {
    malformed_ = true;
    return false;
  }

  const char* at_;
  const char* end_;
  bool malformed_ = false;
};

std::size_t count_fields(std::string_view message, std::uint32_t number) {
  Reader reader(message);
  Field field;
  std::size_t count = 0;
  while (reader.next(field)) count += field.number == number ? 1 : 0;
  return count;
}

std::string_view wire_name(std::uint8_t wire) {
  switch (wire) {
    case kVarint:
      return "an integer";
    case kLen:
      return "a string or message";
    default:
      return "a fixed-size number";
  }
}

// A message being read, with its path, like decode.cc's Obj: the typed
// reads fail with the field's path when the wire type is not the one the
// field has, and return a default after any failure.
class Msg {
 public:
  Msg(Context& ctx, std::string_view bytes, const Path& path) : ctx_(ctx), bytes_(bytes), path_(path) {}

  [[nodiscard]] Context& ctx() const { return ctx_; }
  [[nodiscard]] const Path& path() const { return path_; }
  [[nodiscard]] std::string_view bytes() const { return bytes_; }

  template <typename F>
  void fields(F&& fn) const {
    Reader reader(bytes_);
    Field field;
    while (!ctx_.failed() && reader.next(field)) fn(field);
    if (reader.malformed()) ctx_.fail(path_, kReasonBadType, "malformed protobuf encoding");
  }

  [[nodiscard]] std::string string(const Field& f, std::string_view key) const {
    if (!want(f, kLen, key, "a string")) return {};
    return std::string(f.bytes);
  }

  [[nodiscard]] std::optional<bool> boolean(const Field& f, std::string_view key) const {
    if (!want(f, kVarint, key, "a boolean")) return std::nullopt;
    return f.varint != 0;
  }

  // An integer in [lo, hi] (int32 and int64 fields: negative values come
  // sign-extended to 64 bits).
  [[nodiscard]] std::optional<std::int64_t> integer(const Field& f, std::string_view key, std::int64_t lo,
                                                    std::int64_t hi, std::string_view reason) const {
    if (!want(f, kVarint, key, "an integer")) return std::nullopt;
    const auto n = static_cast<std::int64_t>(f.varint);
    if (n < lo || n > hi) {
      fail(key, reason,
           "expected an integer in " + std::to_string(lo) + ".." + std::to_string(hi) + ", got " +
               std::to_string(n));
      return std::nullopt;
    }
    return n;
  }

  // A child message.
  template <typename F>
  void message(const Field& f, std::string_view key, F&& fn) const {
    if (!want(f, kLen, key, "a message")) return;
    Path at{&path_, key};
    fn(Msg(ctx_, f.bytes, at));
  }

  // One element of a repeated message field; `index` counts the field's
  // elements so far.
  template <typename F>
  void element(const Field& f, std::string_view key, std::size_t index, F&& fn) const {
    Path at{&path_, key};
    Path item{&at, {}, index};
    if (f.wire != kLen) {
      ctx_.fail(item, kReasonBadType, "expected a message, got " + std::string(wire_name(f.wire)));
      return;
    }
    fn(Msg(ctx_, f.bytes, item));
  }

  void fail(std::string_view key, std::string_view reason, std::string_view what) const {
    Path at{&path_, key};
    ctx_.fail(at, reason, what);
  }

 private:
  bool want(const Field& f, std::uint8_t wire, std::string_view key, std::string_view what) const {
    if (f.wire == wire) return true;
    fail(key, kReasonBadType, "expected " + std::string(what) + ", got " + std::string(wire_name(f.wire)));
    return false;
  }

  Context& ctx_;
  std::string_view bytes_;
  const Path& path_;
};

// A map<string, string> entry: key = 1, value = 2.
void read_map_entry(const Msg& entry, std::map<std::string, std::string>& out, bool drop_last_applied) {
  std::string key;
  std::string value;
  entry.fields([&](const Field& f) {
    if (f.number == 1) key = entry.string(f, "key");
    if (f.number == 2) value = entry.string(f, "value");
  });
  if (drop_last_applied && key == detail::kLastAppliedAnnotation) return;
  out.insert_or_assign(std::move(key), std::move(value));
}

// metav1.ObjectMeta.
void decode_meta(const Msg& m, ObjectMeta& meta) {
  m.fields([&](const Field& f) {
    switch (f.number) {
      case 1:
        meta.name = m.string(f, "name");
        break;
      case 3:
        meta.namespace_ = m.string(f, "namespace");
        break;
      case 5:
        meta.uid = m.string(f, "uid");
        break;
      case 6:
        meta.resource_version = m.string(f, "resourceVersion");
        break;
      case 9:  // deletionTimestamp: only its presence matters
        meta.being_deleted = true;
        break;
      case 11:
        m.message(f, "labels", [&](const Msg& entry) { read_map_entry(entry, meta.labels, false); });
        break;
      case 12:
        m.message(f, "annotations", [&](const Msg& entry) { read_map_entry(entry, meta.annotations, true); });
        break;
      default:
        break;
    }
  });
}

// An object: metadata (field 1, named as the JSON decoder names it) and the
// rest read by `body`, which sees every other field.
template <typename T, typename Body>
std::expected<T, DecodeError> decode_root(std::string_view message, Body body) {
  Context ctx;
  const Path root_path;
  const Msg root(ctx, message, root_path);
  T object;
  root.fields([&](const Field& f) {
    if (f.number == 1) {
      root.message(f, "metadata", [&](const Msg& m) { decode_meta(m, object.meta); });
    } else {
      body(root, f, object);
    }
  });
  if (object.meta.name.empty() && !ctx.failed()) {
    const Path meta_path{&root_path, "metadata"};
    ctx.fail(Path{&meta_path, "name"}, kReasonMissingName, "an object needs a name");
  }
  if (!ctx.failed()) return object;
  return std::unexpected(ctx.error(detail::object_name(object.meta)));
}

// A word field: empty (Go's zero value, written like any other) is unset.
template <typename E>
Word<E> word(const Msg& m, const Field& f, std::string_view key, E unset) {
  std::string text = m.string(f, key);
  if (text.empty()) return unset;
  return Word<E>::parse(text);
}

std::optional<Protocol> protocol(const Msg& m, const Field& f) {
  std::string text = m.string(f, "protocol");
  auto known = from_word<Protocol>(text);
  if (!known && !m.ctx().failed()) {
    m.fail("protocol", kReasonBadProtocol, "expected TCP, UDP or SCTP, got \"" + text + "\"");
  }
  return known;
}

ServicePort decode_service_port(const Msg& p) {
  ServicePort port;
  bool has_port = false;
  p.fields([&](const Field& f) {
    switch (f.number) {
      case 1:
        port.name = p.string(f, "name");
        break;
      case 2:
        // ServicePort.protocol is not a pointer in Go: "" is unset (TCP).
        if (f.wire == kLen && f.bytes.empty()) {
          port.protocol = Protocol::kTcp;
        } else {
          port.protocol = protocol(p, f).value_or(Protocol::kTcp);
        }
        break;
      case 3:
        has_port = true;
        port.port =
            static_cast<std::int32_t>(p.integer(f, "port", 1, detail::kMaxPort, kReasonBadPort).value_or(0));
        break;
      case 5:
        port.node_port = static_cast<std::int32_t>(
            p.integer(f, "nodePort", 0, detail::kMaxPort, kReasonBadPort).value_or(0));
        break;
      default:
        break;
    }
  });
  if (!has_port && !p.ctx().failed()) p.fail("port", kReasonBadPort, "a service port needs a port number");
  return port;
}

void decode_service_spec(const Msg& spec, Service& s) {
  s.ports.reserve(count_fields(spec.bytes(), 1));
  spec.fields([&](const Field& f) {
    switch (f.number) {
      case 1:
        spec.element(f, "ports", s.ports.size(),
                     [&](const Msg& p) { s.ports.push_back(decode_service_port(p)); });
        break;
      case 3:
        s.cluster_ip = spec.string(f, "clusterIP");
        break;
      case 4:
        s.type = word(spec, f, "type", ServiceType::kClusterIP);
        break;
      case 5:
        s.external_ips.push_back(spec.string(f, "externalIPs"));
        break;
      case 7:
        s.session_affinity = word(spec, f, "sessionAffinity", SessionAffinity::kNone);
        break;
      case 9:
        s.load_balancer_source_ranges.push_back(spec.string(f, "loadBalancerSourceRanges"));
        break;
      case 10:
        s.external_name = spec.string(f, "externalName");
        break;
      case 11:
        s.external_traffic_policy = word(spec, f, "externalTrafficPolicy", TrafficPolicy::kCluster);
        break;
      case 12:
        s.health_check_node_port = static_cast<std::int32_t>(
            spec.integer(f, "healthCheckNodePort", 0, detail::kMaxPort, kReasonBadPort).value_or(0));
        break;
      case 14:
        spec.message(f, "sessionAffinityConfig", [&](const Msg& config) {
          config.fields([&](const Field& c) {
            if (c.number != 1) return;
            config.message(c, "clientIP", [&](const Msg& client_ip) {
              client_ip.fields([&](const Field& t) {
                if (t.number != 1) return;
                if (auto seconds = client_ip.integer(t, "timeoutSeconds", 1, detail::kMaxAffinityTimeout,
                                                     kReasonBadTimeout)) {
                  s.affinity_timeout_seconds = static_cast<std::int32_t>(*seconds);
                }
              });
            });
          });
        });
        break;
      case 18:
        s.cluster_ips.push_back(spec.string(f, "clusterIPs"));
        break;
      case 19:
        s.ip_families.push_back(spec.string(f, "ipFamilies"));
        break;
      case 22:
        s.internal_traffic_policy = word(spec, f, "internalTrafficPolicy", TrafficPolicy::kCluster);
        break;
      case 23:
        s.traffic_distribution = spec.string(f, "trafficDistribution");
        break;
      default:
        break;
    }
  });
}

void decode_service_status(const Msg& status, Service& s) {
  status.fields([&](const Field& f) {
    if (f.number != 1) return;
    status.message(f, "loadBalancer", [&](const Msg& lb) {
      lb.fields([&](const Field& g) {
        if (g.number != 1) return;
        lb.element(g, "ingress", s.load_balancer_ingress.size(), [&](const Msg& i) {
          LoadBalancerIngress ingress;
          i.fields([&](const Field& h) {
            if (h.number == 1) ingress.ip = i.string(h, "ip");
            if (h.number == 2) ingress.hostname = i.string(h, "hostname");
            if (h.number == 3) ingress.ip_mode = word(i, h, "ipMode", IngressIpMode::kVip);
          });
          s.load_balancer_ingress.push_back(std::move(ingress));
        });
      });
    });
  });
}

// EndpointHints.forZones / forNodes: messages with a name (field 1).
void read_hint(const Msg& hints, const Field& f, std::string_view key, std::vector<std::string>& names) {
  hints.element(f, key, names.size(), [&](const Msg& h) {
    std::string name;
    h.fields([&](const Field& n) {
      if (n.number == 1) name = h.string(n, "name");
    });
    names.push_back(std::move(name));
  });
}

Endpoint decode_endpoint(const Msg& e) {
  Endpoint endpoint;
  e.fields([&](const Field& f) {
    switch (f.number) {
      case 1:
        endpoint.addresses.push_back(e.string(f, "addresses"));
        break;
      case 2:
        e.message(f, "conditions", [&](const Msg& c) {
          c.fields([&](const Field& b) {
            if (b.number == 1) endpoint.conditions.ready = c.boolean(b, "ready");
            if (b.number == 2) endpoint.conditions.serving = c.boolean(b, "serving");
            if (b.number == 3) endpoint.conditions.terminating = c.boolean(b, "terminating");
          });
        });
        break;
      case 6:
        endpoint.node_name = e.string(f, "nodeName");
        break;
      case 7:
        endpoint.zone = e.string(f, "zone");
        break;
      case 8:
        e.message(f, "hints", [&](const Msg& h) {
          EndpointHints& hints = endpoint.hints ? *endpoint.hints : endpoint.hints.emplace();
          h.fields([&](const Field& g) {
            if (g.number == 1) read_hint(h, g, "forZones", hints.for_zones);
            if (g.number == 2) read_hint(h, g, "forNodes", hints.for_nodes);
          });
        });
        break;
      default:
        break;
    }
  });
  return endpoint;
}

EndpointPort decode_endpoint_port(const Msg& p) {
  EndpointPort port;
  p.fields([&](const Field& f) {
    switch (f.number) {
      case 1:
        port.name = p.string(f, "name");
        break;
      case 2:
        port.protocol = protocol(p, f);
        break;
      case 3:
        // Port 0 is tolerated, as in the JSON decoder.
        if (auto n = p.integer(f, "port", 0, detail::kMaxPort, kReasonBadPort)) {
          port.port = static_cast<std::int32_t>(*n);
        }
        break;
      default:
        break;
    }
  });
  return port;
}

// The envelope: magic, then runtime.Unknown{typeMeta = 1 {kind = 2}, raw = 2,
// contentEncoding = 3}. Returns the raw message.
std::expected<std::string_view, std::string> unwrap(std::string_view body, std::string_view kind) {
  if (!body.starts_with(kMagic)) return std::unexpected("the body does not start with the protobuf magic");
  Reader reader(body.substr(kMagic.size()));
  Field field;
  std::string_view got_kind;
  std::string_view raw;
  std::string_view encoding;
  while (reader.next(field)) {
    if (field.wire != kLen) continue;
    if (field.number == 1) {
      Reader type_meta(field.bytes);
      Field meta_field;
      while (type_meta.next(meta_field)) {
        if (meta_field.number == 2 && meta_field.wire == kLen) got_kind = meta_field.bytes;
      }
      if (type_meta.malformed()) return std::unexpected("malformed protobuf envelope");
    }
    if (field.number == 2) raw = field.bytes;
    if (field.number == 3) encoding = field.bytes;
  }
  if (reader.malformed()) return std::unexpected("malformed protobuf envelope");
  if (got_kind != kind) {
    return std::unexpected("expected a " + std::string(kind) + ", got \"" + std::string(got_kind) + "\"");
  }
  if (!encoding.empty()) return std::unexpected("unknown content encoding \"" + std::string(encoding) + "\"");
  return raw;
}

}  // namespace

bool is_protobuf(std::string_view content_type) {
  const std::size_t end = content_type.find(';');
  std::string_view media = content_type.substr(0, end);
  while (!media.empty() && media.back() == ' ') media.remove_suffix(1);
  return media == kProtobufContentType;
}

std::expected<ProtobufListPage, std::string> read_protobuf_list(std::string_view body,
                                                                std::string_view list_kind) {
  auto raw = unwrap(body, list_kind);
  if (!raw) return std::unexpected(raw.error());
  ProtobufListPage page;
  page.items.reserve(count_fields(*raw, 2));
  Reader reader(*raw);
  Field field;
  while (reader.next(field)) {
    if (field.number == 2) {
      if (field.wire != kLen) return std::unexpected("items: expected messages");
      page.items.push_back(field.bytes);
      continue;
    }
    if (field.number != 1) continue;
    if (field.wire != kLen) return std::unexpected("metadata: expected a message");
    Reader meta(field.bytes);
    Field m;
    while (meta.next(m)) {
      const bool text = m.wire == kLen;
      if (m.number == 2 && text) page.meta.resource_version = m.bytes;
      if (m.number == 3 && text) page.meta.continue_token = m.bytes;
      if (m.number == 4 && m.wire == kVarint) {
        const auto count = static_cast<std::int64_t>(m.varint);
        if (count < 0) return std::unexpected("metadata.remainingItemCount: negative");
        page.meta.remaining_item_count = count;
      }
    }
    if (meta.malformed()) return std::unexpected("metadata: malformed protobuf encoding");
  }
  if (reader.malformed()) return std::unexpected("malformed protobuf encoding");
  return page;
}

std::expected<Service, DecodeError> decode_service_protobuf(std::string_view message) {
  return decode_root<Service>(message, [](const Msg& root, const Field& f, Service& s) {
    if (f.number == 2) root.message(f, "spec", [&](const Msg& spec) { decode_service_spec(spec, s); });
    if (f.number == 3)
      root.message(f, "status", [&](const Msg& status) { decode_service_status(status, s); });
  });
}

std::expected<EndpointSlice, DecodeError> decode_endpoint_slice_protobuf(std::string_view message) {
  return decode_root<EndpointSlice>(message, [](const Msg& root, const Field& f, EndpointSlice& slice) {
    switch (f.number) {
      case 2:
        if (slice.endpoints.empty()) slice.endpoints.reserve(count_fields(root.bytes(), 2));
        root.element(f, "endpoints", slice.endpoints.size(),
                     [&](const Msg& e) { slice.endpoints.push_back(decode_endpoint(e)); });
        break;
      case 3:
        root.element(f, "ports", slice.ports.size(),
                     [&](const Msg& p) { slice.ports.push_back(decode_endpoint_port(p)); });
        break;
      case 4:
        slice.address_type = Word<AddressType>::parse(root.string(f, "addressType"));
        break;
      default:
        break;
    }
  });
}

std::optional<Status> decode_status_protobuf(std::string_view body) {
  auto raw = unwrap(body, "Status");
  if (!raw) return std::nullopt;
  Status status;
  Reader reader(*raw);
  Field f;
  while (reader.next(f)) {
    const bool text = f.wire == kLen;
    if (f.number == 2 && text) status.status = f.bytes;
    if (f.number == 3 && text) status.message = f.bytes;
    if (f.number == 4 && text) status.reason = f.bytes;
    if (f.number == 6 && f.wire == kVarint) status.code = static_cast<std::int32_t>(f.varint);
  }
  if (reader.malformed()) return std::nullopt;
  return status;
}

}  // namespace kipvs::k8s
