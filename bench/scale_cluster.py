#!/usr/bin/python3
"""bench/scale's cluster side: generates N Services with M endpoints each and
loads them into a kube-apiserver started by scripts/apiserver.

  scale_cluster.py load APIDIR --services N --endpoints M [--threads T]

The Services live in namespace `scale`:
  - ClusterIPs 10.96.4.0 upwards (inside scripts/apiserver's 10.96.0.0/16),
  - ports in a mix: a third have 80/TCP, a third 80/TCP + 443/TCP, a third
    53/UDP + 53/TCP,
  - every tenth (i % 10 == 1) has sessionAffinity ClientIP,
  - every tenth (i % 10 == 2) is a NodePort Service, node ports from 30000,
    while the default range lasts (30000-32767: about 16,500 Services; past
    that these are ClusterIP Services too),
  - one EndpointSlice each, M ready endpoints 10.128.0.0/9 upwards, port 8080
    (8443 for https, 5353 for dns).
Service s-0 (one port, 80/TCP, ClusterIP 10.96.4.0) is the one the change
test edits. Also creates the Node `kipvs-rig` with InternalIP 10.0.2.15.
Prints one JSON object: counts and the load time.
"""
import argparse
import http.client
import ipaddress
import json
import os
import queue
import ssl
import sys
import threading
import time

NAMESPACE = "scale"
NODE = "kipvs-rig"
NODE_IP = "10.0.2.15"
FIRST_VIP = int(ipaddress.IPv4Address("10.96.4.0"))
FIRST_POD = int(ipaddress.IPv4Address("10.128.0.0"))


def write_guest_kubeconfig(path, apidir, server, user):
    """A kubeconfig for the guest: the API server through the rig's guestfwd
    (its certificate names localhost), and `user`, the lines under `user:`."""
    with open(path, "w") as f:
        f.write(f"""apiVersion: v1
kind: Config
clusters:
- name: rig
  cluster:
    server: https://{server[0]}:{server[1]}
    certificate-authority: {apidir}/pki/ca.crt
    tls-server-name: localhost
contexts:
- name: rig
  context: {{cluster: rig, user: u}}
current-context: rig
users:
- name: u
  user:
{user}
""")


def ports_for(i):
    kind = i % 3
    if kind == 0:
        return [("http", "TCP", 80, 8080)]
    if kind == 1:
        return [("http", "TCP", 80, 8080), ("https", "TCP", 443, 8443)]
    return [("dns", "UDP", 53, 5353), ("dns-tcp", "TCP", 53, 5353)]


def service_ip(i):
    return str(ipaddress.IPv4Address(FIRST_VIP + i))


def pod_ip(i, j, m):
    return str(ipaddress.IPv4Address(FIRST_POD + i * m + j))


def endpoints(addresses):
    # On other nodes, as in a real cluster: an endpoint on this node would
    # add kube-proxy's hairpin ipset entries (one `ipset add` exec each).
    return [{"addresses": [a], "conditions": {"ready": True, "serving": True, "terminating": False},
             "nodeName": f"worker-{k % 8}"} for k, a in enumerate(addresses)]


def slice_for(i, m, extra=()):
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"s-{i}-a", "namespace": NAMESPACE,
                     "labels": {"kubernetes.io/service-name": f"s-{i}",
                                "endpointslice.kubernetes.io/managed-by": "bench.kipvs.io"}},
        "addressType": "IPv4",
        "endpoints": endpoints([pod_ip(i, j, m) for j in range(m)] + list(extra)),
        "ports": [{"name": name, "protocol": proto, "port": target} for name, proto, _, target in ports_for(i)],
    }


