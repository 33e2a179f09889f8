# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Inventory data -> the placement solver's model (JSON version 1): the one function that builds it.

Pure Python, no Ansible import: the inventory plugin (entropy.cluster.libvirt_cluster) uses it to
export the model, the reconfiguration_plan lookup calls it on ``hostvars``, and
``model_from_inventory_json`` on the ``_meta.hostvars`` of ``ansible-inventory --list``, so that what
the solver sees and what the inventory shows never disagree - constraints and options included.
State words come from module_utils/vm_states.py.

Input: a mapping ``host name -> vars`` as the inventory plugin sets them. Hosts are told apart by
``entropy_kind`` (``hypervisor`` or ``vm``); every other host is ignored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from ansible_collections.entropy.cluster.plugins.module_utils.vm_states import is_active_word, model_state as vm_model_state

MODEL_VERSION = 1
NETWORK_MODEL_VERSION = 2   # build_model(network=True): VM net_mbps from the measured rx+tx rates
# Host variables that carry the inventory file's model_constraints / model_options (the libvirt_cluster inventory
# sets them on each of its hypervisors when they are not empty), so that every route that builds the model from
# host vars - the inventory's own export, the lookups on hostvars, ansible-inventory --list - gets them.
CONSTRAINTS_VAR = "entropy_model_constraints"
OPTIONS_VAR = "entropy_model_options"

__all__ = ["CONSTRAINTS_VAR", "MODEL_VERSION", "OPTIONS_VAR", "build_model", "model_from_inventory_json", "strip_unsafe",
           "union_constraints", "vm_model_state"]


def _round(value: float, digits: int = 4) -> float:
    return round(float(value), digits)


def union_constraints(*lists) -> list:
    """The constraints of every list, in order, each one once (an identical constraint given twice is kept once)."""
    seen, result = set(), []
    for constraints in lists:
        for constraint in constraints or []:
            key = json.dumps(constraint, sort_keys=True, default=repr)
            if key not in seen:
                seen.add(key)
                result.append(constraint)
    return result


def build_model(hostvars: Mapping[str, Mapping], constraints: list | None = None, options: Mapping | None = None,
                network: bool = False) -> dict:
    """Build the solver's model dict from inventory host vars.

    ``hostvars``: host name -> vars (``entropy_kind``, ``entropy_cpu_cores``, ... as set by the
    libvirt_cluster inventory plugin). Constraints: those the hypervisors carry (CONSTRAINTS_VAR, the
    inventory file's ``model_constraints``) then ``constraints``, each once. Options: those the hypervisors
    carry (OPTIONS_VAR), updated with ``options``.

    Returns ``{"version": 1, "hosts": [...], "vms": [...], "constraints": [...], "options": {...},
    "warnings": [...]}``. Hypervisors that were unreachable are left out together with their
    VMs (their VMs are unknown), each with a warning. A VM defined on several hypervisors appears
    once (on the hypervisor the inventory chose, where it is active); its other active copies are
    subtracted from their host's capacity, with a warning. A crashed VM holds its memory where it is
    and cannot run anywhere else: it is paused in the model and pinned to its host (a ``root`` constraint).

    ``network``: build the network model (version 2): each running VM's ``net_mbps`` is its measured
    receive + transmit rate (``entropy_net_rx_bytes_s`` + ``entropy_net_tx_bytes_s``, in Mbit/s) and, when measured
    (``entropy_dirty_mib_s``), its ``dirty_mib_s``; NIC
    capacities, racks and traffic groups are not measured and are left to the user (docs/model-format.md).

    Raises ValueError when the carried constraints or options are malformed or when hypervisors carry
    options that disagree.
    """
    warnings: list[str] = []
    hypervisors, vms = _classify(hostvars)
    online = _online_hosts(hypervisors, warnings)
    model_vms: list[dict] = []
    crashed: list[str] = []
    for name, vvars in vms.items():
        entry = _vm_entry(name, vvars, online, hypervisors, warnings)
        if entry is None:
            continue
        if network:
            _net_rate(name, vvars, entry, warnings)
        model_vms.append(entry)
        if vvars.get("entropy_state") == "crashed":
            crashed.append(name)
            warnings.append("VM %s is crashed on %s: it keeps its memory there and stays there (destroy it to free the memory)"
                            % (name, entry["host"]))
        _take_off_other_copies(name, vvars, online, warnings)
    carried_constraints, carried_options = _carried(hypervisors)
    pinned = [{"type": "root", "vms": crashed}] if crashed else []
    # A hypervisor in maintenance (a mark in the cluster store, see host_maintenance) takes no VM: an offline
    # constraint, so that a VM still on it is moved off rather than making the model invalid.
    maintenance = sorted(name for name in online if hypervisors[name].get("entropy_maintenance") is not None)
    if maintenance:
        warnings.append("hypervisor(s) %s in maintenance: no VM is placed there until the mark is cleared "
                        "(entropy.cluster.host_maintenance state=absent)" % ", ".join(maintenance))
    offline = [{"type": "offline", "hosts": maintenance}] if maintenance else []
    return {
        "version": NETWORK_MODEL_VERSION if network else MODEL_VERSION,
        "hosts": list(online.values()),
        "vms": model_vms,
        "constraints": union_constraints(carried_constraints, constraints, pinned, offline),
        "options": {**carried_options, **dict(options or {})},
        "warnings": warnings,
    }


