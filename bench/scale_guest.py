#!/usr/bin/python3
"""bench/scale's guest side: runs one agent (kipvs or kube-proxy) against the
host's kube-apiserver, reached through the rig's guestfwd at 10.0.2.100:6443,
and measures it on this fresh guest. Writes OUT/AGENT.json.

  scale_guest.py kipvs|kube-proxy OUT --apidir D --kipvs BIN --kube-proxy BIN
                 --changes C --idle S --sync-period P

Every time is taken with this guest's clock: the API writes of the change
test are issued from here, and the agents' log lines carry this clock too.
For kipvs it also programs the same rules (kipvs's table, dumped with
`ipvsadm -Sn`) with `ipvsadm -R` into a fresh network namespace.
"""
import argparse
import calendar
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

sys.dont_write_bytecode = True  # the share is the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scale_cluster  # noqa: E402

GUEST_API = ("10.0.2.100", 6443)
CHANGE_VIP, CHANGE_PORT, TARGET_PORT = "10.96.4.0", 80, 8080


def log(msg):
    print(f"scale[{time.strftime('%H:%M:%S')}]: {msg}", file=sys.stderr, flush=True)


# --- a tiny IPVS generic netlink client: one service's destinations ------------

NETLINK_GENERIC, GENL_ID_CTRL = 16, 0x10
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 1, 4, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3


def nlattr(kind, payload):
    size = 4 + len(payload)
    return struct.pack("HH", size, kind) + payload + b"\0" * ((4 - size % 4) % 4)


def parse_attrs(data):
    out, off = {}, 0
    while off + 4 <= len(data):
        size, kind = struct.unpack_from("HH", data, off)
        if size < 4:
            break
        out[kind & 0x3FFF] = data[off + 4:off + size]
        off += (size + 3) & ~3
    return out


class IpvsPoller:
    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
        self.sock.bind((0, 0))
        self.seq = 1
        reply = self.exchange(GENL_ID_CTRL, 3, 1, nlattr(2, b"IPVS\0"), dump=False)  # CTRL_CMD_GETFAMILY
        self.family = struct.unpack("H", parse_attrs(reply[0])[1][:2])[0]

    def exchange(self, family, cmd, version, attrs, dump):
        self.seq += 1
        flags = NLM_F_REQUEST | (NLM_F_DUMP if dump else 0)
        body = struct.pack("BBH", cmd, version, 0) + attrs
        self.sock.send(struct.pack("IHHII", 16 + len(body), family, flags, self.seq, 0) + body)
        payloads = []
        while True:
            data = self.sock.recv(1 << 20)
            off = 0
            while off + 16 <= len(data):
                size, kind, _, seq, _ = struct.unpack_from("IHHII", data, off)
                msg = data[off + 16:off + size]
                off += (size + 3) & ~3
                if kind == NLMSG_DONE:
                    return payloads
                if kind == NLMSG_ERROR:
                    err = struct.unpack_from("i", msg)[0]
                    if err == 0 or err == -2 or err == -3:  # ack, ENOENT, ESRCH: no such service
                        return payloads
                    raise OSError(-err, os.strerror(-err))
                payloads.append(msg[4:])
                if not dump:
                    return payloads

    def destinations(self, vip, port):
        """{(ip, port): weight} of the TCP service vip:port."""
        svc = (nlattr(1, struct.pack("H", socket.AF_INET)) + nlattr(2, struct.pack("H", socket.IPPROTO_TCP))
               + nlattr(3, socket.inet_aton(vip) + b"\0" * 12) + nlattr(4, struct.pack(">H", port)))
        out = {}
        for payload in self.exchange(self.family, 8, 1, nlattr(1, svc), dump=True):  # IPVS_CMD_GET_DEST
            dest = parse_attrs(parse_attrs(payload).get(2, b""))
            if 1 in dest:
                addr = socket.inet_ntoa(dest[1][:4])
                out[(addr, struct.unpack(">H", dest[2][:2])[0])] = struct.unpack("I", dest[4][:4])[0]
        return out


# --- the agents ----------------------------------------------------------------

