#!/usr/bin/env bash
# Kernel tier: a real Prometheus (Debian's package) scrapes a running kipvs
# inside the guest. A query through Prometheus's HTTP API must return a sync
# duration sample, and the per-Service byte counter (labelled with the
# Service's name) must rise after real traffic through the virtual service.
# promtool must accept the live scrape. Runs in a network namespace of its
# own, so it can share the guest with the other kernel cases.
#
#   prometheus_scrape.sh KIPVS_BINARY     (run through scripts/rig exec)
set -euo pipefail
if [[ "${KIPVS_OWN_NETNS:-}" != 1 ]]; then
  exec unshare -n env KIPVS_OWN_NETNS=1 bash "$0" "$@"
fi
kipvs="$1"
# Debian's python3: a version-manager shim on PATH can take many seconds to
# start in the emulated guest.
python=/usr/bin/python3
work="$(mktemp -d /tmp/kipvs-prometheus.XXXXXX)"
peer="kprom$$"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  ip netns delete "$peer" 2>/dev/null || true
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  echo "--- kipvs log"; tail -n 20 "$work/kipvs.log" || true
  echo "--- prometheus log"; tail -n 20 "$work/prometheus.log" || true
  exit 1
}
wait_for() {  # wait_for SECONDS COMMAND...
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

ip link set lo up
# One backend over a veth pair, serving a directory listing (a few hundred bytes).
ip netns add "$peer"
ip link add kp-node type veth peer name eth0 netns "$peer"
ip addr add 10.244.9.1/24 dev kp-node
ip link set kp-node up
ip -n "$peer" addr add 10.244.9.2/24 dev eth0
ip -n "$peer" link set eth0 up
ip -n "$peer" link set lo up
ip -n "$peer" route add default via 10.244.9.1
# socketserver rather than `python3 -m http.server`: HTTPServer looks its own
# address up in DNS at start, which hangs where no resolver is reachable.
ip netns exec "$peer" "$python" -c '
import http.server, os, socketserver, sys
os.chdir(sys.argv[1])
socketserver.TCPServer.allow_reuse_address = True
socketserver.TCPServer(("10.244.9.2", 8080), http.server.SimpleHTTPRequestHandler).serve_forever()
' "$work" >/dev/null 2>&1 &
pids+=($!)

mkdir -p "$work/manifests"
cat >"$work/manifests/web.yaml" <<'EOF'
apiVersion: v1
kind: Service
metadata: {name: web, namespace: scrape}
spec:
  clusterIP: 10.96.9.10
  ports:
    - {name: http, port: 80, protocol: TCP}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: scrape
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports:
  - {name: http, port: 8080, protocol: TCP}
endpoints:
  - {addresses: ["10.244.9.2"], conditions: {ready: true}}
EOF
"$kipvs" --manifests "$work/manifests" --hostname-override scrape-node --node-ip 10.244.9.1 \
  --metrics-bind-address 127.0.0.1:10249 --healthz-bind-address 127.0.0.1:10256 \
  --ipvs-sync-period 5s >"$work/kipvs.log" 2>&1 &
pids+=($!)
wait_for 90 sh -c 'ipvsadm -Sn | grep -q -- "-r 10.244.9.2:8080"' || fail "kipvs did not program the service"
wait_for 30 curl -sf --max-time 2 http://10.244.9.2:8080/ || fail "the backend does not answer"

# promtool on a live scrape: any finding fails.
curl -sf http://127.0.0.1:10249/metrics >"$work/scrape.txt" || fail "no /metrics"
lint="$(promtool check metrics <"$work/scrape.txt" 2>&1)" || fail "promtool check metrics: $lint"
[[ -z "$lint" ]] || fail "promtool check metrics: $lint"
echo "promtool check metrics: clean"
# The scrape timed its own copy on the sync thread.
grep -Eq '^kipvs_scrape_sync_thread_seconds_count [1-9]' "$work/scrape.txt" ||
  fail "the scrape's time on the sync thread is not counted"

cat >"$work/prometheus.yml" <<'EOF'
global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: kipvs
    static_configs: [{targets: ["127.0.0.1:10249"]}]
EOF
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address=127.0.0.1:9090 >"$work/prometheus.log" 2>&1 &
pids+=($!)

query() {  # query PROMQL: prints the first sample's value, or nothing
  curl -sf --max-time 5 -G http://127.0.0.1:9090/api/v1/query --data-urlencode "query=$1" |
    "$python" -c 'import json, sys
r = json.load(sys.stdin)["data"]["result"]
print(r[0]["value"][1] if r else "")'
}
has_value() { [[ -n "$(query "$1")" ]]; }
above() { "$python" -c 'import sys; sys.exit(0 if float(sys.argv[1]) > float(sys.argv[2]) else 1)' "$(query "$1")" "$2"; }

bytes='kipvs_service_bytes_total{job="kipvs",namespace="scrape",service="web",port_name="http",direction="out"}'
wait_for 120 has_value 'up{job="kipvs"} == 1' || fail "Prometheus never scraped kipvs"
wait_for 60 has_value "$bytes" || fail "no per-Service byte counter in Prometheus"
before="$(query "$bytes")"
echo "bytes out before traffic: $before"

for _ in 1 2 3 4 5; do curl -sf --max-time 10 -o /dev/null http://10.96.9.10/ || fail "a request through the virtual IP failed"; done
wait_for 60 above "$bytes" "$before" || fail "the byte counter did not rise after traffic (still $(query "$bytes"))"
echo "bytes out after traffic: $(query "$bytes")"

wait_for 30 above 'kubeproxy_sync_proxy_rules_duration_seconds_count{job="kipvs"}' 0 ||
  fail "no sync duration sample in Prometheus"
echo "sync duration samples: $(query 'kubeproxy_sync_proxy_rules_duration_seconds_count{job="kipvs"}')"
echo "ok: Prometheus scraped kipvs; the Service's byte counter rose with real traffic"
