#!/usr/bin/python3
"""bench/soak's guest side (issue 17): kipvs against the host's kube-apiserver
(reached through the rig's guestfwd at 10.0.2.100:6443) for a bounded time,
with a client sending requests all the time and faults injected on a
schedule. Writes OUT/soak.json and the report (bench/soak's --out).

  soak_guest.py run OUT --apidir D --kipvs BIN --requests DIR --report FILE
                [--duration S] [--sync-period S] [--traffic K] [--grace S]
  soak_guest.py serve           the backends (started by `run`)
  soak_guest.py client ...      the client (started by `run`, in its netns)

The network in this guest:

  client netns soak-cl 10.250.0.2 --veth-- node 10.250.0.1
  node 10.244.0.1/16 (bridge soak-br) --veth-- pod netns sk-K-J 10.244.K+1.10+J
  cluster IPs on kube-ipvs0 (bound by kipvs); the other Services' endpoints
  (10.128.0.0/9) are never dialled, so the default route makes them routable.

The first K Services of the loaded set with one port (80/TCP -> 8080: s-0,
s-3, s-6, ...) carry traffic: each has 3 pods (a listening socket in a netns
of its own, all served by one `serve` process), 2 of them in its
EndpointSlice at any time. Every clock reading is this guest's.

The desired table is computed here, independently of kipvs, from the API
objects: a LIST of every Service and EndpointSlice at the start (and again
at the end, for the final check), kept up to date with the objects the API
server returns for each write this script makes (it is the only writer).
See bench/soak's header for what is measured and what "explained" means.
"""
import argparse
import collections
import ctypes
import json
import os
import random
import re
import selectors
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True  # the share is the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scale_cluster  # noqa: E402

GUEST_API = ("10.0.2.100", 6443)
WORK = "/tmp/soak"  # the guest's own tmpfs: logs and dumps stay off 9p
POD_PORT = 8080
CLIENT_NS, CLIENT_IP, CLIENT_GW = "soak-cl", "10.250.0.2", "10.250.0.1"
BRIDGE, BRIDGE_IP = "soak-br", "10.244.0.1"
PODS_PER_SERVICE, PODS_IN_SLICE = 3, 2
SLICES = "/apis/discovery.k8s.io/v1"
NS = scale_cluster.NAMESPACE
T0 = time.time()


def log(msg):
    print(f"soak[{time.strftime('%H:%M:%S')} +{time.time() - T0:6.1f}]: {msg}", file=sys.stderr, flush=True)


def rel(t):
    return None if t is None else round(t - T0, 2)


# --- backends: one process, a listening socket per pod netns -----------------

CLONE_NEWNET = 0x40000000


def cmd_serve(_args):
    """Reads `start NETNS IP` / `stop IP` lines on stdin and answers `ok` (or
    `error ...`). A pod answers each connection with its address and closes.
    A stopped pod's socket is closed: new connections are refused (RST), as
    for a pod that has gone away."""
    libc = ctypes.CDLL(None, use_errno=True)
    root = os.open("/proc/self/ns/net", os.O_RDONLY)
    sel = selectors.DefaultSelector()
    sel.register(0, selectors.EVENT_READ, None)
    listeners = {}
    pending = b""

    def setns(fd):
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")

    while True:
        for key, _ in sel.select():
            if key.data is not None:  # a pod: answer and close
                try:
                    conn, _ = key.fileobj.accept()
                    conn.setblocking(True)
                    conn.sendall(key.data)
                    conn.close()
                except OSError:
                    pass
                continue
            data = os.read(0, 4096)
            if not data:
                return
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                words = line.decode().split()
                try:
                    if words[0] == "start":
                        fd = os.open(f"/run/netns/{words[1]}", os.O_RDONLY)
                        try:
                            setns(fd)
                            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                        finally:
                            setns(root)
                            os.close(fd)
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                        s.bind((words[2], POD_PORT))
                        s.listen(256)
                        s.setblocking(False)
                        listeners[words[2]] = s
                        sel.register(s, selectors.EVENT_READ, f"{words[2]}\n".encode())
                    elif words[0] == "stop":
                        s = listeners.pop(words[1])
                        sel.unregister(s)
                        s.close()
                    answer = "ok"
                except (OSError, KeyError, IndexError) as e:
                    answer = f"error {e}"
                sys.stdout.write(answer + "\n")
                sys.stdout.flush()


# --- the client: in its own netns, requests all the time ---------------------

def cmd_client(args):
    """One request = connect to a Service's cluster IP, read the line the pod
    answers with, close with a reset (so IPVS forgets the connection at once).
    Cycles over the targets; logs `t0 t1 service ok|fail detail` per request
    until the stop file appears."""
    targets = []
    for spec in args.target:
        name, addr = spec.split("=")
        ip, port = addr.rsplit(":", 1)
        targets.append((name, ip, int(port)))
    out = open(args.log, "a", buffering=1)
    i = 0
    while not os.path.exists(args.stop):
        name, ip, port = targets[i % len(targets)]
        i += 1
        t0 = time.time()
        s = None
        try:
            s = socket.create_connection((ip, port), timeout=args.timeout)
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(64)
                if not chunk:
                    break
                data += chunk
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            answer = data.decode(errors="replace").strip()
            result, detail = ("ok", answer) if answer else ("fail", "closed-without-answer")
        except socket.timeout:
            result, detail = "fail", "timeout"
        except OSError as e:
            result, detail = "fail", (os.strerror(e.errno).replace(" ", "-") if e.errno else type(e).__name__)
        finally:
            if s is not None:
                s.close()
        t1 = time.time()
        out.write(f"{t0:.3f} {t1:.3f} {name} {result} {detail}\n")
        time.sleep(max(0.0, args.interval - (t1 - t0)))


# --- the desired table, computed from the API objects --------------------------

def ipvs_proto(protocol):
    return {"TCP": "-t", "UDP": "-u", "SCTP": "--sctp-service"}[protocol]


