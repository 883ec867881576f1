#include "k8s/decode.h"

#include <limits>
#include <utility>

#include <boost/json.hpp>

#include "k8s/decode_context.h"

namespace kipvs::k8s {
namespace {

namespace json = boost::json;

using detail::Context;
using detail::kLastAppliedAnnotation;
using detail::kMaxPort;
using detail::object_name;
using detail::Path;

std::string_view type_name(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null:
      return "null";
    case json::kind::bool_:
      return "a boolean";
    case json::kind::int64:
    case json::kind::uint64:
      return "an integer";
    case json::kind::double_:
      return "a number";
    case json::kind::string:
      return "a string";
    case json::kind::array:
      return "an array";
    case json::kind::object:
      return "an object";
  }
  return "?";
}

// A short rendering of a scalar for messages; structures by their type only.
std::string show(const json::value& v) {
  if (v.is_object() || v.is_array()) return std::string(type_name(v));
  std::string text = json::serialize(v);
  constexpr std::size_t kMax = 40;
  if (text.size() > kMax) text = text.substr(0, kMax) + "...";
  return text;
}

// A JSON object being read, with its path. Absent members and JSON null are
// the same thing ("unset"), as for the API server's Go decoder.
class Obj {
 public:
  Obj(Context& ctx, const json::object* object, const Path& path) : ctx_(ctx), object_(object), path_(path) {}

  [[nodiscard]] bool present() const { return object_ != nullptr; }
  [[nodiscard]] Context& ctx() const { return ctx_; }

  [[nodiscard]] const json::value* get(std::string_view key) const {
    if (object_ == nullptr) return nullptr;
    const json::value* v = object_->if_contains(key);
    return v == nullptr || v->is_null() ? nullptr : v;
  }

  // A child object; an absent one reads as empty.
  template <typename F>
  void object(std::string_view key, F&& fn) const {
    Path at{&path_, key};
    const json::value* v = get(key);
    if (v != nullptr && !v->is_object()) {
      ctx_.fail(at, kReasonBadType, "expected an object, got " + std::string(type_name(*v)));
      v = nullptr;
    }
    fn(Obj(ctx_, v != nullptr ? &v->get_object() : nullptr, at));
  }

  // Calls fn(element, path) for each element of an array member.
  template <typename F>
  void each(std::string_view key, F&& fn) const {
    Path at{&path_, key};
    const json::value* v = get(key);
    if (v == nullptr) return;
    if (!v->is_array()) {
      ctx_.fail(at, kReasonBadType, "expected an array, got " + std::string(type_name(*v)));
      return;
    }
    const json::array& items = v->get_array();
    for (std::size_t i = 0; i < items.size() && !ctx_.failed(); ++i) {
      Path item{&at, {}, i};
      fn(items[i], item);
    }
  }

  // The length of an array member (0 when absent or not an array), to
  // reserve for: 100,000 endpoints in vectors grown by doubling waste a third.
  [[nodiscard]] std::size_t count(std::string_view key) const {
    const json::value* v = get(key);
    return v != nullptr && v->is_array() ? v->get_array().size() : 0;
  }

  // Like each(), for arrays of objects.
  template <typename F>
  void each_object(std::string_view key, F&& fn) const {
    each(key, [&](const json::value& item, const Path& at) {
      if (!item.is_object()) {
        ctx_.fail(at, kReasonBadType, "expected an object, got " + std::string(type_name(item)));
        return;
      }
      fn(Obj(ctx_, &item.get_object(), at));
    });
  }

  [[nodiscard]] std::optional<std::string> opt_string(std::string_view key) const {
    const json::value* v = get(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_string()) {
      fail_type(key, "a string", *v);
      return std::nullopt;
    }
    return std::string(v->get_string());
  }

  [[nodiscard]] std::string string(std::string_view key, std::string_view fallback = {}) const {
    return opt_string(key).value_or(std::string(fallback));
  }

