#!/usr/bin/python3
"""bench/scale's report: the side-by-side table, and the plot against N.

  scale_report.py table RESULTS_DIR OUT_FILE [--elapsed S] [--json FILE]
  scale_report.py plot BENCH_RESULTS_DIR     (reads scale-*.json, writes scale.png)
"""
import argparse
import glob
import json
import os
import re
import sys
import time


def ratio(a, b):
    if a is None or b in (None, 0):
        return None
    return a / b


def fmt(v, unit=""):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        if abs(v) >= 100:
            return f"{v:.0f}{unit}"
        if abs(v) >= 1:
            return f"{v:.2f}{unit}"
        return f"{v:.3g}{unit}"
    return f"{v}{unit}"


def fr(v):
    return "n/a" if v is None else f"{v:.3f}"


def table(args):
    d = args.results
    load = json.load(open(os.path.join(d, "load.json")))
    k = json.load(open(os.path.join(d, "kipvs.json")))
    kp = os.path.join(d, "kube-proxy.json")
    p = json.load(open(kp)) if os.path.exists(kp) else {}  # --agents kipvs
    ms = lambda v: None if v is None else v * 1000  # noqa: E731
    mib = lambda v: None if v is None else v / 1024  # noqa: E731

    rows = []  # (figure, kipvs, reference name, reference, ratio, target, met)

    def row(figure, kv, ref_name, rv, target=None, ratio_value=None, met=None):
        r = ratio_value if ratio_value is not None else ratio(kv, rv)
        if met is None and target is not None and r is not None:
            met = r <= target
        rows.append((figure, fmt(kv), ref_name, fmt(rv), fr(r),
                     "" if target is None else f"<= {target}", "" if met is None else ("met" if met else "NOT met")))

    cold_ipvsadm = ratio(k.get("cold_start_seconds"), k.get("ipvsadm_restore_seconds"))
    cold_kp = ratio(k.get("cold_start_seconds"), p.get("cold_start_seconds"))
    kp_bound = p.get("cold_start_lower_bound_seconds")  # kube-proxy never finished its first sync
    if cold_kp is None and kp_bound:
        cold_kp = ratio(k.get("cold_start_seconds"), kp_bound)
    change_kp = ratio(k.get("change_median_seconds"), p.get("change_median_seconds"))
    rss_kp = ratio(k.get("vm_hwm_kib"), p.get("vm_hwm_kib"))
    row("cold start (s)", k.get("cold_start_seconds"), "ipvsadm -R", k.get("ipvsadm_restore_seconds"), 0.12)
    if kp_bound:
        rows.append(("cold start (s)", fmt(k.get("cold_start_seconds")), "kube-proxy (unfinished)",
                     f">{fmt(kp_bound)}", f"<{fr(cold_kp)}", "<= 0.1", "met" if cold_kp <= 0.1 else "unknown"))
    else:
        row("cold start (s)", k.get("cold_start_seconds"), "kube-proxy", p.get("cold_start_seconds"), 0.1)
    sync_ms = re.search(r"ok, ([0-9.]+) ms", k.get("cold_start_line", ""))
    row("  kipvs's first sync alone (s)", float(sync_ms.group(1)) / 1000 if sync_ms else None, "ipvsadm -R",
        k.get("ipvsadm_restore_seconds"))
    row("one change, median (ms)", ms(k.get("change_median_seconds")), "kube-proxy",
        ms(p.get("change_median_seconds")), 0.01)
    row("one change, p99 (ms)", ms(k.get("change_p99_seconds")), "kube-proxy", ms(p.get("change_p99_seconds")))
    row("  endpoint added, median (ms)", ms(k.get("add_median_seconds")), "kube-proxy",
        ms(p.get("add_median_seconds")))
    row("  endpoint removed, median (ms)", ms(k.get("remove_median_seconds")), "kube-proxy",
        ms(p.get("remove_median_seconds")))
    row("restart, no change (s)", k.get("restart_seconds"), "kipvs cold start", k.get("cold_start_seconds"))
    rows.append(("restart, kernel writes", str(k.get("restart_writes")), "cold start writes",
                 str(k.get("cold_start_writes")), "", "== 0", "met" if k.get("restart_writes") == 0 else "NOT met"))
    nft = k.get("restart_nft_transactions")
    if nft is not None:
        rows.append(("restart, nftables transactions",
                     f"{nft.get('table', 0)} table / {nft.get('elements', 0)} elements", "", "", "", "", ""))
    if kp_bound and p.get("vm_hwm_kib"):
        rows.append(("peak RSS VmHWM (MiB)", fmt(mib(k.get("vm_hwm_kib"))), "kube-proxy (unfinished)",
                     f">{fmt(mib(p.get('vm_hwm_kib')))}", f"<{fr(rss_kp)}", "<= 0.5",
                     "met" if rss_kp <= 0.5 else "unknown"))
    else:
        row("peak RSS VmHWM (MiB)", mib(k.get("vm_hwm_kib")), "kube-proxy", mib(p.get("vm_hwm_kib")), 0.5)
    if k.get("relist_vm_hwm_kib") is not None:
        # Issue 17 item 7: a relist holds the old cache while the new one is
        # built; its peak against the cold start's.
        row(f"relist of {k.get('relist_objects')} slices, peak RSS (MiB)", mib(k.get("relist_vm_hwm_kib")),
            "kipvs cold start", mib(k.get("vm_hwm_kib")))
        row("relist, RSS before (MiB)", mib(k.get("relist_rss_before_kib")), "", None)
        row("relist until applied (s)", k.get("relist_seconds"), "kipvs cold start", k.get("cold_start_seconds"))
    row(f"idle CPU over {fmt(k.get('idle_seconds'))} s (s)", k.get("idle_cpu_seconds"), "kube-proxy",
        p.get("idle_cpu_seconds"))
    idle_cpu_per_resync = None
    if k.get("idle_cpu_seconds") is not None and k.get("idle_syncs"):
        idle_cpu_per_resync = round(k["idle_cpu_seconds"] / k["idle_syncs"], 2)
    row("idle CPU per resync (s)", idle_cpu_per_resync, "", None)
    if k.get("idle_nft_transactions") is not None:
        rows.append(("idle, nftables transactions", str(k.get("idle_nft_transactions")), "", "", "", "== 0",
                     "met" if k.get("idle_nft_transactions") == 0 else "NOT met"))
    rows.append(("idle, resyncs / kernel writes", f"{k.get('idle_syncs')} / {k.get('idle_writes')}",
                 "kube-proxy resyncs", str(p.get("idle_syncs")), "", "writes == 0",
                 "met" if k.get("idle_writes") == 0 else "NOT met"))
    row("metrics scrape (ms)", ms(k.get("scrape_seconds")), "kube-proxy", ms(p.get("scrape_seconds")))
    row("metrics scrape (KiB)", mib(k.get("scrape_bytes")), "kube-proxy", mib(p.get("scrape_bytes")))
    if k.get("scrape_sync_thread_count"):
        bound = k.get("scrape_sync_thread_max_bound_seconds")
        rows.append((f"scrape on the sync thread, mean of {k['scrape_sync_thread_count']} (ms)",
                     fmt(ms(k.get("scrape_sync_thread_mean_seconds"))), "longest at most (ms)", fmt(ms(bound)),
                     "", "<= 100", "" if bound is None else ("met" if bound <= 0.1 else "NOT met")))
    # The kubelet's liveness probe meanwhile (issue 17 item 9: within 100 ms).
    for when, key in (("cold start", "cold_start"), ("scrapes", "scrape"), ("relist", "relist")):
        worst = k.get(f"{key}_livez_max_seconds")
        rows.append((f"/livez during {when}, max (ms)", fmt(ms(worst)), "kube-proxy",
                     fmt(ms(p.get(f"{key}_livez_max_seconds"))), "", "<= 100",
                     "" if worst is None else ("met" if worst <= 0.1 else "NOT met")))
    row("rules: virtual services", k.get("virtual_services"), "kube-proxy", p.get("virtual_services"))
    row("rules: destinations", k.get("destinations"), "kube-proxy", p.get("destinations"))

    head = ("figure", "kipvs", "reference", "value", "ratio", "target", "")
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    lines = [f"kipvs scale benchmark: {load['services']} Services ({load['service_ports']} ports, "
             f"{load['node_ports']} node ports) x {load['endpoints']} endpoints; load {load['load_seconds']} s; "
             f"endpoint changes: kipvs {k.get('changes')}, kube-proxy {p.get('changes')}"
             + (f"; whole run {args.elapsed} s" if args.elapsed else ""),
             "  ".join(str(h).ljust(w) for h, w in zip(head, widths)).rstrip()]
    for r in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    if k.get("change_timeouts") or p.get("change_timeouts"):
        lines.append(f"change timeouts: kipvs {k.get('change_timeouts')}, kube-proxy {p.get('change_timeouts')}")
    for agent, res in (("kipvs", k), ("kube-proxy", p)):
        if res.get("note"):
            lines.append(f"note ({agent}): {res['note']}")
    lines.append(f"kipvs first sync: {k.get('cold_start_line', '')}")
    cpu = k.get("cold_start_cpu") or {}
    for phase in ("lists", "first_sync"):
        if phase in cpu:
            c = cpu[phase]
            lines.append(f"kipvs cold start, {phase.replace('_', ' ')}: {c['wall_s']} s, guest's {cpu['cpus']} CPUs "
                         f"{c['guest_busy'] * 100:.0f}% busy, kipvs {c['agent_cpu_s']} CPU s"
                         + (f" ({c['agent_system_s']} in the kernel)" if "agent_system_s" in c else ""))
    slowest = sorted((c for c in k.get("changes_in_order", []) if c.get("latency_ms") is not None),
                     key=lambda c: -c["latency_ms"])[:3]
    if slowest:
        lines.append("kipvs slowest changes: " + ", ".join(
            f"{c['latency_ms']} ms (PATCH {c['patch_ms']} ms, {c['kind']}, "
            f"{time.strftime('%H:%M:%S', time.gmtime(c['at']))})" for c in slowest))
    for entry in k.get("address_swap", []):
        lines.append(f"kipvs address swap: {entry}")
    lines.append(f"kipvs restart sync: {k.get('restart_line', '')}")
    # kube-proxy cut short: its time and its memory so far are lower bounds,
    # so kipvs's ratios to them are upper bounds.
    bound = "<" if kp_bound else ""
    lines.append(f"cold_vs_ipvsadm={fr(cold_ipvsadm)} cold_vs_kubeproxy={bound}{fr(cold_kp)} "
                 f"change_vs_kubeproxy={fr(change_kp)} rss_vs_kubeproxy={bound if rss_kp is not None else ''}"
                 f"{fr(rss_kp)} "
                 f"restart_writes={k.get('restart_writes')} idle_writes={k.get('idle_writes')} "
                 f"p99_change_ms={fmt(ms(k.get('change_p99_seconds')))} idle_cpu_per_resync_s={fmt(idle_cpu_per_resync)}")
    text = "\n".join(lines) + "\n"
    with open(args.out, "w") as f:
        f.write(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"load": load, "kipvs": k, "kube-proxy": p, "elapsed_seconds": args.elapsed}, f, indent=1)


