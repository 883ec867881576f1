#!/usr/bin/env python3
"""Checks the objects `helm template` rendered for one values file.

usage: check_rendered.py CASE RENDERED.yaml
       check_rendered.py --config RENDERED.yaml OUT   (write the KubeProxyConfiguration)
       check_rendered.py --rules RENDERED.yaml OUT    (write the PrometheusRule's groups)
       check_rendered.py --mutants RENDERED.yaml      (self-test: each mutant must fail)

CASE is "default" or a values file's name (all-on, minimal, ...): the checks
common to every case run first (least privilege, the DaemonSet's shape), then
the case's own expectations. Exits 1 listing every failed check.
"""
import json
import sys

import yaml

# What kipvs may do with the API, and nothing else: (apiGroup, resource) -> verbs.
ALLOWED_RULES = {
    ("", "services"): {"list", "watch"},
    ("discovery.k8s.io", "endpointslices"): {"list", "watch"},
    ("", "nodes"): {"get", "list", "watch"},
    ("", "events"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
}
# What it needs to work at all.
REQUIRED_RULES = {
    ("", "services"): {"list", "watch"},
    ("discovery.k8s.io", "endpointslices"): {"list", "watch"},
    ("", "nodes"): {"get", "list", "watch"},
}
ALLOWED_KINDS = {
    "DaemonSet", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap",
    "Service", "ServiceMonitor", "PodMonitor", "PrometheusRule",
}
ALLOWED_HOST_PATHS = {"/lib/modules"}
# sysctls.hostProcSysNet: the node's /proc/sys/net, writable, where kipvs's
# --proc-sys points; nothing else of /proc.
PROC_SYS_NET = ("/proc/sys/net", "/host/proc/sys/net")
# The one writable host folder: kipvs's record of the virtual services it
# added (agent/owned_services.h), on the node's /run tmpfs.
STATE_DIR = "/run/kipvs"

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
    return cond


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def only(objs, kind, name=None):
    found = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    return found


def rules_of(role):
    """Expands a ClusterRole into {(group, resource): verbs}, failing on wildcards."""
    granted = {}
    for rule in role.get("rules", []):
        check("nonResourceURLs" not in rule, f"ClusterRole grants nonResourceURLs {rule}")
        check("resourceNames" not in rule or rule["resourceNames"], "empty resourceNames")
        for field in ("apiGroups", "resources", "verbs"):
            check("*" not in rule.get(field, []), f"ClusterRole rule has a wildcard in {field}: {rule}")
        for g in rule.get("apiGroups", []):
            for r in rule.get("resources", []):
                granted.setdefault((g, r), set()).update(rule.get("verbs", []))
    return granted


def check_rbac(objs, ds):
    roles = only(objs, "ClusterRole")
    check(not only(objs, "Role") and not only(objs, "RoleBinding"), "namespaced Roles rendered")
    for role in roles:
        granted = rules_of(role)
        for key, verbs in granted.items():
            allowed = ALLOWED_RULES.get(key)
            if check(allowed is not None, f"ClusterRole {role['metadata']['name']} grants {key}, not in the allowed list"):
                check(verbs <= allowed, f"ClusterRole grants {sorted(verbs - allowed)} on {key}; allowed: {sorted(allowed)}")
        for key, verbs in REQUIRED_RULES.items():
            check(verbs <= granted.get(key, set()), f"ClusterRole lacks {sorted(verbs)} on {key}")
        check(any(k[1] == "events" and "create" in v for k, v in granted.items()), "ClusterRole cannot create events")
    sa = ds["spec"]["template"]["spec"].get("serviceAccountName")
    for b in only(objs, "ClusterRoleBinding"):
        check(b["roleRef"]["kind"] == "ClusterRole" and b["roleRef"]["name"] in {r["metadata"]["name"] for r in roles},
              f"ClusterRoleBinding {b['metadata']['name']} refers to a role the chart did not render")
        check(b["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": ds["metadata"]["namespace"]}],
              f"ClusterRoleBinding subjects {b['subjects']} are not exactly the DaemonSet's ServiceAccount {sa}")
    return roles


