"""Import BtrPlace scheduler instances (JSON, optionally gzip) into our model format.

Node and VM ids become "node-<id>" / "vm-<id>". The cpu and memory views become host capacities
and VM demands; other views and constraints we cannot express are listed in `warnings` instead of
being dropped silently (constraints ignored for the same reason share one line). BtrPlace views
carry no unit: cpu is read as cores and memory as MiB by convention only.
"""
from __future__ import annotations

import gzip
import json
import os
from collections import defaultdict
from typing import Any

from .errors import ModelError
from .model import OBJECTIVES

CPU_IDS = ("cpu",)
MEM_IDS = ("mem", "memory", "ram")
# BtrPlace constraint id -> our type, for those taking a list of VMs
_VM_SETS = {"spread": "spread", "gather": "gather", "lonely": "lonely", "root": "root"}
# Indices shown per summary line of ignored constraints.
_EXAMPLES = 3


def _node(i: Any) -> str:
    return f"node-{i}"


def _vm(i: Any) -> str:
    return f"vm-{i}"


def _read(source: Any) -> Any:
    if isinstance(source, dict):
        return source
    path = os.fspath(source)
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError, EOFError) as exc:
        raise ModelError(f"btrplace: cannot read {path!r}: {exc}") from exc


def _views(model: dict, warnings: list[str]) -> tuple[dict | None, dict | None]:
    cpu = mem = None
    for view in model.get("views") or []:
        if view.get("id") != "shareableResource":
            warnings.append(f"view {view.get('id')!r} ignored (not a shareable resource)")
            continue
        rc = view.get("rcId")
        if rc in CPU_IDS and cpu is None:
            cpu = view
        elif rc in MEM_IDS and mem is None:
            mem = view
        else:
            warnings.append(f"resource view {rc!r} ignored (only cpu and memory are modelled)")
    return cpu, mem


def _amount(view: dict | None, kind: str, ident: Any) -> float:
    if view is None:
        return 0
    return view.get(kind, {}).get(str(ident), view.get("defCapacity" if kind == "nodes" else "defConsumption", 0))


def _ignored_summary(ignored: dict[tuple[str, str], list[int]]) -> list[str]:
    """One warning per (constraint type, reason): a large instance ignores dozens of alike constraints."""
    lines = []
    for (kind, reason), indices in ignored.items():
        shown = ", ".join(f"[{i}]" for i in indices[:_EXAMPLES]) + (", ..." if len(indices) > _EXAMPLES else "")
        noun = "constraint" if len(indices) == 1 else "constraints"
        lines.append(f"{len(indices)} {kind} {noun} ignored: {reason} (constraints{shown})")
    return lines


