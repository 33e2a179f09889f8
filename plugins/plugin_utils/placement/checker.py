"""Independent plan checker: replays a plan on the model and lists every violation.

It uses only the model (float capacities and demands, the constraints' own checkers), never the
solver's integer arrays, so a solver bug cannot hide itself.
"""
from __future__ import annotations

from bisect import bisect_left
from typing import Any

from .errors import ModelError
from .migration import DurationModel, Links
from .model import Model, load_model

EPS = 1e-6


def _limits(model: Model, occupancy: dict[str, set[str]]) -> dict[tuple[str, str], float]:
    use: dict[tuple[str, str], float] = {}
    for vm, hosts in occupancy.items():
        for h in hosts:
            for r in ("cpu", "memory"):
                use[h, r] = use.get((h, r), 0.0) + model.demand(vm, r, running=True)
    return use


def check_plan(model: Any, plan: Any) -> list[str]:
    """Return the list of violations of `plan` on `model` (empty = the plan is valid)."""
    try:
        model = load_model(model)
    except ModelError as exc:
        return [f"model: {exc}"]
    if not isinstance(plan, dict):
        return ["plan: must be an object"]
    steps = plan.get("steps")
    target = plan.get("target")
    if not isinstance(steps, list) or not all(isinstance(s, list) for s in steps):
        return ["plan: 'steps' must be a list of lists of actions"]
    if not isinstance(target, dict):
        return ["plan: 'target' must be an object mapping vm to host"]
    replay = _Replay(model)
    for s, step in enumerate(steps):
        replay.step(s, step)
    kept = plan.get("saved", [])
    if not isinstance(kept, list) or not all(isinstance(v, str) for v in kept):
        return replay.errors + ["plan: 'saved' must be a list of vm names"]
    errors = replay.errors + _end(model, replay.where, target, set(kept)) + _saved(model, replay.where, plan)
    if "schedule" in (model.options.objective, plan.get("objective")):
        errors += priority_errors(model, replay.where)
    return errors


ACTIONS = ("migrate", "suspend", "resume", "start", "stop")


