#!/usr/bin/env python
"""Benchmark network-aware placement (model version 2) on synthetic clusters (see docs/benchmarks.md).

For each size: the network-aware solve (hosts against the network-aware lower bound, NIC and uplink
violations found by the independent checker, cross-rack traffic, time) and a network-oblivious solve
of the same cluster (the network fields stripped, version 1) judged on the network model: its
cross-rack traffic (the reduction) and its NIC/uplink violations.
usage: benchmarks/bench_network.py [--sizes 200x1000,2000x10000] [--rack-size 40] [--uplink-mbps 100000]
                                   [--time-limit S] [--seed N] [--markdown]
"""
from __future__ import annotations

import argparse
import copy
import os
import platform
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
sys.path.insert(0, os.path.join(ROOT, "plugins", "plugin_utils"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import placement  # noqa: E402  pylint: disable=wrong-import-position
from placement.network import cross_rack_of_plan  # noqa: E402  pylint: disable=wrong-import-position
from synthetic_network import make_network_cluster, strip_network  # noqa: E402  pylint: disable=wrong-import-position


def _network_violations(problems: list[str]) -> int:
    return sum(1 for p in problems if " NIC carries " in p or " uplink carries " in p)


def one(n_hosts: int, n_vms: int, limit: float, seed: int, rack_size: int, uplink: float) -> dict:
    m = make_network_cluster(n_hosts, n_vms, seed=seed, rack_size=rack_size, uplink_mbps=uplink)
    m["options"] = {"time_limit_s": limit, "seed": seed}
    loaded = placement.load_model(copy.deepcopy(m))
    t0, c0 = time.monotonic(), time.process_time()
    plan = placement.solve(copy.deepcopy(m))
    wall, cpu = time.monotonic() - t0, time.process_time() - c0
    t1 = time.monotonic()
    problems = placement.check_plan(copy.deepcopy(m), plan)
    check_s = time.monotonic() - t1
    oblivious = placement.solve(strip_network(m))
    obl_problems = placement.check_plan(copy.deepcopy(m), oblivious)
    s = plan["stats"]
    aware_x = cross_rack_of_plan(loaded, plan)
    obl_x = cross_rack_of_plan(loaded, oblivious)
    return {"size": f"{n_hosts}/{n_vms}", "racks": len(m["racks"]), "groups": len(m["traffic"]),
            "lb": s["hosts_lower_bound"], "after": s["hosts_used_after"],
            "gap": (s["hosts_used_after"] - s["hosts_lower_bound"]) / max(s["hosts_lower_bound"], 1),
            "violations": len(problems), "net_violations": _network_violations(problems),
            "cross_before": s["cross_rack_mbps_before"], "cross": aware_x,
            "obl_hosts": oblivious["stats"]["hosts_used_after"], "obl_cross": obl_x,
            "obl_net_violations": _network_violations(obl_problems), "obl_plan_s": oblivious["stats"]["plan_seconds"],
            "reduction": 1 - aware_x / obl_x if obl_x else 0.0,
            "solve_s": s["solve_seconds"], "plan_s": s["plan_seconds"], "wall_s": wall, "cpu_s": cpu, "check_s": check_s,
            "migrations": s["migrations"], "steps": s["steps"]}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import ortools  # pylint: disable=import-outside-toplevel
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, ortools {ortools.__version__}, "
            f"load average {os.getloadavg()[0]:.1f}")


COLUMNS = ("size", "racks", "groups", "lb", "after", "gap", "net_violations", "violations", "cross_before", "obl_cross",
           "cross", "reduction", "obl_hosts", "obl_net_violations", "obl_plan_s", "solve_s", "plan_s", "wall_s", "cpu_s", "check_s")
HEAD = ("hosts/VMs", "racks", "traffic groups", "LB (network-aware)", "hosts", "gap to LB", "NIC/uplink violations",
        "all violations", "cross-rack Mbit/s before", "oblivious plan cross-rack", "aware plan cross-rack",
        "reduction", "oblivious hosts", "oblivious NIC/uplink violations", "oblivious plan s", "solve s", "plan s", "wall s", "CPU s (this process)", "check s")


def _fmt(key: str, val) -> str:
    if key in ("gap", "reduction"):
        return f"{100 * val:+.1f} %" if key == "gap" else f"{100 * val:.1f} %"
    if isinstance(val, float):
        return f"{val:.1f}"
    return str(val)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="200x1000,2000x10000")
    p.add_argument("--rack-size", type=int, default=40)
    p.add_argument("--uplink-mbps", type=float, default=100000)
    p.add_argument("--time-limit", type=float, default=25.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args()
    rows = []
    for size in args.sizes.split(","):
        n_hosts, n_vms = (int(x) for x in size.split("x"))
        rows.append(one(n_hosts, n_vms, args.time_limit, args.seed, args.rack_size, args.uplink_mbps))
        print(f"done {size}", file=sys.stderr, flush=True)
    print(f"machine: {machine()}; time limit {args.time_limit:g} s; racks of {args.rack_size}, "
          f"uplinks {args.uplink_mbps:g} Mbit/s")
    if args.markdown:
        print("| " + " | ".join(HEAD) + " |")
        print("|" + "---|" * len(HEAD))
        for r in rows:
            print("| " + " | ".join(_fmt(k, r[k]) for k in COLUMNS) + " |")
    else:
        for r in rows:
            print("  ".join(f"{h}={_fmt(k, r[k])}" for h, k in zip(HEAD, COLUMNS)))


if __name__ == "__main__":
    main()