def plot(args):
    runs = []
    for path in glob.glob(os.path.join(args.results, "scale-*.json")):
        if not re.fullmatch(r"scale-\d+\.json", os.path.basename(path)):
            continue  # one run per N: scale-<N>.json (others are extra runs)
        try:
            runs.append(json.load(open(path)))
        except (OSError, ValueError):
            continue
    runs.sort(key=lambda r: r["load"]["services"])
    if not runs:
        sys.exit("scale_report: no results to plot")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ns = [r["load"]["services"] for r in runs]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))

    def series(agent, key, scale=1.0):
        return [None if r[agent].get(key) is None else r[agent][key] * scale for r in runs]

    a.plot(ns, series("kipvs", "cold_start_seconds"), "o-", label="kipvs")
    a.plot(ns, series("kube-proxy", "cold_start_seconds"), "s-", label="kube-proxy (IPVS)")
    a.plot(ns, series("kipvs", "ipvsadm_restore_seconds"), "^-", label="ipvsadm -R")
    a.set(title="cold start: process start to all rules in the kernel", xlabel="Services (x10 endpoints)",
          ylabel="seconds (emulated guest)", yscale="log")
    b.plot(ns, series("kipvs", "change_median_seconds", 1000), "o-", label="kipvs median")
    b.plot(ns, series("kipvs", "change_p99_seconds", 1000), "o:", label="kipvs p99")
    b.plot(ns, series("kube-proxy", "change_median_seconds", 1000), "s-", label="kube-proxy median")
    b.plot(ns, series("kube-proxy", "change_p99_seconds", 1000), "s:", label="kube-proxy p99")
    b.set(title="one endpoint change: API write to kernel", xlabel="Services (x10 endpoints)",
          ylabel="milliseconds (emulated guest)", yscale="log")
    for ax in (a, b):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_xticks(ns)
    fig.tight_layout()
    out = os.path.join(args.results, "scale.png")
    fig.savefig(out, dpi=110)
    print(f"scale_report: wrote {out} ({', '.join(map(str, ns))} Services)", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("table")
    t.add_argument("results")
    t.add_argument("out")
    t.add_argument("--elapsed", type=int)
    t.add_argument("--json")
    pl = sub.add_parser("plot")
    pl.add_argument("results")
    args = ap.parse_args()
    table(args) if args.cmd == "table" else plot(args)


if __name__ == "__main__":
    main()
