// The API client against a real kube-apiserver (scripts/apiserver start):
// TLS, service-account tokens, RBAC, objects made with the real kubectl.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>

#include "k8s/api_source.h"
#include "k8s/http_client.h"
#include "k8s/kubeconfig.h"
#include "k8s/reflector.h"

namespace kipvs::k8s {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr int kSkip = 77;

// The control plane the ctest fixture started; skips (exit 77) outside CI
// when there is none.
struct ControlPlane {
  fs::path dir;
  std::map<std::string, std::string> env;

  static ControlPlane& get() {
    static ControlPlane plane = [] {
      ControlPlane p;
      const char* dir = std::getenv("KIPVS_APISERVER_DIR");
      p.dir = dir ? dir : "";
      std::ifstream in(p.dir / "env");
      if (!dir || !in) {
        const char* ci = std::getenv("CI");
        std::cout << "SKIP: no kube-apiserver: run scripts/apiserver build (needs Go >= 1.25 and npm), "
                     "then ctest -L apiserver\n";
        if (ci && std::string(ci) == "true") std::exit(1);
        std::exit(kSkip);
      }
      std::string line;
      while (std::getline(in, line)) {
        const auto eq = line.find('=');
        if (eq == std::string::npos) continue;
        std::string value = line.substr(eq + 1);
        if (value.size() >= 2 && value.front() == '"') value = value.substr(1, value.size() - 2);
        p.env[line.substr(0, eq)] = value;
      }
      return p;
    }();
    return plane;
  }

  // Runs a command; returns its stdout, fails the test on a non-zero exit.
  static std::string run(const std::string& command, bool must_succeed = true) {
    std::string out;
    FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
    REQUIRE(pipe != nullptr);
    char buffer[4096];
    while (std::size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) out.append(buffer, n);
    const int status = ::pclose(pipe);
    if (must_succeed) {
      INFO(command << "\n" << out);
      REQUIRE(WEXITSTATUS(status) == 0);
    }
    return out;
  }

  std::string kubectl(const std::string& args, bool must_succeed = true) const {
    return run(env.at("KUBECTL") + " --kubeconfig " + (dir / "admin.kubeconfig").string() + " " + args,
               must_succeed);
  }

  std::string apply(const std::string& yaml) const {
    const fs::path file = dir / ("apply-" + std::to_string(::getpid()) + ".yaml");
    std::ofstream(file) << yaml;
    return kubectl("apply -f " + file.string());
  }

  std::string script(const std::string& args) const {
    return run(std::string(KIPVS_APISERVER_SCRIPT) + " " + args);
  }
};

std::string unique_namespace(const std::string& stem) {
  static int counter = 0;
  std::string ns = stem + "-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
  ControlPlane::get().kubectl("create namespace " + ns);
  return ns;
}

// Records what reaches the sink, in order: "ns/name" or "ns/name deleted".
class RecordingSink final : public ObjectSink {
 public:
  void service_changed(const ObjectKey& key, const Service* now) override { record(key, now != nullptr); }
  void endpoint_slice_changed(const ObjectKey& key, const EndpointSlice* now) override {
    record(key, now != nullptr);
  }
  void node_changed(const Node* now) override {
    events.push_back(now ? "node " + now->meta.name : "node deleted");
  }
  void synced(ResourceKind kind) override { synced_kinds.insert(kind); }
  void object_skipped(ResourceKind, const std::string& what, const std::string& reason) override {
    skipped.push_back(what + " " + reason);
  }

  // The events for one namespace.
  std::vector<std::string> in(const std::string& ns) const {
    std::vector<std::string> out;
    for (const auto& e : events) {
      if (e.starts_with(ns + "/")) out.push_back(e.substr(ns.size() + 1));
    }
    return out;
  }

  std::vector<std::string> events;
  std::set<ResourceKind> synced_kinds;
  std::vector<std::string> skipped;

 private:
  void record(const ObjectKey& key, bool present) {
    events.push_back(key.namespace_ + "/" + key.name + (present ? "" : " deleted"));
  }
};

template <typename Predicate>
bool run_until(boost::asio::io_context& io, Predicate done, std::chrono::seconds limit = 60s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    io.restart();
    io.run_for(20ms);
  }
  return true;
}

