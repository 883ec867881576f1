#!/usr/bin/env python3
"""The checks of `scripts/cluster test DIR` (see scripts/cluster's header).

usage: cluster_test.py DIR                runs on the host: every check
       cluster_test.py migrate DIR        runs on the host, after the checks:
                                          cleanup mode, then kube-proxy (IPVS
                                          mode) replaced by kipvs under traffic
       cluster_test.py guest-scale DIR SECONDS    runs in the guest: the scale timing
       cluster_test.py guest-traffic DIR CLIENT_IP VIP   runs in the guest: requests
                                          from the client pod until DIR/traffic.stop

KIPVS_CLUSTER_SCALE_TIMEOUT (seconds, default 600) bounds each scale step.

Traffic comes from pods: a client pod runs agnhost netexec, whose /dial
endpoint sends N requests (each a new connection) to a host and port and
returns who answered. The node (the guest) asks the client pod over HTTP; the
apiserver cannot reach the kubelet, so there is no kubectl exec.
"""
import json
import os
import re
import ssl
import subprocess
import sys
import threading
import time
import http.client
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_IP = "10.0.2.15"
API_HOST = "10.0.2.100"
NODE_PORT = 30080
NS = "demo"
# How long a scale step may take to reach the kernel (pods start slowly in
# the emulated guest: 3 -> 10 took about 100 s here).
SCALE_TIMEOUT = float(os.environ.get("KIPVS_CLUSTER_SCALE_TIMEOUT", "600"))

MANIFESTS = f"""
apiVersion: v1
kind: Namespace
metadata: {{name: {NS}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {NS}}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: 5
      containers:
      - name: netexec
        image: localhost/agnhost:test
        imagePullPolicy: Never
        args: [netexec, --http-port=8080]
        ports: [{{containerPort: 8080}}]
        readinessProbe:
          httpGet: {{path: /hostname, port: 8080}}
          periodSeconds: 2
---
apiVersion: v1
kind: Pod
metadata: {{name: client, namespace: {NS}, labels: {{app: client}}}}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: netexec
    image: localhost/agnhost:test
    imagePullPolicy: Never
    args: [netexec, --http-port=8080]
    readinessProbe:
      httpGet: {{path: /hostname, port: 8080}}
      periodSeconds: 2
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {NS}}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: sticky, namespace: {NS}}}
spec:
  selector: {{app: web}}
  sessionAffinity: ClientIP
  sessionAffinityConfig: {{clientIP: {{timeoutSeconds: 600}}}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: shop, namespace: {NS}}}
spec:
  type: NodePort
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: 8080, nodePort: {NODE_PORT}}}]
"""


def log(msg):
    print(f"cluster test[{time.strftime('%H:%M:%S', time.gmtime())}]: {msg}", file=sys.stderr, flush=True)


class Host:
    def __init__(self, d):
        self.dir = d
        self.kubectl = subprocess.check_output([os.path.join(HERE, "apiserver"), "bin", "kubectl"], text=True).strip()
        self.failed = []

    def k(self, *args, input=None, check=True):
        r = subprocess.run([self.kubectl, "--kubeconfig", os.path.join(self.dir, "api/admin.kubeconfig"), *args],
                           input=input, capture_output=True, text=True)
        if check and r.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout

    def kj(self, *args):
        return json.loads(self.k(*args, "-o", "json"))

    def guest(self, *cmd, timeout=300, check=True):
        r = subprocess.run([os.path.join(HERE, "rig"), "exec", os.path.join(self.dir, "guest"), "--timeout", str(timeout),
                            "--", *cmd], capture_output=True, text=True)
        if check and r.returncode != 0:
            raise RuntimeError(f"in the guest: {' '.join(cmd)}: rc {r.returncode}: {r.stderr.strip()[-800:]}")
        return r.stdout

    def result(self, ok, what, saw=""):
        if ok:
            print(f"ok: {what}", flush=True)
        else:
            print(f"FAIL: {what}\n  saw: {saw}", flush=True)
            self.failed.append(what)
        return ok

    def dial(self, client_ip, host, port, tries):
        q = urllib.parse.urlencode({"request": "hostname", "protocol": "http", "host": host, "port": port, "tries": tries})
        out = self.guest("curl", "-sS", "--max-time", "120", f"http://{client_ip}:8080/dial?{q}", check=False)
        try:
            r = json.loads(out)
        except ValueError:
            r = {"responses": [], "errors": [f"not JSON: {out[:300]!r}"]}
        errors = r.get("errors") or []
        # Short enough to read: how many, and the first two.
        r["errors"] = f"{len(errors)} errors: {errors[:2]}" if errors else None
        return r

    def ipvs(self):
        return self.guest("ipvsadm", "-Sn")


def counts(names):
    c = {}
    for n in names:
        c[n] = c.get(n, 0) + 1
    return c