class _Replay:
    """Walks the plan step by step: where each active VM is (None = suspended; a VM not listed is not
    running: stopped in the model, or stopped by an earlier step) and what breaks."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.errors: list[str] = []
        self.where: dict[str, str | None] = {v.name: v.host for v in model.vms if v.active}
        self.stopped: set[str] = set()  # VMs a step stopped
        initial = _limits(model, {v: {h} for v, h in self.where.items() if h is not None})
        # a host may stay at its initial load during the plan, even above its capacity
        self.limit = {(h.name, r): max(model.capacity(h.name, r), initial.get((h.name, r), 0.0))
                      for h in model.hosts for r in ("cpu", "memory")}
        # a continuous constraint already broken before the plan starts can only be judged at the end
        start = {v: {h} for v, h in self.where.items() if h is not None}
        self.continuous = [c for c in model.constraints if c.continuous and not c.check_state(model, start)]
        self.cap = model.options.max_parallel_migrations_per_host
        self.links = Links(model)
        self.dm = DurationModel.of(model.options)

    def step(self, s: int, step: list) -> None:
        """Apply one step: every action starts from the state before the step."""
        model, errors = self.model, self.errors
        occ: dict[str, set[str]] = {v: ({h} if h is not None else set()) for v, h in self.where.items()}
        after = dict(self.where)
        seen: set[str] = set()
        touch: dict[str, int] = {}
        for a, act in enumerate(step):
            vm = self._vm_of(f"step {s} action {a}", act, seen)
            if vm is not None:
                self._action(f"step {s} action {a}", act, vm, occ, after, touch)
        use = _limits(model, occ)
        for (h, r), val in sorted(use.items()):
            if val > self.limit[h, r] + EPS:
                errors.append(f"step {s}: host {h!r} {r} {val:g} exceeds {self.limit[h, r]:g} during the step")
        if self.cap is not None:
            for h, n in sorted(touch.items()):
                if n > self.cap:
                    errors.append(f"step {s}: host {h!r} has {n} concurrent migrations, cap is {self.cap}")
        for con in self.continuous:
            errors.extend(f"step {s}: {e}" for e in con.check_state(model, occ))
        errors.extend(f"step {s}: {e}" for e in self._bandwidth(step))
        self.where = after

    def _bandwidth(self, step: list) -> list[str]:
        """The bandwidth allotted to the step's migrations: no link above its migration cap, and every
        migration not marked post-copy converges with its allotment."""
        errors, use = [], {}
        hosts = {h.name for h in self.model.hosts}
        for act in step:
            if not isinstance(act, dict) or act.get("action") != "migrate" or "bandwidth_mib_s" not in act:
                continue
            vm, bw = act.get("vm"), act["bandwidth_mib_s"]
            if isinstance(bw, bool) or not isinstance(bw, int) or bw < 1:
                errors.append(f"vm {vm!r}: bandwidth_mib_s must be a positive integer, got {bw!r}")
                continue
            if act.get("from") not in hosts or act.get("to") not in hosts or vm not in self.model.vm_index:
                continue   # reported by _action
            for link in self.links.of(act["from"], act["to"]):
                use[link] = use.get(link, 0) + bw
            spec = self.model.vm(vm)
            if not act.get("postcopy") and self.dm.seconds(spec.memory_mib, spec.dirty_mib_s or 0.0, bw) is None:
                errors.append(f"vm {vm!r}: dirties {spec.dirty_mib_s:g} MiB/s, its migration at {bw} MiB/s does not "
                              f"converge; allot more bandwidth or mark it postcopy")
        for link, val in sorted(use.items()):
            if val > self.links.cap[link] + EPS:
                errors.append(f"{link[0]} link {link[1]!r} carries {val:g} MiB/s of migrations, "
                              f"its cap is {self.links.cap[link]:g}")
        return errors

    def _vm_of(self, tag: str, act: Any, seen: set[str]) -> str | None:
        """The VM an action acts on, or None (and an error) when the action is not valid."""
        if not isinstance(act, dict) or act.get("action") not in ACTIONS:
            self.errors.append(f"{tag}: unknown action {act!r}")
            return None
        vm = act.get("vm")
        if vm not in self.model.vm_index:
            self.errors.append(f"{tag}: unknown vm {vm!r}")
            return None
        running, kind = vm in self.where, act["action"]
        if kind == "start" and running:
            self.errors.append(f"{tag}: vm {vm!r} is started but it is already running or suspended")
            return None
        # a VM saved in the model (managed save, or saved to shared storage) may be resumed on any host
        saved = self.model.vm(vm).state == "saved" and vm not in self.stopped
        if kind not in ("start", "resume") and not running or kind == "resume" and not running and not saved:
            state = self.model.vm(vm).state if self.model.vm(vm).active else "stopped"
            self.errors.append(f"{tag}: vm {vm!r} is {state}, it cannot be acted on")
            return None
        if vm in seen:
            self.errors.append(f"{tag}: vm {vm!r} has more than one action in this step")
            return None
        seen.add(vm)
        return vm

    def _online(self, host: Any) -> bool:
        return host in self.model.host_index and self.model.host(host).state == "online"

    def _action(self, tag: str, act: dict, vm: str, occ: dict[str, set[str]], after: dict[str, str | None],
                touch: dict[str, int]) -> None:
        errors, where = self.errors, self.where
        kind = act["action"]
        if kind == "migrate":
            src, dst = act.get("from"), act.get("to")
            if where[vm] is None:
                errors.append(f"{tag}: vm {vm!r} is suspended, it cannot migrate")
                return
            if src != where[vm]:
                errors.append(f"{tag}: vm {vm!r} migrates from {src!r} but is on {where[vm]!r}")
            if not self._online(dst):
                errors.append(f"{tag}: vm {vm!r} migrates to unknown or offline host {dst!r}")
                return
            if dst == where[vm]:
                errors.append(f"{tag}: vm {vm!r} migrates to the host it is on")
            occ[vm] = {where[vm], dst}
            after[vm] = dst
            for h in (where[vm], dst):
                touch[h] = touch.get(h, 0) + 1
        elif kind in ("suspend", "stop"):
            host = act.get("host", act.get("from"))  # "from": how plans of earlier releases name it
            if where[vm] is None or host != where[vm]:
                verb = "suspended" if kind == "suspend" else "stopped"
                errors.append(f"{tag}: vm {vm!r} {verb} on {host!r} but is on {where[vm]!r}")
                return
            if kind == "suspend":
                after[vm] = None
            else:
                del after[vm]  # it holds its host's resources until the end of the step (occ)
                self.stopped.add(vm)
        elif kind == "start":
            host = act.get("to", act.get("host"))
            if not self._online(host):
                errors.append(f"{tag}: vm {vm!r} started on unknown or offline host {host!r}")
                return
            occ[vm] = {host}
            after[vm] = host
        else:
            host = act.get("to", act.get("host"))  # "host": how plans of earlier releases name it
            if where.get(vm) is not None:
                errors.append(f"{tag}: vm {vm!r} resumed but it is not suspended")
                return
            if not self._online(host):
                errors.append(f"{tag}: vm {vm!r} resumed on unknown or offline host {host!r}")
                return
            occ[vm] = {host}
            after[vm] = host


def _end(model: Model, final: dict[str, str | None], target: dict, kept: set[str] = frozenset()) -> list[str]:
    """The state after the last step: nothing suspended (unless the plan lists it in 'saved'), capacities,
    constraints, target, budgets."""
    errors = [f"end: vm {vm!r} is left suspended" for vm, h in sorted(final.items()) if h is None and vm not in kept]
    placed = {v: h for v, h in final.items() if h is not None}
    use = _limits(model, {v: {h} for v, h in placed.items()})
    for (h, r), val in sorted(use.items()):
        capacity = model.capacity(h, r)
        if val > capacity + EPS:
            errors.append(f"end: host {h!r} {r} {val:g} exceeds capacity {capacity:g}")
    for con in model.constraints:
        errors.extend(f"end: {e}" for e in con.check_final(model, placed))
    active = set(placed)
    left = {vm for vm, h in final.items() if h is None and vm not in kept}   # reported above
    if not active <= set(target) or set(target) - active - left:
        missing = sorted(active - set(target))[:3]
        extra = sorted(set(target) - active - left)[:3]
        errors.append(f"target: must list exactly the running/paused vms (missing {missing}, extra {extra})")
    for vm, h in sorted(target.items()):
        if vm in placed and placed[vm] != h:
            errors.append(f"target: vm {vm!r} ends on {placed[vm]!r}, target says {h!r}")
    errors.extend(_budgets(model, placed))
    return errors


def _budgets(model: Model, placed: dict[str, str]) -> list[str]:
    """Budgets count relocated VMs (end host differs from the start); pivot hops are not counted, nor is a
    VM the plan starts (it was not running anywhere)."""
    opts = model.options
    moved = [v for v, h in placed.items() if model.vm(v).active and h != model.vm(v).host]
    memory = sum(model.vm(v).memory_mib for v in moved)
    errors = []
    if opts.max_migrations is not None and len(moved) > opts.max_migrations:
        errors.append(f"budget: {len(moved)} vms relocated, max_migrations is {opts.max_migrations}")
    if opts.max_memory_moved_mib is not None and memory > opts.max_memory_moved_mib:
        errors.append(f"budget: {memory} MiB relocated, max_memory_moved_mib is {opts.max_memory_moved_mib}")
    return errors


def _saved_at_end(model: Model, final: dict[str, str | None]) -> set[str]:
    """VMs whose memory image is on disk after the plan: suspended by it, or saved in the model and never resumed."""
    return ({vm for vm, h in final.items() if h is None}
            | {v.name for v in model.vms if v.state == "saved" and v.name not in final})


def _saved(model: Model, final: dict[str, str | None], plan: dict) -> list[str]:
    """A plan that lists the VMs it leaves saved ('saved', objective schedule) lists exactly them."""
    if "saved" not in plan:
        return []
    listed, really = set(plan["saved"]), _saved_at_end(model, final)
    errors = [f"saved: vm {vm!r} is listed as saved but ends "
              f"{'on ' + repr(final[vm]) if final.get(vm) else model.vm(vm).state if vm in model.vm_index else 'unknown'}"
              for vm in sorted(listed - really)]
    errors += [f"saved: vm {vm!r} ends saved but the plan does not list it" for vm in sorted(really - listed)]
    return errors


def priority_errors(model: Model, final: dict[str, str | None]) -> list[str]:
    """The priority rule of objective schedule: no VM saved at the end could take the place of a running VM
    of lower priority (memory and cpu of the running one at least those of the saved one)."""
    saved = _saved_at_end(model, final)
    running = [model.vm(vm) for vm, h in final.items() if h is not None and model.vm(vm).state != "paused"]
    running.sort(key=lambda v: v.priority or 0)
    errors: list[str] = []
    # sweep the saved VMs by priority; `pool` holds the running VMs of strictly lower priority, by memory
    pool: list[tuple[int, float, str]] = []
    i = 0
    top: list[int] = []
    mems: list[int] = []
    for s in sorted((model.vm(vm) for vm in saved), key=lambda v: (v.priority or 0, v.name)):
        grew = False
        while i < len(running) and (running[i].priority or 0) < (s.priority or 0):
            pool.append((running[i].memory_mib, running[i].cpu, running[i].name))
            i += 1
            grew = True
        if grew:
            pool.sort()
            top = list(range(len(pool)))   # index of the largest cpu among pool[k:]
            for k in range(len(pool) - 2, -1, -1):
                if pool[top[k + 1]][1] > pool[k][1]:
                    top[k] = top[k + 1]
            mems = [entry[0] for entry in pool]
        k = bisect_left(mems, s.memory_mib) if pool else 0
        if k < len(pool) and pool[top[k]][1] >= s.cpu:
            r = model.vm(pool[top[k]][2])
            errors.append(f"priority: saved vm {s.name!r} (priority {s.priority or 0}, {s.memory_mib} MiB, cpu {s.cpu:g}) "
                          f"could take the place of running vm {r.name!r} (priority {r.priority or 0}, "
                          f"{r.memory_mib} MiB, cpu {r.cpu:g})")
    return errors
