"""Placement constraints: each class holds everything about itself (the BtrPlace way).

A constraint class carries, next to its fields:
- `parse_fields` / `validate`: reading and checking its JSON entry (registered by type name);
- `check_final` / `check_state`: the independent checker (floats, model only, never the solver's
  arrays). `check_final` judges the final placement (discrete semantics); `check_state` judges one
  intermediate state of a plan and is only consulted for constraints flagged `continuous`. A state
  maps each active VM to the set of hosts it occupies (two during a migration);
- `adjust_capacity` / `adjust_demand` / `forbidden_hosts`: how it changes the model's numbers;
- `compile`: its part of the integer problem (domains, pins, groups) and the data its other hooks
  get back for that problem (None = nothing to do there);
- `fits`: may VM j join host h in the search state now (greedy heuristics and the LNS);
- `encode`: its CP-SAT constraints on one sub-model (see cpsat.Encoding);
- `guard`: may the planner run this action now (continuous constraints only);
- `narrow` / `diagnose`: its part in explaining infeasibility before any search.

The other modules call these hooks and never ask which class a constraint is: adding a type is one
class here plus its tests (docs/solver.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .errors import ModelError

RESOURCES = ("cpu", "memory")
Placement = dict  # vm name -> host name (active VMs only)
State = dict  # vm name -> set of host names
GIB = 1024
CPU_SCALE = 1000   # the integer problem counts cpu in milli-cores (problem.py uses the same)


def gib(mib: float) -> str:
    """Memory for messages: MiB shown as GiB."""
    return f"{mib / GIB:.4g} GiB"


def _short(names: list[str] | tuple[str, ...], limit: int = 3) -> str:
    shown = ", ".join(repr(n) for n in list(names)[:limit])
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return f"[{shown}{more}]"


# --- field readers shared by the parsers ------------------------------------------------------
def _names(where: str, raw: dict, key: str, index: dict[str, int], what: str, required: bool = True) -> tuple[str, ...]:
    val = raw.get(key)
    if val is None and not required:
        return ()
    return _name_list(where, key, val, index, what)


def _name_list(where: str, key: str, val: Any, index: dict[str, int], what: str) -> tuple[str, ...]:
    if not isinstance(val, list) or not val or not all(isinstance(x, str) for x in val):
        raise ModelError(f"{where}: field {key!r} must be a non-empty list of {what} names, got {val!r}")
    for name in val:
        if name not in index:
            raise ModelError(f"{where}: unknown {what} {name!r}")
    if len(set(val)) != len(val):
        raise ModelError(f"{where}: field {key!r} lists a {what} twice")
    return tuple(val)


def _groups(where: str, raw: dict, index: dict[str, int], what: str, at_least: int = 1) -> tuple[tuple[str, ...], ...]:
    """A non-empty list of disjoint, non-empty lists of names."""
    val = raw.get("groups")
    if not isinstance(val, list) or len(val) < at_least:
        raise ModelError(f"{where}: field 'groups' must be a list of at least {at_least} lists of {what} names, "
                         f"got {val!r}")
    groups = tuple(_name_list(where, f"groups[{i}]", g, index, what) for i, g in enumerate(val))
    seen: dict[str, int] = {}
    for i, group in enumerate(groups):
        for name in group:
            if name in seen:
                raise ModelError(f"{where}: {what} {name!r} is in groups[{seen[name]}] and groups[{i}]; "
                                 f"groups must not overlap")
            seen[name] = i
    return groups


def _num(where: str, raw: dict, key: str, integer: bool = False, positive: bool = False) -> Any:
    val = raw.get(key)
    ok = isinstance(val, int) if integer else isinstance(val, (int, float))
    if not ok or isinstance(val, bool) or (val <= 0 if positive else val < 0):
        sign = "positive" if positive else "non-negative"
        raise ModelError(f"{where}: field {key!r} must be a {sign} {'integer' if integer else 'number'}, got {val!r}")
    return val


def _resource(where: str, raw: dict) -> str:
    val = raw.get("resource")
    if val not in RESOURCES:
        raise ModelError(f"{where}: field 'resource' must be one of {', '.join(RESOURCES)}, got {val!r}")
    return val


# --- the registry -----------------------------------------------------------------------------
_REGISTRY: dict[str, type[Constraint]] = {}


def register(kind: str) -> Callable[[type[Constraint]], type[Constraint]]:
    """Class decorator: the class parses and owns entries whose `type` is `kind`."""
    def wrap(cls: type[Constraint]) -> type[Constraint]:
        cls.KIND = kind
        _REGISTRY[kind] = cls
        return cls
    return wrap


def constraint_types() -> tuple[str, ...]:
    return tuple(_REGISTRY)


@dataclass
class Constraint:
    index: int
    kind: str
    continuous: bool = False
    vms: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()

    KIND = ""
    REQUIRED: tuple[str, ...] = ()
    OPTIONAL: tuple[str, ...] = ()
    HAS_CONTINUOUS = True    # accepts the `continuous` flag
    ALWAYS_CONTINUOUS = False
    HOST_IDENTITY = False    # True: swapping two same-size hosts' contents may break it (pack.relabel skips)
    IMPROVE_SHARE = 0.0      # share of the time limit kept for its `improve` pass

    # --- parsing -----------------------------------------------------------------------------
    @classmethod
    def parse_fields(cls, where: str, raw: dict, host_index: dict[str, int], vm_index: dict[str, int]) -> dict:
        """Keyword arguments for the class beyond index, kind and continuous."""
        kwargs: dict[str, Any] = {}
        if "vms" in cls.REQUIRED:
            kwargs["vms"] = _names(where, raw, "vms", vm_index, "vm")
        if "hosts" in cls.REQUIRED + cls.OPTIONAL:
            kwargs["hosts"] = _names(where, raw, "hosts", host_index, "host", required="hosts" in cls.REQUIRED)
        return kwargs

    # --- description -------------------------------------------------------------------------
    def describe(self) -> str:
        return f"constraint #{self.index} ({self.kind}{self._detail()})"

    def _detail(self) -> str:
        parts = []
        if self.vms:
            parts.append(_short(self.vms))
        if self.hosts:
            parts.append(_short(self.hosts))
        return " " + " on ".join(parts) if parts else ""

    # --- the model's numbers -----------------------------------------------------------------
    def adjust_capacity(self, host: str, resource: str, cap: float) -> float:  # pylint: disable=unused-argument
        return cap

    def adjust_demand(self, vm: str, resource: str, dem: float) -> float:  # pylint: disable=unused-argument
        return dem

    def forbidden_hosts(self) -> frozenset:
        """Hosts no active VM may end on."""
        return frozenset()

    # --- independent checker -----------------------------------------------------------------
    def check_final(self, model: Any, placement: Placement) -> list[str]:  # pylint: disable=unused-argument
        return []

    def check_state(self, model: Any, state: State) -> list[str]:  # pylint: disable=unused-argument
        return []

    # --- solver hooks (see the module docstring) ---------------------------------------------
    def compile(self, b: Any) -> Any:  # pylint: disable=unused-argument
        """Add this constraint to the integer problem being built (problem.Builder)."""
        return None

    def fits(self, st: Any, data: Any, j: int, h: int) -> bool:  # pylint: disable=unused-argument
        return True

    def encode(self, enc: Any, data: Any) -> None:
        pass

    def guard(self, planner: Any, step: Any, j: int, d: int, data: Any) -> bool:  # pylint: disable=unused-argument
        return True

    def track(self, st: Any, data: Any, j: int, h: int, sign: int) -> None:  # pylint: disable=unused-argument
        """The search state adds (sign 1) or removes (-1) VM j on host h (classes registered with Builder.track)."""

    def hosts_bound(self, prob: Any, data: Any) -> int:  # pylint: disable=unused-argument
        """A lower bound on the hosts in use that this constraint implies (0 = none)."""
        return 0

    def stats(self, model: Any, target: dict) -> dict:  # pylint: disable=unused-argument
        """Figures of its own for the plan's stats (target: vm -> host)."""
        return {}

    def improve(self, ctx: Any, data: Any) -> None:  # pylint: disable=unused-argument
        """A last pass on the solution (solver.SolveContext) for the constraint's own secondary objective."""

    def narrow(self, prob: Any, j: int, hosts: set[int]) -> set[int] | None:  # pylint: disable=unused-argument
        """Hosts left to VM j once this constraint applies (None = it does not restrict j)."""
        return None

    def pins(self, vm: str) -> bool:  # pylint: disable=unused-argument
        """True when the constraint keeps `vm` on its current host."""
        return False

    def diagnose(self, prob: Any, data: Any) -> list[str]:  # pylint: disable=unused-argument
        """Cheap explanations of why this constraint cannot hold (data as returned by compile)."""
        return []

    # --- helpers for subclasses --------------------------------------------------------------
    def _members(self, prob: Any) -> list[int]:
        pos = prob.vm_pos
        return [pos[n] for n in self.vms if n in pos]

    def _host_ids(self, prob: Any, names: tuple[str, ...] | None = None) -> set[int]:
        hidx = prob.model.host_index
        return {hidx[n] for n in (self.hosts if names is None else names)}


