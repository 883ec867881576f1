// kipvs's nftables table with real traffic: the real `kipvs`
// binary programs IPVS and `inet kipvs` in the test's network namespace (the
// node); pods, a second node and clients are namespaces around it.
//
//   client c1 10.250.0.2 --veth-- node 10.250.0.1 (its node IP, node ports)
//   client c2 10.252.0.2 --veth-- node 10.252.0.1
//   local pods p0 10.244.0.10, p1 10.244.0.11 -- bridge kt-br 10.244.0.1
//   node-b 10.251.0.2 --veth-- node 10.251.0.1; its pod r0 10.244.1.10
//
// node-b routes only the pod network back through the node (no default
// route), as a node that answers an external client directly would: a
// connection it serves works only when the node masqueraded it. Every server
// answers "<name> <source address it saw>", so a case can tell whether the
// source was kept or masqueraded.

#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "lab.h"
#include "netns.h"

namespace {

using namespace kipvs::test;  // the lab (lab.h) and its namespaces (netns.h)
namespace fs = std::filesystem;
using namespace std::chrono_literals;

fs::path scratch() {
  return kipvs::test::scratch("nft");
}

// TCP on argv[3] and UDP on 5353: "<name> <peer address>".
constexpr const char* kServer = R"(import socket, socketserver, sys, threading
name, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.sendall(("%s %s\n" % (name, self.client_address[0])).encode())
class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True
    daemon_threads = True
def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, 5353))
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(("%s %s\n" % (name, peer[0])).encode(), peer)
threading.Thread(target=udp, daemon=True).start()
Server((addr, port), Handler).serve_forever()
)";

// Sends from one fixed source port until the answer starts with argv[3]
// (at most argv[4] tries, 1 s each); prints every answer.
constexpr const char* kUdpClient = R"(import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 40000))
s.settimeout(1)
for i in range(int(sys.argv[4])):
    s.sendto(b"hi", (sys.argv[1], int(sys.argv[2])))
    try:
        data = s.recvfrom(2048)[0].decode().strip()
    except socket.timeout:
        data = "timeout"
    print(data, flush=True)
    if data.startswith(sys.argv[3]):
        sys.exit(0)
sys.exit(1)
)";

void start_server(const std::string& prefix, const std::string& name, const std::string& address, int port) {
  kipvs::test::start_listener(prefix,
                              std::string(kPython) + " " + (scratch() / "server.py").string() + " " + name +
                                  " " + address + " " + std::to_string(port),
                              address, port);
}

class Lab {
 public:
  Lab() {
    write_file(scratch() / "server.py", kServer);
    write_file(scratch() / "udp_client.py", kUdpClient);
    run_ok("ip link add kt-br type bridge && ip addr add 10.244.0.1/24 dev kt-br && ip link set kt-br up");
    for (int i = 0; i < 2; ++i) {
      auto& pod = i == 0 ? p0_ : p1_;
      const std::string link = "kt-p" + std::to_string(i);
      const std::string address = "10.244.0.1" + std::to_string(i);
      run_ok("ip link add " + link + " type veth peer name eth0 netns " + pod.name());
      run_ok("ip link set " + link + " master kt-br up");
      run_ok(pod.exec() + "ip addr add " + address + "/24 dev eth0");
      run_ok(pod.exec() + "ip link set eth0 up");
      run_ok(pod.exec() + "ip route add default via 10.244.0.1");
      start_server(pod.exec(), "p" + std::to_string(i), address, 8080);
    }
    // node-b and its pod.
    run_ok("ip link add kt-nodeb type veth peer name eth0 netns " + node_b_.name());
    run_ok("ip addr add 10.251.0.1/24 dev kt-nodeb && ip link set kt-nodeb up");
    run_ok(node_b_.exec() + "ip addr add 10.251.0.2/24 dev eth0");
    run_ok(node_b_.exec() + "ip addr add 10.244.1.10/32 dev lo");
    run_ok(node_b_.exec() + "ip link set eth0 up");
    run_ok(node_b_.exec() + "ip route add 10.244.0.0/16 via 10.251.0.1");
    run_ok("ip route add 10.244.1.0/24 via 10.251.0.2");
    start_server(node_b_.exec(), "r0", "10.244.1.10", 8080);
    // Clients.
    for (int i = 0; i < 2; ++i) {
      auto& client = i == 0 ? c1_ : c2_;
      const std::string net = i == 0 ? "10.250.0." : "10.252.0.";
      const std::string link = "kt-c" + std::to_string(i + 1);
      run_ok("ip link add " + link + " type veth peer name eth0 netns " + client.name());
      run_ok("ip addr add " + net + "1/24 dev " + link + " && ip link set " + link + " up");
      run_ok(client.exec() + "ip addr add " + net + "2/24 dev eth0");
      run_ok(client.exec() + "ip link set eth0 up");
      run_ok(client.exec() + "ip route add default via " + net + "1");
    }
  }
  ~Lab() {
    for (const auto* peer : {&p0_, &p1_, &node_b_, &c1_, &c2_})
      run("ip netns pids " + peer->name() + " | xargs -r kill");
  }

