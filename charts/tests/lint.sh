#!/usr/bin/env bash
# helm lint --strict is clean with the default values and every values file;
# values.yaml is documented key by key and README.md's table matches (docs.py).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_helm
fail=0
lint() {
  local name="$1"
  shift
  local out
  if ! out="$("$HELM" lint --strict "$chart_dir" --namespace "$namespace" "$@" 2>&1)"; then
    echo "FAIL: helm lint ($name):"
    echo "$out"
    fail=1
    return
  fi
  # --strict fails on warnings; anything but the icon hint is noise we want gone.
  if grep -E '^\[(WARNING|ERROR)\]' <<<"$out"; then
    echo "FAIL: helm lint ($name) reported the lines above"
    fail=1
    return
  fi
  echo "ok: helm lint $name"
}
for_each_values lint
python3 "$tests_dir/docs.py" || fail=1
exit $fail