@register("ban")
@dataclass
class Ban(Constraint):
    REQUIRED = ("vms", "hosts")

    def _detail(self) -> str:
        return f" {_short(self.vms)} from {_short(self.hosts)}"

    def check_final(self, model: Any, placement: Placement) -> list[str]:
        return [f"{self.describe()}: vm {v!r} is on banned host {placement[v]!r}"
                for v in self.vms if placement.get(v) in self.hosts]

    def check_state(self, model: Any, state: State) -> list[str]:
        return [f"{self.describe()}: vm {v!r} occupies banned host {h!r}"
                for v in self.vms for h in sorted(state.get(v, ())) if h in self.hosts]

    def compile(self, b: Any) -> Any:
        b.ban(self._members(b.prob), self._host_ids(b.prob))

    def narrow(self, prob: Any, j: int, hosts: set[int]) -> set[int] | None:
        return hosts - self._host_ids(prob) if prob.vm_names[j] in self.vms else None


@register("fence")
@dataclass
class Fence(Constraint):
    REQUIRED = ("vms", "hosts")

    def _detail(self) -> str:
        return f" {_short(self.vms)} to {_short(self.hosts)}"

    def check_final(self, model: Any, placement: Placement) -> list[str]:
        return [f"{self.describe()}: vm {v!r} is on {placement[v]!r}, outside the fence"
                for v in self.vms if v in placement and placement[v] not in self.hosts]

    def check_state(self, model: Any, state: State) -> list[str]:
        return [f"{self.describe()}: vm {v!r} occupies {h!r}, outside the fence"
                for v in self.vms for h in sorted(state.get(v, ())) if h not in self.hosts]

    def compile(self, b: Any) -> Any:
        b.restrict(self._members(b.prob), self._host_ids(b.prob))

    def narrow(self, prob: Any, j: int, hosts: set[int]) -> set[int] | None:
        return hosts & self._host_ids(prob) if prob.vm_names[j] in self.vms else None