  // One TCP connection: the first line, or the error text and exit status.
  static std::string tcp(const std::string& prefix, const std::string& address, int port, int seconds = 20) {
    const auto result = run(prefix + "timeout " + std::to_string(seconds) + " bash -c 'exec 3<>/dev/tcp/" +
                            address + "/" + std::to_string(port) + " && head -1 <&3'");
    auto text = result.output;
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    if (result.status != 0) text += " [exit " + std::to_string(result.status) + "]";
    return text;
  }

  const PeerNamespace& p0() const { return p0_; }
  const PeerNamespace& c1() const { return c1_; }
  const PeerNamespace& c2() const { return c2_; }

 private:
  PeerNamespace p0_{"p0"};
  PeerNamespace p1_{"p1"};
  PeerNamespace node_b_{"nodeb"};
  PeerNamespace c1_{"c1"};
  PeerNamespace c2_{"c2"};
};

// A Service and its one slice.
struct Svc {
  std::string name{};
  std::string cluster_ip{};
  std::string type = "ClusterIP";
  std::string protocol = "TCP";
  int port = 80;
  int target_port = 8080;
  int node_port = 0;
  std::string external_traffic_policy{};
  std::string lb_ip{};
  std::vector<std::string> source_ranges{};
  std::vector<std::string> endpoints{};  // p0, p1, r0
  std::vector<std::string> external_ips{};
  int health_check_node_port = 0;
};

std::string endpoint_ip(const std::string& name) {
  if (name == "p0") return "10.244.0.10";
  if (name == "p1") return "10.244.0.11";
  return "10.244.1.10";
}

std::string manifest(const std::vector<Svc>& services) {
  std::ostringstream out;
  for (const auto& s : services) {
    out << "---\napiVersion: v1\nkind: Service\nmetadata: {name: " << s.name << ", namespace: default}\n"
        << "spec:\n  type: " << s.type << "\n  clusterIP: " << s.cluster_ip
        << "\n  ports:\n  - {name: p, port: " << s.port << ", protocol: " << s.protocol;
    if (s.node_port != 0) out << ", nodePort: " << s.node_port;
    out << "}\n";
    if (!s.external_traffic_policy.empty())
      out << "  externalTrafficPolicy: " << s.external_traffic_policy << "\n";
    if (!s.external_ips.empty()) {
      out << "  externalIPs:\n";
      for (const auto& address : s.external_ips) out << "  - " << address << "\n";
    }
    if (s.health_check_node_port != 0) out << "  healthCheckNodePort: " << s.health_check_node_port << "\n";
    if (!s.source_ranges.empty()) {
      out << "  loadBalancerSourceRanges:\n";
      for (const auto& range : s.source_ranges) out << "  - " << range << "\n";
    }
    if (!s.lb_ip.empty()) out << "status: {loadBalancer: {ingress: [{ip: " << s.lb_ip << "}]}}\n";
    out << "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: " << s.name
        << "-1\n  namespace: default\n  labels: {kubernetes.io/service-name: " << s.name
        << "}\naddressType: IPv4\nports: [{name: p, port: " << s.target_port << ", protocol: " << s.protocol
        << "}]\nendpoints:\n";
    for (const auto& endpoint : s.endpoints) {
      out << "- addresses: [" << endpoint_ip(endpoint)
          << "]\n  conditions: {ready: true}\n  nodeName: " << (endpoint == "r0" ? "node-b" : "node-a")
          << "\n";
    }
  }
  return out.str();
}

