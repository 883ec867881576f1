#!/usr/bin/env bash
# kipvs's own parser accepts the configuration the chart renders (default
# values and each values file that renders one) and kubeadm's kube-proxy
# config.conf (kube-proxy-configmap.yaml), without unknown-field warnings;
# and rejects a broken one, so the check is live. Every flag the DaemonSet
# passes is listed by kipvs --help.
#
# Uses `kipvs check-config FILE`: parse and validate, print warnings, exit 0
# when the file would start kipvs. KIPVS_BIN: the kipvs binary.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_helm
bin="${KIPVS_BIN:-$root/build/app/kipvs}"
[[ -x "$bin" ]] || missing "the kipvs binary ($bin)" "Run: cmake --preset default && cmake --build build"
# Read the help whole first: `grep -q` in a pipe closes it early, and under
# pipefail kipvs's SIGPIPE would read as "not listed".
help="$("$bin" --help 2>&1 || true)"
if ! grep -q 'check-config' <<<"$help"; then
  missing "'kipvs check-config FILE' (kipvs --help does not list it)" \
    "The agent needs a check-config subcommand that parses and validates a KubeProxyConfiguration file."
fi
begin_test
accept() {  # accept NAME FILE
  local out
  if ! out="$("$bin" check-config "$2" 2>&1)"; then
    echo "FAIL: kipvs rejects the $1 configuration:"
    echo "$out"
    sed 's/^/  | /' "$2"
    fail=1
  elif grep -qi 'unknown field' <<<"$out"; then
    echo "FAIL: kipvs warns about the $1 configuration:"
    echo "$out"
    fail=1
  else
    echo "ok: kipvs accepts the $1 configuration"
  fi
}
one() {
  local name="$1"
  shift
  render "$work/$name.yaml" "$@"
  grep -q 'KubeProxyConfiguration' "$work/$name.yaml" || return 0  # an existing ConfigMap is used
  python3 "$tests_dir/check_rendered.py" --config "$work/$name.yaml" "$work/$name.conf"
  accept "$name" "$work/$name.conf"
}
for_each_values one
python3 -c '
import sys, yaml
print(yaml.safe_load(open(sys.argv[1]))["data"]["config.conf"])' "$tests_dir/kube-proxy-configmap.yaml" >"$work/kubeadm.conf"
accept "kubeadm kube-proxy" "$work/kubeadm.conf"

# Every flag the DaemonSet passes is one kipvs --help lists.
help="$("$bin" --help 2>&1)"
render "$work/flags.yaml" -f "$tests_dir/values/all-on.yaml" --set config.existingConfigMap=kube-proxy
for flag in $(python3 -c '
import sys, yaml
ds = next(d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "DaemonSet")
print(" ".join(a.split("=")[0] for a in ds["spec"]["template"]["spec"]["containers"][0]["args"]))' "$work/flags.yaml"); do
  if grep -qE -- "(^|[ ,])$flag([ =,]|$)" <<<"$help"; then
    echo "ok: kipvs --help lists $flag"
  else
    echo "FAIL: the chart passes $flag, which kipvs --help does not list"
    fail=1
  fi
done

render "$work/bad.yaml" "${api_server_args[@]}" --set config.extra.iptables.masqueradeBit=40
python3 "$tests_dir/check_rendered.py" --config "$work/bad.yaml" "$work/bad.conf"
expect_refusal "kipvs check-config with masqueradeBit 40" masqueradeBit "$bin" check-config "$work/bad.conf"
exit $fail