class Oracle:
    """The IPVS table the API objects call for, as `ipvsadm -Sn` lines, for
    what this cluster holds: ClusterIP and NodePort Services, one family
    (IPv4), ready endpoints, rr, masquerading, weight 1, ClientIP affinity as
    persistence. Anything else it raises on, so it cannot be quietly wrong."""

    def __init__(self, node_port_ips):
        self.node_port_ips = node_port_ips
        self.services = {}  # (ns, name) -> Service object
        self.slices = {}  # (ns, name) -> EndpointSlice object
        self.lines = {}  # (ns, service name) -> frozenset of lines

    @staticmethod
    def owner(slice_obj):
        return slice_obj["metadata"].get("labels", {}).get("kubernetes.io/service-name")

    def compute(self, key):
        svc = self.services.get(key)
        if svc is None:
            return frozenset()
        spec = svc["spec"]
        kind = spec.get("type", "ClusterIP")
        if kind not in ("ClusterIP", "NodePort") or spec.get("externalIPs") or \
                spec.get("internalTrafficPolicy", "Cluster") != "Cluster" or \
                spec.get("ipFamilies", ["IPv4"]) != ["IPv4"]:
            raise ValueError(f"oracle: {key} is outside what it models: {spec}")
        if spec.get("clusterIP") in (None, "", "None"):
            return frozenset()
        persist = ""
        if spec.get("sessionAffinity") == "ClientIP":
            timeout = spec.get("sessionAffinityConfig", {}).get("clientIP", {}).get("timeoutSeconds", 10800)
            persist = f" -p {timeout}"
        endpoints = collections.defaultdict(set)  # port name -> {ip:port}
        for s in self.slices.values():
            if s["metadata"]["namespace"] != key[0] or self.owner(s) != key[1] or s.get("addressType") != "IPv4":
                continue
            for p in s.get("ports") or []:
                for e in s.get("endpoints") or []:
                    if e.get("conditions", {}).get("ready", True) is not False:
                        for a in e["addresses"]:
                            endpoints[(p.get("name") or "", p.get("protocol", "TCP"))].add(f"{a}:{p['port']}")
        out = set()
        for port in spec.get("ports", []):
            proto = ipvs_proto(port.get("protocol", "TCP"))
            vips = [f"{spec['clusterIP']}:{port['port']}"]
            if kind == "NodePort":
                vips += [f"{ip}:{port['nodePort']}" for ip in self.node_port_ips]
            for vip in vips:
                out.add(f"-A {proto} {vip} -s rr{persist}")
                for dest in endpoints[(port.get("name") or "", port.get("protocol", "TCP"))]:
                    out.add(f"-a {proto} {vip} -r {dest} -m -w 1")
        return frozenset(out)

    def service_of(self, kind, obj):
        ns = obj["metadata"]["namespace"]
        return (ns, obj["metadata"]["name"]) if kind == "Service" else (ns, self.owner(obj))

    def set_object(self, kind, obj, deleted=False):
        """Applies one object; returns (service key, lines added, lines removed)."""
        store = self.services if kind == "Service" else self.slices
        okey = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        if deleted:
            store.pop(okey, None)
        else:
            store[okey] = obj
        key = self.service_of(kind, obj)
        before = self.lines.get(key, frozenset())
        after = self.compute(key)
        self.lines[key] = after
        return key, after - before, before - after

    def all_lines(self):
        out = set()
        for lines in self.lines.values():
            out |= lines
        return out


def list_all(client, path):
    items, cont = [], ""
    while True:
        status, body = client.request("GET", f"{path}?limit=500" + (f"&continue={cont}" if cont else ""))
        if status != 200:
            raise RuntimeError(f"LIST {path}: {status}")
        doc = json.loads(body)
        items += doc["items"]
        cont = doc["metadata"].get("continue")
        if not cont:
            return items


def oracle_from_api(client, node_port_ips):
    oracle = Oracle(node_port_ips)
    for obj in list_all(client, f"{SLICES}/endpointslices"):
        oracle.slices[(obj["metadata"]["namespace"], obj["metadata"]["name"])] = obj
    for obj in list_all(client, "/api/v1/services"):
        oracle.services[(obj["metadata"]["namespace"], obj["metadata"]["name"])] = obj
    for key in oracle.services:
        oracle.lines[key] = oracle.compute(key)
    return oracle


def ipvsadm_dump():
    """The kernel's table: (set of `ipvsadm -Sn` lines, {service line: ...})."""
    out = subprocess.run(["ipvsadm", "-Sn"], check=True, capture_output=True, text=True).stdout
    return set(line.strip() for line in out.splitlines() if line.strip())


DEST_RE = re.compile(r"^-a (\S+) (\S+) -r (\S+) -m -w (\d+)$")


def compare(kernel, desired):
    """(mismatched lines, draining count). A destination the kernel keeps at
    weight 0 that is no longer desired is draining (graceful termination),
    not a divergence; one at weight 0 that is desired is."""
    mismatched = set(desired - kernel)
    draining = 0
    for line in kernel - desired:
        m = DEST_RE.match(line)
        if m and m.group(4) == "0" and f"-a {m.group(1)} {m.group(2)} -r {m.group(3)} -m -w 1" not in desired:
            draining += 1
            continue
        mismatched.add(line)
    return mismatched, draining


# --- kipvs ------------------------------------------------------------------------

class Kipvs:
    SYNC_RE = re.compile(r"sync full: .* ok,")

    def __init__(self, args):
        self.args = args
        self.proc = None
        self.lifetime = 0
        self.log_path = None
        self.binary = os.path.join(WORK, "kipvs")
        shutil.copy2(args.kipvs, self.binary)  # off the 9p share, and fixed for the run
        self.kubeconfig = os.path.join(WORK, "kipvs.kubeconfig")
        d = args.apidir
        scale_cluster.write_guest_kubeconfig(self.kubeconfig, d, GUEST_API, f"    tokenFile: {d}/kipvs.token")

    def start(self):
        self.lifetime += 1
        self.log_path = os.path.join(WORK, f"kipvs-{self.lifetime}.log")
        out = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [self.binary, "--kubeconfig", self.kubeconfig, "--hostname-override", scale_cluster.NODE,
             "--ipvs-sync-period", f"{self.args.sync_period}s", "--state-dir", os.path.join(WORK, "state"),
             "--metrics-bind-address", "127.0.0.1:10249", "--healthz-bind-address", "127.0.0.1:10256"],
            stdout=out, stderr=subprocess.STDOUT)
        out.close()
        return time.time()

    def wait_first_sync(self, timeout=600):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with open(self.log_path, errors="replace") as f:
                for line in f:
                    if self.SYNC_RE.search(line):
                        return time.time(), line.strip()
            if self.proc.poll() is not None:
                raise SystemExit(f"kipvs exited with {self.proc.returncode}: see {self.log_path}")
            time.sleep(0.05)
        raise SystemExit(f"kipvs: no complete sync within {timeout} s; see {self.log_path}")

    NOTICE_RE = re.compile(r"watch failed|Expired|relisting|watch silent|list failed")

    def noticed(self):
        """Log lines of this lifetime that tell of a broken API connection."""
        with open(self.log_path, errors="replace") as f:
            return [line.strip() for line in f if self.NOTICE_RE.search(line)]

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def sample(self):
        """(VmRSS KiB, open fds) or None when it is not running."""
        pid = self.proc.pid
        try:
            with open(f"/proc/{pid}/status") as f:
                rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
            return rss, len(os.listdir(f"/proc/{pid}/fd"))
        except (OSError, StopIteration):
            return None