// kipvs with the pod network's CIDR, which the masquerade rules need.
Running start(const std::string& name, const std::vector<Svc>& services,
              const std::vector<std::string>& extra = {}) {
  std::vector<std::string> args{"--cluster-cidr", "10.244.0.0/16"};
  args.insert(args.end(), extra.begin(), extra.end());
  return kipvs::test::start_kipvs(scratch() / name, "services.yaml", manifest(services), args);
}

std::string nft_table() {
  return run("nft -a list table inet kipvs").output;
}

// The listing without set elements: what must not change when only
// elements do (handles included, so a rewritten rule or table shows).
std::string without_elements(const std::string& listing) {
  std::istringstream in(listing);
  std::string out;
  bool inside = false;
  for (std::string line; std::getline(in, line);) {
    if (!inside && line.find("elements = {") != std::string::npos) {
      inside = line.find('}') == std::string::npos;
      continue;
    }
    if (inside) {
      inside = line.find('}') == std::string::npos;
      continue;
    }
    out += line + "\n";
  }
  return out;
}

const Svc kRemote{.name = "remote", .cluster_ip = "10.96.0.60", .endpoints = {"r0"}};

}  // namespace

TEST_CASE("nft: one endpoint's change rewrites set elements only, and --cleanup removes the table",
          "[kernel][nft]") {
  Lab lab;
  Svc web{.name = "web", .cluster_ip = "10.96.0.61", .endpoints = {"p0"}};
  auto running = start("elements", {web});
  const auto before = nft_table();
  INFO("before:\n" << before);
  REQUIRE_THAT(before, Catch::Contains("10.244.0.10 . tcp . 8080 . 10.244.0.10"));

  web.endpoints = {"p1"};
  write_file(running.dir / "services.yaml", manifest({web}));
  REQUIRE(eventually([] { return run_ok("ipvsadm -Sn").find("10.244.0.11:8080") != std::string::npos; }));
  const auto after = nft_table();
  INFO("after:\n" << after << "kipvs log:\n" << running.kipvs->log());
  CHECK_THAT(after, Catch::Contains("10.244.0.11 . tcp . 8080 . 10.244.0.11"));
  CHECK_THAT(after, !Catch::Contains("10.244.0.10 . tcp . 8080"));
  // Same table handle, same chains and rule handles: only elements moved.
  CHECK(without_elements(after) == without_elements(before));
  CHECK_THAT(without_elements(after), Catch::Contains("table inet kipvs { # handle"));

  CHECK(running.kipvs->stop() == 0);
  const auto cleanup = run(kipvs_binary().string() + " --cleanup 2>&1");
  INFO("cleanup:\n" << cleanup.output);
  CHECK(cleanup.status == 0);
  CHECK(run("nft list table inet kipvs").status != 0);
}

TEST_CASE("nft: a resync leaves the table alone, and writes it again after nft flush ruleset",
          "[kernel][nft]") {
  Lab lab;
  const Svc web{.name = "web", .cluster_ip = "10.96.0.62", .endpoints = {"p0"}};
  auto running = start("flushed", {web}, {"--ipvs-sync-period", "1s"});
  const auto count = [&](const std::string& text) {
    const auto log = running.kipvs->log();
    std::size_t n = 0;
    for (auto at = log.find(text); at != std::string::npos; at = log.find(text, at + 1)) ++n;
    return n;
  };
  const auto before = nft_table();
  // Resyncs that find the table: no rewrite, the same table (handles too).
  REQUIRE(eventually([&] { return count("sync full") >= 3; }));
  CHECK(count("is gone; writing it again") == 0);
  CHECK(nft_table() == before);

  run_ok("nft flush ruleset");
  const bool again = eventually([&] { return count("is gone; writing it again") == 1; });
  INFO("kipvs log:\n" << running.kipvs->log());
  REQUIRE(again);
  REQUIRE(eventually([] { return run("nft list table inet kipvs").status == 0; }));
  CHECK_THAT(nft_table(), Catch::Contains("10.244.0.10 . tcp . 8080 . 10.244.0.10"));
}

TEST_CASE("nft: the node's own connection to a cluster IP is masqueraded and answered", "[kernel][nft]") {
  Lab lab;
  auto running = start("node-originated", {kRemote});
  INFO("kipvs log:\n" << running.kipvs->log() << "table:\n" << nft_table());
  // node-b has no route to the virtual IP: only the masquerade makes this work.
  CHECK(Lab::tcp("", "10.96.0.60", 80) == "r0 10.251.0.1");
}

