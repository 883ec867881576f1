#pragma once
// The Kubernetes API as an object source: three reflectors (Services,
// EndpointSlices, this node's Node) on one HTTP client, feeding one
// ObjectSink, with kube-proxy's selectors:
//   Services        labelSelector=!service.kubernetes.io/service-proxy-name
//                   (or =<proxy name> when one is configured),
//                   fieldSelector=spec.clusterIP!=None (filtered here instead
//                   where the server refuses it)
//   EndpointSlices  labelSelector=!service.kubernetes.io/headless
//   Node            fieldSelector=metadata.name=<node name>
// Runs on the io_context thread.

#include <chrono>
#include <memory>
#include <string>

#include "k8s/reflector.h"

namespace kipvs::k8s {

struct ApiSourceOptions {
  std::string node_name;   // "" = do not watch the Node
  std::string proxy_name;  // --service-proxy-name, "" = the default proxy
  // How long a Service moved to another proxy by its service-proxy-name
  // label keeps its rules here: the other proxy's first sync of it (the
  // EndpointSlice controller copies the label to its slices first).
  std::chrono::milliseconds service_handoff{std::chrono::seconds(15)};
  ReflectorOptions tuning;  // backoff, timeouts, logger, random source
};

[[nodiscard]] ReflectorOptions service_reflector_options(const ApiSourceOptions& options);
[[nodiscard]] ReflectorOptions endpoint_slice_reflector_options(const ApiSourceOptions& options);
[[nodiscard]] ReflectorOptions node_reflector_options(const ApiSourceOptions& options);

class ApiSource {
 public:
  ApiSource(boost::asio::io_context& io, HttpClient& client, ObjectSink& sink,
            const ApiSourceOptions& options);

  void start();
  void stop();

  [[nodiscard]] const Reflector<Service>& services() const { return services_; }
  [[nodiscard]] const Reflector<EndpointSlice>& endpoint_slices() const { return endpoint_slices_; }
  [[nodiscard]] const Reflector<Node>* node() const { return node_.get(); }

 private:
  Reflector<Service> services_;
  Reflector<EndpointSlice> endpoint_slices_;
  std::unique_ptr<Reflector<Node>> node_;
};

}  // namespace kipvs::k8s
