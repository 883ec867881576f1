#!/usr/bin/env python3
"""A stand-in for cluster DNS on scripts/e2e's node (no CoreDNS image here).

Runs in the guest, bound to ADDR:53 (the nameserver of the guest's
/etc/resolv.conf, which pods get with the kubelet's fallback "Default" DNS
policy; scripts/e2e puts ADDR on the guest's lo). It answers A queries for a
Service's name with its ClusterIP:
  NAME, NAME.NS, NAME.NS.svc, NAME.NS.svc.cluster.local
A bare NAME (pods have no search path here) is looked up in the namespace of
the pod that asks (by its source address), else in the newest namespace that
has a Service of that name. Everything else: NXDOMAIN. The Services and pods
come from the apiserver every second.

  e2e-dns.py ADDR KUBECONFIG-DIR   (API server URL and certificates: see main)
"""
import json, socket, ssl, struct, sys, threading, time, urllib.request

state = {"svc": {}, "pods": {}}


def poll(server, ctx):
    while True:
        try:
            svcs = json.load(urllib.request.urlopen(server + "/api/v1/services", context=ctx, timeout=5))
            pods = json.load(urllib.request.urlopen(server + "/api/v1/pods", context=ctx, timeout=5))
            svc = {}
            for s in svcs["items"]:
                ip = s["spec"].get("clusterIP")
                if ip and ip != "None":
                    svc.setdefault(s["metadata"]["name"], []).append(
                        (s["metadata"]["creationTimestamp"], s["metadata"]["namespace"], ip))
            state["svc"] = svc
            state["pods"] = {p["status"].get("podIP"): p["metadata"]["namespace"] for p in pods["items"]}
        except Exception as e:  # the apiserver restarting: keep the last answer
            print("e2e-dns: poll:", e, file=sys.stderr, flush=True)
        time.sleep(1)


def resolve(name, client):
    labels = name.rstrip(".").lower().split(".")
    if labels[-2:] == ["cluster", "local"]:
        labels = labels[:-2]
    if labels[-1:] == ["svc"]:
        labels = labels[:-1]
    cands = state["svc"].get(labels[0], [])
    if len(labels) == 2:
        cands = [c for c in cands if c[1] == labels[1]]
    elif len(labels) == 1:
        ns = state["pods"].get(client)
        mine = [c for c in cands if c[1] == ns]
        cands = mine or sorted(cands)[-1:]
    else:
        return None
    return cands[0][2] if cands else None


def answer(q, client):
    tid, flags, qd = struct.unpack("!HHH", q[:6])
    i, labels = 12, []
    while q[i]:
        labels.append(q[i + 1:i + 1 + q[i]].decode(errors="replace"))
        i += 1 + q[i]
    qtype, = struct.unpack("!H", q[i + 1:i + 3])
    question = q[12:i + 5]
    ip = resolve(".".join(labels), client)
    if ip is None:
        return struct.pack("!HHHHHH", tid, 0x8183, 1, 0, 0, 0) + question
    if qtype != 1:  # AAAA and the rest: the name exists, no such record
        return struct.pack("!HHHHHH", tid, 0x8180, 1, 0, 0, 0) + question
    rr = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 5, 4) + socket.inet_aton(ip)
    return struct.pack("!HHHHHH", tid, 0x8180, 1, 1, 0, 0) + question + rr


def main():
    addr, api = sys.argv[1], sys.argv[2]
    env = dict(l.strip().split("=", 1) for l in open(api + "/env") if "=" in l and not l.startswith("#"))
    server = "https://10.0.2.100:" + env["APISERVER_PORT"].strip('"')
    ctx = ssl.create_default_context(cafile=api + "/pki/ca.crt")
    ctx.check_hostname = False
    ctx.load_cert_chain(api + "/pki/admin.crt", api + "/pki/admin.key")
    threading.Thread(target=poll, args=(server, ctx), daemon=True).start()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((addr, 53))
    while True:
        q, peer = sock.recvfrom(512)
        try:
            sock.sendto(answer(q, peer[0]), peer)
        except Exception as e:
            print("e2e-dns:", e, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