def active_destinations(ipvs_text, vip, port):
    """{real server: weight} of the TCP virtual service vip:port in `ipvsadm -Sn` output."""
    dests = {}
    for line in ipvs_text.splitlines():
        m = re.match(rf"^-a -t {re.escape(vip)}:{port} -r (\S+) .*-w (\d+)", line)
        if m:
            dests[m.group(1)] = int(m.group(2))
    return dests


def proc_destinations(vip, port):
    """{real server: weight} of TCP vip:port from /proc/net/ip_vs: the same
    kernel table as `ipvsadm -Sn`, read without starting a process (which
    takes up to seconds in the busy emulated guest)."""
    want = "%08X:%04X" % (int.from_bytes(bytes(int(x) for x in vip.split(".")), "big"), port)
    dests, inside = {}, False
    with open("/proc/net/ip_vs") as f:
        for line in f:
            parts = line.split()
            if line.startswith("TCP") or line.startswith("UDP") or line.startswith("SCTP") or line.startswith("FWM"):
                inside = parts[0] == "TCP" and parts[1] == want
            elif inside and parts and parts[0] == "->":
                addr, p = parts[1].split(":")
                ip = ".".join(str(b) for b in int(addr, 16).to_bytes(4, "big"))
                dests[f"{ip}:{int(p, 16)}"] = int(parts[3])
    return dests


