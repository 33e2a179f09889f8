"""Small model builders and a solve-then-check helper shared by the tests."""
from __future__ import annotations

import copy

import placement

GIB = 1024


def host(name: str, cpu: float = 16, gib: int = 64, state: str = "online") -> dict:
    return {"name": name, "cpu": cpu, "memory_mib": gib * GIB, "state": state}


def vm(name: str, on: str, cpu: float = 1.0, gib: int = 8, state: str = "running") -> dict:
    return {"name": name, "host": on, "state": state, "cpu": cpu, "memory_mib": gib * GIB}


def model(hosts: list, vms: list, constraints: list | None = None, **options) -> dict:
    opts = {"time_limit_s": 5, "seed": 0}
    opts.update(options)
    return {"version": 1, "hosts": hosts, "vms": vms, "constraints": constraints or [], "options": opts}


def solve_checked(m: dict, **overrides) -> dict:
    """Solve and assert the independent checker accepts the plan (with the same options)."""
    plan = placement.solve(copy.deepcopy(m), **overrides)
    checked = copy.deepcopy(m)
    checked.setdefault("options", {}).update({k: v for k, v in overrides.items() if v is not None})
    problems = placement.check_plan(checked, plan)
    assert problems == [], problems
    return plan