  [[nodiscard]] std::optional<bool> opt_bool(std::string_view key) const {
    const json::value* v = get(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_bool()) {
      fail_type(key, "a boolean", *v);
      return std::nullopt;
    }
    return v->get_bool();
  }

  // An integer in [lo, hi]. A value of another JSON type, a fraction or one
  // out of range fails with `reason`: the API server's int32 fields never
  // carry such values, so one from a manifest is a mistake to report.
  [[nodiscard]] std::optional<std::int64_t> opt_int(std::string_view key, std::int64_t lo, std::int64_t hi,
                                                    std::string_view reason) const {
    const json::value* v = get(key);
    if (v == nullptr) return std::nullopt;
    std::optional<std::int64_t> n;
    if (v->is_int64()) {
      n = v->get_int64();
    } else if (v->is_uint64() &&
               v->get_uint64() <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      n = static_cast<std::int64_t>(v->get_uint64());
    }
    if (!n || *n < lo || *n > hi) {
      Path at{&path_, key};
      ctx_.fail(
          at, reason,
          "expected an integer in " + std::to_string(lo) + ".." + std::to_string(hi) + ", got " + show(*v));
      return std::nullopt;
    }
    return n;
  }

  [[nodiscard]] std::vector<std::string> strings(std::string_view key) const {
    std::vector<std::string> out;
    out.reserve(count(key));
    each(key, [&](const json::value& item, const Path& at) {
      if (!item.is_string()) {
        ctx_.fail(at, kReasonBadType, "expected a string, got " + show(item));
        return;
      }
      out.emplace_back(item.get_string());
    });
    return out;
  }

  [[nodiscard]] std::map<std::string, std::string> string_map(std::string_view key) const {
    std::map<std::string, std::string> out;
    object(key, [&](const Obj& map) {
      if (!map.present()) return;
      for (const auto& member : *map.object_) {
        if (!member.value().is_string()) {
          // labels/annotations are map[string]string: `version: 1` unquoted in
          // YAML is refused by kubectl too.
          Path at{&map.path_, member.key()};
          ctx_.fail(at, kReasonBadType, "expected a string, got " + show(member.value()));
          return;
        }
        out.emplace(member.key(), member.value().get_string());
      }
    });
    return out;
  }

  void fail(std::string_view key, std::string_view reason, std::string_view what) const {
    Path at{&path_, key};
    ctx_.fail(at, reason, what);
  }

 private:
  void fail_type(std::string_view key, std::string_view want, const json::value& got) const {
    fail(key, kReasonBadType, "expected " + std::string(want) + ", got " + show(got));
  }

