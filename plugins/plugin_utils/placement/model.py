"""Parse and validate a placement model (JSON version 1) into dataclasses.

Every error names the offending entry so an operator can fix the input without a traceback.
Names are tenant data: they are only compared and echoed with repr(), never interpreted.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

from .constraints import Constraint, parse_constraint
from .errors import ModelError
from .migration import NON_CONVERGING
from .network import parse_network

MODEL_VERSION = 1
MODEL_VERSIONS = (1, 2)   # version 2 adds the network model (network.py)
NETWORK_HOST_FIELDS = ("net_mbps", "rack")
NETWORK_VM_FIELDS = ("net_mbps", "dirty_mib_s")
NETWORK_TOP_FIELDS = ("racks", "traffic")
HOST_STATES = ("online", "offline")
VM_STATES = ("running", "paused", "saved", "stopped")
# States whose VM holds memory on its host (paused keeps its RAM, consumes no cpu).
ACTIVE_STATES = ("running", "paused")
OBJECTIVES = ("consolidate", "repair", "balance", "schedule")
MAX_WORKERS = 2


@dataclass(frozen=True)
class Host:
    name: str
    cpu: float
    memory_mib: int
    state: str = "online"
    cluster: str | None = None     # the cluster of a grid (placement/grid.py solves each cluster on its own)
    net_mbps: float | None = None  # version 2: NIC capacity (None = unlimited)
    rack: str | None = None        # version 2: the rack whose uplink the host shares
    site: str | None = None        # the site of the host's cluster (informational)


@dataclass(frozen=True)
class VM:
    name: str
    host: str | None
    state: str
    cpu: float
    memory_mib: int
    vcpus: int | None = None
    priority: int | None = None    # higher runs first (objective schedule); None = 0
    net_mbps: float | None = None  # version 2: own network rate (rx + tx)
    dirty_mib_s: float | None = None   # version 2: memory dirtying rate; carried for migration scheduling
    disk_mib: int | None = None    # disk size: what a move between clusters (no shared storage) copies besides memory

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def cpu_demand(self) -> float:
        return self.cpu if self.state == "running" else 0.0

    @property
    def memory_demand(self) -> int:
        return self.memory_mib if self.active else 0


@dataclass
class Options:
    objective: str = "consolidate"
    time_limit_s: float = 30.0
    seed: int = 0
    workers: int = 1
    bandwidth_mib_s: float = 1000.0
    max_migrations: int | None = None
    max_memory_moved_mib: int | None = None
    max_parallel_migrations_per_host: int | None = None
    min_gain_hosts: int = 0
    max_iterations: int | None = None
    allow_suspend: bool = True
    cross_rack_mbps_per_host: float | None = None   # network: traffic worth one more host (None = hosts first)
    # migration durations and link caps (migration.py)
    migration_setup_s: float = 1.0
    migration_memory_share: float = 1.0
    migration_efficiency: float = 1.0
    migration_max_downtime_ms: float = 300.0
    migration_link_share: float = 1.0
    non_converging: str = "postcopy"


@dataclass
class Model:
    hosts: list[Host]
    vms: list[VM]
    constraints: list[Constraint] = field(default_factory=list)
    options: Options = field(default_factory=Options)
    host_index: dict[str, int] = field(default_factory=dict)
    vm_index: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def host(self, name: str) -> Host:
        return self.hosts[self.host_index[name]]

    def vm(self, name: str) -> VM:
        return self.vms[self.vm_index[name]]

    def capacity(self, host: str, resource: str) -> float:
        """Usable capacity after overbook and capacity constraints (the same rule the checker uses)."""
        h = self.host(host)
        cap = float(h.cpu if resource == "cpu" else h.memory_mib)
        for con in self.constraints:
            cap = con.adjust_capacity(host, resource, cap)
        return cap

    def demand(self, vm: str, resource: str, running: bool = False) -> float:
        """Demand of a VM on its host, raised by preserve constraints; 0 for a VM that is not running
        unless `running` (a VM a plan starts or resumes)."""
        v = self.vm(vm)
        if not v.active and not running:
            return 0.0
        if v.active:
            dem = float(v.cpu_demand if resource == "cpu" else v.memory_demand)
        else:  # what it will use once it runs
            dem = float(v.cpu if resource == "cpu" else v.memory_mib)
        for con in self.constraints:
            dem = con.adjust_demand(vm, resource, dem)
        return dem


def _where(kind: str, idx: int, raw: Any) -> str:
    name = raw.get("name") if isinstance(raw, dict) else None
    return f"{kind}[{idx}] (name {name!r})" if isinstance(name, str) else f"{kind}[{idx}]"


def _number(where: str, raw: dict, key: str, default: Any = None, integer: bool = False,
            positive: bool = False, required: bool = True) -> Any:
    if key not in raw or raw[key] is None:
        if required and default is None:
            raise ModelError(f"{where}: missing field {key!r}")
        return default
    val = raw[key]
    kind = "integer" if integer else "number"
    ok = isinstance(val, int) if integer else isinstance(val, (int, float))
    ok = ok and not isinstance(val, bool) and math.isfinite(val)
    if ok:
        ok = val > 0 if positive else val >= 0
    if not ok:
        sign = "positive" if positive else "non-negative"
        raise ModelError(f"{where}: field {key!r} must be a {sign} {kind}, got {val!r}")
    return val


def _string(where: str, raw: dict, key: str, choices: tuple[str, ...] | None = None,
            default: str | None = None, nullable: bool = False) -> Any:
    if key not in raw or (raw[key] is None and default is not None):
        if default is not None or nullable:
            return default
        raise ModelError(f"{where}: missing field {key!r}")
    val = raw[key]
    if val is None and nullable:
        return None
    if not isinstance(val, str) or not val:
        raise ModelError(f"{where}: field {key!r} must be a non-empty string, got {val!r}")
    if choices is not None and val not in choices:
        raise ModelError(f"{where}: field {key!r} must be one of {', '.join(choices)}, got {val!r}")
    return val


def _integer(where: str, raw: dict, key: str) -> int | None:
    """An optional integer of either sign."""
    val = raw.get(key)
    if val is not None and (not isinstance(val, int) or isinstance(val, bool)):
        raise ModelError(f"{where}: field {key!r} must be an integer, got {val!r}")
    return val


def _no_unknown(where: str, raw: dict, allowed: tuple[str, ...]) -> None:
    extra = sorted(str(k) for k in raw if k not in allowed)
    if extra:
        raise ModelError(f"{where}: unknown field(s) {', '.join(repr(k) for k in extra)}")


def _version_2(where: str, raw: dict, keys: tuple[str, ...], version: int) -> None:
    for key in keys:
        if version < 2 and key in raw:
            raise ModelError(f"{where}: field {key!r} needs model version 2; set \"version\": 2 at the top of the model")


def _parse_host(idx: int, raw: Any, version: int = 1) -> Host:
    where = _where("hosts", idx, raw)
    if not isinstance(raw, dict):
        raise ModelError(f"{where}: must be an object, got {type(raw).__name__}")
    _version_2(where, raw, NETWORK_HOST_FIELDS, version)
    _no_unknown(where, raw, ("name", "cpu", "memory_mib", "state", "cluster", "site") + NETWORK_HOST_FIELDS)
    return Host(name=_string(where, raw, "name"),
                cpu=float(_number(where, raw, "cpu")),
                memory_mib=_number(where, raw, "memory_mib", integer=True),
                state=_string(where, raw, "state", HOST_STATES, default="online"),
                cluster=_string(where, raw, "cluster", nullable=True),
                net_mbps=_optional_float(where, raw, "net_mbps"),
                rack=_string(where, raw, "rack", nullable=True),
                site=_string(where, raw, "site", nullable=True))


def _optional_float(where: str, raw: dict, key: str) -> float | None:
    val = _number(where, raw, key, required=False)
    return None if val is None else float(val)


def _parse_vm(idx: int, raw: Any, version: int = 1) -> VM:
    where = _where("vms", idx, raw)
    if not isinstance(raw, dict):
        raise ModelError(f"{where}: must be an object, got {type(raw).__name__}")
    _version_2(where, raw, NETWORK_VM_FIELDS, version)
    _no_unknown(where, raw, ("name", "host", "state", "vcpus", "cpu", "memory_mib", "priority", "disk_mib") + NETWORK_VM_FIELDS)
    state = _string(where, raw, "state", VM_STATES, default="running")
    vcpus = _number(where, raw, "vcpus", integer=True, positive=True, required=False)
    cpu = raw.get("cpu")
    if cpu is None and vcpus is not None:
        cpu = vcpus  # no measurement: assume every vcpu is busy
    elif cpu is None and state not in ACTIVE_STATES:
        cpu, vcpus = 0.0, 1  # a saved or stopped VM uses no cpu: nothing to measure
    elif cpu is None:
        raise ModelError(f"{where}: missing field 'cpu' (or 'vcpus'): only a saved or stopped VM may leave both out")
    else:
        cpu = _number(where, raw, "cpu")
    return VM(name=_string(where, raw, "name"),
              host=_string(where, raw, "host", nullable=state not in ACTIVE_STATES),
              state=state, cpu=float(cpu),
              memory_mib=_number(where, raw, "memory_mib", integer=True), vcpus=vcpus,
              priority=_integer(where, raw, "priority"),
              net_mbps=_optional_float(where, raw, "net_mbps"),
              dirty_mib_s=_optional_float(where, raw, "dirty_mib_s"),
              disk_mib=_number(where, raw, "disk_mib", integer=True, required=False))


def _parse_options(raw: Any) -> Options:
    if raw is None:
        return Options()
    if not isinstance(raw, dict):
        raise ModelError(f"options: must be an object, got {type(raw).__name__}")
    _no_unknown("options", raw, tuple(f.name for f in fields(Options)))
    opt = Options()
    opt.objective = _string("options", raw, "objective", OBJECTIVES, default=opt.objective)
    opt.time_limit_s = float(_number("options", raw, "time_limit_s", default=opt.time_limit_s, positive=True))
    opt.seed = _number("options", raw, "seed", default=opt.seed, integer=True)
    opt.workers = _number("options", raw, "workers", default=opt.workers, integer=True, positive=True)
    if opt.workers > MAX_WORKERS:
        raise ModelError(f"options: field 'workers' must be at most {MAX_WORKERS}, got {opt.workers!r}")
    opt.bandwidth_mib_s = float(_number("options", raw, "bandwidth_mib_s", default=opt.bandwidth_mib_s, positive=True))
    for key in ("max_migrations", "max_memory_moved_mib"):
        setattr(opt, key, _number("options", raw, key, integer=True, required=False))
    opt.max_parallel_migrations_per_host = _number("options", raw, "max_parallel_migrations_per_host",
                                                   integer=True, positive=True, required=False)
    opt.min_gain_hosts = _number("options", raw, "min_gain_hosts", default=0, integer=True, required=False)
    opt.max_iterations = _number("options", raw, "max_iterations", integer=True, required=False)
    allow = raw.get("allow_suspend", True)
    if not isinstance(allow, bool):
        raise ModelError(f"options: field 'allow_suspend' must be a boolean, got {allow!r}")
    opt.allow_suspend = allow
    weight = _number("options", raw, "cross_rack_mbps_per_host", required=False)
    opt.cross_rack_mbps_per_host = None if weight is None else float(weight)
    _parse_migration_options(raw, opt)
    return opt


def _parse_migration_options(raw: dict, opt: Options) -> None:
    opt.migration_setup_s = float(_number("options", raw, "migration_setup_s", default=opt.migration_setup_s))
    opt.migration_max_downtime_ms = float(_number("options", raw, "migration_max_downtime_ms",
                                                  default=opt.migration_max_downtime_ms, positive=True))
    for key in ("migration_memory_share", "migration_efficiency", "migration_link_share"):
        val = float(_number("options", raw, key, default=getattr(opt, key), positive=True))
        if val > 1:
            raise ModelError(f"options: field {key!r} must be a fraction in (0, 1], got {val!r}")
        setattr(opt, key, val)
    opt.non_converging = _string("options", raw, "non_converging", NON_CONVERGING, default=opt.non_converging)


def _names(kind: str, items: list) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, item in enumerate(items):
        if item.name in index:
            raise ModelError(f"{kind}[{i}] (name {item.name!r}): duplicate name, already used by {kind}[{index[item.name]}]")
        index[item.name] = i
    return index


def load_model(raw: Any, **overrides: Any) -> Model:
    """Validate a model dict (already parsed JSON) and return a Model.

    `overrides` replace entries of `options` (e.g. objective="repair") and are validated the same way.
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if isinstance(raw, Model):
        if not overrides:
            return raw
        merged = dict(raw.options.__dict__)
        merged.update(overrides)
        return replace(raw, options=_parse_options(merged))   # the caller's Model is left as it was
    if not isinstance(raw, dict):
        raise ModelError(f"model: must be a JSON object, got {type(raw).__name__}")
    _no_unknown("model", raw, ("version", "hosts", "vms", "constraints", "options", "warnings") + NETWORK_TOP_FIELDS)
    version = raw.get("version")
    if isinstance(version, bool) or version not in MODEL_VERSIONS:
        raise ModelError(f"model: field 'version' must be 1 or 2 (2 for the network fields), got {version!r}")
    _version_2("model", raw, NETWORK_TOP_FIELDS, version)
    for key in ("hosts", "vms"):
        if not isinstance(raw.get(key), list):
            raise ModelError(f"model: field {key!r} must be a list, got {type(raw.get(key)).__name__}")
    hosts = [_parse_host(i, h, version) for i, h in enumerate(raw["hosts"])]
    vms = [_parse_vm(i, v, version) for i, v in enumerate(raw["vms"])]
    host_index = _names("hosts", hosts)
    vm_index = _names("vms", vms)
    for i, vm in enumerate(vms):
        if vm.host is None:
            continue
        if vm.host not in host_index:
            raise ModelError(f"vms[{i}] (name {vm.name!r}): unknown host {vm.host!r}")
        if vm.active and hosts[host_index[vm.host]].state != "online":
            raise ModelError(f"vms[{i}] (name {vm.name!r}): {vm.state} on offline host {vm.host!r}")
    raw_cons = raw.get("constraints") or []
    if not isinstance(raw_cons, list):
        raise ModelError(f"model: field 'constraints' must be a list, got {type(raw_cons).__name__}")
    constraints = [parse_constraint(i, c, host_index, vm_index) for i, c in enumerate(raw_cons)]
    network = parse_network(raw, hosts, vms, vm_index, len(constraints)) if version >= 2 else None
    if network is not None:
        constraints.append(network)   # implicit: NICs and uplinks are checked like any constraint
    options = dict(raw.get("options") or {}) if isinstance(raw.get("options") or {}, dict) else raw.get("options")
    if overrides and isinstance(options, dict):
        options.update(overrides)
    warnings = raw.get("warnings") or []
    if not isinstance(warnings, list) or not all(isinstance(w, str) for w in warnings):
        raise ModelError("model: field 'warnings' must be a list of strings")
    return Model(hosts=hosts, vms=vms, constraints=constraints, options=_parse_options(options),
                 host_index=host_index, vm_index=vm_index, warnings=list(warnings))
