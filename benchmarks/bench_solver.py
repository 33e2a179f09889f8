#!/usr/bin/env python
"""Benchmark the placement solver on synthetic clusters (see docs/benchmarks.md).

Each size runs in its own subprocess so peak RSS (resource.getrusage) is per size.
usage: benchmarks/bench_solver.py [--sizes 100x500,2000x10000,5000x25000] [--repair 5000x30000]
                                  [--time-limit S] [--seed N] [--markdown]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
sys.path.insert(0, os.path.join(ROOT, "plugins", "plugin_utils"))

import placement  # noqa: E402  pylint: disable=wrong-import-position
from synthetic import FLAVOUR_WEIGHTS, HEAVY_WEIGHTS, make_cluster  # noqa: E402  pylint: disable=wrong-import-position

DEFAULT_LIMITS = {100: 2.0, 2000: 30.0, 5000: 60.0}


def ffd_hosts(m: dict) -> int:
    """First-fit decreasing by normalised cpu+memory, ignoring the current placement (reference only)."""
    hosts = sorted(m["hosts"], key=lambda h: -(h["cpu"] / 64 + h["memory_mib"] / 393216))
    mc = max(h["cpu"] for h in hosts)
    mm = max(h["memory_mib"] for h in hosts)
    vms = sorted((v for v in m["vms"] if v["state"] in ("running", "paused")),
                 key=lambda v: -(v["cpu"] / mc + v["memory_mib"] / mm))
    free = [[h["cpu"], h["memory_mib"]] for h in hosts]
    used = set()
    for v in vms:
        for i, f in enumerate(free):
            if f[0] >= v["cpu"] and f[1] >= v["memory_mib"]:
                f[0] -= v["cpu"]
                f[1] -= v["memory_mib"]
                used.add(i)
                break
    return len(used)


def one(n_hosts: int, n_vms: int, objective: str, limit: float, seed: int, heavy: bool = False) -> dict:
    m = make_cluster(n_hosts, n_vms, seed=seed, weights=HEAVY_WEIGHTS if heavy else FLAVOUR_WEIGHTS)
    t0 = time.monotonic()
    plan = placement.solve(m, objective=objective, time_limit_s=limit, seed=seed)
    wall = time.monotonic() - t0
    t1 = time.monotonic()
    problems = placement.check_plan(m, plan)
    check_s = time.monotonic() - t1
    s = plan["stats"]
    return {"hosts": n_hosts, "vms": n_vms, "objective": objective, "limit": limit, "status": plan["status"],
            "before": s["hosts_used_before"], "after": s["hosts_used_after"], "lb": s["hosts_lower_bound"],
            "ffd": ffd_hosts(m), "migrations": s["migrations"], "moved_gib": s["memory_moved_mib"] / 1024,
            "solve_s": s["solve_seconds"], "plan_s": s["plan_seconds"], "wall_s": wall, "check_s": check_s,
            "steps": s["steps"], "pivots": s["pivots"], "overloaded": s["overloaded_hosts_before"],
            "violations": len(problems), "iterations": s["lns_iterations"], "hosts_s": s.get("hosts_phase_seconds"),
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "lb_strong": s.get("hosts_lower_bound_strong"), "moved_lb_gib": (s.get("memory_moved_lower_bound_mib") or 0) / 1024}


def machine() -> str:
    cpu = "unknown cpu"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        from ortools import __version__ as ov  # pylint: disable=import-outside-toplevel
    except ImportError:
        ov = "absent"
    return f"nproc {os.cpu_count()}, {cpu}, python {platform.python_version()}, ortools {ov}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="100x500,2000x10000,5000x25000")
    p.add_argument("--repair", default="5000x30000", help="sizes for the repair objective ('' = none)")
    p.add_argument("--repair-limit", type=float, default=10.0)
    p.add_argument("--time-limit", type=float, help="override the per-size time limit")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--heavy", action="store_true", help="harder clusters: mostly 8c/32G and 16c/64G VMs")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        n_hosts, n_vms, objective, limit = args.one.split(":")
        print(json.dumps(one(int(n_hosts), int(n_vms), objective, float(limit), args.seed, args.heavy)))
        return 0
    jobs = []
    for size in filter(None, args.sizes.split(",")):
        h, v = (int(x) for x in size.split("x"))
        jobs.append((h, v, "consolidate", args.time_limit or DEFAULT_LIMITS.get(h, 30.0)))
    for size in filter(None, args.repair.split(",")):
        h, v = (int(x) for x in size.split("x"))
        jobs.append((h, v, "repair", args.repair_limit))
    print(f"machine: {machine()}")
    print("| hosts/VMs | objective | limit s | hosts before | after | LB | gap to LB | FFD | hosts final at s | migrations | "
          "moved GiB | solve s | plan s | steps | pivots | overloaded before | checker | peak RSS MB | strong LB | "
          "gap to strong LB | moved LB GiB | moved / LB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for h, v, objective, limit in jobs:
        cmd = [sys.executable, __file__, "--one", f"{h}:{v}:{objective}:{limit}", "--seed", str(args.seed)]
        res = subprocess.run(cmd + (["--heavy"] if args.heavy else []), capture_output=True, text=True, check=False)
        if res.returncode != 0:
            print(f"| {h}/{v} | {objective} | failed: {res.stderr.strip().splitlines()[-1:]} |")
            continue
        r = json.loads(res.stdout)
        gap = f"{100.0 * (r['after'] - r['lb']) / max(r['lb'], 1):+.1f} %" if objective == "consolidate" else "n/a"
        strong_gap = (f"{100.0 * (r['after'] - r['lb_strong']) / max(r['lb_strong'], 1):+.1f} %"
                      if objective == "consolidate" else "n/a")
        ratio = f"{r['moved_gib'] / r['moved_lb_gib']:.2f}x" if r["moved_lb_gib"] else "n/a"
        check = "ok" if not r["violations"] else f"{r['violations']} violations"
        hosts_s = "n/a" if r["hosts_s"] is None else f"{r['hosts_s']:.1f}"
        print(f"| {h}/{v} | {objective} | {limit:g} | {r['before']} | {r['after']} | {r['lb']} | {gap} | "
              f"{r['ffd']} | {hosts_s} | {r['migrations']} | {r['moved_gib']:.0f} | {r['solve_s']:.1f} | {r['plan_s']:.2f} | "
              f"{r['steps']} | {r['pivots']} | {r['overloaded']} | {check} | {r['rss_mb']:.0f} | {r['lb_strong']} | "
              f"{strong_gap} | {r['moved_lb_gib']:.0f} | {ratio} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
