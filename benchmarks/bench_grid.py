#!/usr/bin/env python
"""Benchmark partitioned solving of a grid of clusters against one global solve (see docs/benchmarks.md).

A grid of C synthetic clusters (benchmarks/synthetic.py, one seed per cluster) whose hosts carry `cluster`;
cluster c0 loses a share of its hosts (--short, its VMs moved onto the others) so that it is short of room
and the grid level must move VMs out of it. The grid is solved by placement.grid.solve_grid and, in another
subprocess, the same model by one global placement.solve; both plans are checked by check_plan.
usage: benchmarks/bench_grid.py [--clusters 10] [--hosts 2000] [--vms 10000] [--time-limit 20]
                                [--global-limit 60] [--short 0.4] [--seed 0] [--no-global]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
sys.path.insert(0, os.path.join(ROOT, "plugins", "plugin_utils"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import placement  # noqa: E402  pylint: disable=wrong-import-position
from placement.grid import solve_grid  # noqa: E402  pylint: disable=wrong-import-position
from bench_solver import machine  # noqa: E402  pylint: disable=wrong-import-position
from synthetic import make_cluster  # noqa: E402  pylint: disable=wrong-import-position


DISK_MIB = 20480   # every VM's disk: 20 GiB, copied by a move between clusters


def make_grid(n_clusters: int, hosts: int, vms: int, seed: int = 0, short: float = 0.0) -> dict:
    """C clusters of `hosts` hosts and `vms` VMs (names prefixed c<i>-), hosts tagged with their cluster; cluster c0
    keeps only 1 - `short` of its hosts, its other VMs spread over them in turn."""
    out: dict = {"version": 1, "hosts": [], "vms": [], "constraints": [], "options": {}}
    for c in range(n_clusters):
        part = make_cluster(hosts, vms, seed=seed + c)
        names = [h["name"] for h in part["hosts"]]
        keep = set(names[:max(1, int(round(len(names) * (1 - short))))]) if c == 0 else set(names)
        kept = sorted(keep)
        for h in part["hosts"]:
            if h["name"] in keep:
                out["hosts"].append(dict(h, name=f"c{c}-{h['name']}", cluster=f"c{c}"))
        for i, v in enumerate(part["vms"]):
            host = v["host"] if v["host"] in keep else kept[i % len(kept)]
            out["vms"].append(dict(v, name=f"c{c}-{v['name']}", host=f"c{c}-{host}", disk_mib=DISK_MIB))
    return out


def _rss_mb() -> tuple[float, float]:
    """Peak RSS of this process and of its largest finished child (the grid's workers), MB."""
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)


def one(kind: str, model_path: str, limit: float, workers: int) -> dict:
    """Solve (grid or global), check and write the plan; runs in its own subprocess."""
    t0 = time.monotonic()
    with open(model_path, encoding="utf-8") as handle:
        model = json.load(handle)
    t1 = time.monotonic()
    if kind == "grid":
        plan = solve_grid(model, workers=workers, time_limit_s=limit, seed=0)
    else:
        plan = placement.solve(model, time_limit_s=limit, seed=0)
    solve_s = time.monotonic() - t1
    problems = placement.check_plan(model, plan)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=True) as out:
        json.dump(plan, out)
    whole = time.monotonic() - t0
    s = plan["stats"]
    res = {"kind": kind, "limit": limit, "before": s["hosts_used_before"], "after": s["hosts_used_after"],
           "lb": s["hosts_lower_bound"], "migrations": s["migrations"], "moved_gib": s["memory_moved_mib"] / 1024,
           "steps": s["steps"], "solve_s": solve_s, "whole_s": whole, "violations": len(problems),
           "hosts_s": s.get("hosts_phase_seconds")}
    if kind == "grid":
        per = plan["grid"]["clusters"]
        res.update(at_lb=sum(1 for c in per.values() if c["hosts_used_after"] == c["hosts_lower_bound"]), clusters=len(per),
                   between=s["migrations_between_clusters"], disk_gib=s["disk_copied_mib"] / 1024,
                   hosts_s=max((c.get("hosts_phase_seconds") or 0) for c in per.values()))
    res["rss_mb"], res["child_rss_mb"] = _rss_mb()
    times = os.times()   # on a shared machine cpu time says more than wall time
    res["cpu_s"] = times.user + times.system + times.children_user + times.children_system
    return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clusters", type=int, default=10)
    p.add_argument("--hosts", type=int, default=2000, help="hosts per cluster")
    p.add_argument("--vms", type=int, default=10000, help="VMs per cluster")
    p.add_argument("--time-limit", type=float, default=20.0, help="the grid's whole solver budget, s")
    p.add_argument("--global-limit", type=float, default=60.0, help="time limit of the global solve, s")
    p.add_argument("--short", type=float, default=0.4, help="share of cluster c0's hosts taken away")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-global", action="store_true", help="skip the global solve")
    p.add_argument("--one", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        kind, path, limit, workers = args.one
        print(json.dumps(one(kind, path, float(limit), int(workers))))
        return 0
    model = make_grid(args.clusters, args.hosts, args.vms, args.seed, args.short)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "grid-model.json")
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(model, handle)
        print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f}")
        print(f"grid: {args.clusters} clusters x {args.hosts} hosts / {args.vms} VMs = {len(model['hosts'])} hosts / "
              f"{len(model['vms'])} VMs; c0 keeps {1 - args.short:.0%} of its hosts")
        print("| solve | limit s | hosts before | after | LB | clusters at LB | hosts final at s | between clusters | "
              "migrations | moved GiB | steps | solver s | whole s | cpu s | checker | peak RSS MB (main / largest worker) |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        runs = [("grid", args.time_limit)] + ([] if args.no_global else [("global", args.global_limit)])
        for kind, limit in runs:
            cmd = [sys.executable, os.path.abspath(__file__), "--one", kind, path, str(limit), str(args.workers)]
            res = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if res.returncode != 0:
                print(f"| {kind} | {limit:g} | failed: {res.stderr.strip().splitlines()[-1:]} |", flush=True)
                continue
            r = json.loads(res.stdout)
            at_lb = f"{r['at_lb']}/{r['clusters']}" if kind == "grid" else "n/a"
            between = f"{r['between']} ({r['disk_gib']:.0f} GiB disk)" if kind == "grid" else "n/a"
            hosts_s = "n/a" if r["hosts_s"] is None else f"{r['hosts_s']:.1f}"
            check = "ok" if not r["violations"] else f"{r['violations']} violations"
            workers = f"{r['child_rss_mb']:.0f}" if kind == "grid" else "-"
            print(f"| {kind} | {limit:g} | {r['before']} | {r['after']} | {r['lb']} | {at_lb} | {hosts_s} | {between} | "
                  f"{r['migrations']} | {r['moved_gib']:.0f} | {r['steps']} | {r['solve_s']:.1f} | {r['whole_s']:.1f} | {r['cpu_s']:.1f} | {check} | "
                  f"{r['rss_mb']:.0f} / {workers} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