TEST_CASE("nft: a virtual IP's port that no Service uses is refused", "[kernel][nft]") {
  Lab lab;
  // Something on the node listens on every address, port 9999.
  start_server("", "node", "0.0.0.0", 9999);
  auto running = start("unused-port", {kRemote});
  INFO("kipvs log:\n" << running.kipvs->log() << "table:\n" << nft_table());
  CHECK(Lab::tcp(lab.c1().exec(), "10.250.0.1", 9999) == "node 10.250.0.2");
  CHECK_THAT(Lab::tcp(lab.c1().exec(), "10.96.0.60", 9999), Catch::Contains("refused"));
  CHECK(Lab::tcp(lab.c1().exec(), "10.96.0.60", 80) == "r0 10.251.0.1");
}

TEST_CASE("nft: node ports: Cluster masquerades to a remote backend, Local keeps the client's source",
          "[kernel][nft]") {
  Lab lab;
  const Svc cluster{.name = "np-cluster",
                    .cluster_ip = "10.96.0.62",
                    .type = "NodePort",
                    .node_port = 30080,
                    .endpoints = {"r0"}};
  const Svc local{.name = "np-local",
                  .cluster_ip = "10.96.0.63",
                  .type = "NodePort",
                  .node_port = 30081,
                  .external_traffic_policy = "Local",
                  .endpoints = {"p1", "r0"}};
  auto running = start("node-ports", {cluster, local});
  INFO("kipvs log:\n"
       << running.kipvs->log() << "table:\n"
       << nft_table() << "rules:\n"
       << run("ipvsadm -Sn").output);
  CHECK(Lab::tcp(lab.c1().exec(), "10.250.0.1", 30080) == "r0 10.251.0.1");
  CHECK(Lab::tcp(lab.c1().exec(), "10.250.0.1", 30081) == "p1 10.250.0.2");
}

TEST_CASE("nft: an external and a load-balancer IP that are the node's address lock nothing out",
          "[kernel][nft]") {
  Lab lab;
  // Something like sshd on the node, and an operator's IPVS service on the
  // node address, both there before kipvs.
  start_server("", "sshd", "0.0.0.0", 2222);
  run_ok("ipvsadm -A -t 10.250.0.1:443 -s wlc && ipvsadm -a -t 10.250.0.1:443 -r 10.244.0.11:8080 -m");
  const Svc web{
      .name = "web", .cluster_ip = "10.96.0.66", .endpoints = {"p0"}, .external_ips = {"10.250.0.1"}};
  const Svc lb{.name = "lb",
               .cluster_ip = "10.96.0.67",
               .type = "LoadBalancer",
               .port = 81,
               .node_port = 30083,
               .lb_ip = "10.250.0.1",
               .endpoints = {"p1"}};
  auto running = start("node-address", {web, lb}, {"--ipvs-sync-period", "1s"});
  INFO("kipvs log:\n"
       << running.kipvs->log() << "table:\n"
       << nft_table() << "rules:\n"
       << run("ipvsadm -Sn").output << "kube-ipvs0:\n"
       << run("ip -o addr show dev kube-ipvs0").output);
  CHECK(Lab::tcp(lab.c1().exec(), "10.250.0.1", 80) == "p0 10.244.0.1");
  CHECK(Lab::tcp(lab.c1().exec(), "10.250.0.1", 81) == "p1 10.244.0.1");
  // The node's other ports answer: nothing filters the node's own address.
  CHECK(Lab::tcp(lab.c1().exec(), "10.250.0.1", 2222) == "sshd 10.250.0.2");
  CHECK_THAT(run_ok("ip -o addr show dev kube-ipvs0"), !Catch::Contains("10.250.0.1"));
  CHECK_THAT(run_ok("nft list set inet kipvs vip_addrs_v4"), !Catch::Contains("10.250.0.1"));
  // Resyncs leave the operator's service alone.
  const auto synced = [&] {
    const auto log = running.kipvs->log();
    std::size_t n = 0;
    for (auto at = log.find("sync full"); at != std::string::npos; at = log.find("sync full", at + 1)) ++n;
    return n;
  };
  REQUIRE(eventually([&] { return synced() >= 3; }));
  CHECK_THAT(run_ok("ipvsadm -Sn"), Catch::Contains("-a -t 10.250.0.1:443 -r 10.244.0.11:8080 -m -w 1"));

  // The external IP goes: kipvs removes the virtual service it made, and
  // only that one.
  write_file(running.dir / "services.yaml",
             manifest({Svc{.name = "web", .cluster_ip = "10.96.0.66", .endpoints = {"p0"}}, lb}));
  CHECK(eventually([] { return run_ok("ipvsadm -Sn").find("10.250.0.1:80 ") == std::string::npos; }));
  CHECK_THAT(run_ok("ipvsadm -Sn"), Catch::Contains("-A -t 10.250.0.1:443 -s wlc"));
  CHECK(Lab::tcp(lab.c1().exec(), "10.250.0.1", 2222) == "sshd 10.250.0.2");
}

