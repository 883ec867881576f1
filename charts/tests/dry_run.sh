#!/usr/bin/env bash
# Every object the chart renders (default values and each values file) is
# accepted by a real kube-apiserver: kubectl apply --dry-run=server
# --validate=strict, so unknown or mistyped fields fail. The Prometheus
# Operator's kinds are checked against the minimal CRDs in crds/. Two broken
# objects must be rejected, to show the dry run validates at all.
#
# KIPVS_APISERVER_DIR: a control plane started by `scripts/apiserver start`.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_helm
need_kubectl
dir="${KIPVS_APISERVER_DIR:-}"
if [[ -z "$dir" || ! -f "$dir/admin.kubeconfig" ]]; then
  missing "a running kube-apiserver (KIPVS_APISERVER_DIR=${dir:-unset})" \
    "Run: scripts/apiserver build && scripts/apiserver start DIR, then KIPVS_APISERVER_DIR=DIR $0"
fi
k() { "$KUBECTL" --kubeconfig "$dir/admin.kubeconfig" --request-timeout=60s "$@"; }
begin_test

k apply -f "$tests_dir/crds/monitoring.coreos.com.yaml" >/dev/null
k wait --for=condition=Established --timeout=60s \
  crd/servicemonitors.monitoring.coreos.com crd/podmonitors.monitoring.coreos.com \
  crd/prometheusrules.monitoring.coreos.com >/dev/null

one() {
  local name="$1"
  shift
  local file="$work/$name.yaml"
  render "$file" "$@"
  # Namespaces the objects go to (a dashboard may go elsewhere) must exist.
  local ns
  for ns in $(python3 -c '
import sys, yaml
print(" ".join(sorted({d["metadata"]["namespace"] for d in yaml.safe_load_all(open(sys.argv[1])) if d and "namespace" in d["metadata"]})))' "$file"); do
    k get namespace "$ns" >/dev/null 2>&1 || k create namespace "$ns" >/dev/null
  done
  local want got
  want="$(grep -c '^kind:' "$file")"
  if ! got="$(k apply --dry-run=server --validate=strict -f "$file" -o name 2>"$work/$name.err")"; then
    echo "FAIL: the API server rejects the $name rendering:"
    cat "$work/$name.err"
    fail=1
    return
  fi
  if [[ "$(wc -l <<<"$got")" != "$want" ]]; then
    echo "FAIL: $name: $want objects rendered, the API server answered for:"
    echo "$got"
    fail=1
    return
  fi
  echo "ok: $name: the API server accepts all $want objects: $(tr '\n' ' ' <<<"$got")"
}
for_each_values one
# The kubeadm-style kube-proxy ConfigMap existing-configmap.yaml reuses.
if out="$(k apply --dry-run=server --validate=strict -f "$tests_dir/kube-proxy-configmap.yaml" -o name 2>&1)"; then
  echo "ok: the API server accepts $out"
else
  echo "FAIL: kube-proxy-configmap.yaml: $out"
  fail=1
fi

# Negative controls: the same dry run must reject what is wrong.
render "$work/base.yaml" -f "$tests_dir/values/all-on.yaml"
python3 - "$work/base.yaml" "$work" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
ds = next(d for d in docs if d["kind"] == "DaemonSet")
ds["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {"privileged": False}
yaml.safe_dump(ds, open(sys.argv[2] + "/bad-field.yaml", "w"))
rule = next(d for d in docs if d["kind"] == "PrometheusRule")
del rule["spec"]
yaml.safe_dump(rule, open(sys.argv[2] + "/bad-crd.yaml", "w"))
PY
for bad in bad-field bad-crd; do
  if k apply --dry-run=server --validate=strict -f "$work/$bad.yaml" >/dev/null 2>"$work/$bad.err"; then
    echo "FAIL: the dry run accepted $bad (it validates nothing)"
    fail=1
  else
    echo "ok: the dry run rejects $bad: $(head -c 200 "$work/$bad.err")"
  fi
done
exit $fail