# --- the soak ---------------------------------------------------------------------

class Soak:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.client = scale_cluster.Client(args.apidir, host=GUEST_API[0], port=GUEST_API[1],
                                           server_hostname="localhost")
        self.rng = random.Random(17)
        self.oracle = None
        self.desired = set()  # the oracle's lines, kept with it
        self.changed_at = {}  # line -> when it became, or stopped being, desired (the write's start)
        self.touched_at = {}  # line -> when the soak changed the kernel by hand
        self.dirty = set()  # service keys whose objects are uncertain (a write failed)
        self.episodes = []  # closed divergences: (line, start, end)
        self.open = {}  # line -> start
        self.samples = []  # (t_start, t_end, mismatched count, draining, dirty services)
        self.converged_at = []  # (start, end) of the samples at which nothing mismatched
        self.traffic_seen = []  # (t, {(service, pod ip)} with weight > 0 in the kernel)
        self.resources = []  # (t, lifetime, rss KiB, fds)
        self.faults = []
        self.pod_stops = []  # (t, service, ip, when it was removed from the slice)
        self.writes = collections.Counter()
        self.write_failures = []  # (t, what, error)
        self.server = None
        os.makedirs(WORK, exist_ok=True)
        self.kipvs = Kipvs(args)
        self.traffic = []  # (service name, index, vip, [(netns, ip)])
        self.in_slice = {}  # service name -> [ip] in its slice
        self.running = set()  # pod ips whose server listens
        self.stop_queue = []  # (when, service, ip, when it was removed from the slice)

    # -- network and pods --
    def setup_network(self):
        n = 0
        for i in range(self.args.services):
            if len(self.traffic) == self.args.traffic:
                break
            if scale_cluster.ports_for(i) == [("http", "TCP", 80, 8080)]:
                pods = [(f"sk-{n}-{j}", f"10.244.{n + 1}.{10 + j}") for j in range(PODS_PER_SERVICE)]
                self.traffic.append((f"s-{i}", i, scale_cluster.service_ip(i), pods))
                n += 1
        # `ip -batch`, one per namespace: an exec is costly in the emulated guest.
        root = [f"link add {BRIDGE} type bridge", f"addr add {BRIDGE_IP}/16 dev {BRIDGE}", f"link set {BRIDGE} up",
                f"netns add {CLIENT_NS}", f"link add soak-cl type veth peer name eth0 netns {CLIENT_NS}",
                f"addr add {CLIENT_GW}/24 dev soak-cl", "link set soak-cl up"]
        inside = {CLIENT_NS: ["link set lo up", f"addr add {CLIENT_IP}/24 dev eth0", "link set eth0 up",
                              f"route add default via {CLIENT_GW}"]}
        for k, (_, _, _, pods) in enumerate(self.traffic):
            for j, (netns, ip) in enumerate(pods):
                link = f"sk{k}p{j}"
                root += [f"netns add {netns}", f"link add {link} type veth peer name eth0 netns {netns}",
                         f"link set {link} master {BRIDGE} up"]
                inside[netns] = ["link set lo up", f"addr add {ip}/16 dev eth0", "link set eth0 up",
                                 f"route add default via {BRIDGE_IP}"]
        subprocess.run(["ip", "-batch", "-"], input="\n".join(root) + "\n", text=True, check=True)
        for netns, batch in inside.items():
            subprocess.run(["ip", "-n", netns, "-batch", "-"], input="\n".join(batch) + "\n", text=True, check=True)
        self.server = subprocess.Popen([sys.executable, os.path.abspath(__file__), "serve"],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def pod(self, command):
        self.server.stdin.write(command + "\n")
        self.server.stdin.flush()
        answer = self.server.stdout.readline().strip()
        if answer != "ok":
            raise SystemExit(f"serve: {command}: {answer}")

    def start_pod(self, service, ip):
        netns = next(ns for name, _, _, pods in self.traffic if name == service for ns, pip in pods if pip == ip)
        self.pod(f"start {netns} {ip}")
        self.running.add(ip)

    def stop_pod(self, service, ip, removed):
        self.pod(f"stop {ip}")
        self.running.discard(ip)
        self.pod_stops.append((time.time(), service, ip, removed))

    def node_port_ips(self):
        """The node's IPv4 addresses (kube-proxy's node port addresses when
        nodePortAddresses is empty): every interface but lo and kube-ipvs0."""
        out = subprocess.run(["ip", "-4", "-o", "addr", "show"], check=True, capture_output=True, text=True).stdout
        ips = set()
        for line in out.splitlines():
            words = line.split()
            if words[1] not in ("lo", "kube-ipvs0") and not words[3].startswith("169.254."):
                ips.add(words[3].split("/")[0])
        ips.add(scale_cluster.NODE_IP)
        return sorted(ips)

    # -- API writes that keep the oracle current --
    def apply(self, kind, obj, t_write, deleted=False):
        with self.lock:
            key, added, removed = self.oracle.set_object(kind, obj, deleted)
            for line in added:
                self.desired.add(line)
                self.changed_at[line] = t_write
            for line in removed:
                self.desired.discard(line)
                self.changed_at[line] = t_write
            return key

    def write_slice(self, service, name, endpoints, what):
        """PATCHes a slice's endpoints; the returned object goes to the oracle.
        True when the API server answered 200."""
        path = f"{SLICES}/namespaces/{NS}/endpointslices/{name}"
        t = time.time()
        try:
            status, body = self.client.request("PATCH", path, {"endpoints": endpoints},
                                               "application/merge-patch+json")
        except Exception as e:  # noqa: BLE001 - the API server is down or cut: counted, reread later
            status, body = None, str(e).encode()
        self.writes[what] += 1
        if status == 200:
            self.apply("EndpointSlice", json.loads(body), t)
            return True
        self.write_failures.append((t, what, f"{status} {body[:120]!r}"))
        with self.lock:
            self.dirty.add((NS, service))
        return False

    def reread(self):
        """Reads again the slices of services whose last write failed."""
        for key in list(self.dirty):
            try:
                status, body = self.client.request(
                    "GET", f"{SLICES}/namespaces/{NS}/endpointslices?labelSelector=kubernetes.io/service-name={key[1]}")
            except Exception:  # noqa: BLE001 - still down
                return
            if status != 200:
                return
            t = time.time()
            items = json.loads(body)["items"]
            with self.lock:
                for okey in [k for k, s in self.oracle.slices.items() if k[0] == NS and Oracle.owner(s) == key[1]]:
                    obj = self.oracle.slices[okey]
                    if okey not in {(NS, o["metadata"]["name"]) for o in items}:
                        self.apply("EndpointSlice", obj, t, deleted=True)
                for obj in items:
                    self.apply("EndpointSlice", obj, t)
                self.dirty.discard(key)
            for name, _, _, pods in self.traffic:
                if name == key[1]:
                    slice_obj = self.oracle.slices[(NS, f"{name}-a")]
                    self.in_slice[name] = [a for e in slice_obj["endpoints"] for a in e["addresses"]]
                    for _, ip in pods:
                        if ip in self.running and ip not in self.in_slice[name] and \
                                not any(q[2] == ip for q in self.stop_queue):
                            self.stop_queue.append((time.time() + self.args.grace, name, ip, t))

    def bulk_slice(self, i):
        """The one slice of bulk service s-i, from the oracle (its name varies
        after a recreate)."""
        return next(s for s in self.oracle.slices.values()
                    if s["metadata"]["namespace"] == NS and Oracle.owner(s) == f"s-{i}")

    def churn_bulk(self, count):
        traffic_idx = {i for _, i, _, _ in self.traffic}
        i = self.rng.choice([i for i in range(self.args.services) if i not in traffic_idx])
        service = f"s-{i}"
        with self.lock:
            current = self.bulk_slice(i)
        ips = [a for e in current.get("endpoints") or [] for a in e["addresses"]]
        action = "recreate" if count % 40 == 39 else self.rng.choice(["scale-up", "scale-down", "replace"])
        fresh = f"10.200.{(count // 250) % 250}.{count % 250 + 1}"
        if action == "scale-up" or (action == "scale-down" and len(ips) <= 1):
            ips = ips + [fresh]
            action = "scale-up"
        elif action == "scale-down":
            ips.remove(self.rng.choice(ips))
        elif action == "replace" and ips:
            ips[self.rng.randrange(len(ips))] = fresh
        if action != "recreate":
            self.write_slice(service, current["metadata"]["name"], scale_cluster.endpoints(ips), f"bulk {action}")
            return
        # Replace the slice by a new one (another name): DELETE, then POST.
        old = current["metadata"]["name"]
        new = f"s-{i}-{'b' if old.endswith('-a') else 'a'}"
        body = {k: v for k, v in current.items() if k in ("apiVersion", "kind", "addressType", "ports", "endpoints")}
        body["metadata"] = {"name": new, "namespace": NS, "labels": current["metadata"]["labels"]}
        t = time.time()
        try:
            status, _ = self.client.request("DELETE", f"{SLICES}/namespaces/{NS}/endpointslices/{old}")
            self.writes["bulk recreate"] += 1
            if status == 200:
                self.apply("EndpointSlice", current, t, deleted=True)
                t = time.time()
                status, reply = self.client.request("POST", f"{SLICES}/namespaces/{NS}/endpointslices", body)
                if status == 201:
                    self.apply("EndpointSlice", json.loads(reply), t)
                    return
            raise RuntimeError(f"status {status}")
        except Exception as e:  # noqa: BLE001 - reread later
            self.write_failures.append((t, "bulk recreate", str(e)[:120]))
            with self.lock:
                self.dirty.add((NS, service))

    def churn_traffic(self, k):
        """A rolling replacement of one pod: start the spare pod, add it to
        the slice, remove the oldest pod, stop it --grace seconds later (its
        termination grace period)."""
        name, _, _, pods = self.traffic[k]
        current = self.in_slice[name]
        spare = [ip for _, ip in pods if ip not in current and ip not in self.running]
        if not spare:
            return
        self.start_pod(name, spare[0])
        if not self.write_slice(name, f"{name}-a", scale_cluster.endpoints(current + [spare[0]]), "pod added"):
            return
        self.in_slice[name] = current + [spare[0]]
        time.sleep(0.5)
        victim = current[0]
        remaining = [ip for ip in self.in_slice[name] if ip != victim]
        if self.write_slice(name, f"{name}-a", scale_cluster.endpoints(remaining), "pod removed"):
            self.in_slice[name] = remaining
            self.stop_queue.append((time.time() + self.args.grace, name, victim, time.time()))

    def churn(self):
        count = 0
        next_traffic = time.time() + 2
        while not self.stopping.is_set():
            now = time.time()
            for item in [q for q in self.stop_queue if q[0] <= now]:
                self.stop_queue.remove(item)
                self.stop_pod(*item[1:])
            if self.dirty:
                self.reread()
            if now >= next_traffic:
                self.churn_traffic(count % len(self.traffic))
                next_traffic = now + self.args.traffic_churn
            else:
                self.churn_bulk(count)
            count += 1
            self.stopping.wait(self.args.churn_interval)
        # The pods removed last are stopped on time; objects whose write
        # failed are read again, so the model is whole for the final check.
        for when, service, ip, removed in sorted(self.stop_queue):
            time.sleep(max(0.0, when - time.time()))
            self.stop_pod(service, ip, removed)
        self.stop_queue.clear()
        deadline = time.time() + 300
        while self.dirty and time.time() < deadline:
            self.reread()
            time.sleep(1)

    # -- the samplers --
    def sample_kernel(self):
        t0 = time.time()
        with self.lock:
            before = set(self.desired)
        kernel = ipvsadm_dump()
        t1 = time.time()
        with self.lock:
            after = set(self.desired)
            dirty = set(self.dirty)
            dirty_vips = set()
            for key in dirty:
                for line in self.oracle.lines.get(key, ()):
                    dirty_vips.add(line.split()[2])
        m1, draining = compare(kernel, before)
        m2, _ = compare(kernel, after)
        # A line is out of step only if it differs from the desired table both
        # before and after the dump; lines of services whose objects are
        # uncertain (a write failed) wait until they are read again.
        mismatched = {line for line in m1 & m2 if line.split()[2] not in dirty_vips}
        with self.lock:
            # An episode begins at the API write (or the hand deletion) that
            # made the line differ, or else at the start of the last sample,
            # which saw the line still matching at some moment of its dump.
            prev = self.samples[-1][0] if self.samples else t0
            for line in mismatched:
                if line not in self.open:
                    cause = max(self.changed_at.get(line, 0), self.touched_at.get(line, 0))
                    self.open[line] = cause if prev <= cause <= t1 else prev
            for line in [line for line in self.open if line not in mismatched and line.split()[2] not in dirty_vips]:
                self.episodes.append((line, self.open.pop(line), t1))
            self.samples.append((t0, t1, len(mismatched), draining, len(dirty)))
            if not mismatched and not dirty:
                self.converged_at.append((t0, t1))
        seen = set()
        vips = {f"{vip}:80": name for name, _, vip, _ in self.traffic}
        for line in kernel:
            m = DEST_RE.match(line)
            if m and m.group(2) in vips and m.group(4) != "0":
                seen.add((vips[m.group(2)], m.group(3).split(":")[0]))
        self.traffic_seen.append((t0, t1, seen))
        return mismatched

    def sampler(self):
        while not self.stopping.is_set():
            t = time.time()
            self.sample_kernel()
            self.stopping.wait(max(0.0, self.args.sample_interval - (time.time() - t)))

    def resource_sampler(self):
        while not self.stopping.is_set():
            proc = self.kipvs.proc
            if proc is not None and proc.poll() is None:
                got = self.kipvs.sample()
                if got:
                    self.resources.append((time.time(), self.kipvs.lifetime, got[0], got[1]))
            self.stopping.wait(2)

    # -- faults --
    def host_request(self, kind):
        """Asks bench/soak on the host to act (restart-apiserver, cut); waits
        for its answer. Returns (seconds the host took, its answer)."""
        os.makedirs(self.args.requests, exist_ok=True)
        base = os.path.join(self.args.requests, f"{len(self.faults)}-{kind}")
        with open(base + ".tmp", "w") as f:
            f.write(kind + "\n")
        os.rename(base + ".tmp", base + ".req")
        t = time.time()
        while not os.path.exists(base + ".done"):
            if time.time() - t > 600:
                raise SystemExit(f"the host did not answer {kind} within 600 s")
            time.sleep(0.1)
        with open(base + ".done") as f:
            return time.time() - t, f.read().strip()

    def fault(self, kind):
        f = {"kind": kind, "start": time.time()}
        if kind == "kill":
            self.kipvs.kill()
            f["detail"] = f"SIGKILL lifetime {self.kipvs.lifetime}; down {self.args.down} s"
            time.sleep(self.args.down)
            self.kipvs.start()
            f["action_end"], line = self.kipvs.wait_first_sync()
            f["detail"] += (f"; restarted, first full sync after {f['action_end'] - f['start']:.1f} s: "
                            f"{line[line.find('sync full'):][:200].rstrip(chr(34))}")
        elif kind in ("restart-apiserver", "cut"):
            before = len(self.kipvs.noticed())
            took, answer = self.host_request(kind)
            f["action_end"] = time.time()
            if answer.startswith(("restart failed", "killed 0 ", "unknown")):
                raise SystemExit(f"fault {kind} did not happen: the host says {answer}")
            f["detail"] = f"host: {answer} ({took:.1f} s)"
            # That the fault reached kipvs: its log tells of the broken watches.
            deadline = time.time() + 20
            while len(self.kipvs.noticed()) == before and time.time() < deadline:
                time.sleep(0.2)
            seen = self.kipvs.noticed()[before:]
            f["kipvs_noticed"] = len(seen)
            f["detail"] += f"; kipvs logged {len(seen)} lines on it" + (
                f", first: {seen[0][seen[0].find(chr(34)):][:90]}" if seen else "")
        elif kind == "delete-dest":
            kernel = ipvsadm_dump()
            traffic_vips = {f"{vip}:80" for _, _, vip, _ in self.traffic}
            dests = sorted(line for line in kernel if DEST_RE.match(line) and line.split()[2] not in traffic_vips
                           and line.endswith("-w 1") and line.split()[2].startswith("10.96."))
            line = self.rng.choice(dests)
            m = DEST_RE.match(line)
            with self.lock:
                self.touched_at[line] = time.time()
            subprocess.run(["ipvsadm", "-d", m.group(1), m.group(2), "-r", m.group(3)], check=True)
            f["action_end"] = time.time()
            f["detail"] = f"ipvsadm -d {m.group(1)} {m.group(2)} -r {m.group(3)}"
            f["lines"] = [line]
        elif kind == "delete-vs":
            name, _, vip, _ = self.traffic[min(1, len(self.traffic) - 1)]
            kernel = ipvsadm_dump()
            lines = [line for line in kernel if line.split()[2] == f"{vip}:80"]
            with self.lock:
                for line in lines:
                    self.touched_at[line] = time.time()
            subprocess.run(["ipvsadm", "-D", "-t", f"{vip}:80"], check=True)
            f["action_end"] = time.time()
            f["detail"] = f"ipvsadm -D -t {vip}:80 ({name}, {len(lines) - 1} destinations)"
            f["service"] = name
            f["lines"] = lines
        log(f"fault {kind}: {f['detail']}")
        self.faults.append(f)

    # -- the run --
    def run(self):
        args = self.args
        os.makedirs(WORK, exist_ok=True)
        self.client.request("GET", "/version")
        self.setup_network()
        # The traffic services' slices name their real pods.
        for name, _, _, pods in self.traffic:
            ips = [ip for _, ip in pods[:PODS_IN_SLICE]]
            for ip in ips:
                self.start_pod(name, ip)
            status, body = self.client.request("PATCH", f"{SLICES}/namespaces/{NS}/endpointslices/{name}-a",
                                               {"endpoints": scale_cluster.endpoints(ips)},
                                               "application/merge-patch+json")
            if status != 200:
                raise SystemExit(f"PATCH {name}-a: {status} {body[:200]!r}")
            self.in_slice[name] = ips
        self.oracle = oracle_from_api(self.client, self.node_port_ips())
        self.desired = self.oracle.all_lines()
        log(f"{len(self.oracle.services)} Services, {len(self.oracle.slices)} EndpointSlices: "
            f"{sum(line.startswith('-A') for line in self.desired)} virtual services, "
            f"{sum(line.startswith('-a') for line in self.desired)} destinations desired; "
            f"node port addresses {self.oracle.node_port_ips}")

        t_start = self.kipvs.start()
        t_sync, line = self.kipvs.wait_first_sync()
        log(f"kipvs first full sync after {t_sync - t_start:.1f} s: {line[-150:]}")
        deadline = time.time() + 120
        while self.sample_kernel():
            if time.time() > deadline:
                raise SystemExit("the kernel never matched the desired table after kipvs's first sync")
            time.sleep(0.5)
        self.t_begin = time.time()
        log(f"kernel == desired; soak of {args.duration} s begins")

        client_log = os.path.join(WORK, "client.log")
        self.client_stop = os.path.join(WORK, "client.stop")
        client = subprocess.Popen(
            ["ip", "netns", "exec", CLIENT_NS, sys.executable, os.path.abspath(__file__), "client",
             "--log", client_log, "--stop", self.client_stop, "--interval", str(args.request_interval)]
            + [f"--target={name}={vip}:80" for name, _, vip, _ in self.traffic])
        threads = [threading.Thread(target=fn, daemon=True) for fn in (self.sampler, self.resource_sampler)]
        churner = threading.Thread(target=self.churn, daemon=True)
        for t in threads + [churner]:
            t.start()

        schedule = [(0.20, "delete-dest"), (0.30, "restart-apiserver"), (0.45, "kill"), (0.60, "cut"),
                    (0.70, "delete-vs")]
        for frac, kind in schedule:
            time.sleep(max(0.0, self.t_begin + frac * args.duration - time.time()))
            self.fault(kind)
            if self.kipvs.proc.poll() is not None:
                raise SystemExit(f"kipvs exited with {self.kipvs.proc.returncode}: see {self.kipvs.log_path}")
        time.sleep(max(0.0, self.t_begin + args.duration - time.time()))
        self.t_end = time.time()
        if self.kipvs.proc.poll() is not None:
            raise SystemExit(f"kipvs exited with {self.kipvs.proc.returncode}: see {self.kipvs.log_path}")

        log("stopping the churn and the client")
        self.stopping.set()
        churner.join()
        with open(self.client_stop, "w"):
            pass
        client.wait(30)
        for t in threads:
            t.join()
        final = self.final_check()
        self.kipvs.proc.send_signal(signal.SIGTERM)
        try:
            self.kipvs.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.kipvs.kill()
        self.server.stdin.close()
        self.server.wait(10)
        return self.report(client_log, final)

    def final_check(self):
        """The table at the end: a fresh LIST of every Service and slice, the
        kernel dumped until they agree exactly (drains included) or the bound
        passes."""
        t0 = time.time()
        # A draining destination goes once the kernel holds no connection to
        # it; IPVS keeps a closed one up to 120 s (FIN_WAIT, TIME_WAIT).
        bound = 2 * self.args.sync_period + 120
        fresh = oracle_from_api(self.client, self.oracle.node_port_ips)
        want = fresh.all_lines()
        with self.lock:
            model_ok = want == self.desired
        while True:
            kernel = ipvsadm_dump()
            missing, extra = want - kernel, kernel - want
            if (not missing and not extra) or time.time() - t0 > bound:
                break
            time.sleep(1)
        with open(os.path.join(WORK, "final-kernel.txt"), "w") as f:
            f.write("\n".join(sorted(kernel)) + "\n")
        # Evidence for a difference: the kernel's connection counts of the
        # services concerned and its connection entries to their destinations.
        evidence = []
        for line in sorted(missing | extra)[:10]:
            words = line.split()
            counts = subprocess.run(["ipvsadm", "-Ln", words[1], words[2]], capture_output=True, text=True).stdout
            evidence.append(f"ipvsadm -Ln {words[1]} {words[2]}: " + " | ".join(counts.splitlines()[3:]))
            if "-r" in words:
                dest = words[words.index("-r") + 1]
                conns = subprocess.run(["ipvsadm", "-Lnc"], capture_output=True, text=True).stdout.splitlines()
                hits = [" ".join(c.split()) for c in conns if dest in c.split()]
                evidence.append(f"connection entries to {dest}: {len(hits)}" + (": " + " | ".join(hits[:5]) if hits else ""))
        return {"equal": not missing and not extra, "seconds": round(time.time() - t0, 2), "bound": bound,
                "missing": sorted(missing)[:20], "extra": sorted(extra)[:20], "missing_count": len(missing),
                "extra_count": len(extra), "model_matches_api": model_ok, "evidence": evidence,
                "virtual_services": sum(line.startswith("-A") for line in want),
                "destinations": sum(line.startswith("-a") for line in want)}

    # -- the report --
    def windows(self):
        """Each fault's window: from its start until the first sample after
        its action ended at which the kernel matched the desired table, capped
        at the action's end + a sync period + 15 s."""
        out = []
        for f in self.faults:
            cap = f["action_end"] + self.args.sync_period + 15
            # A sample that began after the action: one under way when it
            # happened may have read the table before it.
            conv = next((t1 for t0, t1 in self.converged_at if t0 >= f["action_end"]), None)
            f["converged"] = conv
            f["end"] = min(conv, cap) if conv else cap
            f["repaired_in_bound"] = conv is not None and conv <= cap
            out.append(f)
        return out

    def explain(self, t0, t1, service, windows, tol=1.0):
        """The reason a failed request is explained, or None. See bench/soak."""
        for w in windows:
            if not (t0 <= w["end"] + tol and t1 >= w["start"] - tol):
                continue
            if w["kind"] == "delete-vs" and w.get("service") == service:
                return "delete-vs: its virtual service was deleted by hand, not yet repaired"
            if w["kind"] in ("kill", "restart-apiserver", "cut"):
                stopped = [(ts, ip, removed) for ts, s, ip, removed in self.pod_stops
                           if s == service and w["start"] - tol <= ts <= t1]
                for ts, ip, removed in stopped:
                    # A kernel dump begun at least 1 s after the endpoint's
                    # removal from the slice (and no later than 3 s after the
                    # request) still listed it with weight > 0.
                    if any((service, ip) in seen for s0, _, seen in self.traffic_seen
                           if removed + 1 <= s0 <= t1 + 3):
                        return (f"{w['kind']}: endpoint {ip} removed, its pod stopped, "
                                f"while the kernel still had it (kipvs not applying changes)")
        return None

    def report(self, client_log, final):
        args = self.args
        windows = self.windows()
        requests = failed = 0
        reasons, unexplained, wrong = collections.Counter(), [], []
        pools = {name: {ip for _, ip in pods} for name, _, _, pods in self.traffic}
        with open(client_log) as f:
            for line in f:
                t0, t1, service, result, detail = line.split()
                t0, t1 = float(t0), float(t1)
                requests += 1
                if result == "ok":
                    if detail not in pools[service]:
                        wrong.append(line.strip())  # answered by another service's pod
                    continue
                failed += 1
                why = self.explain(t0, t1, service, windows)
                if why:
                    reasons[f"{why} [{detail}]"] += 1
                else:
                    unexplained.append(f"+{t0 - T0:.1f} {service} {detail}")
        # Divergence: every episode, attributed to the fault window it began in.
        with self.lock:
            for line, start in self.open.items():
                self.episodes.append((line, start, self.samples[-1][1]))
        by_cause = collections.defaultdict(list)
        for line, start, end in self.episodes:
            cause = next((w["kind"] for w in windows if w["start"] - 1 <= start <= w["end"]), "churn")
            by_cause[cause].append((end - start, line, start))
        max_div = max((e - s for _, s, e in self.episodes), default=0.0)
        slow_churn = [d for d in by_cause.get("churn", []) if d[0] > args.sync_period + 15]
        # RSS and fds per kipvs lifetime, after a warm-up.
        growth = {}
        for life in sorted({r[1] for r in self.resources}):
            rows = [r for r in self.resources if r[1] == life]
            rows = [r for r in rows if r[0] >= rows[0][0] + args.warmup]
            if len(rows) < 8:
                growth[life] = None
                continue
            q = len(rows) // 4
            first, last = rows[:q], rows[-q:]
            growth[life] = {
                "samples": len(rows), "span_s": round(rows[-1][0] - rows[0][0], 1),
                "rss_first_mib": round(statistics.median(r[2] for r in first) / 1024, 2),
                "rss_last_mib": round(statistics.median(r[2] for r in last) / 1024, 2),
                "rss_growth_mib": round((statistics.median(r[2] for r in last)
                                         - statistics.median(r[2] for r in first)) / 1024, 2),
                "rss_max_mib": round(max(r[2] for r in rows) / 1024, 2),
                "fd_first": statistics.median(r[3] for r in first), "fd_last": statistics.median(r[3] for r in last),
                "fd_growth": statistics.median(r[3] for r in last) - statistics.median(r[3] for r in first),
                "fd_max": max(r[3] for r in rows)}
        measured = [g for g in growth.values() if g]
        rss_growth = max((g["rss_growth_mib"] for g in measured), default=None)
        fd_growth = max((g["fd_growth"] for g in measured), default=None)
        problems = []
        if not final["equal"]:
            problems.append(f"kernel != desired at the end ({final['missing_count']} missing, "
                            f"{final['extra_count']} extra after {final['seconds']} s)")
        if not final["model_matches_api"]:
            problems.append("the soak's own model of the API objects differs from a fresh LIST (harness bug)")
        if unexplained:
            problems.append(f"{len(unexplained)} unexplained failed requests")
        if wrong:
            problems.append(f"{len(wrong)} requests answered by a pod of another Service")
        for w in windows:
            if not w["repaired_in_bound"]:
                problems.append(f"{w['kind']} at +{w['start'] - T0:.0f} s: kernel did not match the desired table "
                                f"within a sync period + 15 s of the action's end")
        for w in windows:
            if w["kind"] in ("delete-dest", "delete-vs") and not any(
                    line in w["lines"] and w["start"] - 1 <= start <= w["end"] for line, start, _ in self.episodes):
                problems.append(f"{w['kind']} at +{w['start'] - T0:.0f} s was never seen as a divergence "
                                f"(the sampler is blind)")
            if w["kind"] in ("restart-apiserver", "cut") and not w["kipvs_noticed"]:
                problems.append(f"{w['kind']} at +{w['start'] - T0:.0f} s: kipvs's log says nothing of it")
        if slow_churn:
            problems.append(f"{len(slow_churn)} divergences outside any fault window longer than a sync period "
                            f"+ 15 s (longest {max(slow_churn)[0]:.1f} s)")
        if not measured:
            problems.append("too few RSS samples to measure growth")

        res = {
            "label": args.label, "duration_s": args.duration, "services": args.services,
            "sync_period_s": args.sync_period,
            "elapsed_s": round(self.t_end - self.t_begin, 1), "requests": requests, "failed": failed,
            "explained": dict(reasons), "unexplained": unexplained[:50], "misrouted": wrong[:20],
            "max_divergence_s": round(max_div, 2),
            "divergence_by_cause": {c: {"episodes": len(v), "max_s": round(max(v)[0], 2),
                                        "longest": max(v)[1], "longest_start": rel(max(v)[2])}
                                    for c, v in by_cause.items()},
            "samples": len(self.samples),
            "sample_seconds_median": round(statistics.median(s[1] - s[0] for s in self.samples), 3),
            "faults": [{k: (rel(v) if k in ("start", "action_end", "converged", "end") else v)
                        for k, v in w.items()} for w in windows],
            "writes": dict(self.writes), "write_failures": len(self.write_failures),
            "write_failure_examples": [(rel(t), w, e) for t, w, e in self.write_failures[:10]],
            "pod_stops": len(self.pod_stops),
            "pod_stop_times": [(rel(t), s, ip, rel(r)) for t, s, ip, r in self.pod_stops],
            "growth": growth, "rss_growth_mib": rss_growth,
            "fd_growth": fd_growth, "final": final, "problems": problems,
            "resources": [(rel(t), life, rss, fds) for t, life, rss, fds in self.resources],
        }
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "soak.json"), "w") as f:
            json.dump(res, f, indent=1)
        for name in os.listdir(WORK):
            if name.endswith(".log") or name.endswith(".txt"):
                shutil.copy(os.path.join(WORK, name), args.out)
        text = render(res)
        with open(args.report, "w") as f:
            f.write(text)
        print(text, end="")
        return 1 if problems else 0