@register("spread")
@dataclass
class Spread(Constraint):
    REQUIRED = ("vms",)

    @classmethod
    def parse_fields(cls, where: str, raw: dict, host_index: dict[str, int], vm_index: dict[str, int]) -> dict:
        kwargs = super().parse_fields(where, raw, host_index, vm_index)
        if len(kwargs["vms"]) < 2:
            raise ModelError(f"{where}: field 'vms' needs at least 2 vms")
        return kwargs

    def check_final(self, model: Any, placement: Placement) -> list[str]:
        return self.check_state(model, {v: {placement[v]} for v in self.vms if v in placement})

    def check_state(self, model: Any, state: State) -> list[str]:
        seen: dict[str, str] = {}
        errors = []
        for v in self.vms:
            for h in sorted(state.get(v, ())):
                if h in seen:
                    errors.append(f"{self.describe()}: vms {seen[h]!r} and {v!r} share host {h!r}")
                else:
                    seen[h] = v
        return errors

    # data: the group's index in prob.spread_groups (the search state counts members per host)
    def compile(self, b: Any) -> Any:
        members = self._members(b.prob)
        return b.spread_group(members, self) if len(members) > 1 else None

    def fits(self, st: Any, data: Any, j: int, h: int) -> bool:
        return not st.spread_count[data].get(h, 0)

    def encode(self, enc: Any, data: Any) -> None:
        st = enc.st
        fm = [j for j in enc.prob.spread_groups[data] if j in enc.free_set]
        if not fm:
            return
        for h in enc.hosts:
            vs = [enc.x[j, h] for j in fm if (j, h) in enc.x]
            if not vs:
                continue
            fixed = st.spread_count[data].get(h, 0) - sum(1 for j in fm if st.host_of[j] == h)
            enc.model.Add(sum(vs) <= 1 - fixed)

    def guard(self, planner: Any, step: Any, j: int, d: int, data: Any) -> bool:
        if data not in planner.prob.vm_spreads[j]:
            return True
        return not any(k != j and d in (planner.cur[k], planner.dest_now(step, k))
                       for k in planner.prob.spread_groups[data])

    def diagnose(self, prob: Any, data: Any) -> list[str]:
        members = prob.spread_groups[data]
        hosts: set[int] = set()
        for j in members:
            hosts |= set(prob.hosts_of(j))
        if len(hosts) < len(members):
            return [f"{self.describe()}: {len(members)} vms but only {len(hosts)} allowed hosts"]
        return []