class Agent:
    def __init__(self, kind, args, work):
        self.kind, self.args, self.work = kind, args, work
        self.proc = None
        self.log_path = os.path.join(work, f"{kind}.log")
        self.sync_re = re.compile(r'"sync full: .* ok,' if kind == "kipvs" else r"syncProxyRules complete")
        self.any_sync_re = re.compile(r'"sync (full|incremental)' if kind == "kipvs" else r"syncProxyRules complete")
        self.offset = 0
        self.syncs = []  # (timestamp, line) of every sync seen so far
        self.kubeconfig = os.path.join(work, f"{kind}.kubeconfig")
        d = args.apidir
        user = (f"    tokenFile: {d}/kipvs.token" if kind == "kipvs" else
                f"    client-certificate: {d}/pki/admin.crt\n    client-key: {d}/pki/admin.key")
        scale_cluster.write_guest_kubeconfig(self.kubeconfig, d, GUEST_API, user)

    def command(self):
        if self.kind == "kipvs":
            # --kipvs may carry extra flags after the path ("kipvs --flag=x").
            binary, *extra = self.args.kipvs.split()
            return [binary, "--kubeconfig", self.kubeconfig, "--hostname-override", scale_cluster.NODE,
                    "--ipvs-sync-period", f"{self.args.sync_period}s",
                    "--metrics-bind-address", "127.0.0.1:10249", "--healthz-bind-address", "127.0.0.1:10256",
                    *extra]
        config = os.path.join(self.work, "kube-proxy.yaml")
        with open(config, "w") as f:
            f.write(f"""apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: ipvs
clientConnection:
  kubeconfig: {self.kubeconfig}
hostnameOverride: {scale_cluster.NODE}
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
ipvs:
  syncPeriod: {self.args.sync_period}s
conntrack:
  maxPerCore: 0
""")
        return [self.args.kube_proxy, "--config", config, "-v=4"]

    def start(self):
        self.offset = 0
        self.syncs = []
        if os.path.exists(self.log_path):  # a restart: keep the first run's log
            os.replace(self.log_path, self.log_path.replace(".log", "-before-restart.log"))
        out = open(self.log_path, "w")
        t0 = time.time()
        self.proc = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT)
        return t0

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def read_syncs(self):
        with open(self.log_path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        now = time.time()
        for raw in data[:end].decode(errors="replace").splitlines():
            if self.any_sync_re.search(raw):
                self.syncs.append((klog_time(raw, now), raw))
        return self.syncs

    def timeline(self, t0, patterns):
        """The log lines matching any of patterns, as "+seconds since t0: text"."""
        wanted = re.compile("|".join(patterns))
        now = time.time()
        out = []
        with open(self.log_path, "rb") as f:
            for raw in f.read().decode(errors="replace").splitlines():
                if wanted.search(raw):
                    out.append(f"+{klog_time(raw, now) - t0:.2f} s: {raw.strip()[-140:]}")
        return out

    def wait_first_sync(self, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for ts, raw in self.read_syncs():
                if self.sync_re.search(raw):
                    return ts, raw
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.kind} exited: see {self.log_path}")
            time.sleep(0.05)
        raise TimeoutError(f"{self.kind}: no complete sync within {timeout} s; see {self.log_path}")

    def status(self, field):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def preload_binaries(work, executables):
    """Serves the agents, the tools kube-proxy execs and their libraries from
    this guest's tmpfs: the rig's 9p share has no page cache (cache=none), so
    every exec would read them from the host again, an artefact of the rig
    that would weigh on kube-proxy (one `ipset` exec per entry) far more than
    on kipvs. Bind mounts, so paths stay the same."""
    files = set()
    for exe in executables:
        path = shutil.which(exe) or exe
        files.add(os.path.realpath(path))
        out = subprocess.run(["ldd", path], capture_output=True, text=True).stdout
        for line in out.splitlines():
            for word in line.split():
                if word.startswith("/"):
                    files.add(os.path.realpath(word))
    fast = os.path.join(work, "fast")
    os.makedirs(fast, exist_ok=True)
    for i, f in enumerate(sorted(files)):
        copy = os.path.join(fast, f"{i}-{os.path.basename(f)}")
        shutil.copy2(f, copy)
        subprocess.run(["mount", "--bind", copy, f], check=True)
    return sorted(files)


def klog_time(line, fallback):
    """The time of a klog-style line (Lmmdd hh:mm:ss.uuuuuu), read as UTC."""
    m = re.search(r"^[IWE](\d\d)(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{6})", line)
    if not m:
        return fallback
    mo, d, h, mi, s, us = (int(x) for x in m.groups())
    year = time.gmtime(fallback).tm_year
    ts = calendar.timegm((year, mo, d, h, mi, s, 0, 0, 0)) + us / 1e6
    # A line of the last day (not a later one: the year or the day was
    # read wrong).
    return ts if -86400 < ts - fallback < 120 else fallback


class CpuSampler:
    """Samples, every 200 ms on a thread of its own, the guest's busy CPU time
    (all of /proc/stat but idle and iowait) and the agent's own: whether the
    cold start waits for the guest's CPUs or for something outside them (the
    API server on the host)."""

    def __init__(self, pid):
        self.pid = pid
        self.samples = []  # (time, guest busy seconds, agent user seconds, agent system seconds)
        self.stopping = threading.Event()
        self.hz = os.sysconf("SC_CLK_TCK")
        self.cpus = os.cpu_count() or 1
        self.sample()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def sample(self):
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        busy = (sum(fields[:8]) - fields[3] - fields[4]) / self.hz  # user..steal minus idle, iowait
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                own = f.read().rsplit(")", 1)[1].split()
            user, system = int(own[11]) / self.hz, int(own[12]) / self.hz
        except OSError:
            user, system = self.samples[-1][2:] if self.samples else (0.0, 0.0)
        self.samples.append((time.time(), busy, user, system))

    def run(self):
        while not self.stopping.wait(0.2):
            self.sample()

    def stop(self):
        self.stopping.set()
        self.thread.join()
        self.sample()

    def between(self, start, end):
        """Wall seconds, guest CPUs busy (fraction of all) and the agent's CPU
        seconds (and of them, the kernel's) between the samples nearest start
        and end."""
        def nearest(t):
            return min(self.samples, key=lambda s: abs(s[0] - t))
        a, b = nearest(start), nearest(end)
        wall = max(b[0] - a[0], 1e-9)
        return {"wall_s": round(wall, 2), "guest_busy": round((b[1] - a[1]) / (wall * self.cpus), 3),
                "agent_cpu_s": round(b[2] + b[3] - a[2] - a[3], 2), "agent_system_s": round(b[3] - a[3], 2)}


def cold_start_cpu(agent, sampler, t0, ts):
    """The guest's and the agent's CPU during the lists (start to the last
    list's end) and during the first sync (then to its end)."""
    lists_end = None
    with open(agent.log_path, "rb") as f:
        for raw in f.read().decode(errors="replace").splitlines():
            if re.search(r"(services|endpointslices): listed \d+ objects", raw):
                lists_end = max(lists_end or 0, klog_time(raw, ts))
    out = {"cpus": sampler.cpus}
    if lists_end:
        out["lists"] = sampler.between(t0, lists_end)
        out["first_sync"] = sampler.between(lists_end, ts)
    out["whole"] = sampler.between(t0, ts)
    return out


class LivezProber:
    """Asks /livez on the health port every 100 ms on a thread of its own and
    keeps each answer's time: what the kubelet's liveness probe would see
    (a probe with no answer within 5 s counts as 5 s)."""

    def __init__(self, port=10256):
        self.url = f"http://127.0.0.1:{port}/livez"
        self.times = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stopping.is_set():
            start = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=5) as r:
                    r.read()
                answered = True
            except urllib.error.HTTPError:
                answered = True  # 503 is an answer too
            except Exception:  # noqa: BLE001 - not listening yet, or no answer
                answered = False
            elapsed = time.monotonic() - start
            if answered or elapsed >= 5:
                self.times.append(elapsed)
            self.stopping.wait(max(0.0, 0.1 - elapsed))

    def stop(self):
        """Stops and returns (probes answered, max seconds, p99 seconds)."""
        self.stopping.set()
        self.thread.join()
        if not self.times:
            return 0, None, None
        return len(self.times), round(max(self.times), 4), percentile(self.times, 0.99)


