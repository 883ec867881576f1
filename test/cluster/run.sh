#!/usr/bin/env bash
# The cluster tier's one case: scripts/cluster up, test, migrate, down on DIR. The
# cluster is always taken down, and its logs stay in DIR.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dir="$1"
if [[ "${CI:-}" != true ]] && ! command -v qemu-system-x86_64 containerd >/dev/null; then
  echo "skipped: QEMU or containerd is missing (run scripts/setup)"
  exit 77
fi
"$root/scripts/cluster" up "$dir" || { status=$?; "$root/scripts/cluster" down "$dir"; exit "$status"; }
"$root/scripts/cluster" test "$dir"
status=$?
# The migration checks start from the state `test` leaves (kipvs installed,
# the demo workload running).
if ((status == 0)); then
  "$root/scripts/cluster" migrate "$dir"
  status=$?
fi
"$root/scripts/cluster" down "$dir"
exit "$status"