@register("gather")
@dataclass
class Gather(Constraint):
    REQUIRED = ("vms",)

    def check_final(self, model: Any, placement: Placement) -> list[str]:
        hosts = sorted({placement[v] for v in self.vms if v in placement})
        return [f"{self.describe()}: vms are split over hosts {_short(hosts)}"] if len(hosts) > 1 else []

    def check_state(self, model: Any, state: State) -> list[str]:
        # Continuous gather: the group never spans two hosts, so members may only move together.
        hosts = sorted(set().union(*(state.get(v, set()) for v in self.vms)))
        return [f"{self.describe()}: vms are spread over hosts {_short(hosts)}"] if len(hosts) > 1 else []

    # The members form one unit of the search state: they are placed, moved and encoded together.
    def compile(self, b: Any) -> Any:
        members = self._members(b.prob)
        if len(members) < 2:
            return None
        b.gather_group(members)
        if self.continuous:
            # a migration makes the group span two hosts, so a continuous gather never moves
            b.pin(members)
        return members

    def diagnose(self, prob: Any, data: Any) -> list[str]:
        problems = []
        common = {h for h in range(prob.n_hosts) if prob.usable[h]}
        for j in data:
            common &= set(prob.hosts_of(j))
        cpu = sum(prob.cpu[j] for j in data)
        mem = sum(prob.mem[j] for j in data)
        if not common:
            problems.append(f"{self.describe()}: no host is allowed for all its vms")
        elif not any(cpu <= prob.cap_cpu[h] and mem <= prob.cap_mem[h] for h in common):
            problems.append(f"{self.describe()}: together the vms need {cpu / CPU_SCALE:g} cpu and "
                            f"{gib(mem)}, more than any allowed host offers")
        for other in prob.model.constraints:
            if isinstance(other, Spread) and len(set(other.vms) & set(self.vms)) > 1:
                problems.append(f"{self.describe()} conflicts with {other.describe()}")
        return problems


