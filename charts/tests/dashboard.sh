#!/usr/bin/env bash
# The Grafana dashboard: valid JSON, every panel query parses (promtool check
# rules, as recording rules) and names only exported metrics; the ConfigMap
# the chart renders carries it unchanged.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_helm
need_promtool
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 "$tests_dir/check_queries.py" --dashboard "$chart_dir/dashboards/kipvs.json" "$PROMTOOL"
render "$work/r.yaml" "${api_server_args[@]}" --set dashboards.enabled=true
python3 - "$work/r.yaml" "$chart_dir/dashboards/kipvs.json" <<'PY'
import json, sys, yaml
cms = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "ConfigMap" and "kipvs.json" in d["data"]]
assert len(cms) == 1, f"{len(cms)} dashboard ConfigMaps rendered"
assert json.loads(cms[0]["data"]["kipvs.json"]) == json.load(open(sys.argv[2])), "the rendered dashboard differs from the file"
assert cms[0]["metadata"]["labels"].get("grafana_dashboard") == "1", "no sidecar label"
print("ok: the rendered ConfigMap carries the dashboard with the sidecar label")
PY