def metrics(port=10249):
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=120) as r:
        return r.read().decode()


def kernel_writes(text):
    """Sum of kipvs_netlink_operations_total: every operation is a write."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("kipvs_netlink_operations_total"):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def scrape_sync_thread(text):
    """kipvs_scrape_sync_thread_seconds: (count, mean, the smallest bucket bound
    that holds every observation: the longest is at most that)."""
    count, total, bound = 0, 0.0, None
    buckets = []
    for line in text.splitlines():
        if line.startswith("kipvs_scrape_sync_thread_seconds_count"):
            count = int(float(line.rsplit(" ", 1)[1]))
        elif line.startswith("kipvs_scrape_sync_thread_seconds_sum"):
            total = float(line.rsplit(" ", 1)[1])
        elif line.startswith("kipvs_scrape_sync_thread_seconds_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), int(float(line.rsplit(" ", 1)[1]))))
    for le, cumulative in sorted(buckets):
        if count and cumulative >= count:
            bound = le
            break
    return count, (total / count if count else None), bound


def nft_transactions(text):
    """kipvs_nftables_transactions_total by scope: {"table": n, "elements": m}."""
    out = {}
    for line in text.splitlines():
        m = re.match(r'kipvs_nftables_transactions_total\{scope="(\w+)"\} ([0-9.e+]+)', line)
        if m:
            out[m.group(1)] = int(float(m.group(2)))
    return out


def count_rules(path):
    services = dests = 0
    with open(path) as f:
        for line in f:
            services += line.startswith("-A")
            dests += line.startswith("-a")
    return services, dests


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


# --- the measurements ------------------------------------------------------------

def change_test(agent, args, client, poller):
    """Alternately adds and removes one endpoint of s-0; the time from just
    before the API write to the destination's state in the kernel."""
    m = args.endpoints
    base = [scale_cluster.pod_ip(0, j, m) for j in range(m)]
    path = f"/apis/discovery.k8s.io/v1/namespaces/{scale_cluster.NAMESPACE}/endpointslices/s-0-a"
    # In order, each change's start (wall clock, to set beside the agent's
    # log), latency and the PATCH's own time (the API server's write): what
    # of an outlier is the agent's.
    results = {"add": [], "remove": [], "in_order": []}
    budget_end = time.monotonic() + args.change_budget
    for k in range(args.changes):
        if k >= 2 and k % 2 == 0 and time.monotonic() > budget_end:
            # kube-proxy in the emulated guest: each change costs a minute or
            # more of `ipset`/`iptables` execs; keep the run bounded.
            log(f"change budget of {args.change_budget} s spent after {k} changes")
            break
        extra = f"10.250.{(k // 2) // 250}.{(k // 2) % 250 + 1}"
        adding = k % 2 == 0
        body = {"endpoints": scale_cluster.endpoints(base + ([extra] if adding else []))}
        synced_before = len(agent.read_syncs())
        box = {}

        def write():
            box["status"], _ = client.request("PATCH", path, body, "application/merge-patch+json")
            box["answered"] = time.monotonic()

        started = time.time()
        t0 = time.monotonic()
        writer = threading.Thread(target=write)
        writer.start()
        deadline = t0 + args.change_timeout
        while True:
            weight = poller.destinations(CHANGE_VIP, CHANGE_PORT).get((extra, TARGET_PORT), 0)
            if (weight > 0) == adding:
                latency = time.monotonic() - t0
                break
            if time.monotonic() > deadline:
                latency = None
                break
            time.sleep(0.002)
        writer.join()
        if box.get("status") != 200:
            raise SystemExit(f"PATCH {path}: {box.get('status')}")
        results["add" if adding else "remove"].append(latency)
        patch = box["answered"] - t0
        results["in_order"].append({"at": round(started, 3), "kind": "add" if adding else "remove",
                                    "latency_ms": None if latency is None else round(latency * 1000, 1),
                                    "patch_ms": round(patch * 1000, 1)})
        # Let the agent finish the sync that carried the change, so the next
        # change starts from a quiet agent.
        quiet_deadline = time.time() + args.change_timeout
        while len(agent.read_syncs()) == synced_before and time.time() < quiet_deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        log(f"change {k + 1}/{args.changes} ({'add' if adding else 'remove'}): "
            f"{'timeout' if latency is None else f'{latency * 1000:.1f} ms'} (PATCH {patch * 1000:.1f} ms)")
    return results


