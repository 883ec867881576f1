#!/usr/bin/env bash
# values.schema.json rejects bad values: bad-values.yaml fails with an error
# naming each bad key, and each single wrong --set in the table below fails on
# its own, while the same key with a good value renders.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_helm
fail=0
out="$("$HELM" template "$release" "$chart_dir" -f "$tests_dir/bad-values.yaml" 2>&1)" && {
  echo "FAIL: bad-values.yaml rendered"
  fail=1
}
for key in /logLevel /image/pullPolicy /config/ipvs/syncPeriod /config/ipvs/scheduler \
    /config/masqueradeBit /metrics/port /coexistence/enabled; do
  if grep -q "at '$key'" <<<"$out"; then
    echo "ok: bad-values.yaml: $key rejected"
  else
    echo "FAIL: the schema error does not name $key"
    fail=1
  fi
done
"$HELM" lint --strict "$chart_dir" -f "$tests_dir/bad-values.yaml" >/dev/null 2>&1 && {
  echo "FAIL: helm lint accepts bad-values.yaml"
  fail=1
}

# "bad --set | good --set": the bad one must fail, the good one must render,
# so each line shows the schema, not something else, rejects the value.
cases=(
  "logLevel=high|logLevel=3"
  "logFormat=xml|logFormat=json"
  "image.pullPolicy=Sometimes|image.pullPolicy=Never"
  "image.repository=|image.repository=example.com/kipvs"
  "updateStrategy.maxUnavailable=0|updateStrategy.maxUnavailable=2"
  "updateStrategy.maxUnavailable=lots|updateStrategy.maxUnavailable=25%"
  "config.ipvs.scheduler=fastest|config.ipvs.scheduler=mh"
  "config.ipvs.syncPeriod=30 seconds|config.ipvs.syncPeriod=1m30s"
  "config.ipvs.minSyncPeriod=-1s|config.ipvs.minSyncPeriod=500ms"
  "config.ipvs.tcpTimeout=15|config.ipvs.tcpTimeout=15m"
  "config.ipvs.excludeCIDRs={10.0.0.0}|config.ipvs.excludeCIDRs={10.0.0.0/8}"
  "config.masqueradeBit=32|config.masqueradeBit=31"
  "config.affinityMode=sticky|config.affinityMode=hash"
  "config.interfaceName=an-interface-name-too-long|config.interfaceName=kipvs0"
  "config.gracePeriod=forever|config.gracePeriod=5m"
  "config.nodePortAddresses={eth0}|config.nodePortAddresses={primary}"
  "metrics.port=0|metrics.port=9100"
  "metrics.bindAddress=everywhere|metrics.bindAddress=::"
  "health.port=65536|health.port=10256"
  "metrics.serviceMonitor.interval=often|metrics.serviceMonitor.interval=15s"
  "alerts.syncStalledSeconds=5|alerts.syncStalledSeconds=60"
  "extraArgs={v=3}|extraArgs={-v=3}"
  "unknownTopLevel=1|nameOverride=x"
  "config.ipvs.shceduler=rr|config.ipvs.scheduler=rr"
  "k8sServicePort=0|k8sServicePort=443"
  "k8sServiceHost=https://10.0.0.1|k8sServiceHost=10.0.0.1"
)
for c in "${cases[@]}"; do
  bad="${c%%|*}" good="${c##*|}"
  if msg="$("$HELM" template "$release" "$chart_dir" "${api_server_args[@]}" --set "$bad" 2>&1)"; then
    echo "FAIL: --set $bad rendered"
    fail=1
  elif ! grep -q "schema" <<<"$msg"; then
    echo "FAIL: --set $bad failed, but not in the schema: $msg"
    fail=1
  elif ! "$HELM" template "$release" "$chart_dir" "${api_server_args[@]}" --set "$good" >/dev/null 2>&1; then
    echo "FAIL: --set $good (the good counterpart) does not render"
    fail=1
  else
    echo "ok: --set $bad rejected, --set $good accepted"
  fi
done
exit $fail
