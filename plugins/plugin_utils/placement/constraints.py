"""Placement constraints: parsing, and checkers that do not depend on the solver.

`check_final` judges the final placement (discrete semantics); `check_state` judges one intermediate
state of a plan and is only consulted for constraints flagged `continuous`. A state maps each active
VM to the set of hosts it occupies (two during a migration).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .errors import ModelError

RESOURCES = ("cpu", "memory")
Placement = dict  # vm name -> host name (active VMs only)
State = dict  # vm name -> set of host names


def _short(names: list[str] | tuple[str, ...], limit: int = 3) -> str:
    shown = ", ".join(repr(n) for n in list(names)[:limit])
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return f"[{shown}{more}]"


@dataclass
class Constraint:
    index: int
    kind: str
    continuous: bool = False
    vms: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()

    def describe(self) -> str:
        return f"constraint #{self.index} ({self.kind}{self._detail()})"

    def _detail(self) -> str:
        parts = []
        if self.vms:
            parts.append(_short(self.vms))
        if self.hosts:
            parts.append(_short(self.hosts))
        return " " + " on ".join(parts) if parts else ""

    # Hooks used by the model and the solver; defaults do nothing.
    def adjust_capacity(self, host: str, resource: str, cap: float) -> float:  # pylint: disable=unused-argument
        return cap

    def adjust_demand(self, vm: str, resource: str, dem: float) -> float:  # pylint: disable=unused-argument
        return dem

    def allowed(self, vm: str) -> frozenset | None:  # pylint: disable=unused-argument
        """Hosts this constraint lets `vm` end on (None = no restriction)."""
        return None

    def forbidden_hosts(self) -> frozenset:
        """Hosts no active VM may end on."""
        return frozenset()

    def check_final(self, model: Any, placement: Placement) -> list[str]:  # pylint: disable=unused-argument
        return []

    def check_state(self, model: Any, state: State) -> list[str]:  # pylint: disable=unused-argument
        return []


@dataclass
class Ban(Constraint):
    def _detail(self) -> str:
        return f" {_short(self.vms)} from {_short(self.hosts)}"

    def allowed(self, vm: str) -> frozenset | None:
        return None

    def banned(self, vm: str) -> frozenset:
        return frozenset(self.hosts) if vm in self.vms else frozenset()

    def check_final(self, model: Any, placement: Placement) -> list[str]:
        return [f"{self.describe()}: vm {v!r} is on banned host {placement[v]!r}"
                for v in self.vms if placement.get(v) in self.hosts]

    def check_state(self, model: Any, state: State) -> list[str]:
        return [f"{self.describe()}: vm {v!r} occupies banned host {h!r}"
                for v in self.vms for h in sorted(state.get(v, ())) if h in self.hosts]


@dataclass
class Fence(Constraint):
    def _detail(self) -> str:
        return f" {_short(self.vms)} to {_short(self.hosts)}"

    def allowed(self, vm: str) -> frozenset | None:
        return frozenset(self.hosts) if vm in self.vms else None

    def check_final(self, model: Any, placement: Placement) -> list[str]:
        return [f"{self.describe()}: vm {v!r} is on {placement[v]!r}, outside the fence"
                for v in self.vms if v in placement and placement[v] not in self.hosts]

    def check_state(self, model: Any, state: State) -> list[str]:
        return [f"{self.describe()}: vm {v!r} occupies {h!r}, outside the fence"
                for v in self.vms for h in sorted(state.get(v, ())) if h not in self.hosts]


@dataclass
class Spread(Constraint):
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


@dataclass
class Gather(Constraint):
    def check_final(self, model: Any, placement: Placement) -> list[str]:
        hosts = sorted({placement[v] for v in self.vms if v in placement})
        return [f"{self.describe()}: vms are split over hosts {_short(hosts)}"] if len(hosts) > 1 else []

    def check_state(self, model: Any, state: State) -> list[str]:
        # Continuous gather: the group never spans two hosts, so members may only move together.
        hosts = sorted(set().union(*(state.get(v, set()) for v in self.vms)))
        return [f"{self.describe()}: vms are spread over hosts {_short(hosts)}"] if len(hosts) > 1 else []


@dataclass
class Lonely(Constraint):
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


@dataclass
class Root(Constraint):
    def check_final(self, model: Any, placement: Placement) -> list[str]:
        return [f"{self.describe()}: vm {v!r} moved from {model.vm(v).host!r} to {placement[v]!r}"
                for v in self.vms if v in placement and placement[v] != model.vm(v).host]

    def check_state(self, model: Any, state: State) -> list[str]:
        return [f"{self.describe()}: vm {v!r} occupies {h!r}"
                for v in self.vms for h in sorted(state.get(v, ())) if h != model.vm(v).host]


@dataclass
class Offline(Constraint):
    def forbidden_hosts(self) -> frozenset:
        return frozenset(self.hosts)

    def check_final(self, model: Any, placement: Placement) -> list[str]:
        return [f"{self.describe()}: vm {v!r} is still on {h!r}"
                for v, h in sorted(placement.items()) if h in self.hosts]


@dataclass
class MaxOnline(Constraint):
    amount: int = 0

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


@dataclass
class Overbook(Constraint):
    resource: str = "cpu"
    ratio: float = 1.0

    def _detail(self) -> str:
        return f" {self.resource} x{self.ratio:g}" + (f" on {_short(self.hosts)}" if self.hosts else "")

    def adjust_capacity(self, host: str, resource: str, cap: float) -> float:
        if resource == self.resource and (not self.hosts or host in self.hosts):
            return cap * self.ratio
        return cap


@dataclass
class Capacity(Constraint):
    resource: str = "cpu"
    amount: float = 0.0

    def _detail(self) -> str:
        return f" {self.resource} <= {self.amount:g} on {_short(self.hosts)}"

    def adjust_capacity(self, host: str, resource: str, cap: float) -> float:
        if resource == self.resource and host in self.hosts:
            return min(cap, self.amount)
        return cap


@dataclass
class Preserve(Constraint):
    resource: str = "cpu"
    amount: float = 0.0

    def _detail(self) -> str:
        return f" {self.amount:g} {self.resource} for {_short(self.vms)}"

    def adjust_demand(self, vm: str, resource: str, dem: float) -> float:
        if resource == self.resource and vm in self.vms:
            return max(dem, self.amount)
        return dem


def _names(where: str, raw: dict, key: str, index: dict[str, int], what: str, required: bool = True) -> tuple[str, ...]:
    val = raw.get(key)
    if val is None and not required:
        return ()
    if not isinstance(val, list) or not val or not all(isinstance(x, str) for x in val):
        raise ModelError(f"{where}: field {key!r} must be a non-empty list of {what} names, got {val!r}")
    for name in val:
        if name not in index:
            raise ModelError(f"{where}: unknown {what} {name!r}")
    if len(set(val)) != len(val):
        raise ModelError(f"{where}: field {key!r} lists a {what} twice")
    return tuple(val)


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


# type -> (class, required keys, optional keys, has continuous flag)
_SPEC: dict[str, tuple[Callable[..., Constraint], tuple[str, ...], tuple[str, ...], bool]] = {
    "ban": (Ban, ("vms", "hosts"), (), True),
    "fence": (Fence, ("vms", "hosts"), (), True),
    "spread": (Spread, ("vms",), (), True),
    "gather": (Gather, ("vms",), (), True),
    "lonely": (Lonely, ("vms",), (), True),
    "root": (Root, ("vms",), (), False),
    "offline": (Offline, ("hosts",), (), False),
    "max_online": (MaxOnline, ("amount",), ("hosts",), True),
    "overbook": (Overbook, ("resource", "ratio"), ("hosts",), False),
    "capacity": (Capacity, ("resource", "amount", "hosts"), (), False),
    "preserve": (Preserve, ("vms", "resource", "amount"), (), False),
}
CONSTRAINT_TYPES = tuple(_SPEC)


def parse_constraint(idx: int, raw: Any, host_index: dict[str, int], vm_index: dict[str, int]) -> Constraint:
    where = f"constraints[{idx}]"
    if not isinstance(raw, dict):
        raise ModelError(f"{where}: must be an object, got {type(raw).__name__}")
    kind = raw.get("type")
    if kind not in _SPEC:
        raise ModelError(f"{where}: unknown constraint type {kind!r} (known: {', '.join(CONSTRAINT_TYPES)})")
    where = f"{where} ({kind})"
    cls, required, optional, has_flag = _SPEC[kind]
    allowed = ("type",) + required + optional + (("continuous",) if has_flag else ())
    extra = sorted(str(k) for k in raw if k not in allowed)
    if extra:
        raise ModelError(f"{where}: unknown field(s) {', '.join(repr(k) for k in extra)}")
    for key in required:
        if key not in raw:
            raise ModelError(f"{where}: missing field {key!r}")
    cont = raw.get("continuous", False)
    if not isinstance(cont, bool):
        raise ModelError(f"{where}: field 'continuous' must be a boolean, got {cont!r}")
    kwargs: dict[str, Any] = {"index": idx, "kind": kind, "continuous": cont or kind == "root"}
    if "vms" in required:
        kwargs["vms"] = _names(where, raw, "vms", vm_index, "vm")
    if "hosts" in required + optional:
        kwargs["hosts"] = _names(where, raw, "hosts", host_index, "host", required="hosts" in required)
    if "resource" in required:
        kwargs["resource"] = _resource(where, raw)
    if kind == "max_online":
        kwargs["amount"] = _num(where, raw, "amount", integer=True)
    elif kind == "overbook":
        kwargs["ratio"] = float(_num(where, raw, "ratio", positive=True))
    elif kind in ("capacity", "preserve"):
        kwargs["amount"] = float(_num(where, raw, "amount"))
    if kind in ("spread",) and len(kwargs["vms"]) < 2:
        raise ModelError(f"{where}: field 'vms' needs at least 2 vms")
    return cls(**kwargs)