@register("lonely")
@dataclass
class Lonely(Constraint):
    REQUIRED = ("vms",)

    def check_final(self, model: Any, placement: Placement) -> list[str]:
        return self.check_state(model, {v: {h} for v, h in placement.items()})

    def check_state(self, model: Any, state: State) -> list[str]:
        mine = set(self.vms)
        my_hosts = {h for v in self.vms for h in state.get(v, ())}
        errors = []
        for v, hosts in state.items():
            if v in mine:
                continue
            for h in sorted(hosts & my_hosts):
                errors.append(f"{self.describe()}: foreign vm {v!r} shares host {h!r}")
        return errors

    # data: the member set. The search state tracks a lonely class per VM (VMs under the same
    # lonely constraints share one), so `fits` needs nothing here.
    def compile(self, b: Any) -> Any:
        members = self._members(b.prob)
        b.lonely(members, self.index)
        return frozenset(members)

    def encode(self, enc: Any, data: Any) -> None:
        """On each host, members and non-members never both appear."""
        st, x = enc.st, enc.x
        for h in enc.hosts:
            fixed = [j for j in st.members[h] if j not in enc.free_set]
            fixed_in = any(j in data for j in fixed)
            fixed_out = any(j not in data for j in fixed)
            free_in = [j for j in enc.by_host[h] if j in data]
            free_out = [j for j in enc.by_host[h] if j not in data]
            if not (fixed_in or free_in) or not (fixed_out or free_out):
                continue
            sides = []
            for is_fixed, free in ((fixed_in, free_in), (fixed_out, free_out)):
                if is_fixed:
                    sides.append(1)
                    continue
                b = enc.model.NewBoolVar("")
                for j in free:
                    enc.model.AddImplication(x[j, h], b)
                sides.append(b)
            enc.model.Add(sum(sides) <= 1)

    def guard(self, planner: Any, step: Any, j: int, d: int, data: Any) -> bool:
        inside = j in data
        return not any((k in data) != inside for k in planner.occ[d])


@register("root")
@dataclass
class Root(Constraint):
    REQUIRED = ("vms",)
    HAS_CONTINUOUS = False
    ALWAYS_CONTINUOUS = True

    def check_final(self, model: Any, placement: Placement) -> list[str]:
        return [f"{self.describe()}: vm {v!r} moved from {model.vm(v).host!r} to {placement[v]!r}"
                for v in self.vms if v in placement and placement[v] != model.vm(v).host]

    def check_state(self, model: Any, state: State) -> list[str]:
        return [f"{self.describe()}: vm {v!r} occupies {h!r}"
                for v in self.vms for h in sorted(state.get(v, ())) if h != model.vm(v).host]

    def compile(self, b: Any) -> Any:
        b.pin(self._members(b.prob))

    def narrow(self, prob: Any, j: int, hosts: set[int]) -> set[int] | None:
        return hosts & {prob.init[j]} if prob.vm_names[j] in self.vms else None

    def pins(self, vm: str) -> bool:
        return vm in self.vms


@register("offline")
@dataclass
class Offline(Constraint):
    REQUIRED = ("hosts",)
    HAS_CONTINUOUS = False

    def forbidden_hosts(self) -> frozenset:
        return frozenset(self.hosts)

    def check_final(self, model: Any, placement: Placement) -> list[str]:
        return [f"{self.describe()}: vm {v!r} is still on {h!r}"
                for v, h in sorted(placement.items()) if h in self.hosts]


@register("max_online")
@dataclass
class MaxOnline(Constraint):
    amount: int = 0

    REQUIRED = ("amount",)
    OPTIONAL = ("hosts",)

    @classmethod
    def parse_fields(cls, where: str, raw: dict, host_index: dict[str, int], vm_index: dict[str, int]) -> dict:
        kwargs = super().parse_fields(where, raw, host_index, vm_index)
        kwargs["amount"] = _num(where, raw, "amount", integer=True)
        return kwargs

    def _detail(self) -> str:
        return f" {self.amount}" + (f" of {_short(self.hosts)}" if self.hosts else "")

    def _count(self, model: Any, used: set) -> list[str]:
        scope = set(self.hosts) if self.hosts else set(model.host_index)
        n = len(used & scope)
        return [f"{self.describe()}: {n} hosts in use"] if n > self.amount else []

    def check_final(self, model: Any, placement: Placement) -> list[str]:
        return self._count(model, set(placement.values()))

    def check_state(self, model: Any, state: State) -> list[str]:
        return self._count(model, set().union(*state.values()) if state else set())

    # data: the index k in prob.max_online; the search state counts the hosts in use per scope
    # (State.online_count), which every host switch-on consults.
    def compile(self, b: Any) -> Any:
        scope = frozenset(self._host_ids(b.prob)) if self.hosts else None
        return b.max_online(self.amount, scope, self)

    def encode(self, enc: Any, data: Any) -> None:
        amount, scope, _con = enc.prob.max_online[data]
        inside = [h for h in enc.hosts if scope is None or h in scope]
        outside = enc.st.online_count[data] - sum(1 for h in inside if enc.st.members[h])
        enc.model.Add(sum(enc.used[h] for h in inside) <= amount - outside)

    def guard(self, planner: Any, step: Any, j: int, d: int, data: Any) -> bool:
        if planner.occ[d]:
            return True
        amount, scope, _con = planner.prob.max_online[data]
        if scope is not None and d not in scope:
            return True
        n = sum(1 for h in range(planner.prob.n_hosts) if planner.occ[h] and (scope is None or h in scope))
        return n + 1 <= amount


