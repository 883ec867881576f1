#!/usr/bin/env bash
# ctest fixture for the apiserver tier: `fixture.sh start DIR` / `stop DIR`.
# Exits 77 (ctest's skip code here) when the binaries are missing and CI is
# not "true"; in CI a missing binary is built, and a failure fails.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
script="$root/scripts/apiserver"
case "${1:-}" in
  start)
    if ! "$script" check >/dev/null 2>&1; then
      if [[ "${CI:-}" != "true" ]]; then
        echo "SKIP: kube-apiserver, etcd and kubectl are not built. Install Go >= 1.25 (https://go.dev/dl/) and npm, then run: scripts/apiserver build   (about 20 min on 2 cores)"
        exit 77
      fi
      "$script" build || exit 1
    fi
    "$script" stop "$2" >/dev/null 2>&1 || true
    exec "$script" start "$2"
    ;;
  stop) exec "$script" stop "$2" ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
