#include "k8s/api_source.h"

namespace kipvs::k8s {

ReflectorOptions service_reflector_options(const ApiSourceOptions& options) {
  ReflectorOptions out = options.tuning;
  out.label_selector = options.proxy_name.empty()
                           ? "!service.kubernetes.io/service-proxy-name"
                           : "service.kubernetes.io/service-proxy-name=" + options.proxy_name;
  out.field_selector = "spec.clusterIP!=None";
  // A DELETED Service whose service-proxy-name label no longer matches was
  // moved to another proxy, not deleted.
  out.moved_away = [proxy_name = options.proxy_name](const boost::json::value& object) {
    const auto* obj = object.if_object();
    const auto* meta = obj ? obj->if_contains("metadata") : nullptr;
    const auto* labels = meta && meta->is_object() ? meta->as_object().if_contains("labels") : nullptr;
    const auto* label = labels && labels->is_object()
                            ? labels->as_object().if_contains("service.kubernetes.io/service-proxy-name")
                            : nullptr;
    if (proxy_name.empty()) return label != nullptr;
    return !(label && label->is_string() && label->as_string() == proxy_name);
  };
  out.handoff_delay = options.service_handoff;
  out.client_filter = [](const boost::json::value& object) {
    // What spec.clusterIP!=None keeps, for servers that refuse the selector.
    const auto* obj = object.if_object();
    const auto* spec = obj ? obj->if_contains("spec") : nullptr;
    const auto* ip = spec && spec->is_object() ? spec->as_object().if_contains("clusterIP") : nullptr;
    return !(ip && ip->is_string() && ip->as_string() == "None");
  };
  return out;
}

ReflectorOptions endpoint_slice_reflector_options(const ApiSourceOptions& options) {
  ReflectorOptions out = options.tuning;
  out.label_selector = "!service.kubernetes.io/headless";
  return out;
}

ReflectorOptions node_reflector_options(const ApiSourceOptions& options) {
  ReflectorOptions out = options.tuning;
  out.field_selector = "metadata.name=" + options.node_name;
  return out;
}

ApiSource::ApiSource(boost::asio::io_context& io, HttpClient& client, ObjectSink& sink,
                     const ApiSourceOptions& options)
    : services_(io, client, sink, service_reflector_options(options)),
      endpoint_slices_(io, client, sink, endpoint_slice_reflector_options(options)) {
  if (!options.node_name.empty()) {
    node_ = std::make_unique<Reflector<Node>>(io, client, sink, node_reflector_options(options));
  }
}

void ApiSource::start() {
  services_.start();
  endpoint_slices_.start();
  if (node_) node_->start();
}

void ApiSource::stop() {
  services_.stop();
  endpoint_slices_.stop();
  if (node_) node_->stop();
}

}  // namespace kipvs::k8s
