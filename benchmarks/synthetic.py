"""Synthetic clusters for tests and benchmarks (deterministic for a seed).

Three host types, seven VM flavours, right-skewed cpu use, random initial placement then a cpu
drift that overloads ~7.5 % of the hosts: about 47 % cpu and 62 % memory used overall.
"""
from __future__ import annotations

import random

HOST_TYPES = ((32, 128), (64, 256), (48, 384))          # cores, GiB
FLAVOURS = ((1, 2), (2, 4), (2, 8), (4, 8), (4, 16), (8, 32), (16, 64))
FLAVOUR_WEIGHTS = (0.05, 0.05, 0.09, 0.09, 0.14, 0.26, 0.32)
# harder variant: mostly 8c/32G and 16c/64G VMs, fewer small ones to fill the gaps
HEAVY_WEIGHTS = (0.02, 0.02, 0.04, 0.04, 0.08, 0.30, 0.50)


def make_cluster(n_hosts: int, n_vms: int, seed: int = 0, overloaded: float = 0.075,
                 suspended: float = 0.05, weights: tuple[float, ...] = FLAVOUR_WEIGHTS) -> dict:
    rng = random.Random(seed)
    hosts = []
    for i in range(n_hosts):
        cores, gib = HOST_TYPES[i % len(HOST_TYPES)]
        hosts.append({"name": f"hv{i:05d}", "cpu": cores, "memory_mib": gib * 1024})
    free_mem = [h["memory_mib"] for h in hosts]
    load = [0.0] * n_hosts
    vms = []
    for j in range(n_vms):
        vcpus, gib = rng.choices(FLAVOURS, weights)[0]
        mem = gib * 1024
        cpu = round(vcpus * rng.betavariate(1.3, 2.2) * 1.35, 2)
        cpu = min(cpu, float(vcpus))
        state = "saved" if rng.random() < suspended else "running"
        for _unused in range(50):
            h = rng.randrange(n_hosts)
            if free_mem[h] >= mem and load[h] + cpu <= hosts[h]["cpu"] * 0.9:
                break
        else:
            h = max(range(n_hosts), key=lambda k: free_mem[k])
        if state == "running":
            free_mem[h] -= mem
            load[h] += cpu
        vms.append({"name": f"vm{j:06d}", "host": hosts[h]["name"], "state": state, "vcpus": vcpus,
                    "cpu": cpu, "memory_mib": mem, "_h": h})
    # cpu drift: push ~7.5 % of the hosts over capacity (a VM never uses more than its vcpus)
    members: dict[int, list[dict]] = {}
    for v in vms:
        if v["state"] == "running":
            members.setdefault(v["_h"], []).append(v)
    able = [h for h in range(n_hosts) if sum(v["vcpus"] for v in members.get(h, [])) > 1.1 * hosts[h]["cpu"]]
    for h in rng.sample(able, min(len(able), int(round(n_hosts * overloaded)))):
        goal = hosts[h]["cpu"] * rng.uniform(1.05, 1.3)
        for _unused in range(20):
            cur = sum(v["cpu"] for v in members[h])
            if cur >= goal:
                break
            factor = goal / max(cur, 0.1)
            for v in members[h]:
                v["cpu"] = min(round(max(v["cpu"], 0.1) * factor, 2), float(v["vcpus"]))
    for v in vms:
        del v["_h"]
    return {"version": 1, "hosts": hosts, "vms": vms, "constraints": [], "options": {}}