  Context& ctx_;
  const json::object* object_;
  const Path& path_;
};

ObjectMeta decode_meta(const Obj& root) {
  ObjectMeta meta;
  root.object("metadata", [&](const Obj& m) {
    meta.name = m.string("name");
    meta.namespace_ = m.string("namespace");
    if (meta.name.empty() && !root.ctx().failed())
      m.fail("name", kReasonMissingName, "an object needs a name");
    meta.uid = m.string("uid");
    meta.resource_version = m.string("resourceVersion");
    meta.labels = m.string_map("labels");
    meta.annotations = m.string_map("annotations");
    meta.annotations.erase(std::string(kLastAppliedAnnotation));
    // Only its presence matters; the timestamp itself is not read.
    meta.being_deleted = m.get("deletionTimestamp") != nullptr;
  });
  return meta;
}

std::optional<Protocol> protocol(const Obj& o) {
  std::optional<std::string> p = o.opt_string("protocol");
  if (!p) return std::nullopt;
  auto known = from_word<Protocol>(*p);
  if (!known) o.fail("protocol", kReasonBadProtocol, "expected TCP, UDP or SCTP, got \"" + *p + "\"");
  return known;
}

// An unset word is the API's default for the field.
template <typename E>
Word<E> word(const Obj& o, std::string_view key, E unset) {
  auto text = o.opt_string(key);
  if (!text || text->empty()) return unset;
  return Word<E>::parse(*text);
}

// kind/apiVersion are optional (list items carry neither) but must match
// when present.
void check_kind(const Obj& root, std::string_view kind, std::string_view api_version) {
  if (auto k = root.opt_string("kind"); k && *k != kind) {
    root.fail("kind", kReasonWrongKind, "expected " + std::string(kind) + ", got \"" + *k + "\"");
  }
  if (auto v = root.opt_string("apiVersion"); v && *v != api_version) {
    root.fail("apiVersion", kReasonWrongKind,
              "expected " + std::string(api_version) + " for " + std::string(kind) + ", got \"" + *v + "\"");
  }
}

template <typename T>
std::expected<T, DecodeError> not_an_object(const json::value& json) {
  return std::unexpected(DecodeError{"?", std::string(kReasonBadType),
                                     "expected a JSON object, got " + std::string(type_name(json))});
}

// A JSON object read into a T by `body`; the first failure on the way is
// the error, which names the object when T has metadata.
template <typename T, typename Body>
std::expected<T, DecodeError> decode_root(const json::value& json, Body body) {
  if (!json.is_object()) return not_an_object<T>(json);
  Context ctx;
  Path root_path;
  Obj root(ctx, &json.get_object(), root_path);
  T value;
  body(root, value);
  if (!ctx.failed()) return value;
  if constexpr (requires { value.meta; }) {
    return std::unexpected(ctx.error(object_name(value.meta)));
  } else {
    return std::unexpected(ctx.error("?"));
  }
}

void decode_service_spec(const Obj& spec, Service& s) {
  s.type = word(spec, "type", ServiceType::kClusterIP);
  s.cluster_ip = spec.string("clusterIP");
  s.cluster_ips = spec.strings("clusterIPs");
  s.ip_families = spec.strings("ipFamilies");
  s.ports.reserve(spec.count("ports"));
  spec.each_object("ports", [&](const Obj& p) {
    ServicePort port;
    port.name = p.string("name");
    port.protocol = protocol(p).value_or(Protocol::kTcp);
    if (auto n = p.opt_int("port", 1, kMaxPort, kReasonBadPort)) {
      port.port = static_cast<std::int32_t>(*n);
    } else if (p.get("port") == nullptr) {
      p.fail("port", kReasonBadPort, "a service port needs a port number");
    }
    port.node_port =
        static_cast<std::int32_t>(p.opt_int("nodePort", 0, kMaxPort, kReasonBadPort).value_or(0));
    s.ports.push_back(std::move(port));
  });
  s.external_ips = spec.strings("externalIPs");
  s.load_balancer_source_ranges = spec.strings("loadBalancerSourceRanges");
  s.session_affinity = word(spec, "sessionAffinity", SessionAffinity::kNone);
  spec.object("sessionAffinityConfig", [&](const Obj& config) {
    config.object("clientIP", [&](const Obj& client_ip) {
      // The API allows 1..86400; 0 or less would make IPVS persistence
      // meaningless, more is rejected by validation.
      if (auto t = client_ip.opt_int("timeoutSeconds", 1, detail::kMaxAffinityTimeout, kReasonBadTimeout)) {
        s.affinity_timeout_seconds = static_cast<std::int32_t>(*t);
      }
    });
  });
  s.external_traffic_policy = word(spec, "externalTrafficPolicy", TrafficPolicy::kCluster);
  s.internal_traffic_policy = word(spec, "internalTrafficPolicy", TrafficPolicy::kCluster);
  s.health_check_node_port =
      static_cast<std::int32_t>(spec.opt_int("healthCheckNodePort", 0, kMaxPort, kReasonBadPort).value_or(0));
  s.traffic_distribution = spec.opt_string("trafficDistribution");
  s.external_name = spec.string("externalName");
}

void decode_service_status(const Obj& status, Service& s) {
  status.object("loadBalancer", [&](const Obj& lb) {
    lb.each_object("ingress", [&](const Obj& i) {
      LoadBalancerIngress ingress;
      ingress.ip = i.string("ip");
      ingress.hostname = i.string("hostname");
      ingress.ip_mode = word(i, "ipMode", IngressIpMode::kVip);
      s.load_balancer_ingress.push_back(std::move(ingress));
    });
  });
}

std::vector<std::string> hint_names(const Obj& hints, std::string_view key) {
  std::vector<std::string> names;
  hints.each_object(key, [&](const Obj& h) { names.push_back(h.string("name")); });
  return names;
}

Endpoint decode_endpoint(const Obj& e) {
  Endpoint endpoint;
  endpoint.addresses = e.strings("addresses");
  e.object("conditions", [&](const Obj& c) {
    endpoint.conditions.ready = c.opt_bool("ready");
    endpoint.conditions.serving = c.opt_bool("serving");
    endpoint.conditions.terminating = c.opt_bool("terminating");
  });
  endpoint.node_name = e.opt_string("nodeName");
  endpoint.zone = e.opt_string("zone");
  e.object("hints", [&](const Obj& h) {
    if (!h.present()) return;
    endpoint.hints = EndpointHints{hint_names(h, "forZones"), hint_names(h, "forNodes")};
  });
  return endpoint;
}

}  // namespace