def _classify(hostvars: Mapping[str, Mapping]) -> tuple[dict[str, Mapping], dict[str, Mapping]]:
    """(hypervisors, VMs) by name, in name order; every other host is ignored."""
    hypervisors: dict[str, Mapping] = {}
    vms: dict[str, Mapping] = {}
    for name in sorted(hostvars):
        hvars = hostvars[name]
        if not isinstance(hvars, Mapping):
            continue
        kind = hvars.get("entropy_kind")
        if kind == "hypervisor":
            hypervisors[name] = hvars
        elif kind == "vm":
            vms[name] = hvars
    return hypervisors, vms


def _online_hosts(hypervisors: Mapping[str, Mapping], warnings: list[str]) -> dict[str, dict]:
    """The model's hosts: every reachable hypervisor whose capacity is known."""
    online: dict[str, dict] = {}
    for name, hvars in hypervisors.items():
        if not hvars.get("entropy_reachable", False):
            error = hvars.get("entropy_error") or "unreachable"
            warnings.append("hypervisor %s left out of the model: it was unreachable (%s); its VMs are unknown" % (name, error))
            continue
        if hvars.get("entropy_fenced") is not None:
            # fenced (a record in the cluster store, see host_fence): its VMs' copies there are stale even if it answers again
            warnings.append("hypervisor %s left out of the model with its VMs: it is fenced (entropy.cluster.host_fence state=absent "
                            "clears the record once it is repaired)" % name)
            continue
        cpu = hvars.get("entropy_cpu_cores")
        memory = hvars.get("entropy_memory_mib")
        if cpu is None or memory is None:
            warnings.append("hypervisor %s left out of the model: its capacity is unknown (set cpu and memory_mib)" % name)
            continue
        reserved = int(hvars.get("entropy_reserved_memory_mib") or 0)
        online[name] = {"name": name, "cpu": float(cpu), "memory_mib": max(0, int(memory) - reserved), "state": "online"}
        for key in ("cluster", "site"):   # clusters of clusters (the inventory's clusters option)
            if hvars.get("entropy_" + key):
                online[name][key] = str(hvars["entropy_" + key])
    return online


def _vm_entry(name: str, vvars: Mapping, online: Mapping[str, dict], hypervisors: Mapping[str, Mapping], warnings: list[str]) -> dict | None:
    """The model's entry for one VM, or None (with a warning) when it is left out."""
    host = vvars.get("entropy_hypervisor")
    if vvars.get("entropy_save_image"):
        return _saved_vm_entry(name, vvars, warnings)
    if host not in online:
        if host not in hypervisors:
            warnings.append("VM %s left out of the model: its hypervisor %r is not in the inventory" % (name, host))
        return None  # else its hypervisor was left out (already warned)
    state = vm_model_state(vvars.get("entropy_state"), bool(vvars.get("entropy_has_managed_save")))
    memory = vvars.get("entropy_memory_mib")
    if memory is None:
        warnings.append("VM %s left out of the model: its memory size is unknown" % name)
        return None
    entry: dict = {"name": name, "host": host, "state": state, "memory_mib": int(memory)}
    if vvars.get("entropy_priority") is not None:
        entry["priority"] = int(vvars["entropy_priority"])
    vcpus = vvars.get("entropy_vcpus")
    if vcpus:
        entry["vcpus"] = int(vcpus)
    demand = vvars.get("entropy_cpu_demand_cores")
    if state != "running":
        entry["cpu"] = 0.0
    elif demand is not None:
        entry["cpu"] = _round(max(0.0, float(demand)))
    elif vcpus:
        warnings.append("VM %s: CPU demand not measured (sampling_interval 0 or no cpu.time): assuming %d busy vCPU(s)" % (name, int(vcpus)))
    else:
        warnings.append("VM %s left out of the model: neither CPU demand nor vCPU count is known" % name)
        return None
    return entry


def _net_rate(name: str, vvars: Mapping, entry: dict, warnings: list[str]) -> None:
    """A running VM's net_mbps: the inventory's measured rx + tx rates (bytes/s) in Mbit/s; its dirty_mib_s when measured."""
    if entry["state"] != "running":
        return
    dirty = vvars.get("entropy_dirty_mib_s")
    if dirty is not None:
        entry["dirty_mib_s"] = _round(max(0.0, float(dirty)))   # measured (the inventory's dirty_rate option)
    rx, tx = vvars.get("entropy_net_rx_bytes_s"), vvars.get("entropy_net_tx_bytes_s")
    if rx is None and tx is None:
        warnings.append("VM %s: network rates not measured (sampling_interval 0 or no network card): net_mbps left out" % name)
        return
    entry["net_mbps"] = _round((float(rx or 0) + float(tx or 0)) * 8 / 1e6)


