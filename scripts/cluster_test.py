#!/usr/bin/env python3
"""The checks of `scripts/cluster test DIR` (see scripts/cluster's header).

usage: cluster_test.py DIR                runs on the host: every check
       cluster_test.py guest-scale DIR SECONDS    runs in the guest: the scale timing

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
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(run_host(os.path.abspath(sys.argv[1])))