ReflectorOptions quick(ReflectorOptions options) {
  options.backoff = {200ms, 1000ms, 2.0, 0.2};
  return options;
}

// A client authenticated as the kipvs service account (least privilege), or
// with a token file given here.
struct Client {
  boost::asio::io_context io;
  std::shared_ptr<TokenSource> tokens;
  std::unique_ptr<HttpClient> http;

  explicit Client(const fs::path& token_file = {}) {
    auto& plane = ControlPlane::get();
    auto config = load_kubeconfig(plane.dir / "kipvs.kubeconfig");
    INFO((config ? "" : config.error().text()));
    REQUIRE(config.has_value());
    if (!token_file.empty()) {
      config->token.clear();
      config->token_file = token_file;
    }
    tokens = std::make_shared<TokenSource>(config->token, config->token_file);
    auto client = HttpClient::create(io, *config, tokens);
    REQUIRE(client.has_value());
    http = std::move(*client);
  }
};

// A reflector of T against the control plane as the kipvs service
// account, with quick tuning that a case may change first; started.
template <typename T>
struct Watching {
  Client client;
  RecordingSink sink;
  std::unique_ptr<Reflector<T>> reflector;

  explicit Watching(const std::function<void(ReflectorOptions&)>& tune = {}, const fs::path& token_file = {})
      : client(token_file) {
    ApiSourceOptions options;
    options.tuning = quick(options.tuning);
    if (tune) tune(options.tuning);
    if constexpr (std::is_same_v<T, Service>) {
      reflector =
          std::make_unique<Reflector<T>>(client.io, *client.http, sink, service_reflector_options(options));
    } else {
      reflector = std::make_unique<Reflector<T>>(client.io, *client.http, sink,
                                                 endpoint_slice_reflector_options(options));
    }
    reflector->start();
  }

  // The reflector, the sink and the client, for a case to name:
  // `auto [services, sink, client] = watch.parts();`.
  std::tuple<Reflector<T>&, RecordingSink&, Client&> parts() { return {*reflector, sink, client}; }
};

std::string service_yaml(const std::string& ns, const std::string& name, int port = 80) {
  return "apiVersion: v1\nkind: Service\nmetadata: {name: " + name + ", namespace: " + ns +
         "}\nspec:\n  ports: [{port: " + std::to_string(port) + ", protocol: TCP}]\n";
}

std::string slice_yaml(const std::string& ns, const std::string& name, const std::string& ip = "10.1.0.1") {
  return "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: " + name +
         "\n  namespace: " + ns + "\n  labels: {kubernetes.io/service-name: web}\naddressType: IPv4\n" +
         "endpoints: [{addresses: [" + ip + "]}]\nports: [{name: http, port: 80, protocol: TCP}]\n";
}

std::size_t count_in(const ObjectCache<Service>& cache, const std::string& ns) {
  std::size_t n = 0;
  for (const auto& [key, _] : cache.objects()) n += key.namespace_ == ns;
  return n;
}

TEST_CASE("initial list: the Services kubectl made are in the cache with their cluster IPs", "[apiserver]") {
  auto& plane = ControlPlane::get();
  const std::string ns = unique_namespace("initial");
  plane.apply(service_yaml(ns, "a") + "---\n" + service_yaml(ns, "b", 443) + "---\n" +
              "apiVersion: v1\nkind: Service\nmetadata: {name: headless, namespace: " + ns +
              "}\nspec: {clusterIP: None, ports: [{port: 53}]}\n---\n" +
              "apiVersion: v1\nkind: Service\nmetadata: {name: other-proxy, namespace: " + ns +
              ", labels: {service.kubernetes.io/service-proxy-name: other}}\nspec: {ports: [{port: 1}]}\n");
  const std::string ip_a = plane.kubectl("-n " + ns + " get service a -o jsonpath={.spec.clusterIP}");

  Watching<Service> watch;
  auto [services, sink, client] = watch.parts();
  REQUIRE(run_until(client.io, [&] { return sink.synced_kinds.contains(ResourceKind::kService); }));
  // Headless (field selector) and other-proxy (label selector) are left out.
  CHECK(sink.in(ns) == std::vector<std::string>{"a", "b"});
  const Service* a = services.cache().find({ns, "a"});
  REQUIRE(a != nullptr);
  CHECK(a->cluster_ip == ip_a);
  REQUIRE(a->ports.size() == 1);
  CHECK(a->ports[0].port == 80);
  CHECK(services.status().lists == 1);
  CHECK_FALSE(services.status().field_selector_dropped);
}