std::string to_string(const DecodeError& error) {
  return error.object + ": " + error.message + " (" + error.reason + ")";
}

ResourceKind kind_of(const AnyObject& object) {
  struct {
    ResourceKind operator()(const Service&) const { return ResourceKind::kService; }
    ResourceKind operator()(const EndpointSlice&) const { return ResourceKind::kEndpointSlice; }
    ResourceKind operator()(const Node&) const { return ResourceKind::kNode; }
  } visitor;
  return std::visit(visitor, object);
}

ObjectKey key_of(const AnyObject& object) {
  return std::visit([](const auto& o) { return ObjectKey{o.meta.namespace_, o.meta.name}; }, object);
}

std::string_view kind_name(ResourceKind kind) {
  switch (kind) {
    case ResourceKind::kService:
      return "Service";
    case ResourceKind::kEndpointSlice:
      return "EndpointSlice";
    case ResourceKind::kNode:
      return "Node";
  }
  return "?";
}

namespace {

template <typename T>
constexpr std::string_view kKind = "";
template <>
constexpr std::string_view kKind<Service> = "Service";
template <>
constexpr std::string_view kKind<EndpointSlice> = "EndpointSlice";
template <>
constexpr std::string_view kKind<Node> = "Node";

// One object of kind T: its metadata, its kind and apiVersion checked, and
// the rest read by `body`; the first failure on the way is the error.
template <typename T, typename Body>
std::expected<T, DecodeError> decode_object(const json::value& json, std::string_view api_version,
                                            Body body) {
  return decode_root<T>(json, [&](const Obj& root, T& object) {
    object.meta = decode_meta(root);
    check_kind(root, kKind<T>, api_version);
    body(root, object);
  });
}

}  // namespace

std::expected<Service, DecodeError> decode_service(const json::value& json) {
  return decode_object<Service>(json, "v1", [](const Obj& root, Service& s) {
    root.object("spec", [&](const Obj& spec) { decode_service_spec(spec, s); });
    root.object("status", [&](const Obj& status) { decode_service_status(status, s); });
  });
}

std::expected<EndpointSlice, DecodeError> decode_endpoint_slice(const json::value& json) {
  return decode_object<EndpointSlice>(json, "discovery.k8s.io/v1", [](const Obj& root, EndpointSlice& slice) {
    slice.address_type = Word<AddressType>::parse(root.string("addressType"));
    slice.endpoints.reserve(root.count("endpoints"));
    slice.ports.reserve(root.count("ports"));
    root.each_object("endpoints", [&](const Obj& e) { slice.endpoints.push_back(decode_endpoint(e)); });
    root.each_object("ports", [&](const Obj& p) {
      EndpointPort port;
      port.name = p.opt_string("name");
      port.protocol = protocol(p);
      // Port 0 is tolerated: kube-proxy skips such a port rather than the
      // whole slice, and so does the desired-state layer.
      if (auto n = p.opt_int("port", 0, kMaxPort, kReasonBadPort)) port.port = static_cast<std::int32_t>(*n);
      slice.ports.push_back(std::move(port));
    });
  });
}

