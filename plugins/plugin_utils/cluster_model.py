# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Inventory data -> the placement solver's model (JSON version 1).

Pure Python, no Ansible import: the inventory plugin (entropy.cluster.libvirt_cluster) uses it to
export the model, and the lookup plugin can call it on ``hostvars`` (or on the ``_meta.hostvars``
of ``ansible-inventory --list``) so that what the solver sees and what the inventory shows never
disagree.

Input: a mapping ``host name -> vars`` as the inventory plugin sets them. Hosts are told apart by
``entropy_kind`` (``hypervisor`` or ``vm``); every other host is ignored.
"""

from __future__ import annotations

from collections.abc import Mapping

MODEL_VERSION = 1

# libvirt domain state word (plugins/module_utils/libvirt_common.DOMAIN_STATES) -> model VM state.
# pmsuspended keeps its memory on the host like a paused VM; "shutdown" means shutting down, still active.
_ACTIVE_STATES = {
    "running": "running",
    "blocked": "running",
    "nostate": "running",
    "shutdown": "running",
    "paused": "paused",
    "pmsuspended": "paused",
}
_INACTIVE_STATES = ("shutoff", "crashed")


def vm_model_state(libvirt_state: str | None, has_managed_save: bool = False) -> str:
    """Model state of a VM: running, paused, saved or stopped.

    running/blocked -> running, paused -> paused, shutoff with a managed-save image -> saved,
    shutoff/crashed -> stopped. Unknown states count as running (they may hold resources).
    """
    if libvirt_state in _ACTIVE_STATES:
        return _ACTIVE_STATES[libvirt_state]
    if libvirt_state in _INACTIVE_STATES:
        return "saved" if has_managed_save else "stopped"
    return "running"


def _round(value: float, digits: int = 4) -> float:
    return round(float(value), digits)


def build_model(hostvars: Mapping[str, Mapping], constraints: list | None = None, options: Mapping | None = None) -> dict:
    """Build the solver's model dict from inventory host vars.

    ``hostvars``: host name -> vars (``entropy_kind``, ``entropy_cpu_cores``, ... as set by the
    libvirt_cluster inventory plugin). ``constraints`` and ``options`` are copied into the model.

    Returns ``{"version": 1, "hosts": [...], "vms": [...], "constraints": [...], "options": {...},
    "warnings": [...]}``. Hypervisors that were unreachable are left out together with their
    VMs (their VMs are unknown), each with a warning. A VM defined on several hypervisors appears
    once (on the hypervisor the inventory chose, where it is active); its other active copies are
    subtracted from their host's capacity, with a warning.
    """
    warnings: list[str] = []
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

    online: dict[str, dict] = {}
    for name, hvars in hypervisors.items():
        if not hvars.get("entropy_reachable", False):
            error = hvars.get("entropy_error") or "unreachable"
            warnings.append("hypervisor %s left out of the model: it was unreachable (%s); its VMs are unknown" % (name, error))
            continue
        cpu = hvars.get("entropy_cpu_cores")
        memory = hvars.get("entropy_memory_mib")
        if cpu is None or memory is None:
            warnings.append("hypervisor %s left out of the model: its capacity is unknown (set cpu and memory_mib)" % name)
            continue
        reserved = int(hvars.get("entropy_reserved_memory_mib") or 0)
        online[name] = {"name": name, "cpu": float(cpu), "memory_mib": max(0, int(memory) - reserved), "state": "online"}

    model_vms: list[dict] = []
    for name, vvars in vms.items():
        host = vvars.get("entropy_hypervisor")
        if host not in online:
            if host in hypervisors:
                continue  # its hypervisor was left out above (already warned)
            warnings.append("VM %s left out of the model: its hypervisor %r is not in the inventory" % (name, host))
            continue
        state = vm_model_state(vvars.get("entropy_state"), bool(vvars.get("entropy_has_managed_save")))
        memory = vvars.get("entropy_memory_mib")
        if memory is None:
            warnings.append("VM %s left out of the model: its memory size is unknown" % name)
            continue
        entry: dict = {"name": name, "host": host, "state": state, "memory_mib": int(memory)}
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
            continue
        model_vms.append(entry)

        # Other copies of the same VM (defined on several hypervisors).
        for copy in vvars.get("entropy_copies") or []:
            other = copy.get("hypervisor")
            if other == host:
                continue
            copy_state = vm_model_state(copy.get("state"), bool(copy.get("has_managed_save")))
            if other in online and copy_state in ("running", "paused"):
                cap = online[other]
                cap["memory_mib"] = max(0, cap["memory_mib"] - int(copy.get("memory_mib") or 0))
                used = float(copy.get("cpu_demand_cores") or 0.0) if copy_state == "running" else 0.0
                cap["cpu"] = _round(max(0.0, cap["cpu"] - used))
                warnings.append("VM %s is also %s on %s: that copy is not in the model, its resources are taken off %s's capacity"
                                % (name, copy_state, other, other))
            else:
                warnings.append("VM %s is also defined on %s (%s): that copy is not in the model" % (name, other, copy.get("state")))

    return {
        "version": MODEL_VERSION,
        "hosts": list(online.values()),
        "vms": model_vms,
        "constraints": list(constraints or []),
        "options": dict(options or {}),
        "warnings": warnings,
    }


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


def model_from_inventory_json(data: Mapping, constraints: list | None = None, options: Mapping | None = None) -> dict:
    """The model from the JSON printed by ``ansible-inventory -i <file>.libvirt_cluster.yml --list``."""
    meta = data.get("_meta") if isinstance(data, Mapping) else None
    if not isinstance(meta, Mapping) or not isinstance(meta.get("hostvars"), Mapping):
        raise ValueError("not the output of ansible-inventory --list: no _meta.hostvars")
    return build_model(strip_unsafe(meta["hostvars"]), constraints, options)