@register("overbook")
@dataclass
class Overbook(Constraint):
    resource: str = "cpu"
    ratio: float = 1.0

    REQUIRED = ("resource", "ratio")
    OPTIONAL = ("hosts",)
    HAS_CONTINUOUS = False

    @classmethod
    def parse_fields(cls, where: str, raw: dict, host_index: dict[str, int], vm_index: dict[str, int]) -> dict:
        kwargs = super().parse_fields(where, raw, host_index, vm_index)
        kwargs["resource"] = _resource(where, raw)
        kwargs["ratio"] = float(_num(where, raw, "ratio", positive=True))
        return kwargs

    def _detail(self) -> str:
        return f" {self.resource} x{self.ratio:g}" + (f" on {_short(self.hosts)}" if self.hosts else "")

    def adjust_capacity(self, host: str, resource: str, cap: float) -> float:
        if resource == self.resource and (not self.hosts or host in self.hosts):
            return cap * self.ratio
        return cap


@dataclass
class _ResourceAmount(Constraint):
    """Base of the constraints that set an amount of one resource."""
    resource: str = "cpu"
    amount: float = 0.0

    HAS_CONTINUOUS = False

    @classmethod
    def parse_fields(cls, where: str, raw: dict, host_index: dict[str, int], vm_index: dict[str, int]) -> dict:
        kwargs = super().parse_fields(where, raw, host_index, vm_index)
        kwargs["resource"] = _resource(where, raw)
        kwargs["amount"] = float(_num(where, raw, "amount"))
        return kwargs


@register("capacity")
@dataclass
class Capacity(_ResourceAmount):
    REQUIRED = ("resource", "amount", "hosts")

    def _detail(self) -> str:
        return f" {self.resource} <= {self.amount:g} on {_short(self.hosts)}"

    def adjust_capacity(self, host: str, resource: str, cap: float) -> float:
        if resource == self.resource and host in self.hosts:
            return min(cap, self.amount)
        return cap


@register("preserve")
@dataclass
class Preserve(_ResourceAmount):
    REQUIRED = ("vms", "resource", "amount")

    def _detail(self) -> str:
        return f" {self.amount:g} {self.resource} for {_short(self.vms)}"

    def adjust_demand(self, vm: str, resource: str, dem: float) -> float:
        if resource == self.resource and vm in self.vms:
            return max(dem, self.amount)
        return dem


