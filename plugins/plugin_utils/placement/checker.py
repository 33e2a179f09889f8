"""Independent plan checker: replays a plan on the model and lists every violation.

It uses only the model (float capacities and demands, the constraints' own checkers), never the
solver's integer arrays, so a solver bug cannot hide itself.
"""
from __future__ import annotations

from typing import Any

from .errors import ModelError
from .model import Model, load_model

EPS = 1e-6


def _limits(model: Model, occupancy: dict[str, set[str]]) -> dict[tuple[str, str], float]:
    use: dict[tuple[str, str], float] = {}
    for vm, hosts in occupancy.items():
        for h in hosts:
            for r in ("cpu", "memory"):
                use[h, r] = use.get((h, r), 0.0) + model.demand(vm, r)
    return use


def check_plan(model: Any, plan: Any) -> list[str]:  # pylint: disable=too-many-branches,too-many-statements,too-many-locals
    """Return the list of violations of `plan` on `model` (empty = the plan is valid)."""
    try:
        model = load_model(model)
    except ModelError as exc:
        return [f"model: {exc}"]
    errors: list[str] = []
    if not isinstance(plan, dict):
        return ["plan: must be an object"]
    steps = plan.get("steps")
    target = plan.get("target")
    if not isinstance(steps, list) or not all(isinstance(s, list) for s in steps):
        return ["plan: 'steps' must be a list of lists of actions"]
    if not isinstance(target, dict):
        return ["plan: 'target' must be an object mapping vm to host"]
    active = {v.name for v in model.vms if v.active}
    where: dict[str, str | None] = {v.name: v.host for v in model.vms if v.active}
    initial = _limits(model, {v: {h} for v, h in where.items() if h is not None})
    limit = {}
    for h in model.hosts:
        for r in ("cpu", "memory"):
            limit[h.name, r] = max(model.capacity(h.name, r), initial.get((h.name, r), 0.0))
    # a continuous constraint already broken before the plan starts can only be judged at the end
    start = {v: {h} for v, h in where.items() if h is not None}
    continuous = [c for c in model.constraints if c.continuous and not c.check_state(model, start)]
    cap = model.options.max_parallel_migrations_per_host
    for s, step in enumerate(steps):
        occ: dict[str, set[str]] = {v: ({h} if h is not None else set()) for v, h in where.items()}
        after = dict(where)
        seen: set[str] = set()
        touch: dict[str, int] = {}
        for a, act in enumerate(step):
            tag = f"step {s} action {a}"
            if not isinstance(act, dict) or act.get("action") not in ("migrate", "suspend", "resume"):
                errors.append(f"{tag}: unknown action {act!r}")
                continue
            vm = act.get("vm")
            if vm not in model.vm_index:
                errors.append(f"{tag}: unknown vm {vm!r}")
                continue
            if vm not in active:
                errors.append(f"{tag}: vm {vm!r} is {model.vm(vm).state}, it cannot be acted on")
                continue
            if vm in seen:
                errors.append(f"{tag}: vm {vm!r} has more than one action in this step")
                continue
            seen.add(vm)
            kind = act["action"]
            if kind == "migrate":
                src, dst = act.get("from"), act.get("to")
                if where[vm] is None:
                    errors.append(f"{tag}: vm {vm!r} is suspended, it cannot migrate")
                    continue
                if src != where[vm]:
                    errors.append(f"{tag}: vm {vm!r} migrates from {src!r} but is on {where[vm]!r}")
                if dst not in model.host_index or model.host(dst).state != "online":
                    errors.append(f"{tag}: vm {vm!r} migrates to unknown or offline host {dst!r}")
                    continue
                if dst == where[vm]:
                    errors.append(f"{tag}: vm {vm!r} migrates to the host it is on")
                occ[vm] = {where[vm], dst}
                after[vm] = dst
                for h in (where[vm], dst):
                    touch[h] = touch.get(h, 0) + 1
            elif kind == "suspend":
                if where[vm] is None or act.get("host") != where[vm]:
                    errors.append(f"{tag}: vm {vm!r} suspended on {act.get('host')!r} but is on {where[vm]!r}")
                    continue
                after[vm] = None
            else:
                host = act.get("host")
                if where[vm] is not None:
                    errors.append(f"{tag}: vm {vm!r} resumed but it is not suspended")
                    continue
                if host not in model.host_index or model.host(host).state != "online":
                    errors.append(f"{tag}: vm {vm!r} resumed on unknown or offline host {host!r}")
                    continue
                occ[vm] = {host}
                after[vm] = host
        use = _limits(model, occ)
        for (h, r), val in sorted(use.items()):
            if val > limit[h, r] + EPS:
                errors.append(f"step {s}: host {h!r} {r} {val:g} exceeds {limit[h, r]:g} during the step")
        if cap is not None:
            for h, n in sorted(touch.items()):
                if n > cap:
                    errors.append(f"step {s}: host {h!r} has {n} concurrent migrations, cap is {cap}")
        for con in continuous:
            errors.extend(f"step {s}: {e}" for e in con.check_state(model, occ))
        where = after
    final = dict(where)
    for vm, h in sorted(final.items()):
        if h is None:
            errors.append(f"end: vm {vm!r} is left suspended")
    placed = {v: h for v, h in final.items() if h is not None}
    use = _limits(model, {v: {h} for v, h in placed.items()})
    for (h, r), val in sorted(use.items()):
        capacity = model.capacity(h, r)
        if val > capacity + EPS:
            errors.append(f"end: host {h!r} {r} {val:g} exceeds capacity {capacity:g}")
    for con in model.constraints:
        errors.extend(f"end: {e}" for e in con.check_final(model, placed))
    if set(target) != active:
        missing = sorted(active - set(target))[:3]
        extra = sorted(set(target) - active)[:3]
        errors.append(f"target: must list exactly the running/paused vms (missing {missing}, extra {extra})")
    for vm, h in sorted(target.items()):
        if vm in placed and placed[vm] != h:
            errors.append(f"target: vm {vm!r} ends on {placed[vm]!r}, target says {h!r}")
    errors.extend(_budgets(model, placed))
    return errors


def _budgets(model: Model, placed: dict[str, str]) -> list[str]:
    """Budgets count relocated VMs (end host differs from the start); pivot hops are not counted."""
    opts = model.options
    moved = [v for v, h in placed.items() if h != model.vm(v).host]
    memory = sum(model.vm(v).memory_mib for v in moved)
    errors = []
    if opts.max_migrations is not None and len(moved) > opts.max_migrations:
        errors.append(f"budget: {len(moved)} vms relocated, max_migrations is {opts.max_migrations}")
    if opts.max_memory_moved_mib is not None and memory > opts.max_memory_moved_mib:
        errors.append(f"budget: {memory} MiB relocated, max_memory_moved_mib is {opts.max_memory_moved_mib}")
    return errors
