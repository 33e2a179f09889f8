from __future__ import annotations

import copy

import pytest

import placement
from placement import ModelError

from helpers import host, model, vm


def base() -> dict:
    return model([host("hv1"), host("hv2")], [vm("web01", "hv1"), vm("web02", "hv2")])


def test_valid_model_loads():
    m = placement.load_model(base())
    assert [h.name for h in m.hosts] == ["hv1", "hv2"]
    assert m.vm("web01").host == "hv1"
    assert m.options.time_limit_s == 5


@pytest.mark.parametrize("mutate, expected", [
    (lambda m: m["vms"][1].update(memory_mib="8G"),
     "vms[1] (name 'web02'): field 'memory_mib' must be a non-negative integer, got '8G'"),
    (lambda m: m["vms"][0].pop("cpu"), "vms[0] (name 'web01'): missing field 'cpu'"),
    (lambda m: m["vms"][0].update(host="hv9"), "vms[0] (name 'web01'): unknown host 'hv9'"),
    (lambda m: m["vms"][1].update(name="web01"), "vms[1] (name 'web01'): duplicate name"),
    (lambda m: m["hosts"][1].update(name="hv1"), "hosts[1] (name 'hv1'): duplicate name"),
    (lambda m: m["hosts"][0].update(cpu=-4), "hosts[0] (name 'hv1'): field 'cpu' must be a non-negative number"),
    (lambda m: m["hosts"][0].update(cpu=True), "hosts[0] (name 'hv1'): field 'cpu'"),
    (lambda m: m["hosts"][0].update(gpu=1), "hosts[0] (name 'hv1'): unknown field(s) 'gpu'"),
    (lambda m: m["vms"][0].update(state="zombie"), "vms[0] (name 'web01'): field 'state' must be one of"),
    (lambda m: m["hosts"][0].update(state="offline"), "vms[0] (name 'web01'): running on offline host 'hv1'"),
    (lambda m: m["options"].update(objective="fastest"), "options: field 'objective' must be one of"),
    (lambda m: m["options"].update(workers=8), "options: field 'workers' must be at most 2"),
    (lambda m: m["options"].update(colour="red"), "options: unknown field(s) 'colour'"),
    (lambda m: m.update(version=3), "model: field 'version' must be 1 or 2"),
    (lambda m: m.update(extra=1), "model: unknown field(s) 'extra'"),
    (lambda m: m.update(vms={}), "model: field 'vms' must be a list"),
    (lambda m: m["constraints"].append({"type": "glue", "vms": ["web01"]}),
     "constraints[0]: unknown constraint type 'glue'"),
    (lambda m: m["constraints"].append({"type": "spread", "vms": ["web01", "nope"]}),
     "constraints[0] (spread): unknown vm 'nope'"),
    (lambda m: m["constraints"].append({"type": "ban", "vms": ["web01"], "hosts": ["hv7"]}),
     "constraints[0] (ban): unknown host 'hv7'"),
    (lambda m: m["constraints"].append({"type": "ban", "vms": ["web01"]}), "constraints[0] (ban): missing field 'hosts'"),
    (lambda m: m["constraints"].append({"type": "overbook", "resource": "disk", "ratio": 2}),
     "constraints[0] (overbook): field 'resource' must be one of cpu, memory, got 'disk'"),
    (lambda m: m["constraints"].append({"type": "max_online", "amount": 2, "colour": 1}),
     "constraints[0] (max_online): unknown field(s) 'colour'"),
    (lambda m: m["constraints"].append({"type": "fence", "vms": ["web01"], "hosts": ["hv1"], "continuous": "yes"}),
     "constraints[0] (fence): field 'continuous' must be a boolean"),
])
def test_malformed_models_name_the_entry(mutate, expected):
    m = base()
    mutate(m)
    with pytest.raises(ModelError) as err:
        placement.load_model(m)
    assert expected in str(err.value)


def test_not_an_object():
    with pytest.raises(ModelError, match="model: must be a JSON object"):
        placement.load_model([1, 2])
    with pytest.raises(ModelError, match=r"hosts\[0\]: must be an object"):
        placement.load_model(model(["hv1"], []))


def test_names_are_data_only():
    odd = "{{ lookup('pipe', 'id') }} \"quoted\" 'x' \u00e9\u6f22"
    m = model([host(odd), host("hv2")], [vm(odd + "-vm", odd, gib=4), vm("b", "hv2", gib=4)])
    plan = placement.solve(m, time_limit_s=2)
    assert plan["target"][odd + "-vm"] in (odd, "hv2")
    assert placement.check_plan(m, plan) == []