def generate(n, m):
    node_port = 30000
    services, slices = [], []
    for i in range(n):
        spec = {"type": "ClusterIP", "clusterIP": service_ip(i), "clusterIPs": [service_ip(i)], "ports": []}
        node_port_service = i % 10 == 2 and node_port + len(ports_for(i)) <= 32768
        for name, proto, port, target in ports_for(i):
            p = {"name": name, "protocol": proto, "port": port, "targetPort": target}
            if node_port_service:
                p["nodePort"] = node_port
                node_port += 1
            spec["ports"].append(p)
        if i % 10 == 1:
            spec["sessionAffinity"] = "ClientIP"
        if node_port_service:
            spec["type"] = "NodePort"
        services.append({"apiVersion": "v1", "kind": "Service",
                         "metadata": {"name": f"s-{i}", "namespace": NAMESPACE}, "spec": spec})
        slices.append(slice_for(i, m))
    return services, slices


class Client:
    """One keep-alive HTTPS connection to the apiserver with the admin cert."""

    def __init__(self, apidir, host="127.0.0.1", port=None, server_hostname=None):
        env = dict(line.strip().split("=", 1) for line in open(os.path.join(apidir, "env")) if "=" in line)
        self.host, self.port = host, int(port or env["APISERVER_PORT"])
        ctx = ssl.create_default_context(cafile=os.path.join(apidir, "pki/ca.crt"))
        ctx.load_cert_chain(os.path.join(apidir, "pki/admin.crt"), os.path.join(apidir, "pki/admin.key"))
        if server_hostname is None:
            self.ctx = ctx
        else:
            # Reached through QEMU's guestfwd at an address the serving
            # certificate does not name: check the CA, not the name.
            ctx.check_hostname = False
            self.ctx = ctx
        self.conn = None

    def request(self, method, path, body=None, content_type="application/json"):
        for attempt in range(5):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=120)
                data = json.dumps(body).encode() if body is not None else None
                self.conn.request(method, path, body=data, headers={"Content-Type": content_type})
                resp = self.conn.getresponse()
                payload = resp.read()
                if resp.status == 429 or resp.status >= 500:
                    raise RuntimeError(f"{resp.status}")
                return resp.status, payload
            except (OSError, http.client.HTTPException, RuntimeError):
                self.conn = None
                if attempt == 4:
                    raise
                time.sleep(0.5 * (attempt + 1))


def create_all(apidir, objects, threads):
    """POSTs objects with `threads` connections; 409 (exists) counts as done."""
    work = queue.Queue()
    for o in objects:
        work.put(o)
    errors = []

    def worker():
        client = Client(apidir)
        while True:
            try:
                o = work.get_nowait()
            except queue.Empty:
                return
            if o["kind"] == "Service":
                path = f"/api/v1/namespaces/{NAMESPACE}/services"
            else:
                path = f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices"
            status, payload = client.request("POST", path, o)
            if status not in (200, 201, 409):
                errors.append(f"{o['metadata']['name']}: {status} {payload[:300]!r}")

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        sys.exit("scale_cluster: " + "\n".join(errors[:5]))


def cmd_load(args):
    t0 = time.monotonic()
    services, slices = generate(args.services, args.endpoints)
    client = Client(args.apidir)
    client.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                  "metadata": {"name": NAMESPACE}})
    client.request("POST", "/api/v1/nodes", {
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE}},
        "status": {"addresses": [{"type": "InternalIP", "address": NODE_IP}, {"type": "Hostname", "address": NODE}]}})
    # Slices before Services: an agent never sees a Service without endpoints.
    create_all(args.apidir, slices, args.threads)
    create_all(args.apidir, services, args.threads)
    ports = sum(len(s["spec"]["ports"]) for s in services)
    node_ports = sum(len(s["spec"]["ports"]) for s in services if s["spec"]["type"] == "NodePort")
    print(json.dumps({"services": args.services, "endpoints": args.endpoints, "service_ports": ports,
                      "node_ports": node_ports, "load_seconds": round(time.monotonic() - t0, 2)}))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    load = sub.add_parser("load")
    load.add_argument("apidir")
    load.add_argument("--services", type=int, default=10000)
    load.add_argument("--endpoints", type=int, default=10)
    load.add_argument("--threads", type=int, default=8)
    args = ap.parse_args()
    cmd_load(args)


if __name__ == "__main__":
    main()
