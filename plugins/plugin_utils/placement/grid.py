"""Partitioned solving of a grid of clusters: one sub-problem per cluster, solved in parallel processes.

The model's hosts carry `cluster`. Two levels:

1. The grid level (here, greedy and cheap) looks at each cluster's aggregate cpu and memory. A cluster
   whose demand exceeds `fill_limit` of its capacity (overloaded, or short of room) sheds VMs to
   clusters with room; each move costs the VM's memory plus its disk (`disk_mib`: clusters do not
   share storage, the disk is copied too), and the cheapest moves per unit of relief go first. These
   moves make the plan's first step, each straight onto a host of the receiving cluster with room
   for it as the cluster stands.
2. Each cluster, with its new VM set, is solved by `solve` on its own (constraints that name only its
   hosts and VMs, or none), in worker processes (at most `workers`, at most the cores). The
   clusters' steps are merged index by index after the grid step: clusters share no host, so their
   steps run side by side.

The plan is the union; `check_plan` on the whole model checks it like any plan.
"""
from __future__ import annotations

import concurrent.futures
import itertools
import math
import multiprocessing
import os
import time
from typing import Any, Callable

from .errors import InfeasibleError, ModelError, PlacementError
from .model import Model, load_model
from .solver import PLAN_VERSION, solve

# Share of a cluster's cpu and memory capacity its demand may fill before the grid level sheds VMs.
FILL_LIMIT = 0.9
# Worker processes by default (the machine's cores bound it too).
WORKERS = 2
# Cluster name of hosts without `cluster`.
NO_CLUSTER = ""
_STATUS_ORDER = ("optimal", "unchanged", "feasible")


def clusters_of(model: Model) -> dict[str, list[str]]:
    """Cluster name -> its host names (hosts without `cluster` form the cluster '')."""
    out: dict[str, list[str]] = {}
    for h in model.hosts:
        out.setdefault(h.cluster or NO_CLUSTER, []).append(h.name)
    return out


def solve_grid(raw: dict, workers: int = WORKERS, fill_limit: float = FILL_LIMIT,
               progress: Callable[[str], None] | None = None, **overrides: Any) -> dict:
    """Plan for a grid: the model (a dict, JSON version 1) whose hosts carry `cluster`.

    `options.time_limit_s` is the whole budget: the clusters are solved in rounds of `workers`
    processes, each cluster with an equal share. Budgets (max_migrations, ...) apply per cluster.
    Raises ModelError, InfeasibleError, PlacementError like `solve`, naming the cluster.
    """
    t0 = time.monotonic()
    if not isinstance(raw, dict):
        raise ModelError(f"model: must be a JSON object, got {type(raw).__name__}")
    model = load_model(raw, **overrides)
    if raw.get("version") != 1:
        raise ModelError("model: solve_grid takes model version 1 (the network model of version 2 is not partitioned yet); "
                         "use solve for one cluster")
    if model.options.objective == "schedule":
        raise ModelError("options: objective 'schedule' is not partitioned by solve_grid yet; use solve for one cluster")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ModelError(f"solve_grid: workers must be a positive integer, got {workers!r}")
    if not (isinstance(fill_limit, (int, float)) and 0 < fill_limit <= 1):
        raise ModelError(f"solve_grid: fill_limit must be a number in (0, 1], got {fill_limit!r}")
    clusters = clusters_of(model)
    host_cluster = {h: c for c, hs in clusters.items() for h in hs}
    scoped, pinned = _scope_constraints(raw, model, host_cluster)
    grid = _Grid(model, clusters, host_cluster, pinned, fill_limit)
    moves = grid.shed()
    if progress:
        progress(f"grid: {len(clusters)} clusters, {len(moves)} VMs move between clusters")
    subs = _sub_models(raw, model, clusters, host_cluster, grid.where, scoped, overrides, workers)
    plans = _solve_all(subs, workers, progress)
    return _merge(model, clusters, moves, plans, t0)


