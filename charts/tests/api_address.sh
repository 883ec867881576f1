#!/usr/bin/env bash
# How kipvs reaches the API server. kipvs replaces kube-proxy, so the
# in-cluster address (the kubernetes Service's cluster IP) is not reachable
# before kipvs runs: the chart must refuse to render unless something names
# the server (k8sServiceHost, config.existingConfigMap, config.kubeconfig) or
# kube-proxy still runs (coexistence.enabled); k8sServiceHost/Port become
# KUBERNETES_SERVICE_HOST/PORT on the container, and only then.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_helm
begin_test

# The container's KUBERNETES_* variables, one NAME=VALUE per line.
api_env() {
  python3 - "$1" <<'PY'
import sys, yaml
ds = next(d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "DaemonSet")
for e in ds["spec"]["template"]["spec"]["containers"][0].get("env", []):
    if e["name"].startswith("KUBERNETES_"):
        print(f'{e["name"]}={e.get("value")}')
PY
}

expect_refusal "the default values, with nothing that says where the API server is" k8sServiceHost \
  "$HELM" template "$release" "$chart_dir"
# (helm lint is no judge here: in lint mode helm makes `fail` log and go on.)

# expect NAME WANT-ENV helm-args...: renders, with exactly WANT-ENV
# (space-separated NAME=VALUE, or "" for none).
expect() {
  local name="$1" want="$2"
  shift 2
  if ! "$HELM" template "$release" "$chart_dir" "$@" >"$work/$name.yaml" 2>"$work/$name.err"; then
    echo "FAIL: $name does not render: $(cat "$work/$name.err")"
    fail=1
    return
  fi
  local got
  got="$(api_env "$work/$name.yaml" | tr '\n' ' ' | sed 's/ $//')"
  if [[ "$got" != "$want" ]]; then
    echo "FAIL: $name: API server environment '$got', expected '$want'"
    fail=1
  else
    echo "ok: $name renders, API server environment '${got:-none}'"
  fi
}
expect k8sServiceHost "KUBERNETES_SERVICE_HOST=10.0.2.100 KUBERNETES_SERVICE_PORT=6443" \
  --set k8sServiceHost=10.0.2.100
expect k8sServiceHost+port "KUBERNETES_SERVICE_HOST=api.example.com KUBERNETES_SERVICE_PORT=443" \
  --set k8sServiceHost=api.example.com --set k8sServicePort=443
expect existingConfigMap "" --set config.existingConfigMap=kube-proxy
expect kubeconfig "" --set config.kubeconfig=/etc/kipvs/kubeconfig
expect coexistence "" --set coexistence.enabled=true
# A port alone names no server.
if "$HELM" template "$release" "$chart_dir" --set k8sServicePort=443 >/dev/null 2>&1; then
  echo "FAIL: k8sServicePort alone renders"
  fail=1
else
  echo "ok: k8sServicePort alone does not render"
fi
exit $fail
