#!/usr/bin/env bash
# helm template renders with the default values and every values file, and
# the rendered objects pass check_rendered.py (security, RBAC, per-file
# expectations).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_helm
begin_test
one() {
  local name="$1"
  shift
  if ! render "$work/$name.yaml" "$@" 2>"$work/$name.err"; then
    echo "FAIL: helm template ($name):"
    cat "$work/$name.err"
    fail=1
    return
  fi
  echo "ok: rendered $name ($(grep -c '^kind:' "$work/$name.yaml") objects)"
  python3 "$tests_dir/check_rendered.py" "$name" "$work/$name.yaml" || fail=1
}
for_each_values one
# The checks themselves must fail on a rendering that breaks the rules.
[[ -s "$work/default.yaml" ]] && { python3 "$tests_dir/check_rendered.py" --mutants "$work/default.yaml" || fail=1; }
# Cleanup mode: kipvs --cleanup once per node, then idle.
if render "$work/cleanup.yaml" "${api_server_args[@]}" --set cleanup.enabled=true 2>"$work/cleanup.err"; then
  python3 "$tests_dir/check_rendered.py" --cleanup "$work/cleanup.yaml" || fail=1
else
  echo "FAIL: helm template (cleanup mode):"
  cat "$work/cleanup.err"
  fail=1
fi
# The Prometheus Operator's kinds need their CRDs: without the API they
# refuse to render, naming it.
if "$HELM" template "$release" "$chart_dir" -f "$tests_dir/values/all-on.yaml" >/dev/null 2>"$work/no-crds.err"; then
  echo "FAIL: monitors rendered for a cluster without monitoring.coreos.com/v1"
  fail=1
elif grep -q "monitoring.coreos.com/v1" "$work/no-crds.err"; then
  echo "ok: without the Prometheus Operator's CRDs the monitors refuse to render"
else
  echo "FAIL: the refusal does not name monitoring.coreos.com/v1:"
  cat "$work/no-crds.err"
  fail=1
fi
exit $fail