def run_host(d):
    h = Host(d)
    t_start = time.time()
    log("test workload: Deployment web (3 x agnhost netexec), client pod, Services web, sticky (ClientIP), shop (NodePort)")
    h.k("apply", "-f", "-", input=MANIFESTS)
    ok = True
    try:
        h.k("-n", NS, "rollout", "status", "deployment/web", "--timeout=600s")
        h.k("-n", NS, "wait", "--for=condition=Ready", "pod/client", "--timeout=600s")
    except RuntimeError as e:
        ok = False
        h.result(False, "the test pods became Ready", f"{e}\n{h.k('-n', NS, 'get', 'pods', '-o', 'wide', check=False)}")
    if not ok:
        return finish(h, t_start)
    log(f"pods Ready after {time.time() - t_start:.0f} s")

    def web_pods():
        pods = h.kj("-n", NS, "get", "pods", "-l", "app=web")["items"]
        return {p["metadata"]["name"]: p["status"].get("podIP") for p in pods
                if not p["metadata"].get("deletionTimestamp")}

    client_ip = h.kj("-n", NS, "get", "pod", "client")["status"]["podIP"]
    svc = {s: h.kj("-n", NS, "get", "service", s)["spec"]["clusterIP"] for s in ("web", "sticky", "shop")}
    backends = web_pods()
    log(f"client {client_ip}; backends {backends}; services {svc}")

    # Wait (briefly) for kipvs to have the three backends in the kernel.
    want = {f"{ip}:8080" for ip in backends.values()}
    deadline = time.time() + 60
    while True:
        dests = active_destinations(h.ipvs(), svc["web"], 80)
        if {k for k, w in dests.items() if w > 0} == want or time.time() > deadline:
            break
        time.sleep(1)
    h.result({k for k, w in dests.items() if w > 0} == want,
             f"the kernel has web's 3 backends behind {svc['web']}:80", f"ipvsadm -Sn destinations {dests}, want {sorted(want)}")

    # 1. spread
    r = h.dial(client_ip, svc["web"], 80, 30)
    c = counts(r.get("responses", []))
    h.result(set(c) == set(backends) and not r.get("errors"),
             f"ClusterIP {svc['web']}:80 spreads 30 requests from a pod over the 3 backends: {c}",
             f"answers {c}, errors {r.get('errors')}, backends {sorted(backends)}")

    # 2. ClientIP affinity
    r = h.dial(client_ip, svc["sticky"], 80, 20)
    c = counts(r.get("responses", []))
    h.result(len(c) == 1 and sum(c.values()) == 20 and not r.get("errors"),
             f"ClientIP affinity: {svc['sticky']}:80 sends all 20 requests of one client to one backend: {c}",
             f"answers {c}, errors {r.get('errors')}")

    # 3. NodePort, from a pod and from the node
    r = h.dial(client_ip, NODE_IP, NODE_PORT, 9)
    c = counts(r.get("responses", []))
    h.result(set(c) <= set(backends) and sum(c.values()) == 9 and not r.get("errors"),
             f"NodePort {NODE_IP}:{NODE_PORT} answers 9 requests from a pod: {c}", f"answers {c}, errors {r.get('errors')}")
    out = h.guest("curl", "-sS", "--max-time", "10", f"http://{NODE_IP}:{NODE_PORT}/hostname", check=False)
    h.result(out.strip() in backends, f"NodePort {NODE_IP}:{NODE_PORT} answers the node itself: {out.strip()!r}",
             f"curl printed {out.strip()!r}")

    # 4. a deleted pod gets no more traffic
    victim, victim_ip = sorted(backends.items())[0]
    t0 = time.time()
    h.k("-n", NS, "delete", "pod", victim, "--wait=true", "--timeout=120s")
    log(f"deleted pod {victim} ({victim_ip}) in {time.time() - t0:.1f} s")
    deadline = time.time() + 60
    while True:
        dests = active_destinations(h.ipvs(), svc["web"], 80)
        if dests.get(f"{victim_ip}:8080", 0) == 0 or time.time() > deadline:
            break
        time.sleep(1)
    others = {k: w for k, w in dests.items() if k != f"{victim_ip}:8080" and w > 0}
    h.result(dests.get(f"{victim_ip}:8080", 0) == 0 and others,
             f"the deleted pod's destination {victim_ip}:8080 has weight 0 or is gone, {time.time() - t0:.1f} s after the delete",
             f"ipvsadm -Sn destinations {dests} (the others must stay active)")
    r = h.dial(client_ip, svc["web"], 80, 30)
    c = counts(r.get("responses", []))
    h.result(victim not in c and not r.get("errors") and sum(c.values()) == 30,
             f"after the delete, 30 requests to {svc['web']}:80 avoid {victim}: {c}",
             f"answers {c}, errors {r.get('errors')}")

    # 5. kipvs Ready, /metrics
    pods = h.kj("-n", "kube-system", "get", "pods", "-l", "app.kubernetes.io/name=kipvs")["items"]
    ready = [p["metadata"]["name"] for p in pods
             if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))]
    h.result(len(pods) == 1 and ready, f"kipvs's pod is Ready: {ready}",
             f"{[(p['metadata']['name'], p['status'].get('conditions')) for p in pods]}")
    metrics = h.guest("curl", "-sS", "--max-time", "20", f"http://{NODE_IP}:10249/metrics", check=False)
    m = re.search(r'^kipvs_service_connections_total\{namespace="demo",service="web"[^}]*\} (\S+)', metrics, re.M)
    h.result(m is not None and float(m.group(1)) > 0,
             f"kipvs's /metrics answers on {NODE_IP}:10249 ({len(metrics)} bytes) and counts web's connections: "
             f"{m.group(0) if m else None}",
             f"{len(metrics)} bytes; first lines: {metrics[:300]!r}")
    # kube-prometheus-stack's "Kubernetes / Proxy" dashboard reads these.
    wanted = ("process_resident_memory_bytes", "process_cpu_seconds_total", "rest_client_requests_total",
              "rest_client_request_duration_seconds_bucket", "kubeproxy_sync_proxy_rules_duration_seconds_bucket")
    missing = [n for n in wanted if not re.search(rf"^{n}[{{ ]", metrics, re.M)]
    h.result(not missing, f"/metrics has the series the Kubernetes / Proxy dashboard reads: {', '.join(wanted)}",
             f"missing {missing}")
    # Its DNS must not depend on a Service only it programs.
    ds = h.kj("-n", "kube-system", "get", "daemonset", "kipvs")
    policy = ds["spec"]["template"]["spec"].get("dnsPolicy")
    h.result(policy == "Default", f"kipvs's pods resolve names with the node's resolver (dnsPolicy {policy})",
             f"dnsPolicy {policy}")

    # 5b. the kubernetes Service: 10.96.0.1:443 -> the apiserver on the host
    # (through QEMU's forward). A plain-HTTP request gets Go's answer to one
    # on a TLS port, which shows the connection reached the apiserver.
    r = h.dial(client_ip, "10.96.0.1", 443, 3)
    got = r.get("responses") or []
    h.result(len(got) == 3 and all("HTTP request to an HTTPS server" in x for x in got),
             "the kubernetes Service 10.96.0.1:443 reaches the apiserver from a pod",
             f"answers {got}, errors {r.get('errors')}")

    # 6. scale 3 -> 10 -> 1, timed in the guest
    log("scaling web 3 -> 10 -> 1 (timed in the guest: API write, EndpointSlice watch, /proc/net/ip_vs)")
    try:
        if os.path.exists(os.path.join(d, "scale.json")):
            os.remove(os.path.join(d, "scale.json"))
        out = h.guest("/usr/bin/python3", os.path.abspath(__file__), "guest-scale", d, str(SCALE_TIMEOUT),
                      timeout=int(2 * SCALE_TIMEOUT + 300))
        sys.stdout.write(out)
        res = json.load(open(os.path.join(d, "scale.json")))
        for step in res:
            h.result(step["ok"], f"scale {step['from']} -> {step['to']}: the kernel has {step['to']} active destinations; "
                     f"API write -> kernel {step.get('write_to_kernel_s')} s, "
                     f"EndpointSlice -> kernel {step.get('slice_to_kernel_ms')} ms",
                     step.get("saw", ""))
    except (RuntimeError, OSError, ValueError) as e:
        h.result(False, "scale 3 -> 10 -> 1", str(e))
    return finish(h, t_start)