def render(res):
    def fmt(v, unit=""):
        return "n/a" if v is None else f"{v}{unit}"

    out = [f"# bench/soak: {res['services']} Services, {res['elapsed_s']} s "
           f"(sync period {res['sync_period_s']} s), one run",
           "", res["label"], "",
           "| figure | value |", "| --- | --- |",
           f"| requests sent / failed | {res['requests']} / {res['failed']} |",
           f"| failed and unexplained | {len(res['unexplained'])} |",
           f"| answered by another Service's pod | {len(res['misrouted'])} |",
           f"| longest divergence (kernel != desired, one rule) | {res['max_divergence_s']} s |",
           f"| kernel samples (ipvsadm -Sn), median time each | {res['samples']}, {res['sample_seconds_median']} s |",
           f"| API writes (failed, reread) | {sum(res['writes'].values())} ({res['write_failures']}): "
           + ", ".join(f"{n} {what}" for what, n in sorted(res["writes"].items())) + " |",
           f"| pods stopped after removal | {res['pod_stops']} |",
           f"| end: kernel == desired (fresh LIST) | {res['final']['equal']} after {res['final']['seconds']} s "
           f"({res['final']['virtual_services']} virtual services, {res['final']['destinations']} destinations) |"]
    for life, g in sorted(res["growth"].items()):
        if g:
            out.append(f"| kipvs lifetime {life}: RSS first/last quarter median, growth (max) | "
                       f"{g['rss_first_mib']} / {g['rss_last_mib']} MiB, {g['rss_growth_mib']:+} MiB "
                       f"({g['rss_max_mib']} MiB) over {g['span_s']} s |")
            out.append(f"| kipvs lifetime {life}: fds first/last quarter median, growth (max) | "
                       f"{g['fd_first']} / {g['fd_last']}, {g['fd_growth']:+} ({g['fd_max']}) |")
        else:
            out.append(f"| kipvs lifetime {life} | too short to measure growth |")
    out += ["", "Faults (seconds from the start of the guest script):", "",
            "| fault | start | action done | kernel matched again | detail |", "| --- | --- | --- | --- | --- |"]
    for f in res["faults"]:
        out.append(f"| {f['kind']} | +{f['start']} | +{f['action_end']} | "
                   f"{'+' + str(f['converged']) if f['converged'] is not None else 'never'} | {f['detail']} |")
    out += ["", "Divergence episodes by the window they began in:", ""]
    for cause, d in sorted(res["divergence_by_cause"].items()):
        out.append(f"- {cause}: {d['episodes']} episodes, longest {d['max_s']} s "
                   f"(`{d['longest']}`, from +{d['longest_start']})")
    out += ["", "Failed requests, explained:", ""]
    out += [f"- {n} x {why}" for why, n in sorted(res["explained"].items())] or ["- none"]
    if res["unexplained"]:
        out += ["", "Failed requests, UNEXPLAINED (first 50):", ""] + [f"- {u}" for u in res["unexplained"]]
    if res["problems"]:
        out += ["", "FAILED: " + "; ".join(res["problems"])]
    if not res["final"]["equal"]:
        out += ["", "missing: " + ", ".join(res["final"]["missing"]), "extra: " + ", ".join(res["final"]["extra"])]
        out += [""] + [f"- {e}" for e in res["final"]["evidence"]]
    out += ["", f"soak_failed_requests={res['failed']} soak_max_divergence_s={res['max_divergence_s']} "
            f"soak_rss_growth_mib={fmt(res['rss_growth_mib'])} soak_fd_growth={fmt(res['fd_growth'])} "
            f"soak_requests={res['requests']} soak_unexplained={len(res['unexplained'])} "
            f"soak_final_equal={int(res['final']['equal'])}"]
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("serve")
    cl = sub.add_parser("client")
    cl.add_argument("--target", action="append", required=True, help="NAME=IP:PORT")
    cl.add_argument("--log", required=True)
    cl.add_argument("--stop", required=True)
    cl.add_argument("--interval", type=float, default=0.05)
    cl.add_argument("--timeout", type=float, default=3)
    r = sub.add_parser("run")
    r.add_argument("out")
    r.add_argument("--apidir", required=True)
    r.add_argument("--kipvs", required=True)
    r.add_argument("--requests", required=True, help="folder shared with bench/soak for host actions")
    r.add_argument("--report", required=True)
    r.add_argument("--label", default="", help="what was tested, for the report's header")
    r.add_argument("--services", type=int, default=1000)
    r.add_argument("--duration", type=float, default=600)
    r.add_argument("--sync-period", type=int, default=30)
    r.add_argument("--traffic", type=int, default=8, help="Services the client sends requests to")
    r.add_argument("--grace", type=float, default=5, help="seconds from a pod's removal to its stop")
    r.add_argument("--down", type=float, default=10, help="seconds kipvs stays down after its SIGKILL")
    r.add_argument("--warmup", type=float, default=30, help="seconds of each kipvs lifetime left out of growth")
    r.add_argument("--churn-interval", type=float, default=0.5)
    r.add_argument("--traffic-churn", type=float, default=4, help="seconds between pod replacements")
    r.add_argument("--request-interval", type=float, default=0.05)
    r.add_argument("--sample-interval", type=float, default=1)
    args = ap.parse_args()
    if args.cmd == "serve":
        return cmd_serve(args)
    if args.cmd == "client":
        return cmd_client(args)
    return Soak(args).run()


if __name__ == "__main__":
    sys.exit(main())