def _names_in(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return set().union(*(_names_in(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_names_in(v) for v in value)) if value else set()
    return set()


def _scope_constraints(raw: dict, model: Model, host_cluster: dict[str, str]) -> tuple[list[tuple[dict, str | None]], set[str]]:
    """Each raw constraint with the one cluster it concerns (None: it names no host or VM, it goes to every cluster),
    and the VMs named by a constraint (kept in their cluster). A constraint over several clusters is refused."""
    out, pinned = [], set()
    for i, con in enumerate(raw.get("constraints") or []):
        names = _names_in({k: v for k, v in con.items() if k != "type"})
        vms = {n for n in names if n in model.vm_index}
        hosts = {n for n in names if n in model.host_index}
        owners = {host_cluster[h] for h in hosts}
        for vm in vms:
            host = model.vm(vm).host
            # a VM on no host (saved to shared storage) is in the first cluster (_sub_models)
            owners.add(host_cluster[host] if host is not None else min(host_cluster.values()))
        if len(owners) > 1:
            shown = ", ".join(repr(c) for c in sorted(owners))
            raise ModelError(f"constraints[{i}] ({con.get('type')}): names hosts or VMs of several clusters ({shown}); "
                             f"solve_grid solves each cluster on its own: split it per cluster or use solve")
        pinned |= vms
        out.append((con, next(iter(owners)) if owners else None))
    return out, pinned


class _Grid:
    """Aggregate loads per cluster and the moves between clusters."""

    def __init__(self, model: Model, clusters: dict[str, list[str]], host_cluster: dict[str, str], pinned: set[str],
                 fill_limit: float) -> None:
        self.model, self.clusters, self.host_cluster, self.pinned, self.fill = model, clusters, host_cluster, pinned, fill_limit
        self.where = {v.name: v.host for v in model.vms}   # VM -> host after the grid step
        self.cap = {c: [0.0, 0.0] for c in clusters}
        self.dem = {c: [0.0, 0.0] for c in clusters}
        self.host_free: dict[str, list[float]] = {}
        self.host_used: dict[str, list[float]] = {}
        for h in model.hosts:
            if h.state != "online":
                continue
            c = host_cluster[h.name]
            cap = [model.capacity(h.name, "cpu"), model.capacity(h.name, "memory")]
            self.cap[c][0] += cap[0]
            self.cap[c][1] += cap[1]
            self.host_free[h.name] = cap
            self.host_used[h.name] = [0.0, 0.0]
        self.vm_dem: dict[str, tuple[float, float]] = {}
        for v in model.vms:
            if v.active and v.host is not None:
                d = (model.demand(v.name, "cpu"), model.demand(v.name, "memory"))
                self.vm_dem[v.name] = d
                c = host_cluster[v.host]
                self.dem[c][0] += d[0]
                self.dem[c][1] += d[1]
                self.host_used[v.host][0] += d[0]
                self.host_used[v.host][1] += d[1]

    def excess(self, c: str) -> tuple[float, int]:
        """The largest share of capacity above the fill limit, and its resource (0 cpu, 1 memory)."""
        best = (-math.inf, 0)
        for r in (0, 1):
            cap = self.cap[c][r]
            over = (self.dem[c][r] - self.fill * cap) / cap if cap > 0 else (math.inf if self.dem[c][r] > 0 else -math.inf)
            best = max(best, (over, r))
        return best

    def room(self, c: str, d: tuple[float, float]) -> float:
        """Smallest share of capacity left under the fill limit once a VM of demand d arrives (< 0: no room)."""
        return min((self.fill * self.cap[c][r] - self.dem[c][r] - d[r]) / self.cap[c][r] if self.cap[c][r] > 0 else -1.0
                   for r in (0, 1))

    def cost(self, vm: str) -> int:
        v = self.model.vm(vm)
        return v.memory_mib + (v.disk_mib or 0)

    def shed(self) -> list[dict]:
        """Move VMs out of every cluster above its fill limit, most loaded first; returns the migrate actions."""
        moves = []
        for c in sorted(self.clusters, key=lambda k: -self.excess(k)[0]):
            if self.excess(c)[0] <= 0:
                continue
            moves.extend(self._shed_one(c))
        return moves

    def _shed_one(self, c: str) -> list[dict]:
        model, moves = self.model, []
        hosts = set(self.clusters[c])
        over = {h for h in hosts if h in self.host_used and any(self.host_used[h][r] > self.host_free[h][r] for r in (0, 1))}
        mine = [v for v, h in self.where.items() if h in hosts and v in self.vm_dem and v not in self.pinned]
        queues: dict[int, list[str]] = {}
        tried: set[str] = set()   # moved, or found no room elsewhere (room only shrinks as VMs arrive)
        while True:
            excess, r = self.excess(c)
            if excess <= 0:
                return moves
            if r not in queues:
                # VMs of overloaded hosts first (they must move anyway), then the cheapest per unit of relief
                queues[r] = sorted((v for v in mine if self.vm_dem[v][r] > 0),
                                   key=lambda v: (self.where[v] not in over, self.cost(v) / self.vm_dem[v][r], v), reverse=True)
            queue = queues[r]
            while queue:
                vm = queue.pop()
                if vm in tried:
                    continue
                tried.add(vm)
                act = self._place_elsewhere(vm, c)
                if act is not None:
                    moves.append(act)
                    break
            else:
                need = "cpu" if r == 0 else "memory"
                raise InfeasibleError(f"cluster {c!r} needs {excess:.1%} of its {need} capacity more than the fill limit "
                                      f"{self.fill:g} allows and no other cluster has room for one of its VMs; add hosts "
                                      f"or raise fill_limit")

    def _place_elsewhere(self, vm: str, c: str) -> dict | None:
        d = self.vm_dem[vm]
        receivers = sorted((k for k in self.clusters if k != c and self.room(k, d) >= 0),
                           key=lambda k: (-self.room(k, d), k))
        for k in receivers:
            host = self._best_fit(k, d)
            if host is None:
                continue
            src = self.where[vm]
            for r in (0, 1):
                self.dem[c][r] -= d[r]
                self.dem[k][r] += d[r]
                self.host_used[src][r] -= d[r]
                self.host_used[host][r] += d[r]
            self.where[vm] = host
            v = self.model.vm(vm)
            return {"action": "migrate", "vm": vm, "from": src, "to": host, "memory_mib": v.memory_mib,
                    "disk_mib": v.disk_mib or 0, "from_cluster": c, "to_cluster": k}
        return None

    def _best_fit(self, k: str, d: tuple[float, float]) -> str | None:
        """A host of cluster k with room for d now: the fullest in memory that fits (keeps the cluster packed)."""
        best, best_left = None, math.inf
        for h in self.clusters[k]:
            if h not in self.host_free:
                continue
            left = [self.host_free[h][r] - self.host_used[h][r] - d[r] for r in (0, 1)]
            if min(left) >= 0 and left[1] < best_left:
                best, best_left = h, left[1]
        return best


def _sub_models(raw: dict, model: Model, clusters: dict[str, list[str]], host_cluster: dict[str, str],
                where: dict[str, str | None], scoped: list[tuple[dict, str | None]], overrides: dict, workers: int) -> list[tuple[str, dict]]:
    """One model per cluster with its VM set after the grid step; the time limit is shared out over the rounds."""
    rounds = max(1, math.ceil(len(clusters) / min(workers, _cores())))
    options = dict(raw.get("options") or {})
    options.update({k: v for k, v in overrides.items() if v is not None})
    options["time_limit_s"] = max(0.5, model.options.time_limit_s / rounds)
    options["workers"] = 1
    vms: dict[str, list[dict]] = {c: [] for c in clusters}
    homeless = sorted(clusters)[0]
    for v in raw["vms"]:
        host = where.get(v["name"])
        c = host_cluster[host] if host is not None else homeless
        vms[c].append(dict(v, host=host) if host != v.get("host") else v)
    hosts: dict[str, list[dict]] = {c: [] for c in clusters}
    for h in raw["hosts"]:
        hosts[host_cluster[h["name"]]].append(h)
    subs = []
    for c in sorted(clusters):
        cons = [con for con, owner in scoped if owner in (None, c)]
        subs.append((c, {"version": 1, "hosts": hosts[c], "vms": vms[c], "constraints": cons, "options": options}))
    return subs


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _solve_one(item: tuple[str, dict]) -> tuple[str, dict | None, str | None]:
    """Worker: one cluster's plan, or its error message (exceptions are reported as text across processes)."""
    name, sub = item
    try:
        return name, solve(sub), None
    except InfeasibleError as exc:
        return name, None, f"infeasible: {exc}"
    except PlacementError as exc:
        return name, None, str(exc)


def _solve_all(subs: list[tuple[str, dict]], workers: int, progress: Callable[[str], None] | None) -> dict[str, dict]:
    n = min(workers, _cores(), len(subs))
    results: list[tuple[str, dict | None, str | None]] = []
    if n <= 1:
        results = [_solve_one(s) for s in subs]
    else:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with concurrent.futures.ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context(method)) as pool:
            for res in pool.map(_solve_one, subs):
                results.append(res)
                if progress:
                    progress(f"grid: cluster {res[0]!r} solved")
    plans = {}
    for name, plan, error in results:
        if error is not None:
            kind = InfeasibleError if error.startswith("infeasible: ") else PlacementError
            raise kind(f"cluster {name!r}: {error.removeprefix('infeasible: ')}")
        plans[name] = plan
    return plans


def _grid_steps(moves: list[dict], cap: int | None) -> list[list[dict]]:
    """The moves between clusters in as few steps as max_parallel_migrations_per_host allows (every destination had
    room for all of them at once, so any split keeps the hosts within capacity)."""
    if not moves:
        return []
    if cap is None:
        return [list(moves)]
    steps: list[list[dict]] = []
    counts: list[dict[str, int]] = []
    for mv in moves:
        for step, count in zip(steps, counts):
            if count.get(mv["from"], 0) < cap and count.get(mv["to"], 0) < cap:
                break
        else:
            steps.append([])
            counts.append({})
            step, count = steps[-1], counts[-1]
        step.append(mv)
        count[mv["from"]] = count.get(mv["from"], 0) + 1
        count[mv["to"]] = count.get(mv["to"], 0) + 1
    return steps


def _merge(model: Model, clusters: dict[str, list[str]], moves: list[dict], plans: dict[str, dict], t0: float) -> dict:
    steps = _grid_steps(moves, model.options.max_parallel_migrations_per_host)
    for parts in itertools.zip_longest(*(plans[c]["steps"] for c in sorted(plans)), fillvalue=[]):
        steps.append([a for part in parts for a in part])
    target: dict[str, str] = {}
    per: dict[str, dict] = {}
    for c in sorted(plans):
        p = plans[c]
        target.update(p["target"])
        s = p["stats"]
        per[c] = {"hosts": len(clusters[c]), "status": p["status"], "hosts_used_before": s["hosts_used_before"],
                  "hosts_used_after": s["hosts_used_after"], "hosts_lower_bound": s["hosts_lower_bound"],
                  "migrations": s["migrations"], "memory_moved_mib": s["memory_moved_mib"], "steps": s["steps"],
                  "pivots": s["pivots"], "estimated_duration_s": s["estimated_duration_s"], "solve_seconds": s["solve_seconds"],
                  "hosts_phase_seconds": s.get("hosts_phase_seconds")}
    statuses = [p["status"] for p in plans.values()]
    status = "unchanged" if not moves and all(s == "unchanged" for s in statuses) else \
        max((s for s in statuses if s != "unchanged"), key=_STATUS_ORDER.index, default="feasible")
    if moves and status == "unchanged":
        status = "feasible"
    before = {v.host for v in model.vms if v.active and v.host is not None}
    after = set(target.values())
    total = sum
    stats = {
        "hosts_used_before": len(before),
        "hosts_used_after": len(after),
        "hosts_lower_bound": total(p["hosts_lower_bound"] for p in per.values()),
        "migrations": total(p["migrations"] for p in per.values()) + len(moves),
        "memory_moved_mib": total(p["memory_moved_mib"] for p in per.values()) + total(m["memory_mib"] for m in moves),
        "steps": len(steps),
        "pivots": total(p["pivots"] for p in per.values()),
        # the clusters run side by side after the grid step, whose longest move copies memory and disk
        "estimated_duration_s": round(max((p["estimated_duration_s"] for p in per.values()), default=0.0)
                                      + max(((m["memory_mib"] + m["disk_mib"]) / model.options.bandwidth_mib_s for m in moves),
                                            default=0.0), 1),
        "solve_seconds": round(time.monotonic() - t0, 3),
        "clusters": len(plans),
        "migrations_between_clusters": len(moves),
        "disk_copied_mib": total(m["disk_mib"] for m in moves),
    }
    return {
        "version": PLAN_VERSION,
        "status": status,
        "objective": model.options.objective,
        "target": target,
        "steps": steps,
        "hosts_freed": sorted(before - after),
        "hosts_switched_on": sorted(after - before),
        "stats": stats,
        "grid": {"clusters": per, "moves": moves},
        "warnings": list(model.warnings),
    }