KUBE_PROXY_CONFIG = """apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: ipvs
clientConnection:
  kubeconfig: {dir}/node/admin.kubeconfig
hostnameOverride: kipvs-node
clusterCIDR: 10.244.0.0/16
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 0.0.0.0:10256
conntrack:
  maxPerCore: 0
"""


def ipvs_conns(ipvs_stats_text, vip, port):
    """Connections the kernel counted for TCP vip:port (`ipvsadm -Ln --stats`),
    or None. A virtual service deleted and made again starts from 0."""
    for line in ipvs_stats_text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "TCP" and parts[1] == f"{vip}:{port}":
            return int(parts[2])
    return None


def run_migrate(d):
    h = Host(d)
    t_start = time.time()
    try:
        return migrate(h, d, t_start)
    except (RuntimeError, OSError, ValueError, KeyError) as e:
        h.result(False, "the migration checks ran to their end", repr(e))
        return finish(h, t_start)


def migrate(h, d, t_start):
    """What an operator does on day one, on the cluster `up` and `test` left:

    1. kipvs's cleanup mode (helm upgrade --set cleanup.enabled=true) removes
       its rules from the node; then helm uninstall.
    2. kube-proxy in IPVS mode (v1.35, as a process in the guest) serves the
       Services again.
    3. Under traffic from the client pod to web's ClusterIP: helm install
       kipvs, wait for it to be Ready, stop kube-proxy. Zero failed requests,
       and the virtual service is the same one (its connection counter went
       on: kipvs took kube-proxy's rules over in place, it did not make them
       again).
    4. `kube-proxy --cleanup` (the chart README's last step) deletes kube-ipvs0
       and every IPVS service: kipvs puts them back within seconds (it
       watches the link). Requests that failed meanwhile are reported, not
       judged.
    """
    helm = subprocess.check_output([os.path.join(HERE, "apiserver"), "bin", "helm"], text=True).strip()
    kube_proxy = subprocess.check_output([os.path.join(HERE, "apiserver"), "bin", "kube-proxy"], text=True).strip()
    root = os.path.dirname(HERE)

    def run_helm(*args):
        r = subprocess.run([helm, "--kubeconfig", os.path.join(d, "api/admin.kubeconfig"), *args],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"helm {' '.join(args)}: {r.stderr.strip()[-800:]}")

    def kernel_state():
        return h.guest("sh", "-c", "ip -o link show kube-ipvs0 2>&1; echo ---; ipvsadm -Sn; echo ---; "
                       "nft list table inet kipvs >/dev/null 2>&1 && echo kipvs-table || echo no-kipvs-table",
                       check=False)

    def poll(limit, pred):
        deadline = time.time() + limit
        while True:
            value = pred()
            if value or time.time() > deadline:
                return value
            time.sleep(2)

    svc = h.kj("-n", NS, "get", "service", "web")["spec"]["clusterIP"]
    client_ip = h.kj("-n", NS, "get", "pod", "client")["status"]["podIP"]

    # 1. cleanup mode
    log("cleanup mode: helm upgrade --set cleanup.enabled=true")
    try:
        run_helm("upgrade", "kipvs", os.path.join(root, "charts/kipvs"), "-n", "kube-system", "--reuse-values",
                 "--set", "cleanup.enabled=true", "--wait", "--timeout", "10m")
        h.k("-n", "kube-system", "rollout", "status", "daemonset/kipvs", "--timeout=600s")
    except RuntimeError as e:
        h.result(False, "cleanup mode rolls out", str(e))
        return finish(h, t_start)
    clean = lambda: (lambda s: "does not exist" in s.split("---")[0] and  # noqa: E731
                     not re.search(r"^-A", s.split("---")[1], re.M) and "no-kipvs-table" in s)(kernel_state())
    gone = poll(120, clean)
    h.result(gone, "cleanup mode removed kube-ipvs0, every IPVS service and kipvs's nftables table from the node",
             kernel_state()[:1500])
    run_helm("uninstall", "kipvs", "-n", "kube-system", "--wait", "--timeout", "5m")

    # 2. kube-proxy, IPVS mode
    with open(os.path.join(d, "node/kube-proxy.yaml"), "w") as f:
        f.write(KUBE_PROXY_CONFIG.format(dir=d))
    h.guest("sh", "-c", f"nohup '{kube_proxy}' --config '{d}/node/kube-proxy.yaml' -v=2 "
            f">'{d}/logs/kube-proxy.log' 2>&1 & echo $! >/run/kube-proxy.pid")
    served = poll(180, lambda: active_destinations(h.ipvs(), svc, 80))
    h.result(bool(served), f"kube-proxy --proxy-mode=ipvs programs web's {svc}:80: {served}",
             f"ipvsadm -Sn: {h.ipvs()[:800]}; kube-proxy's log: {d}/logs/kube-proxy.log")
    if not served:
        return finish(h, t_start)

    # 3. the switch, under traffic
    traffic = Traffic(h, d, client_ip, svc)
    time.sleep(10)
    before = ipvs_conns(h.guest("ipvsadm", "-Ln", "--stats"), svc, 80)
    log(f"traffic running; kernel counted {before} connections to {svc}:80 under kube-proxy; helm install kipvs")
    t_switch = time.time()
    install = subprocess.run([os.path.join(HERE, "cluster"), "install", d], capture_output=True, text=True)
    h.result(install.returncode == 0, "helm install kipvs next to the running kube-proxy: kipvs Ready",
             install.stderr[-1500:])
    h.guest("sh", "-c", "kill $(cat /run/kube-proxy.pid)")
    log(f"kube-proxy stopped {time.time() - t_switch:.0f} s after helm install began")
    time.sleep(15)
    after = ipvs_conns(h.guest("ipvsadm", "-Ln", "--stats"), svc, 80)
    h.result(before is not None and after is not None and after > before,
             f"kipvs took web's virtual service over in place: its connection count went on from {before} to {after}",
             f"connections counted before {before}, after {after} (a virtual service made again starts from 0)")
    traffic.mark()  # the guest notes the count here

    # 4. kube-proxy --cleanup behind kipvs's back
    t_cleanup = time.time()
    h.guest("sh", "-c", f"'{kube_proxy}' --cleanup -v=2 >'{d}/logs/kube-proxy-cleanup-ipvs.log' 2>&1", check=False)
    t_cleaned = time.time()
    back = poll(60, lambda: active_destinations(h.ipvs(), svc, 80))
    h.result(bool(back), f"after kube-proxy --cleanup (which ran {t_cleaned - t_cleanup:.0f} s), kipvs had {svc}:80 back "
             f"when first looked at, {time.time() - t_cleaned:.0f} s later: {back}", f"ipvsadm -Sn: {h.ipvs()[:800]}")
    judge_switch(h, traffic, "while kipvs replaced kube-proxy")

    migrate_from_iptables(h, d, svc, client_ip, run_helm, kube_proxy, poll)
    return finish(h, t_start)