std::expected<Node, DecodeError> decode_node(const json::value& json) {
  return decode_object<Node>(json, "v1", [](const Obj& root, Node& node) {
    root.object("spec", [&](const Obj& spec) {
      spec.each_object("taints", [&](const Obj& t) {
        node.taints.push_back(Taint{t.string("key"), t.string("value"), t.string("effect")});
      });
    });
    root.object("status", [&](const Obj& status) {
      status.each_object("addresses", [&](const Obj& a) {
        node.addresses.push_back(
            NodeAddress{Word<NodeAddressType>::parse(a.string("type")), a.string("address")});
      });
    });
  });
}

std::expected<AnyObject, DecodeError> decode_object(const json::value& json) {
  if (!json.is_object()) return not_an_object<AnyObject>(json);
  const json::value* kind = json.get_object().if_contains("kind");
  const std::string_view name =
      kind != nullptr && kind->is_string() ? std::string_view(kind->get_string()) : "";
  auto widen = [](auto decoded) -> std::expected<AnyObject, DecodeError> {
    if (!decoded) return std::unexpected(std::move(decoded.error()));
    return AnyObject(std::move(*decoded));
  };
  if (name == "Service") return widen(decode_service(json));
  if (name == "EndpointSlice") return widen(decode_endpoint_slice(json));
  if (name == "Node") return widen(decode_node(json));

  // Name the object if it has a readable name, to help find it.
  std::string object = "?";
  if (const json::value* meta = json.get_object().if_contains("metadata");
      meta != nullptr && meta->is_object()) {
    const json::value* n = meta->get_object().if_contains("name");
    const json::value* ns = meta->get_object().if_contains("namespace");
    if (n != nullptr && n->is_string() && !n->get_string().empty()) {
      object = std::string(n->get_string());
      if (ns != nullptr && ns->is_string() && !ns->get_string().empty()) {
        object = std::string(ns->get_string()) + "/" + object;
      }
    }
  }
  std::string message = kind == nullptr || kind->is_null() ? std::string("kind: missing")
                        : name.empty()                     ? "kind: expected a string, got " + show(*kind)
                                       : "kind: " + std::string(name) + " is not read by kipvs";
  return std::unexpected(DecodeError{std::move(object), std::string(kReasonUnknownKind), std::move(message)});
}

std::expected<Status, DecodeError> decode_status(const json::value& json) {
  return decode_root<Status>(json, [](const Obj& root, Status& status) {
    status.status = root.string("status");
    status.code =
        static_cast<std::int32_t>(root.opt_int("code", std::numeric_limits<std::int32_t>::min(),
                                               std::numeric_limits<std::int32_t>::max(), kReasonBadType)
                                      .value_or(0));
    status.reason = root.string("reason");
    status.message = root.string("message");
  });
}

std::expected<ListMeta, DecodeError> decode_list_meta(const json::value& json) {
  return decode_root<ListMeta>(json, [](const Obj& root, ListMeta& list) {
    root.object("metadata", [&](const Obj& m) {
      list.resource_version = m.string("resourceVersion");
      list.continue_token = m.string("continue");
      list.remaining_item_count =
          m.opt_int("remainingItemCount", 0, std::numeric_limits<std::int64_t>::max(), kReasonBadType);
    });
  });
}

std::optional<std::string> resource_version_of(const json::value& json) {
  const json::object* object = json.if_object();
  if (object == nullptr) return std::nullopt;
  const json::value* meta = object->if_contains("metadata");
  if (meta == nullptr || !meta->is_object()) return std::nullopt;
  const json::value* rv = meta->get_object().if_contains("resourceVersion");
  if (rv == nullptr || !rv->is_string()) return std::nullopt;
  return std::string(rv->get_string());
}

}  // namespace kipvs::k8s