def _saved_vm_entry(name: str, vvars: Mapping, warnings: list[str]) -> dict | None:
    """A VM saved to shared storage (entropy.cluster.vm_image, the inventory's save_dir): saved, on no host, so that
    it may resume on any host."""
    memory = vvars.get("entropy_memory_mib")
    if memory is None:
        warnings.append("VM %s (saved in %s) left out of the model: its memory size is unknown" % (name, vvars.get("entropy_save_image")))
        return None
    entry: dict = {"name": name, "host": None, "state": "saved", "memory_mib": int(memory), "cpu": 0.0}
    if vvars.get("entropy_vcpus"):
        entry["vcpus"] = int(vvars["entropy_vcpus"])
    if vvars.get("entropy_priority") is not None:
        entry["priority"] = int(vvars["entropy_priority"])
    return entry


def _take_off_other_copies(name: str, vvars: Mapping, online: Mapping[str, dict], warnings: list[str]) -> None:
    """Other copies of the same VM (defined on several hypervisors): an active one holds resources on its host."""
    host = vvars.get("entropy_hypervisor")
    for copy in vvars.get("entropy_copies") or []:
        other = copy.get("hypervisor")
        if other == host:
            continue
        copy_state = vm_model_state(copy.get("state"), bool(copy.get("has_managed_save")))
        if other in online and is_active_word(copy.get("state")):
            cap = online[other]
            cap["memory_mib"] = max(0, cap["memory_mib"] - int(copy.get("memory_mib") or 0))
            used = float(copy.get("cpu_demand_cores") or 0.0) if copy_state == "running" else 0.0
            cap["cpu"] = _round(max(0.0, cap["cpu"] - used))
            warnings.append("VM %s is also %s on %s: that copy is not in the model, its resources are taken off %s's capacity"
                            % (name, copy_state, other, other))
        else:
            warnings.append("VM %s is also defined on %s (%s): that copy is not in the model" % (name, other, copy.get("state")))


def _carried(hypervisors: Mapping[str, Mapping]) -> tuple[list, dict]:
    """The constraints (union) and options (merged) the hypervisors carry (CONSTRAINTS_VAR, OPTIONS_VAR)."""
    constraints: list = []
    options: dict = {}
    set_by: dict[str, str] = {}
    for name, hvars in hypervisors.items():
        carried = hvars.get(CONSTRAINTS_VAR)
        if carried is not None:
            if not isinstance(carried, list) or not all(isinstance(c, Mapping) for c in carried):
                raise ValueError("hypervisor %s: %s must be a list of constraints (dictionaries with a type), got %r; "
                                 "set model_constraints in the inventory file" % (name, CONSTRAINTS_VAR, carried))
            constraints = union_constraints(constraints, [dict(c) for c in carried])
        carried = hvars.get(OPTIONS_VAR)
        if carried is None:
            continue
        if not isinstance(carried, Mapping):
            raise ValueError("hypervisor %s: %s must be a dictionary of solver options, got %r; set model_options in the "
                             "inventory file" % (name, OPTIONS_VAR, carried))
        for key, value in carried.items():
            if key in options and options[key] != value:
                raise ValueError("hypervisors %s and %s carry different model_options %s (%r and %r): one solver run takes one "
                                 "value; give the same one in every inventory file, or pass it to the plan" % (
                                     set_by[key], name, key, options[key], value))
            options[key], set_by[key] = value, name
    return constraints, options


def strip_unsafe(value):
    """Undo the ``{"__ansible_unsafe": value}`` wrapping that ``ansible-inventory --list`` (ansible-core 2.19+)
    puts around strings that came from an inventory source, recursively."""
    if isinstance(value, Mapping):
        if len(value) == 1 and "__ansible_unsafe" in value:
            return strip_unsafe(value["__ansible_unsafe"])
        return {strip_unsafe(k): strip_unsafe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strip_unsafe(v) for v in value]
    return value


def model_from_inventory_json(data: Mapping, constraints: list | None = None, options: Mapping | None = None,
                              network: bool = False) -> dict:
    """The model from the JSON printed by ``ansible-inventory -i <file>.libvirt_cluster.yml --list``."""
    meta = data.get("_meta") if isinstance(data, Mapping) else None
    if not isinstance(meta, Mapping) or not isinstance(meta.get("hostvars"), Mapping):
        raise ValueError("not the output of ansible-inventory --list: no _meta.hostvars")
    return build_model(strip_unsafe(meta["hostvars"]), constraints, options, network=network)