class Traffic:
    """scripts/cluster_test.py guest-traffic in the guest, in a thread."""

    def __init__(self, h, d, client_ip, vip):
        self.d = d
        self.stop_file = os.path.join(d, "traffic.stop")
        self.out_file = os.path.join(d, "traffic.json")
        for f in (self.stop_file, self.stop_file + ".switch", self.out_file):
            if os.path.exists(f):
                os.remove(f)
        self.thread = threading.Thread(
            target=lambda: h.guest("/usr/bin/python3", os.path.abspath(__file__), "guest-traffic", d, client_ip, vip,
                                   timeout=3600, check=False), daemon=True)
        self.thread.start()

    def mark(self):
        open(self.stop_file + ".switch", "w").close()

    def stop(self):
        open(self.stop_file, "w").close()
        self.thread.join(timeout=120)
        return json.load(open(self.out_file))


def migrate_from_iptables(h, d, svc, client_ip, run_helm, kube_proxy, poll):
    """The chart README's steps from kube-proxy in iptables mode, under traffic,
    judged in two parts:
    1. kipvs installed in coexistence mode next to kube-proxy (its own ports
       10266/10267, its own interface kipvs0): zero failed requests. web
       moved to kipvs by its service-proxy-name label and back is reported,
       not judged: the two proxies react to the label on their own, so either
       way a connection can fall between them (moving back, kube-proxy also
       rejects connections to a Service it sees before that Service's
       relabelled EndpointSlices).
    2. `helm upgrade` out of coexistence, kube-proxy stopped, its rules
       removed with `kube-proxy --cleanup` (and, where that fails, with
       `iptables-save | grep -v KUBE | iptables-restore`): zero failed
       requests up to the cleanup, which also flushes IPVS and deletes
       kube-ipvs0 (reported, as in the IPVS path); afterwards kipvs's virtual
       service carries web's traffic."""
    root = os.path.dirname(HERE)
    log("from kube-proxy in iptables mode: helm uninstall kipvs, kipvs --cleanup, kube-proxy --proxy-mode=iptables")
    run_helm("uninstall", "kipvs", "-n", "kube-system", "--wait", "--timeout", "5m")
    h.guest(os.path.join(root, "build/app/kipvs"), "--cleanup")
    with open(os.path.join(d, "node/kube-proxy-iptables.yaml"), "w") as f:
        f.write(KUBE_PROXY_CONFIG.format(dir=d).replace("mode: ipvs", "mode: iptables"))
    h.guest("sh", "-c", f"nohup '{kube_proxy}' --config '{d}/node/kube-proxy-iptables.yaml' -v=2 "
            f">'{d}/logs/kube-proxy-iptables.log' 2>&1 & echo $! >/run/kube-proxy.pid")

    def nat_rules():
        return h.guest("iptables-save", "-t", "nat", check=False)

    has_rule = poll(180, lambda: f"-d {svc}/32" in nat_rules())
    h.result(has_rule, f"kube-proxy --proxy-mode=iptables programs web's {svc}", f"{d}/logs/kube-proxy-iptables.log")
    if not has_rule:
        return

    # 1. coexistence, and web moved to kipvs
    traffic = Traffic(h, d, client_ip, svc)
    time.sleep(10)
    install = subprocess.run([os.path.join(HERE, "cluster"), "install", d, "--set", "coexistence.enabled=true",
                              "--set", "config.interfaceName=kipvs0"], capture_output=True, text=True)
    h.result(install.returncode == 0, "helm install kipvs in coexistence mode next to kube-proxy: kipvs Ready",
             install.stderr[-1500:])
    ours = h.guest("curl", "-sS", "--max-time", "20", f"http://{NODE_IP}:10266/metrics", check=False)
    theirs = h.guest("curl", "-sS", "--max-time", "20", "http://127.0.0.1:10249/metrics", check=False)
    h.result("kipvs_" in ours and "kubeproxy_sync_proxy_rules_iptables" in theirs,
             "both proxies serve their metrics: kipvs on 10266 (coexistence), kube-proxy on 10249",
             f"10266: {ours[:200]!r}; 10249: {theirs[:200]!r}")
    # Moving a Service by its label is a race between two proxies that react
    # on their own (kube-proxy may drop its rule before kipvs has the
    # address): reported, not judged.
    traffic.mark()
    h.k("-n", NS, "label", "service", "web", "service.kubernetes.io/service-proxy-name=kipvs")
    moved = poll(60, lambda: active_destinations(h.ipvs(), svc, 80) and f"-d {svc}/32" not in nat_rules())
    h.result(bool(moved), f"web labelled service-proxy-name=kipvs: kipvs serves {svc}:80 and kube-proxy dropped it",
             f"ipvsadm -Sn: {h.ipvs()[:600]}")
    time.sleep(5)
    h.k("-n", NS, "label", "service", "web", "service.kubernetes.io/service-proxy-name-")
    back = poll(60, lambda: f"-d {svc}/32" in nat_rules())
    h.result(back, "the label removed: kube-proxy serves web again", nat_rules()[-600:])
    judge_switch(h, traffic, "while kipvs was installed beside kube-proxy in iptables mode",
                 "while web moved to kipvs by its label and back")

    # 2. kipvs takes every Service, kube-proxy goes
    traffic = Traffic(h, d, client_ip, svc)
    time.sleep(10)
    try:
        run_helm("upgrade", "kipvs", os.path.join(root, "charts/kipvs"), "-n", "kube-system", "--reuse-values",
                 "--set", "coexistence.enabled=false", "--set", "config.interfaceName=kube-ipvs0", "--wait",
                 "--timeout", "10m")
        h.k("-n", "kube-system", "rollout", "status", "daemonset/kipvs", "--timeout=600s")
        h.result(True, "helm upgrade out of coexistence rolled out", "")
    except RuntimeError as e:
        h.result(False, "helm upgrade out of coexistence rolled out", str(e))
    h.guest("sh", "-c", "kill $(cat /run/kube-proxy.pid)")
    time.sleep(10)
    traffic.mark()
    t_cleanup = time.time()
    with open(os.path.join(d, "logs/nat-before-cleanup.txt"), "w") as f:
        f.write(nat_rules())
    h.guest("sh", "-c", f"'{kube_proxy}' --cleanup -v=2 >'{d}/logs/kube-proxy-cleanup.log' 2>&1", check=False)
    if poll(30, lambda: f"-d {svc}/32" not in nat_rules()):
        log(f"kube-proxy --cleanup removed its nat rules ({time.time() - t_cleanup:.0f} s)")
    else:
        # kube-proxy v1.35's cleanup fails with "CHAIN_DEL failed (Device or
        # resource busy)" when another mode's chains are left (here the IPVS
        # mode's KUBE-LOAD-BALANCER and KUBE-NODE-PORT point at KUBE-MARK-MASQ)
        # and then leaves every nat rule it made: the chart README's fallback
        # removes the KUBE chains.
        with open(os.path.join(d, "logs/nat-after-cleanup.txt"), "w") as f:
            f.write(nat_rules())
        log(f"kube-proxy --cleanup left its nat rules for {svc} (its log: {d}/logs/kube-proxy-cleanup.log); "
            "removing the KUBE chains with iptables-save | grep -v KUBE | iptables-restore")
        for family in ("iptables", "ip6tables"):
            h.guest("sh", "-c", f"{family}-save | grep -v KUBE | {family}-restore", check=False)
    served = poll(60, lambda: active_destinations(h.ipvs(), svc, 80) and f"-d {svc}/32" not in nat_rules())
    h.result(bool(served), f"kube-proxy stopped and its rules gone: kipvs alone serves {svc}:80 "
             f"({time.time() - t_cleanup:.0f} s after the cleanup began)",
             f"ipvsadm -Sn: {h.ipvs()[:600]}; nat rules naming {svc}: "
             f"{[line for line in nat_rules().splitlines() if svc in line][:4]}; "
             f"kube-proxy --cleanup's log: {d}/logs/kube-proxy-cleanup.log")
    # Until now kube-proxy's DNAT rules carried web's traffic; from here IPVS must.
    first = ipvs_conns(h.guest("ipvsadm", "-Ln", "--stats"), svc, 80)
    time.sleep(10)
    then = ipvs_conns(h.guest("ipvsadm", "-Ln", "--stats"), svc, 80)
    h.result(first is not None and then is not None and then > first,
             f"kipvs's virtual service carries web's traffic once kube-proxy's rules are gone: its connection "
             f"count went from {first} to {then} in 10 s", f"ipvsadm -Ln --stats: {first} then {then}")
    judge_switch(h, traffic, "while kipvs took every Service over from kube-proxy in iptables mode "
                 "(helm upgrade out of coexistence, kube-proxy stopped)",
                 "during and after kube-proxy --cleanup and the removal of its rules")


