"""Synthetic clusters with the network model (version 2) for the network tests and benchmark.

The cpu/memory cluster of synthetic.make_cluster, hosts in racks of `rack_size`, NICs of 10 Gbit/s
(25 on the large host type), uplinks of `uplink_mbps`, each running VM's own rate drawn from a
right-skewed law, and traffic groups of 2-8 running VMs spread over random hosts (so nearly all
of their traffic crosses racks in the initial placement).
"""
from __future__ import annotations

import random

from synthetic import make_cluster

NIC_MBPS = (10000, 10000, 25000)   # per host type of synthetic.HOST_TYPES


def make_network_cluster(n_hosts: int, n_vms: int, seed: int = 0, rack_size: int = 40,
                         uplink_mbps: float = 100000, group_share: float = 0.6,
                         group_mbps: tuple[float, float] = (100, 2000)) -> dict:
    model = make_cluster(n_hosts, n_vms, seed=seed)
    rng = random.Random(seed + 7919)
    model["version"] = 2
    racks = []
    for i, h in enumerate(model["hosts"]):
        rack = f"rack{i // rack_size:03d}"
        if not racks or racks[-1]["name"] != rack:
            racks.append({"name": rack, "uplink_mbps": uplink_mbps})
        h["rack"] = rack
        h["net_mbps"] = NIC_MBPS[i % len(NIC_MBPS)]
    running = [v["name"] for v in model["vms"] if v["state"] == "running"]
    for v in model["vms"]:
        v["net_mbps"] = round(min(rng.expovariate(1 / 150.0), 2000.0), 1)
    rng.shuffle(running)
    traffic = []
    pos, limit = 0, int(len(running) * group_share)
    while pos < limit:
        size = rng.randint(2, 8)
        group = running[pos:pos + size]
        pos += size
        if len(group) >= 2:
            traffic.append({"vms": sorted(group), "mbps": round(rng.uniform(*group_mbps), 1)})
    model["racks"] = racks
    model["traffic"] = traffic
    return model


def strip_network(model: dict) -> dict:
    """The same cluster without any network field (version 1): what a network-oblivious solver sees."""
    out = {k: v for k, v in model.items() if k not in ("racks", "traffic")}
    out["version"] = 1
    out["hosts"] = [{k: v for k, v in h.items() if k not in ("net_mbps", "rack")} for h in model["hosts"]]
    out["vms"] = [{k: v for k, v in vm.items() if k not in ("net_mbps", "dirty_mib_s")} for vm in model["vms"]]
    return out