TEST_CASE("nft: a load balancer's probe of its health-check node port gets through", "[kernel][nft]") {
  Lab lab;
  const Svc lb{.name = "lb",
               .cluster_ip = "10.96.0.68",
               .type = "LoadBalancer",
               .node_port = 30084,
               .external_traffic_policy = "Local",
               .lb_ip = "10.97.0.71",
               .endpoints = {"p0"},
               .health_check_node_port = 31990};
  auto running = start("health-check", {lb});
  INFO("kipvs log:\n" << running.kipvs->log() << "table:\n" << nft_table());
  const auto probe = run(lab.c1().exec() + "curl -sS -i --max-time 10 http://10.97.0.71:31990/");
  INFO("probe:\n" << probe.output);
  CHECK(probe.status == 0);
  CHECK_THAT(probe.output, Catch::Contains("HTTP/1.1 200 OK"));
  CHECK_THAT(probe.output, Catch::Contains("X-Load-Balancing-Endpoint-Weight: 1"));
  CHECK_THAT(probe.output, Catch::Contains("\"localEndpoints\": 1"));
  // Another unused port of the load balancer's IP is still refused.
  CHECK_THAT(Lab::tcp(lab.c1().exec(), "10.97.0.71", 31991, 5), Catch::Contains("refused"));
}

TEST_CASE("kube-proxy --cleanup's flush and link deletion are repaired at once, not at the next resync",
          "[kernel][nft]") {
  Lab lab;
  auto running = start("link-deleted", {kRemote}, {"--ipvs-sync-period", "300s"});
  REQUIRE(Lab::tcp(lab.c1().exec(), "10.96.0.60", 80) == "r0 10.251.0.1");
  // What kube-proxy --cleanup does to an IPVS node: flush, then delete the link.
  run_ok("ipvsadm -C && ip link del kube-ipvs0");
  const auto started = std::chrono::steady_clock::now();
  const bool back = eventually(
      [] {
        return run("ip -o addr show dev kube-ipvs0").output.find("10.96.0.60") != std::string::npos &&
               run_ok("ipvsadm -Sn").find("-a -t 10.96.0.60:80 -r 10.244.1.10:8080") != std::string::npos;
      },
      30s);
  const auto took =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
  INFO("kipvs log:\n" << running.kipvs->log() << "repaired after " << took.count() << " ms");
  REQUIRE(back);
  CHECK_THAT(running.kipvs->log(), Catch::Contains("The dummy interface was deleted"));
  CHECK(Lab::tcp(lab.c1().exec(), "10.96.0.60", 80) == "r0 10.251.0.1");
}

TEST_CASE("nft: a pod reaches itself through its Service (hairpin)", "[kernel][nft]") {
  Lab lab;
  auto running = start("hairpin", {Svc{.name = "self", .cluster_ip = "10.96.0.64", .endpoints = {"p0"}}});
  INFO("kipvs log:\n" << running.kipvs->log() << "table:\n" << nft_table());
  CHECK(Lab::tcp(lab.p0().exec(), "10.96.0.64", 80) == "p0 10.244.0.1");
}

// A load balancer at 10.97.0.70 (endpoint p0) that lets in only `range`.
Svc source_ranged_lb(const std::string& range) {
  return Svc{.name = "lb",
             .cluster_ip = "10.96.0.65",
             .type = "LoadBalancer",
             .node_port = 30082,
             .lb_ip = "10.97.0.70",
             .source_ranges = {range},
             .endpoints = {"p0"}};
}