def judge_switch(h, traffic, what, after="during and after kube-proxy --cleanup"):
    """Stops the client pod's traffic 5 s after the last step and judges the
    requests up to the switch mark (none may fail); logs those after it."""
    time.sleep(5)
    res = traffic.stop()
    sw = res.get("at_switch") or {}
    h.result(sw.get("requests", 0) > 0 and sw.get("errors", 1) == 0,
             f"zero failed requests from the client pod {what}: {sw.get('requests')} requests, "
             f"{sw.get('errors')} failed", f"first errors: {sw.get('first_errors')}")
    log(f"{after}: {res['requests'] - sw.get('requests', 0)} requests, "
        f"{res['errors'] - sw.get('errors', 0)} failed (first errors: "
        f"{res['first_errors'][len(sw.get('first_errors') or []):][:2]})")


def run_guest_traffic(d, client_ip, vip):
    """Requests from the client pod (agnhost /dial, 5 new connections per
    call) to vip:80 until DIR/traffic.stop appears; counts at the moment
    DIR/traffic.stop.switch appears, and at the end, go to DIR/traffic.json."""
    stop = os.path.join(d, "traffic.stop")
    q = urllib.parse.urlencode({"request": "hostname", "protocol": "http", "host": vip, "port": 80, "tries": 5})
    requests = errors = 0
    first_errors = []
    at_switch = None
    while not os.path.exists(stop):
        try:
            c = http.client.HTTPConnection(client_ip, 8080, timeout=60)
            c.request("GET", f"/dial?{q}")
            r = json.loads(c.getresponse().read())
            c.close()
            answered = len(r.get("responses") or [])
            failed = r.get("errors") or []
        except (OSError, ValueError, http.client.HTTPException) as e:
            answered, failed = 0, [f"asking the client pod: {e}"]
        requests += answered + len(failed)
        errors += len(failed)
        if failed and len(first_errors) < 5:
            first_errors.append(f"{time.strftime('%H:%M:%S')} {failed[:1]}")
        if at_switch is None and os.path.exists(stop + ".switch"):
            at_switch = {"requests": requests, "errors": errors, "first_errors": list(first_errors)}
        time.sleep(0.2)
    json.dump({"requests": requests, "errors": errors, "first_errors": first_errors, "at_switch": at_switch},
              open(os.path.join(d, "traffic.json"), "w"))
    return 0


