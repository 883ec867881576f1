#!/usr/bin/env python3
"""Checks the PromQL the chart ships against what kipvs exports.

usage: check_queries.py --rules RULES.yaml
       check_queries.py --dashboard DASHBOARD.json PROMTOOL

Every query may name only metrics listed in exported-metrics.txt (a
histogram also as NAME_bucket/_sum/_count), must name at least one, and may
apply rate/irate/increase only to counters and histogram series. With
--dashboard, every panel query is also parsed by `promtool check rules`, as a
recording rule (Grafana's $__rate_interval and friends replaced by 5m). Before
anything else, a few wrong queries are run through the same checks, which
must reject each of them.
"""
import json
import os
import re
import subprocess
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
            "bool", "offset", "inf", "nan", "atan2"}
GRAFANA_VARS = re.compile(r"\$(__rate_interval|__interval|__range|\{__rate_interval\}|\{__interval\}|\{__range\})")


def load_exported():
    kinds = {}
    with open(os.path.join(HERE, "exported-metrics.txt")) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                name, kind = line.split()
                kinds[name] = kind
    series = {}
    for name, kind in kinds.items():
        if kind == "histogram":
            for suffix in ("_bucket", "_sum", "_count"):
                series[name + suffix] = "counter"
        else:
            series[name] = kind
    return series


def metric_names(expr):
    """The metric names a PromQL expression selects (a lexical scan, enough for our queries)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)  # strings
    e = re.sub(r"\{[^}]*\}", " ", e)                                           # label matchers
    e = re.sub(r"\[[^\]]*\]", " ", e)                                          # ranges, subqueries
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\boffset\s+\S+", " ", e)
    names = []
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        word = m.group(0)
        rest = e[m.end():].lstrip()
        if rest.startswith("(") or word.lower() in KEYWORDS:
            continue
        if re.match(r"\d", e[m.start() - 1:m.start()] or " "):  # the "e" in 1e3, the "m" in 5m
            continue
        names.append(word)
    return names


def problems(expr, exported):
    out = []
    names = metric_names(expr)
    if not names:
        out.append("names no metric")
    for n in names:
        if n not in exported:
            out.append(f"names {n}, which kipvs does not export")
    for m in re.finditer(r"\b(rate|irate|increase)\s*\(\s*([A-Za-z_:][A-Za-z0-9_:]*)", expr):
        kind = exported.get(m.group(2))
        if kind is not None and kind != "counter":
            out.append(f"applies {m.group(1)}() to the {kind} {m.group(2)}")
    return out


def self_test(exported):
    wrong = [
        "up",                                                         # not kipvs's
        'sum(rate(kipvs_netlink_errors_total{kind="x"}[5m]))',       # misspelt
        "rate(kipvs_virtual_services[5m])",                           # rate of a gauge
        "histogram_quantile(0.9, rate(kubeproxy_sync_proxy_rules_duration_seconds[5m]))",  # histogram without _bucket
        "time()",                                                     # no metric at all
        "kipvs_destinations / on(instance) node_load1",               # a second, foreign metric
    ]
    for q in wrong:
        if not problems(q, exported):
            sys.exit(f"FAIL: the query checks accept the wrong query {q!r}")
    right = 'sum by (instance, le) (rate(kubeproxy_sync_proxy_rules_duration_seconds_bucket{instance=~"a|b"}[5m])) > 1e3'
    if problems(right, exported):
        sys.exit(f"FAIL: the query checks reject {right!r}: {problems(right, exported)}")


def check_all(queries, exported):
    failed = False
    for where, q in queries:
        for p in problems(q, exported):
            print(f"FAIL: {where}: {p}: {q}")
            failed = True
    return failed


def main():
    exported = load_exported()
    self_test(exported)
    if sys.argv[1] == "--rules":
        with open(sys.argv[2]) as f:
            rules = yaml.safe_load(f)
        queries = [(r.get("alert") or r.get("record"), r["expr"]) for g in rules["groups"] for r in g["rules"]]
        failed = check_all(queries, exported)
        if not failed:
            print(f"ok: {len(queries)} rule expressions name only exported metrics")
        sys.exit(1 if failed else 0)

    dashboard_path, promtool = sys.argv[2], sys.argv[3]
    with open(dashboard_path) as f:
        dash = json.load(f)
    queries = []
    for panel in dash["panels"]:
        for t in panel.get("targets", []):
            queries.append((f"panel {panel['title']!r} {t['refId']}", t["expr"]))
    failed = check_all(queries, exported)
    # Template variables: label_values(METRIC, LABEL) must name exported metrics too.
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        q = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", q)
        if not m or m.group(1) not in exported:
            print(f"FAIL: variable {var['name']}: {q}")
            failed = True
    if not queries:
        print("FAIL: the dashboard has no queries")
        failed = True
    # Parse each query with promtool, as a recording rule.
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"kipvs_dashboard:query{i}", "expr": GRAFANA_VARS.sub("5m", q)} for i, (_, q) in enumerate(queries)]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(rules, f)
    try:
        r = subprocess.run([promtool, "check", "rules", f.name], capture_output=True, text=True)
    finally:
        os.unlink(f.name)
    if r.returncode != 0:
        print("FAIL: promtool does not parse every dashboard query:")
        print(r.stdout, r.stderr)
        failed = True
    if not failed:
        print(f"ok: {len(queries)} dashboard queries parse and name only exported metrics")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