// The objects of one namespace in a reflector's cache.
template <typename T>
std::map<ObjectKey, T> objects_in(const ObjectCache<T>& cache, const std::string& ns) {
  std::map<ObjectKey, T> out;
  for (const auto& [key, object] : cache.objects()) {
    if (key.namespace_ == ns) out.emplace(key, object);
  }
  return out;
}

TEST_CASE("protobuf: lists asked for in protobuf decode to the same objects as in JSON", "[apiserver]") {
  auto& plane = ControlPlane::get();
  const std::string ns = unique_namespace("protobuf");
  plane.apply("apiVersion: v1\nkind: Service\nmetadata:\n  name: rich\n  namespace: " + ns +
              "\n  labels: {app: rich}\n  annotations: {note: kept}\nspec:\n  type: NodePort\n"
              "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 600}}\n"
              "  externalIPs: [192.0.2.10]\n  externalTrafficPolicy: Local\n"
              "  internalTrafficPolicy: Local\n  trafficDistribution: PreferClose\n"
              "  ports:\n  - {name: dns, port: 53, protocol: UDP, targetPort: 5353}\n"
              "  - {name: web, port: 80, protocol: TCP}\n  - {name: sctp, port: 9, protocol: SCTP}\n"
              "---\n" +
              service_yaml(ns, "plain") +
              "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n" +
              "  name: rich-1\n  namespace: " + ns +
              "\n  labels: {kubernetes.io/service-name: rich}\naddressType: IPv4\nendpoints:\n"
              "- addresses: [10.3.0.1]\n  conditions: {ready: true, serving: true, terminating: false}\n"
              "  nodeName: node-a\n  zone: zone-a\n  hints: {forZones: [{name: zone-a}]}\n"
              "- addresses: [10.3.0.2]\n  conditions: {ready: false}\n"
              "ports:\n- {name: dns, port: 5353, protocol: UDP}\n- {name: web, port: 8080}\n---\n" +
              slice_yaml(ns, "plain-1"));

  Watching<Service> services_pb;
  Watching<Service> services_json([](ReflectorOptions& tuning) { tuning.protobuf_lists = false; });
  Watching<EndpointSlice> slices_pb;
  Watching<EndpointSlice> slices_json([](ReflectorOptions& tuning) { tuning.protobuf_lists = false; });
  const auto synced = [](auto& watch) {
    return run_until(watch.client.io, [&] { return watch.reflector->status().synced; });
  };
  REQUIRE(synced(services_pb));
  REQUIRE(synced(services_json));
  REQUIRE(synced(slices_pb));
  REQUIRE(synced(slices_json));
  CHECK(services_pb.reflector->status().protobuf_list_pages >= 1);
  CHECK(slices_pb.reflector->status().protobuf_list_pages >= 1);
  CHECK(services_json.reflector->status().protobuf_list_pages == 0);
  CHECK(slices_json.reflector->status().protobuf_list_pages == 0);
  CHECK(services_pb.sink.skipped.empty());
  CHECK(slices_pb.sink.skipped.empty());

  const auto services = objects_in(services_pb.reflector->cache(), ns);
  const auto slices = objects_in(slices_pb.reflector->cache(), ns);
  REQUIRE(services.size() == 2);
  REQUIRE(slices.size() == 2);
  CHECK(services == objects_in(services_json.reflector->cache(), ns));
  CHECK(slices == objects_in(slices_json.reflector->cache(), ns));
  // Spelled out, so two decoders dropping the same field cannot agree on it.
  const Service& rich = services.at({ns, "rich"});
  CHECK(rich.affinity_timeout_seconds == 600);
  REQUIRE(rich.ports.size() == 3);
  CHECK(rich.ports[0].protocol == Protocol::kUdp);
  CHECK(rich.ports[2].protocol == Protocol::kSctp);
  CHECK(rich.ports[1].node_port >= 30000);
  CHECK(rich.external_ips == std::vector<std::string>{"192.0.2.10"});
  CHECK(rich.traffic_distribution == "PreferClose");
  CHECK(rich.meta.annotations.contains("note"));
  const EndpointSlice& slice = slices.at({ns, "rich-1"});
  REQUIRE(slice.endpoints.size() == 2);
  CHECK(slice.endpoints[0].conditions.terminating == false);
  CHECK(slice.endpoints[0].hints->for_zones == std::vector<std::string>{"zone-a"});
  CHECK(slice.endpoints[1].conditions.ready == false);
  CHECK_FALSE(slice.endpoints[1].conditions.serving.has_value());
}

