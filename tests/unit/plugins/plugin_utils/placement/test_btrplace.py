from __future__ import annotations

import gzip
import json
import os

import pytest

import placement

from conftest import ROOT

# Shipped with the tests (LGPL-3.0, see its README): the tests must run on every clone.
DATA = os.path.join(ROOT, "tests", "data", "btrplace")
FILES = ["issue-100.json.gz", "issue-101.json.gz", "issue-131-0.json.gz", "min-migrations.json"]


@pytest.mark.parametrize("name", FILES)
def test_real_instances_load_solve_and_check(name):
    m = placement.import_btrplace(os.path.join(DATA, name))
    with (gzip.open if name.endswith(".gz") else open)(os.path.join(DATA, name), "rt", encoding="utf-8") as handle:
        raw = json.load(handle)
    online = raw["model"]["mapping"]["onlineNodes"]
    assert len(m["hosts"]) == len(online) + len(raw["model"]["mapping"]["offlineNodes"])
    assert sum(v["state"] == "running" for v in m["vms"]) == sum(len(n["runningVMs"]) for n in online.values())
    assert any("storage" in w or "controller_cpu" in w for w in m["warnings"])
    loaded = placement.load_model(m)
    plan = placement.solve(m, time_limit_s=3)
    assert placement.check_plan(m, plan) == [], name
    assert plan["warnings"] == loaded.warnings
    assert plan["stats"]["solve_seconds"] < 10


def test_issue_101_violated_capacity_is_repaired():
    m = placement.import_btrplace(os.path.join(DATA, "issue-101.json.gz"))
    caps = [c for c in m["constraints"] if c["type"] == "capacity" and c["hosts"] == ["node-0"]]
    assert caps and caps[0]["amount"] == 274
    plan = placement.solve(m, time_limit_s=3)
    load = sum(v["cpu"] for v in m["vms"] if plan["target"].get(v["name"]) == "node-0")
    assert load <= 274
    assert plan["stats"]["migrations"] >= 1


def test_mapping_of_constraints_and_states():
    inst = {"model": {"mapping": {"onlineNodes": {"0": {"runningVMs": [1, 2], "sleepingVMs": [3]},
                                                  "1": {"runningVMs": [], "sleepingVMs": []}},
                                  "offlineNodes": [2], "readyVMs": [4]},
                      "views": [{"id": "shareableResource", "rcId": "cpu", "defConsumption": 1, "defCapacity": 8,
                                 "nodes": {}, "vms": {"1": 2}},
                                {"id": "shareableResource", "rcId": "mem", "defConsumption": 512, "defCapacity": 4096,
                                 "nodes": {"1": 8192}, "vms": {}}]},
            "constraints": [{"id": "spread", "vms": [1, 2], "continuous": True},
                            {"id": "ban", "vm": 1, "nodes": [1], "continuous": False},
                            {"id": "resourceCapacity", "rc": "cpu", "amount": 4, "nodes": [0, 1]},
                            {"id": "quarantine", "nodes": [0]}],
            "objective": {"id": "minimizeMTTR"}}
    m = placement.import_btrplace(inst)
    assert m["hosts"][1] == {"name": "node-1", "cpu": 8.0, "memory_mib": 8192, "state": "online"}
    assert m["hosts"][2]["state"] == "offline"
    states = {v["name"]: (v["state"], v["host"], v["cpu"]) for v in m["vms"]}
    assert states == {"vm-1": ("running", "node-0", 2.0), "vm-2": ("running", "node-0", 1.0),
                      "vm-3": ("saved", "node-0", 1.0), "vm-4": ("stopped", None, 1.0)}
    assert {"type": "spread", "vms": ["vm-1", "vm-2"], "continuous": True} in m["constraints"]
    assert {"type": "ban", "vms": ["vm-1"], "hosts": ["node-1"], "continuous": False} in m["constraints"]
    assert "1 quarantine constraint ignored: constraint type not supported (constraints[3])" in m["warnings"]
    assert "1 resourceCapacity constraint ignored: a capacity shared by several nodes is not supported (constraints[2])" \
        in m["warnings"]
    assert m["options"] == {"objective": "repair"}
    assert "objective 'minimizeMTTR' mapped to 'repair' (fix violations with least memory moved)" in m["warnings"]
    plan = placement.solve(m, time_limit_s=2)   # spread forces vm-2 away from vm-1, ban keeps vm-1 home
    assert plan["target"] == {"vm-1": "node-0", "vm-2": "node-1"}
    assert placement.check_plan(m, plan) == []


def test_the_callers_objective_replaces_the_instances_without_a_warning():
    inst = {"model": {"mapping": {"onlineNodes": {"0": {"runningVMs": [1]}}},
                      "views": [{"id": "shareableResource", "rcId": "cpu", "defConsumption": 1, "defCapacity": 8}]},
            "constraints": [], "objective": {"id": "minimizeMTTR"}}
    m = placement.import_btrplace(inst, objective="consolidate")
    assert m["options"] == {"objective": "consolidate"}
    assert not any("objective" in w for w in m["warnings"]), m["warnings"]
    with pytest.raises(placement.ModelError, match="btrplace: objective must be one of consolidate, repair, balance, schedule, got 'fast'"):
        placement.import_btrplace(inst, objective="fast")


def test_alike_ignored_constraints_share_one_warning():
    inst = {"model": {"mapping": {"onlineNodes": {"0": {"runningVMs": [1, 2, 3, 4, 5]}}},
                      "views": [{"id": "shareableResource", "rcId": "cpu", "defConsumption": 1, "defCapacity": 8}]},
            "constraints": [{"id": "preserve", "rc": "disk", "vm": v, "amount": 1} for v in (1, 2, 3, 4, 5)]
            + [{"id": "quarantine", "nodes": [0]}] + [{"id": "preserve", "rc": "disk", "vm": 1, "amount": 2}]}
    warnings = placement.import_btrplace(inst)["warnings"]
    ignored = [w for w in warnings if "constraint" in w]
    assert ignored == ["6 preserve constraints ignored: resource 'disk' is not modelled (constraints[0], [1], [2], ...)",
                       "1 quarantine constraint ignored: constraint type not supported (constraints[5])"], warnings


def test_among_and_split_are_mapped():
    inst = {"model": {"mapping": {"onlineNodes": {str(n): {"runningVMs": [n]} for n in range(4)}},
                      "views": [{"id": "shareableResource", "rcId": "mem", "defConsumption": 1024, "defCapacity": 4096}]},
            "constraints": [{"id": "among", "vms": [0, 1], "parts": [[0, 1], [2, 3]], "continuous": False},
                            {"id": "split", "parts": [[0, 1], [2, 3]], "continuous": True},
                            {"id": "split", "parts": [[0], [9]], "continuous": False}]}
    m = placement.import_btrplace(inst, objective="consolidate")
    assert m["constraints"] == [
        {"type": "among", "vms": ["vm-0", "vm-1"], "groups": [["node-0", "node-1"], ["node-2", "node-3"]],
         "continuous": False},
        {"type": "split", "groups": [["vm-0", "vm-1"], ["vm-2", "vm-3"]], "continuous": True}]
    assert "1 split constraint ignored: names unknown vms ['vm-9'] (constraints[2])" in m["warnings"]
    plan = placement.solve(m, time_limit_s=2)
    assert placement.check_plan(m, plan) == []
    t = plan["target"]
    assert plan["stats"]["hosts_used_after"] == 2 and t["vm-0"] in ("node-0", "node-1")
    assert {t["vm-0"], t["vm-1"]}.isdisjoint({t["vm-2"], t["vm-3"]})