TEST_CASE("nft: loadBalancerSourceRanges lets one client in and keeps another out", "[kernel][nft]") {
  Lab lab;
  auto running = start("source-ranges", {source_ranged_lb("10.250.0.0/24"), kRemote});
  INFO("kipvs log:\n" << running.kipvs->log() << "table:\n" << nft_table());
  CHECK(Lab::tcp(lab.c1().exec(), "10.97.0.70", 80) == "p0 10.244.0.1");
  // c2 reaches the node (a cluster IP), but not the load balancer.
  CHECK(Lab::tcp(lab.c2().exec(), "10.96.0.60", 80) == "r0 10.251.0.1");
  CHECK_THAT(Lab::tcp(lab.c2().exec(), "10.97.0.70", 80, 5), Catch::Contains("[exit 124]"));
  // The range holds the node's IP 10.250.0.1: the node's own connection
  // (source 10.97.0.70, the LB IP bound here) gets in.
  CHECK(Lab::tcp("", "10.97.0.70", 80) == "p0 10.244.0.1");
}

TEST_CASE("nft: loadBalancerSourceRanges keep the node's own connections out when no range holds the node",
          "[kernel][nft]") {
  Lab lab;
  auto running = start("source-ranges-node", {source_ranged_lb("10.252.0.0/24"), kRemote});
  INFO("kipvs log:\n" << running.kipvs->log() << "table:\n" << nft_table());
  CHECK(Lab::tcp(lab.c2().exec(), "10.97.0.70", 80) == "p0 10.244.0.1");
  CHECK_THAT(Lab::tcp(lab.c1().exec(), "10.97.0.70", 80, 5), Catch::Contains("[exit 124]"));
  // IPVS takes the node's connections at LOCAL_OUT, where only kipvs's
  // output filter sees them (kube-proxy filters them too).
  CHECK_THAT(Lab::tcp("", "10.97.0.70", 80, 5), Catch::Contains("[exit 124]"));
  CHECK(Lab::tcp("", "10.96.0.65", 80) == "p0 10.244.0.1");  // its cluster IP is not filtered
}

TEST_CASE("nft: a UDP client moves to a new endpoint once its endpoint is removed", "[kernel][nft]") {
  Lab lab;
  Svc dns{.name = "dns",
          .cluster_ip = "10.96.0.66",
          .protocol = "UDP",
          .port = 53,
          .target_port = 5353,
          .endpoints = {"p0"}};
  auto running = start("udp", {dns});
  const auto client =
      lab.c1().exec() + kPython + " " + (scratch() / "udp_client.py").string() + " 10.96.0.66 53 ";
  const auto first = run(client + "p0 10");
  INFO("first:\n" << first.output);
  REQUIRE(first.status == 0);

  // The first client's conntrack entry, NATed to p0, in the node's table.
  const auto p0_entry = [] {
    std::istringstream table(run("cat /proc/net/nf_conntrack 2>&1").output);
    for (std::string line; std::getline(table, line);) {
      if (line.find(" udp ") != std::string::npos && line.find("dst=10.96.0.66 ") != std::string::npos &&
          line.find("src=10.244.0.10 ") != std::string::npos)
        return true;
    }
    return false;
  };
  const bool had_p0_entry = p0_entry();

  dns.endpoints = {"p1"};
  write_file(running.dir / "services.yaml", manifest({dns}));
  REQUIRE(eventually([] { return run_ok("ipvsadm -Sn").find("10.244.0.10:5353") == std::string::npos; }));
  // Gone before the client sends again, else it would last the UDP timeout
  // (30 s). Two parties remove it: kipvs with the real server, and this
  // kernel itself (expire_nodest_conn=1 flushes a deleted destination's
  // connections, and their conntrack entries, since Linux 5.9). They race, so
  // the entry is checked, not which of them removed it: this case does not
  // show kipvs's own removal (the unit tests do), only that the client moves.
  if (had_p0_entry) {
    CHECK(eventually([&] { return !p0_entry(); }, 10s));
  } else {
    WARN("the first client's conntrack entry was gone before the change; its removal is not checked");
  }
  // Same client port: without the conntrack entry's removal, the answers of
  // p1 would not match the old entry's NAT and never come back.
  const auto moved = run(client + "p1 8");
  INFO("after the change:\n"
       << moved.output << "kipvs log:\n"
       << running.kipvs->log() << "conntrack:\n"
       << run("cat /proc/net/nf_conntrack 2>&1").output);
  CHECK(moved.status == 0);
}