TEST_CASE("watch: adds, edits and deletes arrive in order", "[apiserver]") {
  auto& plane = ControlPlane::get();
  const std::string ns = unique_namespace("order");
  Watching<Service> watch;
  auto [services, sink, client] = watch.parts();
  REQUIRE(run_until(client.io, [&] { return services.status().synced; }));

  plane.apply(service_yaml(ns, "web"));
  REQUIRE(run_until(client.io, [&] { return sink.in(ns).size() == 1; }));
  plane.apply(service_yaml(ns, "web", 8080));  // edit
  REQUIRE(run_until(client.io, [&] { return sink.in(ns).size() == 2; }));
  CHECK(services.cache().find({ns, "web"})->ports.at(0).port == 8080);
  plane.kubectl("-n " + ns + " delete service web");
  REQUIRE(run_until(client.io, [&] { return sink.in(ns).size() == 3; }));
  CHECK(sink.in(ns) == std::vector<std::string>{"web", "web", "web deleted"});
  CHECK(services.cache().find({ns, "web"}) == nullptr);
  CHECK(services.status().lists == 1);
}

TEST_CASE("pagination: more than 500 EndpointSlices come in pages of 500 at one resourceVersion",
          "[apiserver]") {
  auto& plane = ControlPlane::get();
  const std::string ns = unique_namespace("pages");
  std::string yaml;
  for (int i = 0; i < 520; ++i) {
    yaml += (i ? "---\n" : "") +
            slice_yaml(ns, "s" + std::to_string(i),
                       "10.2." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1));
  }
  plane.apply(yaml);

  Watching<EndpointSlice> watch;
  auto [slices, sink, client] = watch.parts();
  REQUIRE(run_until(
      client.io, [&] { return slices.status().synced; }, 120s));
  CHECK(slices.status().list_pages >= 2);
  // A full page is far over the server's 128 KiB threshold: it comes gzipped.
  CHECK(slices.status().gzip_list_pages >= 1);
  // The pages after the first come on the first one's kept-alive connection.
  CHECK(slices.status().reused_list_pages == slices.status().list_pages - 1);
  CHECK(client.http->connection_stats().opened < slices.status().list_pages);
  CHECK(sink.in(ns).size() == 520);
  std::size_t cached = 0;
  for (const auto& [key, _] : slices.cache().objects()) cached += key.namespace_ == ns;
  CHECK(cached == 520);
}

TEST_CASE("bookmarks advance the resourceVersion while nothing we watch changes", "[apiserver]") {
  auto& plane = ControlPlane::get();
  const std::string ns = unique_namespace("bookmark");
  // The watch cache sends a bookmark shortly before a watch's deadline.
  Watching<Service> watch([](ReflectorOptions& tuning) {
    tuning.min_watch_timeout = 5s;
    tuning.max_watch_timeout = 6s;
  });
  auto [services, sink, client] = watch.parts();
  REQUIRE(run_until(client.io, [&] { return services.status().synced; }));
  const auto synced_rv = std::stoull(services.status().resource_version);
  // Changes to a kind kipvs does not watch move the global resourceVersion.
  plane.kubectl("-n " + ns + " create configmap bump --from-literal=a=b");
  REQUIRE(run_until(
      client.io, [&] { return services.status().bookmarks >= 1; }, 30s));
  REQUIRE(run_until(
      client.io, [&] { return std::stoull(services.status().resource_version) > synced_rv; }, 30s));
  CHECK(sink.in(ns).empty());
  CHECK(services.status().watches >= 1);
}

