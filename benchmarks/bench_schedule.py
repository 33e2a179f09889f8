#!/usr/bin/env python
"""Benchmark of objective schedule: more demand than capacity, mixed priorities (docs/benchmarks.md).

    .venv/bin/python benchmarks/bench_schedule.py [--sizes 2000x10000,500x2500] [--over 0.2] [--seeds 0]

Each cluster comes from benchmarks/synthetic.py (three host types, seven VM flavours), with host
capacities scaled so that the memory of all VMs is `1 + over` times the cluster's memory; the VMs are
placed at random until hosts are full (the others start saved), then ~7.5 % of the hosts drift over
their cpu capacity. Priorities: 60 % 0, 25 % 5, 15 % 10. Every plan is replayed by the independent
checker; the table gives the solve time, what runs and the plan.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir, "plugins", "plugin_utils"))
sys.path.insert(0, HERE)

import placement  # noqa: E402  pylint: disable=wrong-import-position
from bench_solver import machine  # noqa: E402  pylint: disable=wrong-import-position
from synthetic import make_cluster  # noqa: E402  pylint: disable=wrong-import-position

PRIORITIES = ((0, 0.60), (5, 0.25), (10, 0.15))


def make_schedule_cluster(n_hosts: int, n_vms: int, over: float = 0.2, seed: int = 0) -> dict:
    """A cluster whose VMs (running and saved) need `1 + over` times its memory."""
    base = make_cluster(n_hosts, n_vms, seed=seed, overloaded=0.0, suspended=0.0)
    rng = random.Random(seed + 1)
    demand = sum(v["memory_mib"] for v in base["vms"])
    capacity = sum(h["memory_mib"] for h in base["hosts"])
    scale = demand / ((1 + over) * capacity)
    hosts = [dict(h, cpu=max(1, round(h["cpu"] * scale)), memory_mib=int(h["memory_mib"] * scale))
             for h in base["hosts"]]
    free_m = [h["memory_mib"] for h in hosts]
    free_c = [float(h["cpu"]) for h in hosts]
    vms = []
    levels, weights = zip(*PRIORITIES)
    for v in base["vms"]:
        v = {k: v[k] for k in ("name", "vcpus", "cpu", "memory_mib")}
        v["priority"] = rng.choices(levels, weights)[0]
        for _unused in range(30):
            h = rng.randrange(n_hosts)
            if free_m[h] >= v["memory_mib"] and free_c[h] >= v["cpu"]:
                free_m[h] -= v["memory_mib"]
                free_c[h] -= v["cpu"]
                v.update(host=hosts[h]["name"], state="running")
                break
        else:
            v.update(host=None, state="saved")
        vms.append(v)
    # demand drift: some running VMs use more cpu than they did (never more than their vcpus)
    for v in rng.sample(vms, len(vms) // 10):
        if v["state"] == "running":
            v["cpu"] = float(v["vcpus"])
    return {"version": 1, "hosts": hosts, "vms": vms, "constraints": [], "options": {"objective": "schedule"}}


def one(n_hosts: int, n_vms: int, over: float, seed: int) -> dict:
    m = make_schedule_cluster(n_hosts, n_vms, over, seed)
    t0 = time.monotonic()
    plan = placement.solve(m)
    wall = time.monotonic() - t0
    problems = placement.check_plan(m, plan)
    s = plan["stats"]
    running = plan["target"]
    prio = {v["name"]: v.get("priority", 0) for v in m["vms"]}
    ran = {p: sum(1 for v in running if prio[v] == p) for p, _w in PRIORITIES}
    total = {p: sum(1 for v in m["vms"] if v.get("priority", 0) == p) for p, _w in PRIORITIES}
    return {"size": f"{n_hosts}/{n_vms}", "seed": seed, "seconds": wall, "valid": not problems,
            "saved": f"{s['vms_saved_before']} -> {s['vms_saved_after']}",
            "running": " / ".join(f"{ran[p]}/{total[p]}" for p, _w in sorted(PRIORITIES, reverse=True)),
            "suspends": s["suspends"], "resumes": s["resumes"], "migrations": s["migrations"],
            "steps": s["steps"], "problems": problems[:3]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="2000x10000")
    p.add_argument("--over", type=float, default=0.2)
    p.add_argument("--seeds", default="0")
    args = p.parse_args()
    print(f"machine: {machine()}")
    print("| hosts/VMs | seed | solve+plan s | valid | saved before -> after | running prio 10 / 5 / 0 | suspends | "
          "resumes | migrations | steps |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    ok = True
    for size in args.sizes.split(","):
        n_hosts, n_vms = (int(x) for x in size.split("x"))
        for seed in (int(s) for s in args.seeds.split(",")):
            r = one(n_hosts, n_vms, args.over, seed)
            ok = ok and r["valid"]
            print(f"| {r['size']} | {r['seed']} | {r['seconds']:.2f} | {'yes' if r['valid'] else 'NO'} | {r['saved']} | "
                  f"{r['running']} | {r['suspends']} | {r['resumes']} | {r['migrations']} | {r['steps']} |", flush=True)
            for prob in r["problems"]:
                print(f"  problem: {prob}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
