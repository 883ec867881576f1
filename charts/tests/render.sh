#!/usr/bin/env bash
# helm template renders with the default values and every values file, and
# the rendered objects pass check_rendered.py (security, RBAC, per-file
# expectations).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_helm
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fail=0
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
exit $fail
