#!/usr/bin/env bash
# The PrometheusRule the chart renders (alerts.enabled=true, default
# thresholds): its groups pass `promtool check rules` and the unit tests in
# alerts-test.yaml (`promtool test rules`), and name only exported metrics.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_helm
need_promtool
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
render "$work/rendered.yaml" "${api_server_args[@]}" --set alerts.enabled=true
python3 "$tests_dir/check_rendered.py" --rules "$work/rendered.yaml" "$work/rules.yaml"
cp "$tests_dir/alerts-test.yaml" "$work/"
"$PROMTOOL" check rules "$work/rules.yaml"
(cd "$work" && "$PROMTOOL" test rules alerts-test.yaml)
python3 "$tests_dir/check_queries.py" --rules "$work/rules.yaml"