def check_daemonset(ds, sys_module, proc_sys_net=False):
    spec = ds["spec"]
    pod = spec["template"]["spec"]
    check(spec["updateStrategy"]["type"] == "RollingUpdate", "updateStrategy is not RollingUpdate")
    check("maxUnavailable" in spec["updateStrategy"].get("rollingUpdate", {}), "no maxUnavailable")
    check(spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items(),
          "selector does not match the pod labels")
    check(pod.get("hostNetwork") is True, "hostNetwork is not true")
    # Cluster DNS is behind a Service that kipvs itself programs.
    check(pod.get("dnsPolicy") == "Default", "dnsPolicy is not Default (the node's resolver)")
    check(pod.get("priorityClassName") == "system-node-critical", "priorityClassName is not system-node-critical")
    for field in ("hostPID", "hostIPC", "shareProcessNamespace"):
        check(not pod.get(field), f"pod sets {field}")
    check(pod.get("automountServiceAccountToken", True), "service account token not mounted")
    check(not pod.get("securityContext", {}).get("sysctls"), "pod sets sysctls")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    allowed_paths = ALLOWED_HOST_PATHS | {STATE_DIR} | ({PROC_SYS_NET[0]} if proc_sys_net else set())
    for v in volumes.values():
        if "hostPath" in v:
            check(v["hostPath"]["path"] in allowed_paths, f"hostPath volume {v['hostPath']['path']}")
    containers = pod.get("containers", []) + pod.get("initContainers", [])
    check(len(pod.get("containers", [])) == 1, "the pod has not exactly one container")
    for c in containers:
        sc = c.get("securityContext", {})
        name = c["name"]
        check(sc.get("privileged") is not True, f"{name}: privileged")
        check(sc.get("allowPrivilegeEscalation") is False, f"{name}: allowPrivilegeEscalation is not false")
        check(sc.get("readOnlyRootFilesystem") is True, f"{name}: readOnlyRootFilesystem is not true")
        caps = sc.get("capabilities", {})
        check("ALL" in caps.get("drop", []), f"{name}: does not drop ALL capabilities")
        added = set(caps.get("add", []))
        expected = {"NET_ADMIN"} | ({"SYS_MODULE"} if sys_module else set())
        check(added == expected, f"{name}: capabilities {sorted(added)}, expected exactly {sorted(expected)}")
        for m in c.get("volumeMounts", []):
            v = volumes.get(m["name"])
            check(v is not None, f"{name}: mount of unknown volume {m['name']}")
            if v and "hostPath" in v and v["hostPath"]["path"] == PROC_SYS_NET[0]:
                check(m["mountPath"] == PROC_SYS_NET[1], f"{name}: /proc/sys/net mounted at {m['mountPath']}")
                check(f"--proc-sys={PROC_SYS_NET[1].rsplit('/', 1)[0]}" in c.get("args", []),
                      f"{name}: /proc/sys/net mounted but kipvs not pointed at it")
            elif v and "hostPath" in v and v["hostPath"]["path"] == STATE_DIR:
                check(m["mountPath"] == STATE_DIR, f"{name}: {STATE_DIR} mounted at {m['mountPath']}")
                check(v["hostPath"].get("type") == "DirectoryOrCreate", f"{STATE_DIR} is not DirectoryOrCreate")
            elif v and "hostPath" in v:
                check(m.get("readOnly") is True, f"{name}: hostPath {v['hostPath']['path']} mounted writable")
                check(m["mountPath"] == v["hostPath"]["path"], f"{name}: {m['mountPath']} is not where the node has it")
    c = pod["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    check({"metrics", "health"} <= ports.keys(), f"container ports {ports} lack metrics/health")
    live, ready = c.get("livenessProbe", {}).get("httpGet", {}), c.get("readinessProbe", {}).get("httpGet", {})
    check(live.get("path") == "/livez" and live.get("port") in ("health", ports.get("health")), f"liveness probe {live}")
    check(ready.get("path") == "/healthz" and ready.get("port") in ("health", ports.get("health")), f"readiness probe {ready}")
    check("--hostname-override=$(NODE_NAME)" in c["args"], "no --hostname-override=$(NODE_NAME)")
    env = {e["name"]: e for e in c.get("env", [])}
    check(env.get("NODE_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName",
          "NODE_NAME does not come from spec.nodeName")
    return pod, c, volumes, ports


def config_of(objs, ds):
    """Finds the configuration file the container is told to read: (ConfigMap name, key, parsed or None)."""
    pod, c = ds["spec"]["template"]["spec"], ds["spec"]["template"]["spec"]["containers"][0]
    flag = [a for a in c["args"] if a.startswith("--config=")]
    if not check(len(flag) == 1, "no single --config flag"):
        return None, None, None
    path = flag[0].split("=", 1)[1]
    volumes = {v["name"]: v for v in pod["volumes"]}
    for m in c["volumeMounts"]:
        if path.startswith(m["mountPath"].rstrip("/") + "/") and "configMap" in volumes[m["name"]]:
            cm_name = volumes[m["name"]]["configMap"]["name"]
            key = path[len(m["mountPath"].rstrip("/")) + 1:]
            cms = only(objs, "ConfigMap", cm_name)
            if not cms:
                return cm_name, key, None
            check(key in cms[0]["data"], f"ConfigMap {cm_name} has no key {key}")
            return cm_name, key, yaml.safe_load(cms[0]["data"].get(key, "{}"))
    check(False, f"--config {path} is not inside a mounted ConfigMap")
    return None, None, None


def _container(objs):
    return only(objs, "DaemonSet")[0]["spec"]["template"]["spec"]["containers"][0]


def _role(objs):
    return only(objs, "ClusterRole")[0]


# Mutations of the default rendering that the checks must catch: a check that
# passes all of these is not checking anything.
MUTANTS = {
    "privileged": lambda o: _container(o)["securityContext"].update(privileged=True),
    "SYS_ADMIN added": lambda o: _container(o)["securityContext"]["capabilities"]["add"].append("SYS_ADMIN"),
    "SYS_MODULE without moduleLoading": lambda o: _container(o)["securityContext"]["capabilities"]["add"].append("SYS_MODULE"),
    "capabilities not dropped": lambda o: _container(o)["securityContext"]["capabilities"].pop("drop"),
    "writable root": lambda o: _container(o)["securityContext"].update(readOnlyRootFilesystem=False),
    "escalation allowed": lambda o: _container(o)["securityContext"].pop("allowPrivilegeEscalation"),
    "delete on services": lambda o: _role(o)["rules"][0]["verbs"].append("delete"),
    "get on secrets": lambda o: _role(o)["rules"].append({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}),
    "wildcard verbs": lambda o: _role(o)["rules"][2].update(verbs=["*"]),
    "no watch on endpointslices": lambda o: _role(o)["rules"][1].update(verbs=["list"]),
    "binding to default SA": lambda o: only(o, "ClusterRoleBinding")[0]["subjects"][0].update(name="default"),
    "writable /lib/modules": lambda o: [m.update(readOnly=False) for m in _container(o)["volumeMounts"] if m["name"] == "lib-modules"],
    "host root mounted": lambda o: only(o, "DaemonSet")[0]["spec"]["template"]["spec"]["volumes"].append(
        {"name": "root", "hostPath": {"path": "/"}}),
    "host /proc/sys/net without sysctls.hostProcSysNet": lambda o: only(o, "DaemonSet")[0]["spec"]["template"]["spec"]["volumes"].append(
        {"name": "proc-sys-net", "hostPath": {"path": "/proc/sys/net"}}),
    "hostPID": lambda o: only(o, "DaemonSet")[0]["spec"]["template"]["spec"].update(hostPID=True),
    "no hostNetwork": lambda o: only(o, "DaemonSet")[0]["spec"]["template"]["spec"].pop("hostNetwork"),
    "liveness on /healthz": lambda o: _container(o)["livenessProbe"]["httpGet"].update(path="/healthz"),
    "cluster DNS for kipvs": lambda o: only(o, "DaemonSet")[0]["spec"]["template"]["spec"].update(dnsPolicy="ClusterFirstWithHostNet"),
    "no API server address": lambda o: _container(o).update(env=[e for e in _container(o)["env"] if not e["name"].startswith("KUBERNETES_")]),
    "metrics port differs from config": lambda o: [p.update(containerPort=9999) for p in _container(o)["ports"] if p["name"] == "metrics"],
}


def run_mutants(path):
    import copy
    base = load(path)
    survived = []
    for name, mutate in MUTANTS.items():
        objs = copy.deepcopy(base)
        mutate(objs)
        failures.clear()
        run_checks("default", objs)
        if not failures:
            survived.append(name)
    failures.clear()
    if survived:
        for name in survived:
            print(f"FAIL: the checks did not notice the mutant '{name}'")
        sys.exit(1)
    print(f"ok: all {len(MUTANTS)} mutants of the default rendering were caught")


def main():
    if sys.argv[1] == "--mutants":
        return run_mutants(sys.argv[2])
    if sys.argv[1] == "--cleanup":
        check_cleanup(sys.argv[2])
        return report("cleanup")
    if sys.argv[1] in ("--config", "--rules"):
        objs = load(sys.argv[2])
        if sys.argv[1] == "--config":
            ds = only(objs, "DaemonSet")[0]
            _, key, _ = config_of(objs, ds)
            cm = [o for o in only(objs, "ConfigMap") if key in o.get("data", {})]
            if not cm:
                sys.exit("no ConfigMap with the configuration was rendered")
            text = cm[0]["data"][key]
        else:
            rules = only(objs, "PrometheusRule")
            if not rules:
                sys.exit("no PrometheusRule was rendered")
            text = yaml.safe_dump({"groups": rules[0]["spec"]["groups"]}, sort_keys=False)
        with open(sys.argv[3], "w") as f:
            f.write(text)
        return

    case, objs = sys.argv[1], load(sys.argv[2])
    run_checks(case, objs)
    report(case)


def run_checks(case, objs):
    kinds = [o["kind"] for o in objs]
    for k in kinds:
        check(k in ALLOWED_KINDS, f"unexpected kind {k}")
    dss = only(objs, "DaemonSet")
    if not check(len(dss) == 1, f"{len(dss)} DaemonSets rendered"):
        return
    ds = dss[0]
    all_on = case == "all-on"
    pod, c, volumes, ports = check_daemonset(ds, sys_module=all_on, proc_sys_net=all_on)
    check_rbac(objs, ds)
    cm_name, key, cfg = config_of(objs, ds)
    if cfg is not None:
        check(cfg.get("apiVersion") == "kubeproxy.config.k8s.io/v1alpha1", "config apiVersion")
        check(cfg.get("kind") == "KubeProxyConfiguration", "config kind")
        check(cfg.get("mode") == "ipvs", "config mode is not ipvs")
        health_port = int(cfg["healthzBindAddress"].rsplit(":", 1)[1])
        metrics_port = int(cfg["metricsBindAddress"].rsplit(":", 1)[1])
        check(ports.get("health") == health_port, f"health port {ports.get('health')} != config's {health_port}")
        check(ports.get("metrics") == metrics_port, f"metrics port {ports.get('metrics')} != config's {metrics_port}")
    services = only(objs, "Service")
    for s in services:
        check(s["spec"]["selector"].items() <= pod_labels(ds).items(), f"Service {s['metadata']['name']} selects no kipvs pod")
        for p in s["spec"]["ports"]:
            check(p["targetPort"] in ("metrics", ports.get("metrics")), f"Service targets {p['targetPort']}")
    dashboards = [o for o in only(objs, "ConfigMap") if "kipvs.json" in o.get("data", {})]
    for d in dashboards:
        json.loads(d["data"]["kipvs.json"])

    expect = CASES[case]
    expect(objs, ds, c, cfg, volumes, services, dashboards)


def pod_labels(ds):
    return ds["spec"]["template"]["metadata"]["labels"]


def names(objs, kind):
    return [o["metadata"]["name"] for o in only(objs, kind)]


def api_env(c):
    return {e["name"]: e.get("value") for e in c.get("env", []) if e["name"].startswith("KUBERNETES_")}


def case_default(objs, ds, c, cfg, volumes, services, dashboards):
    check(cfg is not None, "no configuration rendered")
    # lib.sh's api_server_args
    check(api_env(c) == {"KUBERNETES_SERVICE_HOST": "192.0.2.10", "KUBERNETES_SERVICE_PORT": "6443"},
          f"API server env {api_env(c)}")
    if cfg:
        check(cfg["metricsBindAddress"] == "0.0.0.0:10249", f"metricsBindAddress {cfg['metricsBindAddress']}")
        check(cfg["healthzBindAddress"] == "0.0.0.0:10256", f"healthzBindAddress {cfg['healthzBindAddress']}")
        check(cfg["ipvs"]["syncPeriod"] == "30s", "default syncPeriod is not 30s")
        check("proxyName" not in cfg.get("kipvs", {}), "proxyName set without coexistence")
        check(cfg["kipvs"]["interfaceName"] == "kube-ipvs0", "default interface is not kube-ipvs0")
    check(len(services) == 1 and services[0]["spec"].get("clusterIP") == "None", "no headless metrics Service")
    for k in ("ServiceMonitor", "PodMonitor", "PrometheusRule"):
        check(not only(objs, k), f"{k} rendered by default")
    check(not dashboards, "dashboard rendered by default")
    check({"operator": "Exists"} in ds["spec"]["template"]["spec"].get("tolerations", []), "does not tolerate every taint")
    res = c.get("resources", {})
    # Requests, and no limits: a node-critical proxy is neither OOM-killed
    # nor throttled mid-sync (kube-proxy and Cilium ship none either).
    check(res.get("requests") and not res.get("limits"), f"resources {res}: want requests and no limits")
    check("/lib/modules" in [v.get("hostPath", {}).get("path") for v in volumes.values()], "/lib/modules not mounted")
    check(not any(a.startswith("prometheus.io/") for a in ds["spec"]["template"]["metadata"].get("annotations", {})),
          "prometheus.io annotations by default")
    check(len(names(objs, "ServiceAccount")) == 1 and len(names(objs, "ClusterRole")) == 1, "ServiceAccount/ClusterRole missing")


def case_all_on(objs, ds, c, cfg, volumes, services, dashboards):
    cfg = cfg or {}
    ipvs = cfg.get("ipvs", {})
    check(ipvs.get("scheduler") == "wrr" and ipvs.get("strictARP") is True, f"ipvs settings {ipvs}")
    check(ipvs.get("excludeCIDRs") == ["10.200.0.0/16", "fd00:200::/64"], "excludeCIDRs")
    check(ipvs.get("syncPeriod") == "1m30s" and ipvs.get("udpTimeout") == "300ms", "durations")
    check(cfg.get("clusterCIDR") == "10.244.0.0/16,fd00:10:244::/56", "clusterCIDR")
    check(cfg.get("iptables") == {"masqueradeAll": True, "masqueradeBit": 15}, f"iptables {cfg.get('iptables')}")
    check(cfg.get("nodePortAddresses") == ["192.168.0.0/16"], "nodePortAddresses")
    check(cfg.get("kipvs") == {"affinityMode": "hash", "interfaceName": "kipvs0", "gracePeriod": "10m",
                               "serviceIPBinding": "localRoute", "ipvsRateEstimation": "disabled"},
          f"kipvs section {cfg.get('kipvs')}")
    check("--logging-format=json" in c["args"] and "-v=4" in c["args"], f"args {c['args']}")
    check(c["args"][-1] == "--ipvs-min-sync-period=2s", "extraArgs are not last")
    check(c["image"] == "registry.example.com/net/kipvs:0.1.0-test", f"image {c['image']}")
    check(api_env(c) == {"KUBERNETES_SERVICE_HOST": "fd00::10", "KUBERNETES_SERVICE_PORT": "443"},
          f"API server env {api_env(c)}")
    check(ds["spec"]["template"]["spec"].get("imagePullSecrets") == [{"name": "regcred"}], "imagePullSecrets")
    check(ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] == "10%", "maxUnavailable")
    check(any(v.get("hostPath", {}).get("path") == "/proc/sys/net" for v in volumes.values()), "/proc/sys/net not mounted")
    ann = ds["spec"]["template"]["metadata"]["annotations"]
    check(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == "10249", f"annotations {ann}")
    for k in ("ServiceMonitor", "PodMonitor", "PrometheusRule"):
        objs_k = only(objs, k)
        if check(len(objs_k) == 1, f"{k} not rendered"):
            check(objs_k[0]["metadata"]["labels"].get("release") == "prometheus", f"{k} lacks the selector label")
    sm = only(objs, "ServiceMonitor")
    if sm:
        check(sm[0]["spec"]["selector"]["matchLabels"].items() <= services[0]["metadata"]["labels"].items(),
              "ServiceMonitor does not select the metrics Service")
        check(sm[0]["spec"]["endpoints"][0]["port"] == "metrics", "ServiceMonitor port")
    pm = only(objs, "PodMonitor")
    if pm:
        check(pm[0]["spec"]["selector"]["matchLabels"].items() <= pod_labels(ds).items(), "PodMonitor selects no pod")
    if check(len(dashboards) == 1, "dashboard not rendered"):
        d = dashboards[0]
        check(d["metadata"]["namespace"] == "monitoring", "dashboard namespace")
        check(d["metadata"]["labels"].get("grafana_dashboard") == "1", "dashboard lacks the sidecar label")
    for r in only(objs, "PrometheusRule"):
        for g in r["spec"]["groups"]:
            for rule in g["rules"]:
                check(rule["labels"].get("team") == "network", f"{rule['alert']} lacks additionalLabels")


def case_minimal(objs, ds, c, cfg, volumes, services, dashboards):
    check(not only(objs, "ServiceAccount") and not only(objs, "ClusterRole") and not only(objs, "ClusterRoleBinding"),
          "RBAC rendered with rbac.create=false")
    check(ds["spec"]["template"]["spec"]["serviceAccountName"] == "kipvs", "serviceAccountName is not kipvs")
    check(cfg is not None and cfg["metricsBindAddress"] == "127.0.0.1:10249", "metrics not bound to loopback")
    check(not services, "metrics Service rendered with metrics.enabled=false")
    check(not any("hostPath" in v and v["hostPath"]["path"] != STATE_DIR for v in volumes.values()),
          "hostPath volume other than the state folder with mountLibModules=false")


def case_existing(objs, ds, c, cfg, volumes, services, dashboards):
    check(not only(objs, "ConfigMap"), "a ConfigMap rendered although an existing one is used")
    check(volumes["config"]["configMap"]["name"] == "kube-proxy", "config volume is not the existing ConfigMap")
    check("--config=/var/lib/kube-proxy/config.conf" in c["args"], f"args {c['args']}")
    check(not api_env(c), f"API server env {api_env(c)} without k8sServiceHost")
    check("--metrics-bind-address=0.0.0.0:10249" in c["args"], "metrics address not forced by flag")
    check(not any(k.startswith("checksum/") for k in ds["spec"]["template"]["metadata"].get("annotations") or {}),
          "config checksum of a ConfigMap the chart does not own")


def case_coexistence(objs, ds, c, cfg, volumes, services, dashboards):
    check(cfg is not None and cfg["kipvs"].get("proxyName") == "kipvs", "proxyName not set")
    # kube-proxy holds 10249 and 10256 on the same host network.
    if cfg:
        check(cfg["metricsBindAddress"].endswith(":10266"), f"metricsBindAddress {cfg['metricsBindAddress']}")
        check(cfg["healthzBindAddress"].endswith(":10267"), f"healthzBindAddress {cfg['healthzBindAddress']}")
    check("--metrics-bind-address=0.0.0.0:10266" in c["args"], f"args {c['args']}")
    check(cfg is not None and cfg["kipvs"].get("interfaceName") == "kipvs0", "interfaceName not kipvs0")
    check(not api_env(c), f"API server env {api_env(c)} without k8sServiceHost")


CASES = {
    "default": case_default,
    "all-on": case_all_on,
    "minimal": case_minimal,
    "existing-configmap": case_existing,
    "coexistence": case_coexistence,
}


def check_cleanup(path):
    """Cleanup mode: an init container runs kipvs --cleanup with the node's
    name and NET_ADMIN, then the pod idles with no capability at all."""
    with open(path) as f:
        objs = [o for o in yaml.safe_load_all(f) if o]
    ds = only(objs, "DaemonSet")[0]
    pod = ds["spec"]["template"]["spec"]
    inits = pod.get("initContainers", [])
    if not check(len(inits) == 1, f"{len(inits)} init containers"):
        return
    init = inits[0]
    check(init["command"] == ["/usr/bin/kipvs"] and "--cleanup" in init["args"], f"init {init['command']} {init['args']}")
    check("--hostname-override=$(NODE_NAME)" in init["args"], "cleanup without the node's name")
    check(init["securityContext"]["capabilities"].get("add") == ["NET_ADMIN"], "cleanup lacks NET_ADMIN")
    main = pod["containers"][0]
    check(main["command"][0].endswith("sleep"), f"main container {main['command']}")
    check(not main["securityContext"]["capabilities"].get("add"), "the idle container keeps capabilities")
    check("livenessProbe" not in main, "the idle container is probed")


def report(case):
    if failures:
        for f in failures:
            print(f"FAIL [{case}]: {f}")
        sys.exit(1)
    print(f"ok: {case}: least privilege, DaemonSet shape and the case's expectations")


if __name__ == "__main__":
    main()