def import_btrplace(source: Any, objective: str | None = None) -> dict:
    """Convert a BtrPlace instance (dict, or path to .json / .json.gz) into a model dict (version 1).

    `objective` is the caller's choice (one of OBJECTIVES); without it the instance's own objective is
    mapped to 'repair' and a warning says so.
    """
    if objective is not None and objective not in OBJECTIVES:
        raise ModelError(f"btrplace: objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    data = _read(source)
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise ModelError("btrplace: expected an object with a 'model' entry")
    model = data["model"]
    mapping = model.get("mapping") or {}
    warnings: list[str] = []
    cpu, mem = _views(model, warnings)
    if cpu is None or mem is None:
        warnings.append("no cpu or memory view: the missing resource is taken as 0")
    hosts, vms = [], []
    online = mapping.get("onlineNodes") or {}
    for nid in sorted(online, key=lambda x: int(x) if str(x).isdigit() else str(x)):
        hosts.append({"name": _node(nid), "cpu": float(_amount(cpu, "nodes", nid)),
                      "memory_mib": int(_amount(mem, "nodes", nid)), "state": "online"})
        for key, state in (("runningVMs", "running"), ("sleepingVMs", "saved")):
            for vid in online[nid].get(key) or []:
                vms.append({"name": _vm(vid), "host": _node(nid), "state": state,
                            "cpu": float(_amount(cpu, "vms", vid)), "memory_mib": int(_amount(mem, "vms", vid))})
    for nid in mapping.get("offlineNodes") or []:
        hosts.append({"name": _node(nid), "cpu": float(_amount(cpu, "nodes", nid)),
                      "memory_mib": int(_amount(mem, "nodes", nid)), "state": "offline"})
    for vid in mapping.get("readyVMs") or []:
        vms.append({"name": _vm(vid), "host": None, "state": "stopped",
                    "cpu": float(_amount(cpu, "vms", vid)), "memory_mib": int(_amount(mem, "vms", vid))})
    vm_names = {v["name"] for v in vms}
    rc_map = {}
    if cpu is not None:
        rc_map[cpu.get("rcId")] = "cpu"
    if mem is not None:
        rc_map[mem.get("rcId")] = "memory"
    constraints = []
    ignored: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, con in enumerate(data.get("constraints") or []):
        out = _constraint(con, rc_map, vm_names)
        if isinstance(out, str):
            ignored[(str(con.get("id")), out)].append(i)
        else:
            constraints.append(out)
    warnings.extend(_ignored_summary(ignored))
    theirs = (data.get("objective") or {}).get("id")
    if objective is None:
        objective = "repair"
        if theirs:
            warnings.append(f"objective {theirs!r} mapped to 'repair' (fix violations with least memory moved)")
    return {"version": 1, "hosts": hosts, "vms": vms, "constraints": constraints,
            "options": {"objective": objective}, "warnings": warnings}


def _constraint(con: dict, rc_map: dict, vm_names: set) -> dict | str:  # pylint: disable=too-many-return-statements
    kind = con.get("id")
    cont = bool(con.get("continuous", False))
    vms = [_vm(v) for v in (con.get("vms") or ([con["vm"]] if "vm" in con else []))]
    nodes = [_node(n) for n in (con.get("nodes") or ([con["node"]] if "node" in con else []))]
    unknown = [v for v in vms if v not in vm_names]
    if unknown:
        return f"names unknown vms {unknown[:3]}"
    if kind in ("fence", "ban"):
        return {"type": kind, "vms": vms, "hosts": nodes, "continuous": cont}
    if kind in _VM_SETS:
        out = {"type": _VM_SETS[kind], "vms": vms}
        if kind != "root":
            out["continuous"] = cont
        return out
    if kind == "among":
        parts = [[_node(n) for n in part] for part in con.get("parts") or []]
        return {"type": "among", "vms": vms, "groups": parts, "continuous": cont}
    if kind == "split":
        parts = [[_vm(v) for v in part] for part in con.get("parts") or []]
        unknown = [v for part in parts for v in part if v not in vm_names]
        if unknown:
            return f"names unknown vms {unknown[:3]}"
        return {"type": "split", "groups": parts, "continuous": cont}
    if kind == "offline":
        return {"type": "offline", "hosts": nodes}
    if kind == "maxOnline":
        return {"type": "max_online", "amount": int(con.get("amount", 0)), "hosts": nodes, "continuous": cont}
    rc = rc_map.get(con.get("rc"))
    if kind in ("overbook", "preserve", "resourceCapacity") and rc is None:
        return f"resource {con.get('rc')!r} is not modelled"
    if kind == "overbook":
        out = {"type": "overbook", "resource": rc, "ratio": float(con.get("ratio", 1.0))}
        if nodes:
            out["hosts"] = nodes
        return out
    if kind == "preserve":
        return {"type": "preserve", "vms": vms, "resource": rc, "amount": float(con.get("amount", 0))}
    if kind == "resourceCapacity":
        if len(nodes) != 1:
            return "a capacity shared by several nodes is not supported"
        return {"type": "capacity", "hosts": nodes, "resource": rc, "amount": float(con.get("amount", 0))}
    return "constraint type not supported"
