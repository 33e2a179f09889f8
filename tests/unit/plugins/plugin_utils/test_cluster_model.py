# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""cluster_model: inventory host vars -> the solver's model (pure, no libvirt, no Ansible)."""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest

HERE = os.path.dirname(__file__)
PLUGIN_UTILS = os.path.abspath(os.path.join(HERE, os.pardir, os.pardir, os.pardir, os.pardir, "plugins", "plugin_utils"))
_spec = importlib.util.spec_from_file_location("entropy_cluster_model", os.path.join(PLUGIN_UTILS, "cluster_model.py"))
cluster_model = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cluster_model)

if PLUGIN_UTILS not in sys.path:
    sys.path.insert(0, PLUGIN_UTILS)
try:
    from placement import load_model  # the solver, imported standalone like its own tests do
except ImportError:
    load_model = None


def hv(cpu=4, memory=4096, reachable=True, **extra):
    data = {"entropy_kind": "hypervisor", "entropy_cpu_cores": cpu, "entropy_memory_mib": memory, "entropy_reachable": reachable,
            "entropy_reserved_memory_mib": 0, "entropy_error": None if reachable else "connecting failed"}
    data.update(extra)
    return data


def vm(host, state="running", demand=0.25, memory=512, vcpus=2, **extra):
    data = {"entropy_kind": "vm", "entropy_hypervisor": host, "entropy_state": state, "entropy_cpu_demand_cores": demand,
            "entropy_memory_mib": memory, "entropy_vcpus": vcpus, "entropy_has_managed_save": False}
    data.update(extra)
    return data


@pytest.mark.parametrize(("state", "managed_save", "expected"), [
    ("running", False, "running"), ("blocked", False, "running"), ("paused", False, "paused"),
    ("pmsuspended", False, "paused"), ("shutoff", True, "saved"), ("shutoff", False, "stopped"),
    ("crashed", False, "paused"), ("shutdown", False, "running"), ("unknown", False, "running"),
])
def test_vm_model_state(state, managed_save, expected):
    assert cluster_model.vm_model_state(state, managed_save) == expected


def test_basic_model_shape():
    model = cluster_model.build_model({
        "hv1": hv(cpu=2, memory=320, entropy_reserved_memory_mib=20), "hv2": hv(),
        "vm1": vm("hv1", demand=0.15, memory=64, vcpus=1),
        "vm2": vm("hv2", state="paused", demand=None),
        "vm3": vm("hv2", state="shutoff", entropy_has_managed_save=True, demand=0.0),
        "vm4": vm("hv2", state="shutoff"),
        "entropy_cluster": {"entropy_kind": "model"}, "other": {"ansible_host": "x"},
    }, constraints=[{"type": "spread", "vms": ["vm1", "vm2"]}], options={"objective": "consolidate"})
    assert model["version"] == 1
    assert model["hosts"] == [{"name": "hv1", "cpu": 2.0, "memory_mib": 300, "state": "online"},
                              {"name": "hv2", "cpu": 4.0, "memory_mib": 4096, "state": "online"}]
    assert model["vms"] == [
        {"name": "vm1", "host": "hv1", "state": "running", "memory_mib": 64, "vcpus": 1, "cpu": 0.15},
        {"name": "vm2", "host": "hv2", "state": "paused", "memory_mib": 512, "vcpus": 2, "cpu": 0.0},
        {"name": "vm3", "host": "hv2", "state": "saved", "memory_mib": 512, "vcpus": 2, "cpu": 0.0},
        {"name": "vm4", "host": "hv2", "state": "stopped", "memory_mib": 512, "vcpus": 2, "cpu": 0.0},
    ]
    assert model["constraints"] == [{"type": "spread", "vms": ["vm1", "vm2"]}]
    assert model["options"] == {"objective": "consolidate"} and model["warnings"] == []
    if load_model is not None:
        parsed = load_model(model)
        assert parsed.vm("vm1").cpu == 0.15 and parsed.host("hv1").memory_mib == 300


def test_unreachable_hypervisor_and_its_vms_are_left_out():
    model = cluster_model.build_model({"hv1": hv(), "hv2": hv(reachable=False, cpu=None, memory=None),
                                       "vm1": vm("hv1"), "vm2": vm("hv2")})
    assert [h["name"] for h in model["hosts"]] == ["hv1"]
    assert [v["name"] for v in model["vms"]] == ["vm1"]
    assert len(model["warnings"]) == 1 and "hv2" in model["warnings"][0] and "unreachable" in model["warnings"][0]
    if load_model is not None:
        load_model(model)


def test_unmeasured_cpu_is_left_to_the_solver_rule():
    model = cluster_model.build_model({"hv1": hv(), "vm1": vm("hv1", demand=None, vcpus=3)})
    assert "cpu" not in model["vms"][0] and model["vms"][0]["vcpus"] == 3
    assert "not measured" in model["warnings"][0]
    if load_model is not None:
        assert load_model(model).vm("vm1").cpu == 3.0