def relist_test(agent, args, client):
    """A relist of every EndpointSlice, as after a 410: kipvs is stopped
    (SIGSTOP) and its API connections cut (`ss -K`), so the change that
    follows cannot reach it; one slice changes and the host compacts etcd
    (slices bypass the API server's watch cache in bench/scale, so the watch
    reads etcd). Resumed, kipvs's watch from the old resourceVersion gets
    410 and it lists all slices again while the old cache is still held. The
    peak RSS is reset just before (clear_refs 5), so VmHWM afterwards is the
    relist's own peak."""
    out = {}
    requests = os.path.join(os.path.dirname(os.path.abspath(args.out)), "requests")
    pid = agent.proc.pid
    rss_before = agent.status("VmRSS")
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")
    os.kill(pid, signal.SIGSTOP)
    try:
        run(["ss", "-K", "dst", GUEST_API[0], "dport", "=", str(GUEST_API[1])], stdout=subprocess.DEVNULL)
        m = args.endpoints
        ips = [scale_cluster.pod_ip(1, j, m) for j in range(m)] + ["10.250.255.1"]
        path = f"/apis/discovery.k8s.io/v1/namespaces/{scale_cluster.NAMESPACE}/endpointslices/s-1-a"
        status, _ = client.request("PATCH", path, {"endpoints": scale_cluster.endpoints(ips)},
                                   "application/merge-patch+json")
        if status != 200:
            raise SystemExit(f"PATCH {path}: {status}")
        done = os.path.join(requests, "compact.done")
        if os.path.exists(done):
            os.remove(done)
        open(os.path.join(requests, "compact"), "w").close()
        deadline = time.time() + 120
        while not os.path.exists(done):
            if time.time() > deadline:
                raise SystemExit("the host did not compact etcd within 120 s (bench/scale's compactor)")
            time.sleep(0.2)
    finally:
        os.kill(pid, signal.SIGCONT)
    t0 = time.time()
    prober = LivezProber()
    agent.read_syncs()
    listed = re.compile(r"endpointslices: listed (\d+) objects")
    offset = agent.offset
    deadline = t0 + min(args.cold_timeout, 600)
    seen = None
    while seen is None and time.time() < deadline:
        with open(agent.log_path, "rb") as f:
            f.seek(offset)
            seen = listed.search(f.read().decode(errors="replace"))
        time.sleep(0.1)
    if seen is None:
        raise SystemExit(f"kipvs did not relist the EndpointSlices within {args.cold_timeout} s")
    # The sync that applies the relist's one change.
    poller = IpvsPoller()
    vip = scale_cluster.service_ip(1)  # s-1: 80 -> 8080, as the change test's s-0
    while time.time() < deadline:
        if poller.destinations(vip, CHANGE_PORT).get(("10.250.255.1", TARGET_PORT)):
            break
        time.sleep(0.05)
    out["relist_seconds"] = round(time.time() - t0, 3)
    out["relist_objects"] = int(seen.group(1))
    time.sleep(2)
    (out["relist_livez_probes"], out["relist_livez_max_seconds"],
     out["relist_livez_p99_seconds"]) = prober.stop()
    out["relist_rss_before_kib"] = rss_before
    out["relist_vm_hwm_kib"] = agent.status("VmHWM")
    log(f"relist of {out['relist_objects']} slices: {out['relist_seconds']} s, peak RSS "
        f"{out['relist_vm_hwm_kib'] // 1024} MiB (RSS before {rss_before // 1024} MiB)")
    return out


