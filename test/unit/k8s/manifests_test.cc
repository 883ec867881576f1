#include "k8s/manifests.h"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>

namespace kipvs::k8s {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const fs::path kData = KIPVS_TEST_DATA;
const fs::path kScratch = KIPVS_TEST_SCRATCH;

ManifestFile yaml(std::string_view text) {
  return parse_manifests(text, ManifestFormat::kYaml, "test.yaml");
}

// A copy: callers pass a temporary ManifestFile.
template <typename T>
T only(const ManifestFile& file) {
  REQUIRE(file.errors.empty());
  REQUIRE(file.objects.size() == 1);
  REQUIRE(std::holds_alternative<T>(file.objects[0]));
  return std::get<T>(file.objects[0]);
}

TEST_CASE("load_manifests reads YAML, multi-document YAML, JSON and lists", "[k8s][manifests]") {
  auto loaded = load_manifests(kData / "basic");
  REQUIRE(loaded.has_value());
  CHECK(loaded->errors.empty());
  for (const auto& e : loaded->errors) INFO(to_string(e));

  std::vector<std::pair<ResourceKind, ObjectKey>> keys;
  for (const AnyObject& o : loaded->objects) keys.emplace_back(kind_of(o), key_of(o));
  // File order (10-, 20-, 30-, 40-), then document order; README.txt and
  // .hidden.yaml are not manifests.
  CHECK(keys == std::vector<std::pair<ResourceKind, ObjectKey>>{
                    {ResourceKind::kService, {"shop", "web"}},
                    {ResourceKind::kEndpointSlice, {"shop", "web-1"}},
                    {ResourceKind::kService, {"default", "dns"}},          // JSON, no namespace: default
                    {ResourceKind::kEndpointSlice, {"default", "dns-1"}},  // second JSON value in the file
                    {ResourceKind::kService, {"infra", "api"}},            // kind: List
                    {ResourceKind::kNode, {"", "node-a"}},          // cluster-scoped: namespace dropped
                    {ResourceKind::kService, {"infra", "legacy"}},  // kind: ServiceList, items without kind
                });
  REQUIRE(loaded->objects.size() == 7);

  const auto& web = std::get<Service>(loaded->objects[0]);
  CHECK(web.type == ServiceType::kNodePort);
  CHECK(web.meta.labels.at("app") == "web");
  CHECK(web.cluster_ips == std::vector<std::string>{"10.96.0.10"});
  CHECK(web.ports ==
        std::vector<ServicePort>{{"80", Protocol::kTcp, 80, 30080}, {"metrics", Protocol::kUdp, 9090, 0}});
  CHECK(web.session_affinity == SessionAffinity::kClientIP);
  CHECK(web.affinity_timeout_seconds == 300);

  const auto& slice = std::get<EndpointSlice>(loaded->objects[1]);
  CHECK(slice.address_type == AddressType::kIPv4);
  REQUIRE(slice.endpoints.size() == 2);
  CHECK(slice.endpoints[0].conditions == EndpointConditions{true, true, false});
  CHECK(slice.endpoints[0].node_name == "node-a");
  CHECK(slice.endpoints[1].addresses == std::vector<std::string>{"10.244.2.6"});
  CHECK(slice.endpoints[1].conditions == EndpointConditions{false, std::nullopt, true});
  CHECK(slice.ports ==
        std::vector<EndpointPort>{{"80", std::nullopt, 8080}, {"metrics", Protocol::kUdp, 9090}});

  const auto& node = std::get<Node>(loaded->objects[5]);
  CHECK(node.addresses == std::vector<NodeAddress>{{NodeAddressType::kInternalIP, "192.168.1.10"}});
  CHECK(node.meta.labels.at("topology.kubernetes.io/zone") == "zone-1");

  CHECK(std::get<Service>(loaded->objects[6]).ports ==
        std::vector<ServicePort>{{"", Protocol::kSctp, 8080, 0}});
}

TEST_CASE("a bad document is skipped with its file and index while the others load", "[k8s][manifests]") {
  auto loaded = load_manifests(kData / "broken");
  REQUIRE(loaded.has_value());

  std::vector<std::string> names;
  for (const AnyObject& o : loaded->objects) names.push_back(key_of(o).name);
  CHECK(names == std::vector<std::string>{"good-1", "in-list", "good-2"});
  // The first definition of a duplicated key wins.
  CHECK(std::get<Service>(loaded->objects[0]).cluster_ip == "10.96.1.1");

  struct Expected {
    std::string file;
    std::size_t document;
    std::optional<std::size_t> item;
    std::optional<ResourceKind> kind;
    std::string object;
    std::string reason;
  };
  const std::vector<Expected> expected{
      {"mixed.yaml", 2, std::nullopt, ResourceKind::kService, "default/string-port", "bad_port"},
      {"mixed.yaml", 3, std::nullopt, std::nullopt, "?", "bad_yaml"},
      {"mixed.yaml", 4, std::nullopt, std::nullopt, "not-ours", "unknown_kind"},
      {"mixed.yaml", 5, 1, ResourceKind::kService, "default/bad-in-list", "bad_protocol"},
      {"zz-duplicate.json", 0, std::nullopt, ResourceKind::kService, "default/good-1", "duplicate"},
  };
  REQUIRE(loaded->errors.size() == expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const ManifestError& e = loaded->errors[i];
    INFO(to_string(e));
    CHECK(e.file.filename() == expected[i].file);
    CHECK(e.document == expected[i].document);
    CHECK(e.item == expected[i].item);
    CHECK(e.kind == expected[i].kind);
    CHECK(e.object == expected[i].object);
    CHECK(e.reason == expected[i].reason);
  }
  // The string port's message names the field, and where the document starts.
  CHECK_THAT(
      to_string(loaded->errors[0]),
      Catch::EndsWith("mixed.yaml: document 2 (line 5): Service default/string-port: spec.ports[0].port: "
                      "expected an integer in 1..65535, got \"80\" (bad_port)"));
  // yaml-cpp notices the unclosed flow mapping on the line after it (17);
  // the line is counted from the top of the file, not of the document.
  CHECK(loaded->errors[1].line == 17);
}

TEST_CASE("load_manifests fails on a directory it cannot list", "[k8s][manifests]") {
  auto loaded = load_manifests(kData / "no-such-dir");
  REQUIRE_FALSE(loaded.has_value());
  CHECK_THAT(loaded.error().text(), Catch::Contains("no-such-dir"));
}

// YAML scalars are untyped; the API's types decide what is accepted.
TEST_CASE("YAML scalars: quoted is a string, plain is typed by YAML 1.2 core rules", "[k8s][manifests]") {
  struct Case {
    const char* what;
    const char* ports;      // the YAML of spec.ports[0]'s members
    const char* reason;     // "" when it must decode
    std::int32_t port = 0;  // the expected port when it decodes
    const char* name = "";  // the expected name when it decodes
  };
  const Case c = GENERATE(values<Case>({
      {"plain int", "port: 80", "", 80},
      {"quoted port", "port: \"80\"", "bad_port"},
      {"single-quoted port", "port: '80'", "bad_port"},
      {"!!str port", "port: !!str 80", "bad_port"},
      {"!!int quoted port", "port: !!int \"80\"", "", 80},
      {"float port", "port: 80.0", "bad_port"},
      {"exponent port", "port: 8e1", "bad_port"},
      {"octal port", "port: 0o120", "", 80},
      {"plus sign", "port: +80", "", 80},
      {"word port", "port: http", "bad_port"},
      {"null port", "port: ~", "bad_port"},  // a service port needs a port
      {"quoted name", "{port: 80, name: \"80\"}", "", 80, "80"},
      {"plain numeric name", "{port: 80, name: 80}", "bad_type"},
      {"plain true name", "{port: 80, name: true}", "bad_type"},
      {"yes is a string in YAML 1.2", "{port: 80, name: yes}", "", 80, "yes"},
      {"block scalar name", "port: 80\n    name: |-\n      web", "", 80, "web"},
      {"bad !!int", "port: !!int eighty", "bad_type"},
  }));
  INFO(c.what);
  std::string text = "kind: Service\nmetadata: {name: s}\nspec:\n  ports:\n  - ";
  text += c.ports;
  text += "\n";
  ManifestFile file = yaml(text);
  if (std::string_view(c.reason).empty()) {
    const Service s = only<Service>(file);
    REQUIRE(s.ports.size() == 1);
    CHECK(s.ports[0].port == c.port);
    CHECK(s.ports[0].name == c.name);
  } else {
    CHECK(file.objects.empty());
    REQUIRE(file.errors.size() == 1);
    INFO(to_string(file.errors[0]));
    CHECK(file.errors[0].reason == c.reason);
  }
}

TEST_CASE("YAML: booleans, nulls, labels and repeated keys", "[k8s][manifests]") {
  SECTION("conditions take YAML 1.2 booleans") {
    const auto slice = only<EndpointSlice>(yaml(R"(
kind: EndpointSlice
metadata: {name: s, namespace: n}
addressType: IPv4
endpoints:
- addresses: [10.0.0.1]
  conditions: {ready: True, serving: FALSE, terminating: null}
)"));
    CHECK(slice.endpoints.at(0).conditions == EndpointConditions{true, false, std::nullopt});
  }
  SECTION("a YAML 1.1 'yes' is not a boolean") {
    ManifestFile file =
        yaml("kind: EndpointSlice\nmetadata: {name: s}\nendpoints:\n- conditions: {ready: yes}\n");
    REQUIRE(file.errors.size() == 1);
    CHECK(file.errors[0].reason == "bad_type");
    CHECK_THAT(file.errors[0].message, Catch::Contains("endpoints[0].conditions.ready"));
  }
  SECTION("an empty or ~ value is unset") {
    const auto s =
        only<Service>(yaml("kind: Service\nmetadata: {name: s}\nspec:\n  clusterIP:\n  externalIPs: ~\n"));
    CHECK(s.cluster_ip.empty());
    CHECK(s.external_ips.empty());
  }
  SECTION("a quoted label value is a string, a plain number is refused as by kubectl") {
    const auto s = only<Service>(yaml("kind: Service\nmetadata: {name: s, labels: {version: \"1\"}}\n"));
    CHECK(s.meta.labels.at("version") == "1");
    ManifestFile bad = yaml("kind: Service\nmetadata: {name: s, labels: {version: 1}}\n");
    REQUIRE(bad.errors.size() == 1);
    CHECK_THAT(bad.errors[0].message, Catch::Contains("metadata.labels.version"));
  }
  SECTION("a repeated key is refused") {
    ManifestFile file = yaml("kind: Service\nmetadata: {name: s}\nspec: {clusterIP: 10.0.0.1}\nspec: {}\n");
    CHECK(file.objects.empty());
    REQUIRE(file.errors.size() == 1);
    CHECK_THAT(file.errors[0].message, Catch::Contains("\"spec\" repeated"));
  }
  SECTION("a document that is not a mapping is refused") {
    ManifestFile file = yaml("- a\n- b\n---\nkind: Service\nmetadata: {name: s}\n");
    CHECK(file.objects.size() == 1);
    REQUIRE(file.errors.size() == 1);
    CHECK(file.errors[0].document == 1);
    CHECK(file.errors[0].reason == "bad_type");
  }
  SECTION("comments, empty documents and document end markers are not documents") {
    ManifestFile file =
        yaml("# only a comment\n---\n---\n# another\n...\n--- {kind: Service, metadata: {name: s}}\n");
    CHECK(file.errors.empty());
    CHECK(file.objects.size() == 1);
    CHECK(yaml("").objects.empty());
    CHECK(yaml("").errors.empty());
  }
}

TEST_CASE("JSON files: several values, and a syntax error stops the file", "[k8s][manifests]") {
  ManifestFile file = parse_manifests(
      R"({"kind":"Service","metadata":{"name":"a"}}
{"kind":"Service","metadata":{"name":"b"}} {"kind":"Service","metadata":{"name":"c"},)",
      ManifestFormat::kJson, "x.json");
  CHECK_FALSE(file.syntax_ok);
  REQUIRE(file.objects.size() == 2);
  CHECK(key_of(file.objects[1]).name == "b");
  REQUIRE(file.errors.size() == 1);
  CHECK(file.errors[0].reason == "bad_json");
  CHECK(file.errors[0].document == 3);
  CHECK(file.errors[0].line == 2);

  // In JSON a string port is a string, whatever it looks like.
  ManifestFile string_port =
      parse_manifests(R"({"kind":"Service","metadata":{"name":"a"},"spec":{"ports":[{"port":"80"}]}})",
                      ManifestFormat::kJson, "y.json");
  REQUIRE(string_port.errors.size() == 1);
  CHECK(string_port.errors[0].reason == "bad_port");
  CHECK(string_port.syntax_ok);
}

// "Billion laughs": each level names the one below nine times, so the
// document's few hundred bytes expand to 9^(levels+1) strings.
std::string alias_bomb(int levels) {
  std::string text = "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n";
  for (int i = 1; i <= levels; ++i) {
    const std::string below = "*a" + std::to_string(i - 1);
    text += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [" + below;
    for (int j = 1; j < 9; ++j) text += ", " + below;
    text += "]\n";
  }
  return text;
}

const std::string kWebService =
    "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}]}\n";

TEST_CASE("YAML: an alias bomb is refused in bounded time, and the file's other documents load",
          "[k8s][manifests]") {
  // Refused from its aliases alone, before anything is expanded: without a
  // bound this one needs 9^10 nodes, which no memory holds.
  const std::string bomb = GENERATE(alias_bomb(9), std::string("a: &a [*a, *a, *a]\n"));
  CAPTURE(bomb.substr(0, 40));
  const auto start = std::chrono::steady_clock::now();
  ManifestFile file = yaml(bomb + "---\n" + kWebService);
  CHECK(std::chrono::steady_clock::now() - start < 2s);
  REQUIRE(file.errors.size() == 1);
  CHECK(file.errors[0].reason == "excessive_aliasing");
  CHECK(file.errors[0].document == 1);
  CHECK_THAT(to_string(file.errors[0]), Catch::StartsWith("test.yaml: document 1"));
  REQUIRE(file.objects.size() == 1);
  CHECK(key_of(file.objects[0]).name == "web");
}

TEST_CASE("YAML: anchors and aliases in ordinary use still load", "[k8s][manifests]") {
  const Service web = only<Service>(
      yaml("apiVersion: v1\nkind: Service\nmetadata: {name: web, labels: &l {app: web, tier: front}}\n"
           "spec: {selector: *l, ports: [{port: 80}]}\n"));
  CHECK(web.meta.labels.at("tier") == "front");
  // Aliases that add up to a few thousand nodes are fine too.
  ManifestFile small = yaml(alias_bomb(2) + "---\n" + kWebService);  // 9^3 = 729 strings
  CHECK(small.errors.size() == 1);
  CHECK(small.errors[0].reason == "unknown_kind");  // read in full, then refused for what it is
}

TEST_CASE("a manifest file over the size cap is refused, naming it, and the others load",
          "[k8s][manifests]") {
  const fs::path dir = kScratch / "hostile";
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream(dir / "a-good.yaml") << kWebService;
  {
    // A valid Service padded with a comment to 5 MiB.
    std::ofstream big(dir / "b-big.yaml");
    big << "apiVersion: v1\nkind: Service\nmetadata: {name: big}\nspec: {ports: [{port: 81}]}\n# ";
    big << std::string(5 << 20, 'x') << "\n";
  }
  std::ofstream(dir / "c-bomb.yaml") << alias_bomb(9);
  auto loaded = load_manifests(dir);
  REQUIRE(loaded.has_value());
  REQUIRE(loaded->objects.size() == 1);
  CHECK(key_of(loaded->objects[0]).name == "web");
  REQUIRE(loaded->errors.size() == 2);
  CHECK(loaded->errors[0].file.filename() == "b-big.yaml");
  CHECK(loaded->errors[0].reason == "too_large");
  CHECK_THAT(to_string(loaded->errors[0]), Catch::Contains("b-big.yaml") && Catch::Contains("4194304"));
  CHECK(loaded->errors[1].file.filename() == "c-bomb.yaml");
  CHECK(loaded->errors[1].reason == "excessive_aliasing");
}

// --- ManifestSource ---------------------------------------------------------

// Records what the source passes on, one line per call.
class RecordingSink : public ObjectSink {
 public:
  void service_changed(const ObjectKey& key, const Service* now) override {
    events.push_back("service " + name(key) + (now != nullptr ? " " + describe(*now) : " deleted"));
  }
  void endpoint_slice_changed(const ObjectKey& key, const EndpointSlice* now) override {
    events.push_back("slice " + name(key) +
                     (now != nullptr ? " " + std::to_string(now->endpoints.size()) : " deleted"));
  }
  void node_changed(const Node* now) override {
    events.push_back("node " +
                     (now != nullptr ? now->meta.name + " " + now->addresses.at(0).address : "deleted"));
  }
  void synced(ResourceKind kind) override { events.push_back("synced " + std::string(kind_name(kind))); }
  void object_skipped(ResourceKind kind, const std::string& what, const std::string& reason) override {
    events.push_back("skipped " + std::string(kind_name(kind)) + " " + what + " " + reason);
  }

  std::vector<std::string> take() {
    std::vector<std::string> out;
    out.swap(events);
    std::sort(out.begin(), out.end());
    return out;
  }

  std::vector<std::string> events;

 private:
  static std::string name(const ObjectKey& key) { return key.namespace_ + "/" + key.name; }
  static std::string describe(const Service& s) {
    std::string out = s.cluster_ip;
    for (const ServicePort& p : s.ports) out += ":" + std::to_string(p.port);
    return out;
  }
};

// Writes through a hidden temporary file and a rename, as editors and
// ConfigMap updates do, so the source never sees half a file.
void write_file(const fs::path& path, std::string_view text) {
  const fs::path temp = path.parent_path() / ("." + path.filename().string() + ".tmp");
  {
    std::ofstream out(temp, std::ios::trunc);
    out << text;
  }
  fs::rename(temp, path);
}

std::string service_yaml(const char* name, const char* ip, int port) {
  return "apiVersion: v1\nkind: Service\nmetadata: {name: " + std::string(name) +
         "}\nspec: {clusterIP: " + ip + ", ports: [{port: " + std::to_string(port) + "}]}\n";
}

std::string node_yaml(const char* name, const char* ip) {
  return "apiVersion: v1\nkind: Node\nmetadata: {name: " + std::string(name) +
         "}\nstatus: {addresses: [{type: InternalIP, address: " + ip + "}]}\n";
}

const std::string kSlice =
    "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s1-x, labels: "
    "{kubernetes.io/service-name: s1}}\naddressType: IPv4\nendpoints: [{addresses: [10.244.0.1]}]\n";

// Runs the loop until `done` holds (or 5 s pass).
template <typename Pred>
bool run_until(boost::asio::io_context& io, Pred done) {
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    io.restart();
    io.run_for(10ms);
  }
  return done();
}

TEST_CASE("ManifestSource delivers everything, then only the differences", "[k8s][manifests]") {
  const fs::path dir = kScratch / "source";
  fs::remove_all(dir);
  fs::create_directories(dir);
  write_file(dir / "a.yaml", service_yaml("s1", "10.96.0.1", 80) + "---\n" + kSlice);
  write_file(dir / "b.yaml", service_yaml("s2", "10.96.0.2", 80));
  write_file(dir / "nodes.yaml",
             node_yaml("node-a", "192.168.0.1") + "---\n" + node_yaml("node-b", "192.168.0.2"));

  boost::asio::io_context io;
  RecordingSink sink;
  std::vector<std::string> log;
  ManifestSource source(io,
                        ManifestSource::Options{dir, "node-a", 20ms, 500ms,
                                                [&](std::string_view line) { log.emplace_back(line); }},
                        sink);
  REQUIRE(source.start().has_value());
  // Objects first, then each kind reported synced.
  CHECK(sink.events == std::vector<std::string>{
                           "service default/s1 10.96.0.1:80",
                           "service default/s2 10.96.0.2:80",
                           "slice default/s1-x 1",
                           "node node-a 192.168.0.1",
                           "synced Service",
                           "synced EndpointSlice",
                           "synced Node",
                       });
  sink.events.clear();
  REQUIRE(source.loads() == 1);

  SECTION("edits, deletes and additions pass on just what changed") {
    write_file(dir / "a.yaml",
               service_yaml("s1", "10.96.0.1", 81) + "---\n" + kSlice);  // s1 edited, slice same
    fs::remove(dir / "b.yaml");
    write_file(dir / "c.yml", service_yaml("s3", "10.96.0.3", 53));
    write_file(dir / "nodes.yaml",
               node_yaml("node-a", "192.168.0.1") + "---\n" + node_yaml("node-b", "192.168.9.9"));
    write_file(dir / "notes.txt", "not a manifest");
    REQUIRE(run_until(io, [&] { return source.loads() >= 2; }));
    io.run_for(100ms);  // anything that came late
    CHECK(sink.take() == std::vector<std::string>{
                             "service default/s1 10.96.0.1:81",
                             "service default/s2 deleted",
                             "service default/s3 10.96.0.3:53",
                         });  // node-b's change is not this node's

    // Rewriting a file with the same content changes nothing.
    const std::size_t loads = source.loads();
    write_file(dir / "c.yml", service_yaml("s3", "10.96.0.3", 53));
    REQUIRE(run_until(io, [&] { return source.loads() > loads; }));
    CHECK(sink.take().empty());

    // This node's Node leaving is passed on.
    write_file(dir / "nodes.yaml", node_yaml("node-b", "192.168.9.9"));
    REQUIRE(run_until(io, [&] { return !sink.events.empty(); }));
    CHECK(sink.take() == std::vector<std::string>{"node deleted"});
  }

  SECTION("a refused object is skipped and reported; its old version goes") {
    write_file(dir / "b.yaml", service_yaml("s2", "10.96.0.2", 70000));
    REQUIRE(run_until(io, [&] { return source.loads() >= 2; }));
    io.run_for(50ms);
    CHECK(sink.take() == std::vector<std::string>{
                             "service default/s2 deleted",
                             "skipped Service default/s2 (b.yaml, document 1) bad_port",
                         });
    CHECK(std::any_of(log.begin(), log.end(), [](const std::string& l) {
      return l.find("b.yaml") != std::string::npos && l.find("spec.ports[0].port") != std::string::npos;
    }));
  }

  SECTION("a file with a syntax error keeps its last good contents") {
    {
      std::ofstream half(dir / "b.yaml", std::ios::trunc);  // as if caught mid-write
      half << "apiVersion: v1\nkind: Service\nmetadata: {name: s2\n";
    }
    REQUIRE(run_until(io, [&] { return source.loads() >= 2; }));
    io.run_for(50ms);
    CHECK(sink.take().empty());
    CHECK(std::any_of(log.begin(), log.end(), [](const std::string& l) {
      return l.find("b.yaml keeps its last good contents") != std::string::npos;
    }));

    // Fixed: the new contents count again.
    write_file(dir / "b.yaml", service_yaml("s2", "10.96.0.22", 80));
    REQUIRE(run_until(io, [&] { return !sink.events.empty(); }));
    CHECK(sink.take() == std::vector<std::string>{"service default/s2 10.96.0.22:80"});
  }

  SECTION("a hostile file is refused, naming it, and the other files' objects stay") {
    write_file(dir / "bomb.yaml", alias_bomb(9));
    REQUIRE(run_until(io, [&] { return source.loads() >= 2; }));
    io.run_for(50ms);
    CHECK(sink.take().empty());
    CHECK(std::any_of(log.begin(), log.end(), [](const std::string& l) {
      return l.find("bomb.yaml") != std::string::npos && l.find("excessive_aliasing") != std::string::npos;
    }));
  }

  SECTION("a file grown past the size cap keeps its last good contents") {
    write_file(dir / "b.yaml", service_yaml("s2", "10.96.0.2", 81) + "# " + std::string(5 << 20, 'x') + "\n");
    REQUIRE(run_until(io, [&] { return source.loads() >= 2; }));
    io.run_for(50ms);
    CHECK(sink.take().empty());  // s2 stays as it was, port 80
    CHECK(std::any_of(log.begin(), log.end(), [](const std::string& l) {
      return l.find("b.yaml") != std::string::npos && l.find("too_large") != std::string::npos;
    }));
  }

  SECTION("a burst of changes is coalesced into one reload") {
    for (int port = 1000; port < 1010; ++port)
      write_file(dir / "b.yaml", service_yaml("s2", "10.96.0.2", port));
    REQUIRE(run_until(io, [&] { return source.loads() >= 2; }));
    io.run_for(100ms);
    CHECK(source.loads() == 2);
    CHECK(sink.take() == std::vector<std::string>{"service default/s2 10.96.0.2:1009"});
  }

  SECTION("after stop() the sink hears nothing") {
    source.stop();
    write_file(dir / "b.yaml", service_yaml("s2", "10.96.0.2", 81));
    io.restart();
    io.run_for(100ms);
    CHECK(sink.events.empty());
    CHECK(source.loads() == 1);
  }
}

TEST_CASE("ManifestSource rescans for changes inotify does not report", "[k8s][manifests]") {
  // A manifest that is a symlink to a file elsewhere (a ConfigMap volume, a
  // file on NFS): writing the target tells the watched directory nothing.
  const fs::path dir = kScratch / "rescan";
  const fs::path elsewhere = kScratch / "rescan-target";
  fs::remove_all(dir);
  fs::remove_all(elsewhere);
  fs::create_directories(dir);
  fs::create_directories(elsewhere);
  {
    std::ofstream out(elsewhere / "web.yaml");
    out << service_yaml("web", "10.96.0.5", 80);
  }
  fs::create_symlink(elsewhere / "web.yaml", dir / "web.yaml");

  boost::asio::io_context io;
  RecordingSink sink;
  std::vector<std::string> log;
  ManifestSource::Options options{dir, "", 20ms, 500ms,
                                  [&](std::string_view line) { log.emplace_back(line); }};
  options.rescan_period = 100ms;
  ManifestSource source(io, options, sink);
  REQUIRE(source.start().has_value());
  sink.events.clear();

  // Nothing changed: the rescans reload nothing.
  io.restart();
  io.run_for(350ms);
  CHECK(source.loads() == 1);

  {
    std::ofstream out(elsewhere / "web.yaml", std::ios::trunc);  // in place, through the link
    out << service_yaml("web", "10.96.0.5", 8080);
  }
  REQUIRE(run_until(io, [&] { return !sink.events.empty(); }));
  CHECK(sink.take() == std::vector<std::string>{"service default/web 10.96.0.5:8080"});
  CHECK(std::any_of(log.begin(), log.end(), [](const std::string& l) {
    return l.find("changed without an inotify event") != std::string::npos;
  }));
  source.stop();
}

TEST_CASE("ManifestSource refuses a directory it cannot watch", "[k8s][manifests]") {
  boost::asio::io_context io;
  RecordingSink sink;
  ManifestSource source(io, ManifestSource::Options{kScratch / "does-not-exist", "", 20ms, 500ms, {}}, sink);
  auto started = source.start();
  REQUIRE_FALSE(started.has_value());
  CHECK_THAT(started.error().text(), Catch::Contains("does-not-exist"));
  CHECK(sink.events.empty());
}

}  // namespace
}  // namespace kipvs::k8s