def test_saved_vm_needs_no_host_and_uses_nothing():
    stopped = {"name": "b", "host": None, "state": "stopped", "cpu": 1, "memory_mib": 99999}
    m = model([host("hv1", gib=16)], [vm("a", "hv1", gib=12), stopped])
    loaded = placement.load_model(m)
    assert loaded.demand("b", "memory") == 0
    plan = placement.solve(m, time_limit_s=2)
    assert plan["target"] == {"a": "hv1"}
    assert placement.check_plan(m, plan) == []


@pytest.mark.parametrize("state", ["saved", "stopped"])
def test_inactive_vm_may_leave_out_cpu_and_vcpus(state):
    """docs/model-format.md: cpu and vcpus are optional; a VM that runs nowhere uses no cpu."""
    idle = {"name": "b", "host": "hv1", "state": state, "memory_mib": 4096}
    m = model([host("hv1", gib=16)], [vm("a", "hv1", gib=12), idle])
    loaded = placement.load_model(m)
    assert (loaded.vm("b").cpu, loaded.vm("b").vcpus) == (0.0, 1)
    assert loaded.demand("b", "cpu") == 0 and loaded.demand("b", "memory") == 0
    plan = placement.solve(m, time_limit_s=2)
    assert plan["target"] == {"a": "hv1"}
    assert placement.check_plan(m, plan) == []


@pytest.mark.parametrize("state", ["running", "paused"])
def test_active_vm_without_cpu_or_vcpus_is_refused_by_name(state):
    m = model([host("hv1")], [{"name": "web01", "host": "hv1", "state": state, "memory_mib": 1024}])
    with pytest.raises(ModelError) as err:
        placement.load_model(m)
    assert str(err.value) == ("vms[0] (name 'web01'): missing field 'cpu' (or 'vcpus'): "
                              "only a saved or stopped VM may leave both out")
    m["vms"][0]["vcpus"] = 2   # an unmeasured VM counts as busy on every vcpu
    assert placement.load_model(m).vm("web01").cpu == 2.0


def test_overrides_are_validated():
    with pytest.raises(ModelError, match="objective"):
        placement.solve(base(), objective="nope")


def test_edge_cases_solve_to_valid_plans():
    empty = {"version": 1, "hosts": [], "vms": []}
    no_vms = model([host("hv1")], [])
    zero = model([host("hv1", cpu=0, gib=0), host("hv2")], [vm("a", "hv2", cpu=0, gib=0), vm("b", "hv2", gib=1)])
    for m in (empty, no_vms, zero):
        for objective in ("consolidate", "repair", "balance"):
            plan = placement.solve(m, objective=objective, time_limit_s=2)
            assert placement.check_plan(m, plan) == []
            assert plan["status"] == "unchanged"


def test_overrides_do_not_touch_the_callers_model():
    loaded = placement.load_model(base())
    again = placement.load_model(loaded, objective="repair", seed=None)
    assert again.options.objective == "repair" and again.options.seed == 0
    assert loaded.options.objective == "consolidate"
    assert placement.load_model(loaded, objective=None) is loaded


def test_fields_reserved_for_later_features_are_valid_in_version_1():
    """VM priority, host cluster and a saved VM without a host: validated, carried, not placed."""
    hosts = [dict(host("hv1", gib=16), cluster="rack-a"), host("hv2", gib=16)]
    saved = {"name": "s", "state": "saved", "memory_mib": 8192, "priority": 5}
    m = model(hosts, [dict(vm("a", "hv1", gib=4), priority=-2), vm("b", "hv2", gib=4), saved])
    loaded = placement.load_model(m)
    assert loaded.host("hv1").cluster == "rack-a" and loaded.host("hv2").cluster is None
    assert (loaded.vm("a").priority, loaded.vm("b").priority, loaded.vm("s").priority) == (-2, None, 5)
    assert loaded.vm("s").host is None and not loaded.vm("s").active
    plan = placement.solve(m, time_limit_s=2)
    assert set(plan["target"]) == {"a", "b"}
    assert all(a["vm"] != "s" for step in plan["steps"] for a in step)
    assert placement.check_plan(m, plan) == []
    for mutate, expected in [
            (lambda d: d["vms"][0].update(priority="high"), "vms[0] (name 'a'): field 'priority' must be an integer, got 'high'"),
            (lambda d: d["vms"][0].update(priority=True), "vms[0] (name 'a'): field 'priority' must be an integer"),
            (lambda d: d["hosts"][0].update(cluster=""), "hosts[0] (name 'hv1'): field 'cluster' must be a non-empty string"),
            (lambda d: d["hosts"][0].update(cluster=3), "hosts[0] (name 'hv1'): field 'cluster' must be a non-empty string"),
            (lambda d: d["vms"][2].update(state="running", cpu=1), "vms[2] (name 's'): missing field 'host'")]:
        bad = copy.deepcopy(m)
        mutate(bad)
        with pytest.raises(ModelError) as err:
            placement.load_model(bad)
        assert expected in str(err.value)