def percentile(values, q):
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    idx = min(len(values) - 1, max(0, int(round(q * (len(values) - 1)))))
    return values[idx]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("agent", choices=["kipvs", "kube-proxy"])
    ap.add_argument("out")
    ap.add_argument("--apidir", required=True)
    ap.add_argument("--kipvs", required=True)
    ap.add_argument("--kube-proxy", dest="kube_proxy", required=True)
    ap.add_argument("--endpoints", type=int, default=10)
    ap.add_argument("--changes", type=int, default=50)
    ap.add_argument("--change-timeout", type=float, default=180)
    ap.add_argument("--change-budget", type=float, default=600,
                    help="stop the change test (after an even count) once this many seconds are spent")
    ap.add_argument("--idle", type=float, default=300)
    ap.add_argument("--sync-period", type=int, default=30)
    ap.add_argument("--cold-timeout", type=float, default=1500)
    ap.add_argument("--cold-only", action="store_true", help="only the cold start (bench/scale --compare)")
    args = ap.parse_args()

    work = "/tmp/scale"  # the guest's own tmpfs: logs and rule dumps stay off 9p
    os.makedirs(work, exist_ok=True)
    res = {"agent": args.agent}
    preload_binaries(work, [args.kipvs.split()[0] if args.agent == "kipvs" else args.kube_proxy, "ipvsadm",
                            "ipset", "xtables-nft-multi", "iptables", "ip6tables", "iptables-restore",
                            "iptables-save", "ip", "curl"])
    if args.cold_only:
        return cold_start_only(args, work)
    agent = Agent(args.agent, args, work)
    client = scale_cluster.Client(args.apidir, host=GUEST_API[0], port=GUEST_API[1], server_hostname="localhost")
    client.request("GET", "/version")
    try:
        log(f"starting {args.agent}")
        t0 = agent.start()
        prober = LivezProber()
        sampler = CpuSampler(agent.proc.pid)
        try:
            ts, line = agent.wait_first_sync(args.cold_timeout)
        except TimeoutError as e:
            # Only a lower bound (kube-proxy at large N in the emulated guest:
            # one `ipset add` exec per entry); memory so far is still telling.
            log(str(e))
            prober.stop()
            sampler.stop()
            res["cold_start_lower_bound_seconds"] = round(time.time() - t0, 3)
            res["vm_hwm_kib"] = agent.status("VmHWM")
            res["vm_rss_kib"] = agent.status("VmRSS")
            agent.stop()
            write_results(args, res, work)
            return
        sampler.stop()
        res["cold_start_seconds"] = round(ts - t0, 3)
        res["cold_start_line"] = line.strip()[-200:]
        res["cold_start_cpu"] = cold_start_cpu(agent, sampler, t0, ts)
        log(f"cold start cpu: {res['cold_start_cpu']}")
        (res["cold_start_livez_probes"], res["cold_start_livez_max_seconds"],
         res["cold_start_livez_p99_seconds"]) = prober.stop()
        log(f"/livez during the cold start: {res['cold_start_livez_probes']} answers, "
            f"max {res['cold_start_livez_max_seconds']} s")
        log(f"cold start {res['cold_start_seconds']} s: {line.strip()[-160:]}")
        # When the lists ended and the early rounds ran, against the start.
        res["cold_start_timeline"] = agent.timeline(t0, [r"listed \d+ objects"])
        for entry in res["cold_start_timeline"]:
            log(f"  {entry}")
        rules = os.path.join(work, "rules")
        with open(rules, "w") as f:
            run(["ipvsadm", "-Sn"], stdout=f)
        res["virtual_services"], res["destinations"] = count_rules(rules)
        log(f"{res['virtual_services']} virtual services, {res['destinations']} destinations in the kernel")
        if args.agent == "kipvs":
            res["cold_start_writes"] = kernel_writes(metrics())

        poller = IpvsPoller()
        changes = change_test(agent, args, client, poller)
        all_changes = changes["add"] + changes["remove"]
        res["change_timeouts"] = sum(v is None for v in all_changes)
        for name, values in (("change", all_changes), ("add", changes["add"]), ("remove", changes["remove"])):
            res[f"{name}_median_seconds"] = percentile(values, 0.5)
            res[f"{name}_p99_seconds"] = percentile(values, 0.99)
        res["changes"] = len(all_changes)
        res["changes_in_order"] = changes["in_order"]

        # Idle: the drained endpoint's deletion (kipvs checks every 5 s)
        # lands before the window opens; then only periodic resyncs run.
        time.sleep(8)
        before = metrics() if args.agent == "kipvs" else ""
        writes0 = kernel_writes(before) if args.agent == "kipvs" else None
        nft0 = nft_transactions(before)
        syncs0 = len(agent.read_syncs())
        cpu0 = agent.cpu_seconds()
        log(f"idle window: {args.idle} s")
        time.sleep(args.idle)
        res["idle_seconds"] = args.idle
        res["idle_cpu_seconds"] = round(agent.cpu_seconds() - cpu0, 3)
        res["idle_syncs"] = len(agent.read_syncs()) - syncs0
        if args.agent == "kipvs":
            after = metrics()
            res["idle_writes"] = kernel_writes(after) - writes0
            res["idle_nft_transactions"] = sum(nft_transactions(after).values()) - sum(nft0.values())
        res["vm_hwm_kib"] = agent.status("VmHWM")
        res["vm_rss_kib"] = agent.status("VmRSS")
        if args.agent == "kipvs":
            # Binding addresses: when the first sync's local routes had all
            # been swapped for addresses (after the cold start, during the
            # changes).
            res["address_swap"] = agent.timeline(t0, [r"in place of their local routes"])

        scrapes = []
        prober = LivezProber()
        for _ in range(3):
            out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{time_total} %{size_download}",
                                  "http://127.0.0.1:10249/metrics"], check=True, capture_output=True, text=True)
            t, size = out.stdout.split()
            scrapes.append((float(t), int(float(size))))
        scrapes.sort()
        res["scrape_seconds"], res["scrape_bytes"] = scrapes[1]
        (res["scrape_livez_probes"], res["scrape_livez_max_seconds"],
         res["scrape_livez_p99_seconds"]) = prober.stop()
        if args.agent == "kipvs":
            # Every scrape so far (these three and the benchmark's own).
            (res["scrape_sync_thread_count"], res["scrape_sync_thread_mean_seconds"],
             res["scrape_sync_thread_max_bound_seconds"]) = scrape_sync_thread(metrics())

        if args.agent == "kipvs":
            res.update(relist_test(agent, args, client))
            log("restart with everything programmed")
            agent.stop()
            t0 = agent.start()
            ts, line = agent.wait_first_sync(args.cold_timeout)
            res["restart_seconds"] = round(ts - t0, 3)
            after = metrics()
            res["restart_writes"] = kernel_writes(after)
            res["restart_nft_transactions"] = nft_transactions(after)
            res["restart_line"] = line.strip()[-200:]
            log(f"restart {res['restart_seconds']} s, {res['restart_writes']} writes: {line.strip()[-160:]}")
    finally:
        agent.stop()

    if args.agent == "kipvs":
        # The reference: the same rules, `ipvsadm -R` into a fresh namespace
        # (IPVS state, its trash list included, is per network namespace).
        log("ipvsadm -R of the same rules in a fresh network namespace")
        out = subprocess.run(["unshare", "-n", "/bin/bash", "-c",
                              # Destinations must be routable (the kernel
                              # refuses others): a route like the node's.
                              "ip link set lo up; ip link add d0 type dummy; ip link set d0 up; "
                              "ip addr add 10.0.2.15/24 dev d0; ip route add default dev d0; "
                              f"s=$(date +%s.%N); ipvsadm -R < {rules}; e=$(date +%s.%N); "
                              f"echo $s $e; ipvsadm -Sn | grep -c '^-a'"],
                             check=True, capture_output=True, text=True)
        lines = out.stdout.split("\n")
        s, e = (float(x) for x in lines[0].split())
        res["ipvsadm_restore_seconds"] = round(e - s, 3)
        res["ipvsadm_destinations"] = int(lines[1])
        log(f"ipvsadm -R: {res['ipvsadm_restore_seconds']} s")

    write_results(args, res, work)


def cold_start_only(args, work):
    """One cold start on this fresh guest, for bench/scale --compare."""
    agent = Agent("kipvs", args, work)
    t0 = agent.start()
    sampler = CpuSampler(agent.proc.pid)
    ts, line = agent.wait_first_sync(args.cold_timeout)
    sampler.stop()
    res = {"agent": "kipvs", "kipvs": args.kipvs, "cold_start_seconds": round(ts - t0, 3),
           "cold_start_line": line.strip()[-200:], "cold_start_cpu": cold_start_cpu(agent, sampler, t0, ts)}
    agent.stop()
    log(f"{args.kipvs}: cold start {res['cold_start_seconds']} s: {res['cold_start_line'][-120:]}")
    log(f"  cpu: {res['cold_start_cpu']}")
    write_results(args, res, work)


def write_results(args, res, work):
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"{args.agent}.json"), "w") as f:
        json.dump(res, f, indent=1)
    for name in (f"{args.agent}.log", f"{args.agent}-before-restart.log"):
        if os.path.exists(os.path.join(work, name)):
            subprocess.run(["cp", os.path.join(work, name), args.out])
    print(json.dumps(res))


if __name__ == "__main__":
    main()