TEST_CASE("restart: the watch resumes after kube-apiserver restarts, no event lost", "[apiserver]") {
  auto& plane = ControlPlane::get();
  const std::string ns = unique_namespace("restart");
  Watching<Service> watch;
  auto [services, sink, client] = watch.parts();
  REQUIRE(run_until(client.io, [&] { return services.status().synced; }));
  plane.apply(service_yaml(ns, "before"));
  REQUIRE(run_until(client.io, [&] { return sink.in(ns).size() == 1; }));

  plane.script("restart-apiserver " + plane.dir.string());
  // Changes right after the restart, while the reflector reconnects.
  plane.apply(service_yaml(ns, "after"));
  plane.kubectl("-n " + ns + " delete service before");
  REQUIRE(run_until(
      client.io, [&] { return sink.in(ns).size() == 3; }, 90s));
  CHECK(sink.in(ns) == std::vector<std::string>{"before", "after", "before deleted"});
  CHECK(count_in(services.cache(), ns) == 1);
  CHECK(services.cache().find({ns, "after"}) != nullptr);
  CHECK(services.status().failures >= 1);  // it did notice the restart
  UNSCOPED_INFO("lists after restart: " << services.status().lists
                                        << " relists: " << services.status().relists);
}

TEST_CASE("compaction: a watch from a compacted resourceVersion gets 410 and a relist fixes the state",
          "[apiserver]") {
  auto& plane = ControlPlane::get();
  const std::string ns = unique_namespace("compact");
  // EndpointSlices bypass the watch cache on this control plane (see
  // scripts/apiserver), so a watch reads etcd and sees its compaction.
  Watching<EndpointSlice> watch([](ReflectorOptions& tuning) {
    tuning.min_watch_timeout = 2s;
    tuning.max_watch_timeout = 3s;
  });
  auto [slices, sink, client] = watch.parts();
  plane.apply(slice_yaml(ns, "old"));
  REQUIRE(run_until(client.io, [&] { return slices.cache().find({ns, "old"}) != nullptr; }));

  // Leave the io_context idle until the server has ended the watch, change
  // things, and compact: the next watch starts from a compacted revision.
  std::this_thread::sleep_for(4s);
  plane.apply(slice_yaml(ns, "new"));
  plane.kubectl("-n " + ns + " delete endpointslice old");
  plane.script("compact " + plane.dir.string());
  REQUIRE(run_until(
      client.io, [&] { return slices.status().relists >= 1; }, 60s));
  REQUIRE(run_until(
      client.io, [&] { return sink.in(ns).size() >= 3; }, 30s));
  CHECK(sink.in(ns) == std::vector<std::string>{"old", "new", "old deleted"});
  CHECK(slices.cache().find({ns, "old"}) == nullptr);
  CHECK(slices.cache().find({ns, "new"}) != nullptr);
}

// A service account allowed what kipvs is allowed, and a token for it.
std::string make_account(const std::string& name, bool with_rbac) {
  auto& plane = ControlPlane::get();
  plane.kubectl("-n kube-system create serviceaccount " + name);
  if (with_rbac) {
    plane.kubectl("create clusterrolebinding " + name +
                  " --clusterrole=kipvs --serviceaccount=kube-system:" + name);
  }
  return plane.script("token " + plane.dir.string() + " " + name + " 3600");
}

void write_token(const fs::path& file, const std::string& token) {
  std::ofstream(file, std::ios::trunc) << token;
}