@register("among")
@dataclass
class Among(Constraint):
    """BtrPlace Among: the VMs all run inside ONE of the host groups (which one is the solver's choice).

    Continuous: the VMs never leave the group they are in at the start (a migration between groups
    would put them in two at once), so the solver keeps them there and the planner needs no guard.
    """
    groups: tuple[tuple[str, ...], ...] = ()

    REQUIRED = ("vms", "groups")

    @classmethod
    def parse_fields(cls, where: str, raw: dict, host_index: dict[str, int], vm_index: dict[str, int]) -> dict:
        kwargs = super().parse_fields(where, raw, host_index, vm_index)
        kwargs["groups"] = _groups(where, raw, host_index, "host")
        return kwargs

    def _detail(self) -> str:
        return f" {_short(self.vms)} in one of {len(self.groups)} host groups"

    def _group_of(self) -> dict[str, int]:
        return {h: g for g, group in enumerate(self.groups) for h in group}

    def _violations(self, used: dict[str, set[str]]) -> list[str]:
        """`used`: vm -> hosts it occupies."""
        group_of = self._group_of()
        errors = []
        seen: dict[int, str] = {}
        for v in self.vms:
            for h in sorted(used.get(v, ())):
                g = group_of.get(h)
                if g is None:
                    errors.append(f"{self.describe()}: vm {v!r} is on {h!r}, in none of the groups")
                else:
                    seen.setdefault(g, v)
        if len(seen) > 1:
            parts = ", ".join(f"{v!r} in groups[{g}]" for g, v in sorted(seen.items()))
            errors.append(f"{self.describe()}: vms are in more than one group ({parts})")
        return errors

    def check_final(self, model: Any, placement: Placement) -> list[str]:
        return self._violations({v: {placement[v]} for v in self.vms if v in placement})

    def check_state(self, model: Any, state: State) -> list[str]:
        return self._violations(state)

    # data: (group index of each host in a group, member VM indices)
    def compile(self, b: Any) -> Any:
        prob = b.prob
        members = self._members(prob)
        if not members:
            return None
        hidx = prob.model.host_index
        group_of = {hidx[h]: g for g, group in enumerate(self.groups) for h in group}
        start = {group_of.get(prob.init[j]) for j in members}
        if self.continuous and len(start) == 1 and None not in start:
            (g0,) = start
            b.restrict(members, {h for h, g in group_of.items() if g == g0})
        else:
            b.restrict(members, set(group_of))
        b.watch(members, self, (group_of, members))
        return group_of, members

    def fits(self, st: Any, data: Any, j: int, h: int) -> bool:
        group_of, members = data
        g = group_of.get(h)
        if g is None:
            return False
        for k in members:
            at = st.host_of[k]
            if k != j and at >= 0 and group_of.get(at) != g:
                return False
        return True

    def encode(self, enc: Any, data: Any) -> None:
        """One boolean per group, exactly one chosen; a member on a host implies that host's group."""
        group_of, members = data
        if not any(j in enc.free_set for j in members):
            return   # the sub-model moves none of them: whatever group they are in stays
        st, model = enc.st, enc.model
        n_groups = len(self.groups)
        chosen = [model.NewBoolVar("") for _unused in range(n_groups)]
        model.AddExactlyOne(chosen)
        for j in members:
            if j in enc.free_set:
                for h in enc.hosts:
                    var = enc.x.get((j, h))
                    if var is None:
                        continue
                    g = group_of.get(h)
                    if g is None:
                        model.Add(var == 0)
                    else:
                        model.AddImplication(var, chosen[g])
            elif st.host_of[j] >= 0:
                g = group_of.get(st.host_of[j])
                if g is None:
                    model.AddBoolOr([])   # a fixed member outside every group: this sub-model cannot hold
                else:
                    model.Add(chosen[g] == 1)

    def narrow(self, prob: Any, j: int, hosts: set[int]) -> set[int] | None:
        if prob.vm_names[j] not in self.vms:
            return None
        return hosts & {h for group in self.groups for h in self._host_ids(prob, group)}

    def diagnose(self, prob: Any, data: Any) -> list[str]:
        group_of, members = data
        cpu = sum(prob.cpu[j] for j in members)
        mem = sum(prob.mem[j] for j in members)
        for g in range(len(self.groups)):
            hosts = {h for h, k in group_of.items() if k == g and prob.usable[h]}
            for j in members:
                hosts &= set(prob.hosts_of(j))
            if hosts and cpu <= sum(prob.cap_cpu[h] for h in hosts) and mem <= sum(prob.cap_mem[h] for h in hosts):
                return []
        return [f"{self.describe()}: no group of hosts can take all its vms (together {cpu / CPU_SCALE:g} cpu "
                f"and {gib(mem)})"]