def test_vm_without_memory_or_cpu_information_is_left_out():
    model = cluster_model.build_model({"hv1": hv(), "vm1": vm("hv1", memory=None), "vm2": vm("hv1", demand=None, vcpus=None),
                                       "vm3": vm("nowhere")})
    assert model["vms"] == []
    assert len(model["warnings"]) == 3


def test_hypervisor_with_unknown_capacity_is_left_out():
    model = cluster_model.build_model({"hv1": hv(cpu=None)})
    assert model["hosts"] == [] and "capacity is unknown" in model["warnings"][0]


def test_duplicate_copies_are_taken_off_capacity():
    copies = [{"hypervisor": "hv1", "state": "running", "memory_mib": 512, "cpu_demand_cores": 0.5},
              {"hypervisor": "hv2", "state": "running", "memory_mib": 512, "cpu_demand_cores": 0.5},
              {"hypervisor": "hv3", "state": "shutoff", "memory_mib": 512, "cpu_demand_cores": 0.0}]
    model = cluster_model.build_model({"hv1": hv(), "hv2": hv(), "hv3": hv(),
                                       "vm1": vm("hv1", demand=0.5, entropy_duplicate_on=["hv1", "hv2", "hv3"], entropy_copies=copies)})
    hosts = {h["name"]: h for h in model["hosts"]}
    assert hosts["hv2"]["memory_mib"] == 4096 - 512 and hosts["hv2"]["cpu"] == 3.5
    assert hosts["hv3"]["memory_mib"] == 4096
    assert [v["name"] for v in model["vms"]] == ["vm1"]
    assert len(model["warnings"]) == 2


def test_from_ansible_inventory_json():
    data = {"_meta": {"hostvars": {
        "hv1": {k: ({"__ansible_unsafe": v} if isinstance(v, str) else v) for k, v in hv().items()},
        "vm1": {k: ({"__ansible_unsafe": v} if isinstance(v, str) else v) for k, v in vm("hv1").items()},
    }}, "all": {"children": ["ungrouped"]}}
    model = cluster_model.model_from_inventory_json(data)
    assert model["vms"][0]["host"] == "hv1" and model["vms"][0]["state"] == "running"
    with pytest.raises(ValueError, match="_meta.hostvars"):
        cluster_model.model_from_inventory_json({"all": {}})


def test_strip_unsafe():
    assert cluster_model.strip_unsafe({"a": [{"__ansible_unsafe": "x"}, 1], "b": {"__ansible_unsafe": "y"}}) == {"a": ["x", 1], "b": "y"}


def test_constraints_and_options_carried_by_the_hypervisors():
    """What the inventory file sets (model_constraints / model_options, carried on each hypervisor) joins the
    constraints given to build_model (union, each once) and the options given (they win)."""
    ban = {"type": "ban", "vms": ["vm1"], "hosts": ["hv2"]}
    spread = {"type": "spread", "vms": ["vm1", "vm2"]}
    carried = {cluster_model.CONSTRAINTS_VAR: [ban], cluster_model.OPTIONS_VAR: {"objective": "repair", "seed": 4}}
    hostvars = {"hv1": hv(**carried), "hv2": hv(**carried), "hv3": hv(reachable=False, cpu=None, memory=None, **carried),
                "vm1": vm("hv1"), "vm2": vm("hv2")}
    model = cluster_model.build_model(hostvars)
    assert model["constraints"] == [ban] and model["options"] == {"objective": "repair", "seed": 4}
    model = cluster_model.build_model(hostvars, [spread, ban], {"seed": 7})
    assert model["constraints"] == [ban, spread] and model["options"] == {"objective": "repair", "seed": 7}


@pytest.mark.parametrize("hostvars, expected", [
    ({"hv1": hv(entropy_model_options={"seed": 1}), "hv2": hv(entropy_model_options={"seed": 2})},
     "hypervisors hv1 and hv2 carry different model_options seed (1 and 2): one solver run takes one value"),
    ({"hv1": hv(entropy_model_constraints={"type": "ban"})},
     "hypervisor hv1: entropy_model_constraints must be a list of constraints (dictionaries with a type), got"),
    ({"hv1": hv(entropy_model_constraints=["ban"])}, "hypervisor hv1: entropy_model_constraints must be a list of constraints"),
    ({"hv1": hv(entropy_model_options=["seed"])}, "hypervisor hv1: entropy_model_options must be a dictionary of solver options"),
])
def test_carried_constraints_and_options_that_cannot_be_used(hostvars, expected):
    with pytest.raises(ValueError) as err:
        cluster_model.build_model(hostvars)
    assert expected in str(err.value)


def test_union_constraints_keeps_the_first_of_identical_ones():
    a, b = {"type": "root", "vms": ["x"]}, {"vms": ["x"], "type": "root"}
    assert cluster_model.union_constraints([a], None, [b, {"type": "root", "vms": ["y"]}]) == [a, {"type": "root", "vms": ["y"]}]