TEST_CASE("tokens: a revoked token gives 401, a rotated token file is picked up", "[apiserver]") {
  auto& plane = ControlPlane::get();
  const std::string ns = unique_namespace("token");
  const std::string stem = "rot-" + std::to_string(::getpid());
  const std::string first = make_account(stem + "-a", true);
  const std::string second = make_account(stem + "-b", true);
  const fs::path token_file = plane.dir / (stem + ".token");
  write_token(token_file, first);

  Watching<Service> watch(
      [](ReflectorOptions& tuning) {
        tuning.min_watch_timeout = 2s;
        tuning.max_watch_timeout = 3s;
      },
      token_file);
  auto [services, sink, client] = watch.parts();
  REQUIRE(run_until(client.io, [&] { return services.status().synced; }));

  // Revoke: deleting the service account invalidates its tokens.
  plane.kubectl("-n kube-system delete serviceaccount " + stem + "-a");
  // Wait for the error itself, not only the status: the reflector retries
  // at once after a 401 (re-reading the token), and a check made between the
  // status and the error text raced under load.
  const auto clear_401 = [&] {
    const auto& error = services.status().last_error;
    return services.status().last_http_status == 401 && error.find("HTTP 401") != std::string::npos &&
           error.find("token") != std::string::npos;
  };
  CHECK(run_until(client.io, clear_401, 60s));
  INFO("last error: " << services.status().last_error);
  CHECK(services.status().last_http_status == 401);

  // Rotate: a fresh token in the file; the 401 made the client re-read it.
  write_token(token_file, second);
  plane.apply(service_yaml(ns, "seen-after-rotation"));
  REQUIRE(run_until(
      client.io, [&] { return sink.in(ns).size() == 1; }, 60s));
  CHECK(services.status().last_http_status == 200);
  CHECK(client.tokens->token() == second);
}

TEST_CASE("RBAC: a service account without list/watch gets a clear 403 error", "[apiserver]") {
  auto& plane = ControlPlane::get();
  const std::string name = "norbac-" + std::to_string(::getpid());
  const fs::path token_file = plane.dir / (name + ".token");
  write_token(token_file, make_account(name, false));

  Watching<EndpointSlice> watch({}, token_file);
  auto [slices, sink, client] = watch.parts();
  REQUIRE(run_until(
      client.io, [&] { return slices.status().failures >= 2; }, 30s));
  const auto& status = slices.status();
  CHECK_FALSE(status.synced);
  CHECK(status.last_http_status == 403);
  INFO(status.last_error);
  CHECK(status.last_error.find("HTTP 403") != std::string::npos);
  CHECK(status.last_error.find("cannot list resource \"endpointslices\"") != std::string::npos);
  CHECK(status.last_error.find("RBAC") != std::string::npos);
  CHECK(sink.synced_kinds.empty());
}

TEST_CASE("TLS: a server certificate not signed by the configured CA is refused", "[apiserver]") {
  auto& plane = ControlPlane::get();
  auto config = load_kubeconfig(plane.dir / "kipvs.kubeconfig");
  REQUIRE(config.has_value());
  // Pin a CA that did not sign the serving certificate (a fresh self-signed one).
  const fs::path other = plane.dir / "other-ca";
  ControlPlane::run("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=other -keyout " +
                    other.string() + ".key -out " + other.string() + ".crt");
  std::ifstream in(other.string() + ".crt");
  std::stringstream pem;
  pem << in.rdbuf();
  config->certificate_authority = PemSource{pem.str(), other.string() + ".crt"};
  boost::asio::io_context io;
  auto tokens = std::make_shared<TokenSource>(config->token, config->token_file);
  auto client = HttpClient::create(io, *config, tokens);
  REQUIRE(client.has_value());
  RecordingSink sink;
  ApiSourceOptions options;
  options.tuning = quick(options.tuning);
  Reflector<Service> services(io, **client, sink, service_reflector_options(options));
  services.start();
  REQUIRE(run_until(
      io, [&] { return services.status().failures >= 1; }, 30s));
  INFO(services.status().last_error);
  CHECK(services.status().last_error.find("TLS handshake") != std::string::npos);
  CHECK(services.status().last_error.find("certificate") != std::string::npos);
  CHECK_FALSE(services.status().synced);
}

}  // namespace
}  // namespace kipvs::k8s