@register("split")
@dataclass
class Split(Constraint):
    """BtrPlace Split: VMs of different groups never share a host (VMs of one group may).

    Continuous: also while migrating (a VM occupies both ends), so the planner guards each move.
    """
    groups: tuple[tuple[str, ...], ...] = ()

    REQUIRED = ("groups",)

    @classmethod
    def parse_fields(cls, where: str, raw: dict, host_index: dict[str, int], vm_index: dict[str, int]) -> dict:
        groups = _groups(where, raw, vm_index, "vm", at_least=2)
        return {"groups": groups, "vms": tuple(v for group in groups for v in group)}

    def _detail(self) -> str:
        return f" {len(self.groups)} vm groups " + " / ".join(_short(g, 2) for g in self.groups[:3]) + \
            (" / ..." if len(self.groups) > 3 else "")

    def check_final(self, model: Any, placement: Placement) -> list[str]:
        return self.check_state(model, {v: {placement[v]} for v in self.vms if v in placement})

    def check_state(self, model: Any, state: State) -> list[str]:
        first: dict[str, tuple[int, str]] = {}   # host -> (group, vm) seen first
        errors = []
        for g, group in enumerate(self.groups):
            for v in group:
                for h in sorted(state.get(v, ())):
                    other = first.setdefault(h, (g, v))
                    if other[0] != g:
                        errors.append(f"{self.describe()}: vms {other[1]!r} and {v!r} of different groups "
                                      f"share host {h!r}")
        return errors

    # data: group index of each member VM
    def compile(self, b: Any) -> Any:
        pos = b.prob.vm_pos
        group_of = {pos[v]: g for g, group in enumerate(self.groups) for v in group if v in pos}
        if len(set(group_of.values())) < 2:
            return None
        b.watch(list(group_of), self, group_of)
        return group_of

    def fits(self, st: Any, data: Any, j: int, h: int) -> bool:
        g = data[j]
        return all(data.get(k, g) == g for k in st.members[h])

    def encode(self, enc: Any, data: Any) -> None:
        """On each host, at most one group is present."""
        st, model = enc.st, enc.model
        for h in enc.hosts:
            present: dict[int, Any] = {}
            for j in st.members[h]:
                if j in data and j not in enc.free_set:
                    present[data[j]] = 1
            free: dict[int, list[int]] = {}
            for j in enc.by_host[h]:
                if j in data:
                    free.setdefault(data[j], []).append(j)
            if len(set(present) | set(free)) < 2:
                continue
            for g, js in sorted(free.items()):
                if g in present:
                    continue
                b = model.NewBoolVar("")
                for j in js:
                    model.AddImplication(enc.x[j, h], b)
                present[g] = b
            model.Add(sum(present.values()) <= 1)

    def guard(self, planner: Any, step: Any, j: int, d: int, data: Any) -> bool:
        g = data.get(j)
        return g is None or all(data.get(k, g) == g for k in planner.occ[d])

    def diagnose(self, prob: Any, data: Any) -> list[str]:
        mine = {prob.vm_names[j]: g for j, g in data.items()}
        return [f"{other.describe()} conflicts with {self.describe()}"
                for other in prob.model.constraints
                if isinstance(other, Gather) and len({mine[v] for v in other.vms if v in mine}) > 1]


def parse_constraint(idx: int, raw: Any, host_index: dict[str, int], vm_index: dict[str, int]) -> Constraint:
    where = f"constraints[{idx}]"
    if not isinstance(raw, dict):
        raise ModelError(f"{where}: must be an object, got {type(raw).__name__}")
    kind = raw.get("type")
    cls = _REGISTRY.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ModelError(f"{where}: unknown constraint type {kind!r} (known: {', '.join(constraint_types())})")
    where = f"{where} ({kind})"
    allowed = ("type",) + cls.REQUIRED + cls.OPTIONAL + (("continuous",) if cls.HAS_CONTINUOUS else ())
    extra = sorted(str(k) for k in raw if k not in allowed)
    if extra:
        raise ModelError(f"{where}: unknown field(s) {', '.join(repr(k) for k in extra)}")
    for key in cls.REQUIRED:
        if key not in raw:
            raise ModelError(f"{where}: missing field {key!r}")
    cont = raw.get("continuous", False)
    if not isinstance(cont, bool):
        raise ModelError(f"{where}: field 'continuous' must be a boolean, got {cont!r}")
    fields = cls.parse_fields(where, raw, host_index, vm_index)
    return cls(index=idx, kind=kind, continuous=cont or cls.ALWAYS_CONTINUOUS, **fields)


CONSTRAINT_TYPES = constraint_types()