def finish(h, t_start):
    print(f"cluster test: {len(h.failed)} failed, in {time.time() - t_start:.0f} s", flush=True)
    return 1 if h.failed else 0


# --- in the guest: one clock for the write, the slice and the kernel ----------

class Api:
    def __init__(self, d):
        env = dict(l.strip().split("=", 1) for l in open(os.path.join(d, "api/env")) if "=" in l)
        self.port = int(env["APISERVER_PORT"])
        pki = os.path.join(d, "api/pki")
        self.ctx = ssl.create_default_context(cafile=os.path.join(pki, "ca.crt"))
        self.ctx.load_cert_chain(os.path.join(pki, "admin.crt"), os.path.join(pki, "admin.key"))

    def conn(self, timeout=60):
        return http.client.HTTPSConnection(API_HOST, self.port, context=self.ctx, timeout=timeout)

    def request(self, method, path, body=None, ctype="application/json"):
        c = self.conn()
        c.request(method, path, body=json.dumps(body) if body is not None else None, headers={"Content-Type": ctype})
        r = c.getresponse()
        data = r.read()
        c.close()
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status} {data[:300]!r}")
        return json.loads(data)


def ready_count(slice_obj):
    return sum(1 for e in slice_obj.get("endpoints") or [] if (e.get("conditions") or {}).get("ready"))