def test_a_host_in_maintenance_takes_no_vm():
    mark = {"since": 1.0, "by": "awx job 1", "reason": "evacuated"}
    hostvars = {"hv1": hv(entropy_maintenance=mark), "hv2": hv(), "hv3": hv(entropy_maintenance=None),
                "vm1": vm("hv1"), "vm2": vm("hv2")}
    model = cluster_model.build_model(hostvars, constraints=[{"type": "spread", "vms": ["vm1", "vm2"]}])
    assert model["constraints"] == [{"type": "spread", "vms": ["vm1", "vm2"]}, {"type": "offline", "hosts": ["hv1"]}]
    assert any("hv1 in maintenance" in w for w in model["warnings"])
    assert [h["name"] for h in model["hosts"]] == ["hv1", "hv2", "hv3"]
    # a mark still being written (no data yet) counts too
    assert cluster_model.build_model({"hv1": hv(entropy_maintenance={}), "hv2": hv()})["constraints"] == [
        {"type": "offline", "hosts": ["hv1"]}]
    assert cluster_model.build_model({"hv1": hv(), "hv2": hv()})["constraints"] == []


def test_a_fenced_host_and_its_vms_are_left_out_even_when_it_answers():
    fence = {"since": 1.0, "by": "awx job 2", "method": "ipmi power off"}
    hostvars = {"hv1": hv(entropy_fenced=fence), "hv2": hv(entropy_fenced=None), "vm1": vm("hv1"), "vm2": vm("hv2")}
    model = cluster_model.build_model(hostvars)
    assert [h["name"] for h in model["hosts"]] == ["hv2"]
    assert [v["name"] for v in model["vms"]] == ["vm2"]
    assert any("hv1 left out of the model with its VMs: it is fenced" in w for w in model["warnings"])
    # a fence record still being written (no data yet) counts too
    assert [h["name"] for h in cluster_model.build_model({"hv1": hv(entropy_fenced={}), "hv2": hv()})["hosts"]] == ["hv2"]


@pytest.mark.skipif(load_model is None, reason="the solver is not importable")
def test_the_solver_moves_vms_off_a_host_in_maintenance_and_never_onto_it():
    from placement import solve  # pylint: disable=import-outside-toplevel

    hostvars = {"hv1": hv(cpu=4, memory=1024, entropy_maintenance={"by": "x"}), "hv2": hv(cpu=4, memory=1024),
                "hv3": hv(cpu=4, memory=1024), "vm1": vm("hv1"), "vm2": vm("hv2"), "vm3": vm("hv3")}
    plan = solve(cluster_model.build_model(hostvars, options={"objective": "balance", "time_limit_s": 5}))
    assert set(plan["target"]) == {"vm1", "vm2", "vm3"}
    assert "hv1" not in plan["target"].values(), plan["target"]


def test_network_model_fills_net_mbps_from_the_measured_rates():
    hostvars = {"hv1": hv(), "vm1": vm("hv1", entropy_net_rx_bytes_s=1000000, entropy_net_tx_bytes_s=500000),
                "vm2": vm("hv1", entropy_net_rx_bytes_s=None, entropy_net_tx_bytes_s=None),
                "vm3": vm("hv1", state="paused", demand=None, entropy_net_rx_bytes_s=10, entropy_net_tx_bytes_s=10)}
    model = cluster_model.build_model(hostvars, network=True)
    assert model["version"] == 2
    assert model["vms"][0]["net_mbps"] == 12.0
    assert "net_mbps" not in model["vms"][1] and "net_mbps" not in model["vms"][2]
    assert model["warnings"] == ["VM vm2: network rates not measured (sampling_interval 0 or no network card): net_mbps left out"]
    if load_model is not None:
        assert load_model(model).vm("vm1").net_mbps == 12.0
    assert "net_mbps" not in cluster_model.build_model(hostvars)["vms"][0]


def test_network_model_takes_the_measured_dirty_rate():
    hostvars = {"hv1": hv(), "vm1": vm("hv1", entropy_dirty_mib_s=18.4, entropy_net_rx_bytes_s=None, entropy_net_tx_bytes_s=None),
                "vm2": vm("hv1", entropy_dirty_mib_s=None),
                "vm3": vm("hv1", state="paused", demand=None, entropy_dirty_mib_s=3.0)}
    model = cluster_model.build_model(hostvars, network=True)
    assert model["vms"][0]["dirty_mib_s"] == 18.4
    assert "dirty_mib_s" not in model["vms"][1] and "dirty_mib_s" not in model["vms"][2]
    if load_model is not None:
        assert load_model(model).vm("vm1").dirty_mib_s == 18.4
    assert "dirty_mib_s" not in cluster_model.build_model(hostvars)["vms"][0]   # version 1 has no such field