def run_guest_scale(d):
    api = Api(d)
    vip = api.request("GET", f"/api/v1/namespaces/{NS}/services/web")["spec"]["clusterIP"]
    slices, events, stop = {}, [], threading.Event()

    def watch():
        path = (f"/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices?watch=1&"
                f"labelSelector={urllib.parse.quote('kubernetes.io/service-name=web')}")
        c = api.conn(timeout=None)
        c.request("GET", path)
        r = c.getresponse()
        while not stop.is_set():
            line = r.readline()
            if not line:
                break
            ev = json.loads(line)
            obj = ev["object"]
            if ev["type"] == "DELETED":
                slices.pop(obj["metadata"]["name"], None)
            else:
                slices[obj["metadata"]["name"]] = ready_count(obj)
            events.append((time.time(), sum(slices.values())))

    threading.Thread(target=watch, daemon=True).start()

    def ipvsadm():
        out = subprocess.run(["ipvsadm", "-Sn"], capture_output=True, text=True).stdout
        return active_destinations(out, vip, 80)

    # Polled through /proc/net/ip_vs; ipvsadm -Sn must agree once it is reached.
    kernel = lambda: proc_destinations(vip, 80)  # noqa: E731

    polls = []  # (time, active destinations) whenever the count changes
    npolls = [0]

    def wait_active(n, limit):
        deadline = time.time() + limit
        while time.time() < deadline:
            dests = kernel()
            npolls[0] += 1
            active = sum(1 for w in dests.values() if w > 0)
            if not polls or polls[-1][1] != active:
                polls.append((time.time(), active))
            if active == n:
                return time.time(), dests
            time.sleep(0.02)
        return None, kernel()

    results = []
    t, dests = wait_active(3, min(120, SCALE_TIMEOUT))
    print(f"before scaling: {sum(1 for w in dests.values() if w > 0)} active destinations behind {vip}:80", flush=True)
    current = 3
    for target in (10, 1):
        events.clear()
        polls.clear()
        npolls[0] = 0
        t0 = time.time()
        api.request("PATCH", f"/apis/apps/v1/namespaces/{NS}/deployments/web/scale",
                    {"spec": {"replicas": target}}, ctype="application/merge-patch+json")
        t_kernel, dests = wait_active(target, SCALE_TIMEOUT)
        step = {"from": current, "to": target, "ok": t_kernel is not None}
        if t_kernel is not None:
            shown = ipvsadm()
            if {k: w for k, w in shown.items() if w > 0} != {k: w for k, w in dests.items() if w > 0}:
                step["ok"] = False
                step["saw"] = f"/proc/net/ip_vs showed {dests}, then ipvsadm -Sn {shown}"
        # The last slice change before the kernel showed the target (the one
        # that made the ready count the target).
        slice_t = [te for te, n in events if n == target and (t_kernel is None or te <= t_kernel + 0.001)]
        if t_kernel is not None:
            step["write_to_kernel_s"] = round(t_kernel - t0, 2)
            if slice_t:
                step["write_to_slice_s"] = round(slice_t[-1] - t0, 2)
                step["slice_to_kernel_ms"] = round((t_kernel - slice_t[-1]) * 1000)
        else:
            step["saw"] = f"after {SCALE_TIMEOUT:.0f} s: destinations {dests}; EndpointSlice ready counts {events[-5:]}"
        # For reading the figures: what the watch and the kernel showed, in
        # seconds after the write.
        step["slice_ready_counts"] = [(round(te - t0, 2), n) for te, n in events]
        step["kernel_active_counts"] = [(round(te - t0, 2), n) for te, n in polls]
        # The kernel figure is known to within one poll of /proc/net/ip_vs.
        if t_kernel is not None and npolls[0]:
            step["poll_interval_ms"] = round((t_kernel - t0) / npolls[0] * 1000)
        print(f"scale {current} -> {target}: API write -> EndpointSlice with {target} ready "
              f"{step.get('write_to_slice_s')} s, EndpointSlice -> kernel {step.get('slice_to_kernel_ms')} ms, "
              f"API write -> kernel {step.get('write_to_kernel_s')} s "
              f"(the kernel polled every {step.get('poll_interval_ms')} ms on average)", flush=True)
        results.append(step)
        current = target
        if not step["ok"]:
            break
    stop.set()
    json.dump(results, open(os.path.join(d, "scale.json"), "w"), indent=1)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "guest-scale":
        # The rig passes no environment of its own: the timeout comes as an argument.
        SCALE_TIMEOUT = float(sys.argv[3])
        sys.exit(run_guest_scale(os.path.abspath(sys.argv[2])))
    if len(sys.argv) == 5 and sys.argv[1] == "guest-traffic":
        sys.exit(run_guest_traffic(os.path.abspath(sys.argv[2]), sys.argv[3], sys.argv[4]))
    if len(sys.argv) == 3 and sys.argv[1] == "migrate":
        sys.exit(run_migrate(os.path.abspath(sys.argv[2])))
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(run_host(os.path.abspath(sys.argv[1])))
