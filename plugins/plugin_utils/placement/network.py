"""Network resources of model version 2: host NICs, rack uplinks and declared traffic between VMs.

A *link* is a host's NIC (its hosts: that host) or a rack's uplink (its hosts: the rack's hosts).
What loads a link:
- a running VM's own `net_mbps` loads the NIC of every host it occupies (two during a migration);
- a pair of VMs of a `traffic` group (the group's `mbps` spread evenly over its pairs) loads every
  link that holds some but not all of the hosts the pair occupies: two VMs on two hosts load both
  NICs, two VMs in two racks load both uplinks; a pair on one host loads nothing.
So the uplinks carry the declared traffic that crosses racks, and nothing else.

Everything about the network lives here, as one implicit constraint (`Network`, never written in
`constraints`: the model adds it when it has network fields) with the usual hooks: `check_final`
/ `check_state` for the independent checker (floats, initial overloads tolerated during the plan
like cpu and memory), `compile` / `track` / `fits` for the greedy and LNS search state, `encode`
for CP-SAT, `guard` for the planner, `hosts_bound` and `diagnose`, and `improve`: after the
hosts are minimised, move or swap VMs to cut cross-rack traffic without using more hosts.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from .constraints import Constraint
from .errors import ModelError

NET_SCALE = 1000   # the integer view counts Mbps in kbit/s (demands rounded up, capacities down)
EPS = 1e-6


# --- parsing (model.py calls parse_network) ----------------------------------------------------
def _mbps(where: str, raw: dict, key: str, required: bool = False) -> float | None:
    val = raw.get(key)
    if val is None:
        if required:
            raise ModelError(f"{where}: missing field {key!r} (a number of Mbit/s >= 0)")
        return None
    if isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(val) or val < 0:
        raise ModelError(f"{where}: field {key!r} must be a non-negative number of Mbit/s, got {val!r}")
    return float(val)


def _where(kind: str, idx: int, raw: Any) -> str:
    name = raw.get("name") if isinstance(raw, dict) else None
    return f"{kind}[{idx}] (name {name!r})" if isinstance(name, str) else f"{kind}[{idx}]"


def parse_racks(raw: Any) -> dict[str, float]:
    """Top-level `racks`: name -> uplink capacity (Mbit/s)."""
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise ModelError(f"model: field 'racks' must be a list of {{name, uplink_mbps}} objects, got {type(raw).__name__}")
    racks: dict[str, float] = {}
    for i, item in enumerate(raw):
        where = _where("racks", i, item)
        if not isinstance(item, dict):
            raise ModelError(f"{where}: must be an object {{name, uplink_mbps}}, got {type(item).__name__}")
        extra = sorted(str(k) for k in item if k not in ("name", "uplink_mbps"))
        if extra:
            raise ModelError(f"{where}: unknown field(s) {', '.join(repr(k) for k in extra)} (a rack has name and uplink_mbps)")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise ModelError(f"{where}: field 'name' must be a non-empty string, got {name!r}")
        if name in racks:
            raise ModelError(f"{where}: duplicate rack name {name!r}; give each rack one entry")
        racks[name] = _mbps(where, item, "uplink_mbps", required=True)
    return racks


def parse_traffic(raw: Any, vm_index: dict[str, int]) -> dict[tuple[str, str], float]:
    """Top-level `traffic`: (vm, vm) sorted pair -> Mbit/s, groups summed."""
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise ModelError(f"model: field 'traffic' must be a list of {{vms, mbps}} objects, got {type(raw).__name__}")
    pairs: dict[tuple[str, str], float] = {}
    for i, item in enumerate(raw):
        where = f"traffic[{i}]"
        if not isinstance(item, dict):
            raise ModelError(f"{where}: must be an object {{vms, mbps}}, got {type(item).__name__}")
        extra = sorted(str(k) for k in item if k not in ("vms", "mbps"))
        if extra:
            raise ModelError(f"{where}: unknown field(s) {', '.join(repr(k) for k in extra)} (a traffic group has vms and mbps)")
        vms = item.get("vms")
        if not isinstance(vms, list) or len(vms) < 2 or not all(isinstance(v, str) for v in vms):
            raise ModelError(f"{where}: field 'vms' must be a list of at least 2 vm names, got {vms!r}")
        for v in vms:
            if v not in vm_index:
                raise ModelError(f"{where}: unknown vm {v!r}; list only vms of the model")
        if len(set(vms)) != len(vms):
            raise ModelError(f"{where}: field 'vms' lists a vm twice; list each vm once")
        mbps = _mbps(where, item, "mbps", required=True)
        n_pairs = len(vms) * (len(vms) - 1) // 2
        for a in range(len(vms)):
            for b in range(a + 1, len(vms)):
                key = (vms[a], vms[b]) if vms[a] < vms[b] else (vms[b], vms[a])
                pairs[key] = pairs.get(key, 0.0) + mbps / n_pairs
    return pairs


def parse_network(raw: dict, hosts: list, vms: list, vm_index: dict[str, int], index: int) -> Network | None:
    """The implicit network constraint of a version 2 model (None when it declares no network field)."""
    racks = parse_racks(raw.get("racks"))
    pairs = parse_traffic(raw.get("traffic"), vm_index)
    for i, h in enumerate(hosts):
        if h.rack is not None and h.rack not in racks:
            raise ModelError(f"hosts[{i}] (name {h.name!r}): rack {h.rack!r} is not declared; add "
                             f"{{\"name\": {h.rack!r}, \"uplink_mbps\": ...}} to the top-level 'racks'")
    used_racks = {h.rack for h in hosts if h.rack is not None}
    for name in racks:
        if name not in used_racks:
            raise ModelError(f"racks (name {name!r}): no host is in this rack; set 'rack' on its hosts or remove the entry")
    nic = {h.name: h.net_mbps for h in hosts if h.net_mbps is not None}
    own = {v.name: v.net_mbps for v in vms if v.net_mbps}
    if not (nic or racks or pairs or own):
        return None
    return Network(index=index, kind="network", continuous=True, vms=(), hosts=(),
                   nic=nic, rack_of={h.name: h.rack for h in hosts if h.rack is not None},
                   uplink=racks, own=own, pairs=pairs)


# --- the float view (checker) ------------------------------------------------------------------
@dataclass
class Network(Constraint):
    """Host NICs and rack uplinks under VM and declared traffic (see the module docstring)."""
    nic: dict = field(default_factory=dict)        # host -> NIC capacity (Mbit/s); absent = unlimited
    rack_of: dict = field(default_factory=dict)    # host -> rack name
    uplink: dict = field(default_factory=dict)     # rack -> uplink capacity (Mbit/s)
    own: dict = field(default_factory=dict)        # vm -> its own rate (Mbit/s)
    pairs: dict = field(default_factory=dict)      # (vm, vm) -> declared rate (Mbit/s)

    KIND = "network"
    ALWAYS_CONTINUOUS = True
    HOST_IDENTITY = True      # which physical host (rack) a group of VMs lands on matters
    IMPROVE_SHARE = 0.5       # time kept for the cross-rack pass (the hosts come first: it only uses hosts in use)

    def describe(self) -> str:
        return "network (host NICs and rack uplinks)"

    def _detail(self) -> str:
        return f" {len(self.nic)} NICs, {len(self.uplink)} uplinks, {len(self.pairs)} vm pairs"

    # links: ("nic", host) and ("uplink", rack)
    def _links_of_host(self, h: str) -> list[tuple[str, str]]:
        out = [("nic", h)] if h in self.nic else []
        r = self.rack_of.get(h)
        if r is not None:
            out.append(("uplink", r))
        return out

    def _cap(self, link: tuple[str, str]) -> float:
        return self.nic[link[1]] if link[0] == "nic" else self.uplink[link[1]]

    @staticmethod
    def _running(model: Any, vm: str) -> bool:
        return model.vm(vm).state == "running"

    def _adjacent(self) -> dict[str, list[tuple[str, float]]]:
        adj = getattr(self, "_adj_cache", None)
        if adj is None:
            adj = {}
            for (u, v), rate in self.pairs.items():
                if rate > 0:
                    adj.setdefault(u, []).append((v, rate))
                    adj.setdefault(v, []).append((u, rate))
            object.__setattr__(self, "_adj_cache", adj)
        return adj

    def loads(self, model: Any, state: dict) -> dict[tuple[str, str], float]:
        """Load of every loaded link in a state: vm -> hosts it occupies (running VMs only count).

        A VM on one host: exact. A migrating VM runs on its source until the switch-over, then on its
        destination, and the VMs of one step switch over in any order. Each VM counts its own rate and
        the pairs it owns at the worst of its positions (against every position of the partner); a
        pair is owned by its migrating VM, else by the VM whose name sorts last. That bounds every
        order of switch-overs and is exact when no two VMs of a pair migrate in the same step (the sum
        of both ends, as for memory, would be reached by no order).
        """
        use: dict[tuple[str, str], float] = {}
        adj = self._adjacent()
        running = self._running_set(model)
        nic, own = self.nic, self.own
        for vm, hosts in state.items():
            if not hosts or vm not in running:
                continue
            mine = len(hosts) > 1
            worst: dict[tuple[str, str], float] = {}
            for p in hosts:
                term: dict[tuple[str, str], float] = {}
                if own.get(vm) and p in nic:
                    term["nic", p] = own[vm]
                for k, rate in adj.get(vm, ()):
                    theirs = state.get(k)
                    if not theirs or k not in running or (mine, vm) < (len(theirs) > 1, k):
                        continue   # not running, or the partner owns this pair
                    hit: set[tuple[str, str]] = set()
                    for q in theirs:
                        if q != p:
                            hit.update(self._split2(p, q))
                    for link in hit:
                        term[link] = term.get(link, 0.0) + rate
                if not mine:
                    worst = term
                    break
                for link, val in term.items():
                    worst[link] = max(worst.get(link, 0.0), val)
            for link, val in worst.items():
                use[link] = use.get(link, 0.0) + val
        return use

    def _running_set(self, model: Any) -> frozenset:
        cached = getattr(self, "_running_cache", None)
        if cached is None or cached[0] is not model:
            cached = (model, frozenset(v.name for v in model.vms if v.state == "running"))
            object.__setattr__(self, "_running_cache", cached)
        return cached[1]

    def _split2(self, p: str, q: str) -> list[tuple[str, str]]:
        """Links a pair on hosts p != q loads."""
        out = [("nic", h) for h in (p, q) if h in self.nic]
        rp, rq = self.rack_of.get(p), self.rack_of.get(q)
        if rp != rq:
            out.extend(("uplink", r) for r in (rp, rq) if r is not None)
        return out

    def links_split(self, span: set) -> list[tuple[str, str]]:
        """Links holding some but not all hosts of `span` (at least 2 hosts)."""
        out = [("nic", h) for h in span if h in self.nic]
        racks = [self.rack_of.get(h) for h in span]
        for r in set(racks):
            if r is not None and any(x != r for x in racks):
                out.append(("uplink", r))
        return out

    def cross_rack(self, model: Any, placement: dict) -> float:
        """Declared traffic (Mbit/s) between running VMs on hosts that are not in one rack."""
        total = 0.0
        for (u, v), rate in self.pairs.items():
            hu, hv = placement.get(u), placement.get(v)
            if hu is None or hv is None or hu == hv or not (self._running(model, u) and self._running(model, v)):
                continue
            ru = self.rack_of.get(hu)
            if ru is None or ru != self.rack_of.get(hv):
                total += rate
        return total

    def _limits(self, model: Any) -> dict:
        """Capacity, or the initial load when the cluster starts above it (as for cpu and memory)."""
        cached = getattr(self, "_limit_cache", None)
        if cached is not None and cached[0] is model:
            return cached[1]
        start = {v.name: {v.host} for v in model.vms if v.active and v.host is not None}
        init = self.loads(model, start)
        limits = {link: max(self._cap(link), init.get(link, 0.0)) for link in init}
        object.__setattr__(self, "_limit_cache", (model, limits))
        return limits

    def _over(self, use: dict, limit: Any, during: str) -> list[str]:
        errors = []
        for link, val in sorted(use.items()):
            cap = limit(link)
            if val > cap + EPS:
                what = f"host {link[1]!r} NIC" if link[0] == "nic" else f"rack {link[1]!r} uplink"
                errors.append(f"{self.describe()}: {what} carries {val:g} Mbit/s{during}, more than {cap:g}")
        return errors

    def check_final(self, model: Any, placement: dict) -> list[str]:
        return self._over(self.loads(model, {v: {h} for v, h in placement.items()}), self._cap, "")

    def check_state(self, model: Any, state: dict) -> list[str]:
        limits = self._limits(model)
        return self._over(self.loads(model, state), lambda link: limits.get(link, self._cap(link)), " during the step")

    # --- integer view: compile, search-state tracking, fits ---------------------------------
    def compile(self, b: Any) -> Any:
        data = NetData.build(self, b.prob)
        if data is None:
            return None
        b.watch(data.members, self, data)
        b.prob.trackers.append((self, data))
        return data

    def track(self, st: Any, data: NetData, j: int, h: int, sign: int) -> None:
        """The search state added (sign 1) or removed (-1) VM j on host h."""
        load = data.state_loads(st)
        for link, amount in data.contrib(st.host_of, j, h).items():
            load[link] += sign * amount

    def fits(self, st: Any, data: NetData, j: int, h: int) -> bool:
        load = data.state_loads(st)
        delta = data.contrib(st.host_of, j, h)
        cur = st.host_of[j]
        if cur >= 0:
            for link, amount in data.contrib(st.host_of, j, cur).items():
                delta[link] = delta.get(link, 0) - amount
        cap = data.cap
        return all(amount <= 0 or load[link] + amount <= cap[link] for link, amount in delta.items())

    def encode(self, enc: Any, data: NetData) -> None:
        data.encode(enc)

    def guard(self, planner: Any, step: Any, j: int, d: int, data: NetData) -> bool:
        return data.guard(planner, step, j, d)

    def hosts_bound(self, prob: Any, data: Any) -> int:
        """Hosts needed for the VMs' own rates alone, largest NICs first (0 when a NIC is unlimited)."""
        if data is None or any(prob.usable[h] and data.link_nic[h] < 0 for h in range(prob.n_hosts)):
            return 0
        need = sum(data.own)
        caps = sorted((data.cap[data.link_nic[h]] for h in range(prob.n_hosts) if prob.usable[h]), reverse=True)
        n = 0
        while need > 0 and n < len(caps):
            need -= caps[n]
            n += 1
        return n

    def diagnose(self, prob: Any, data: NetData) -> list[str]:
        usable = [h for h in range(prob.n_hosts) if prob.usable[h]]
        if any(data.link_nic[h] < 0 for h in usable):
            return []
        biggest = max((data.cap[data.link_nic[h]] for h in usable), default=0)
        return [f"{self.describe()}: vm {prob.vm_names[j]!r} sends and receives {data.own[j] / NET_SCALE:g} Mbit/s, "
                f"more than any host NIC ({biggest / NET_SCALE:g}); raise net_mbps of a host or lower the vm's"
                for j in data.members if data.own[j] > biggest][:5]

    def stats(self, model: Any, target: dict) -> dict:
        start = {v.name: v.host for v in model.vms if v.active}
        return {"cross_rack_mbps_before": round(self.cross_rack(model, start), 3),
                "cross_rack_mbps": round(self.cross_rack(model, target), 3)}

    def improve(self, ctx: Any, data: NetData) -> None:
        """Cut cross-rack traffic after the hosts are minimised (consolidate only)."""
        if ctx.opts.objective == "consolidate":
            reduce_cross_rack(ctx, data)


def cross_rack_of_plan(model: Any, plan: dict) -> float:
    """Cross-rack traffic (Mbit/s) of a plan's target on a model (0 when the model has no network)."""
    for con in model.constraints:
        if isinstance(con, Network):
            return con.cross_rack(model, plan["target"])
    return 0.0


# --- integer data of one problem ---------------------------------------------------------------
@dataclass
class NetData:
    net: Network
    prob: Any
    cap: list[int]                    # per link (kbit/s)
    link_hosts: list[list[int]]       # per link: its hosts
    link_names: list[tuple[str, str]]
    link_nic: list[int]               # per host: its NIC link (-1 = unlimited)
    link_rack: list[int]              # per host: its rack's uplink link (-1 = none)
    own: list[int]                    # per active VM (kbit/s, 0 unless running)
    partners: list[list[tuple[int, int]]]   # per active VM: (other VM, kbit/s)
    members: list[int]
    rank: list[int] = field(default_factory=list)   # per active VM: its name's rank (pair ownership)
    host_links: list[tuple[int, ...]] = field(default_factory=list)   # per host: its links (filled on first use)
    _per_state: dict = field(default_factory=dict)
    _planners: dict = field(default_factory=dict)

    @classmethod
    def build(cls, net: Network, prob: Any) -> NetData | None:
        model = prob.model
        link_names: list[tuple[str, str]] = []
        cap: list[int] = []
        link_hosts: list[list[int]] = []
        link_nic = [-1] * prob.n_hosts
        link_rack = [-1] * prob.n_hosts
        rack_link: dict[str, int] = {}
        for h, name in enumerate(prob.host_names):
            if name in net.nic:
                link_nic[h] = len(cap)
                link_names.append(("nic", name))
                cap.append(int(math.floor(net.nic[name] * NET_SCALE + 1e-6)))
                link_hosts.append([h])
            r = net.rack_of.get(name)
            if r is not None:
                if r not in rack_link:
                    rack_link[r] = len(cap)
                    link_names.append(("uplink", r))
                    cap.append(int(math.floor(net.uplink[r] * NET_SCALE + 1e-6)))
                    link_hosts.append([])
                link_rack[h] = rack_link[r]
                link_hosts[rack_link[r]].append(h)
        pos = prob.vm_pos
        running = [model.vm(n).state == "running" for n in prob.vm_names]
        own = [int(math.ceil(net.own.get(n, 0.0) * NET_SCALE - 1e-6)) if running[j] else 0
               for j, n in enumerate(prob.vm_names)]
        partners: list[list[tuple[int, int]]] = [[] for _unused in prob.vm_names]
        for (u, v), rate in net.pairs.items():
            ju, jv = pos.get(u), pos.get(v)
            if ju is None or jv is None or not running[ju] or not running[jv] or rate <= 0:
                continue
            r = int(math.ceil(rate * NET_SCALE - 1e-6))
            partners[ju].append((jv, r))
            partners[jv].append((ju, r))
        members = [j for j in range(prob.n_vms) if own[j] or partners[j]]
        if not members or not cap:
            return None
        rank = [0] * prob.n_vms
        for i, j in enumerate(sorted(range(prob.n_vms), key=lambda j: prob.vm_names[j])):
            rank[j] = i
        return cls(net, prob, cap, link_hosts, link_names, link_nic, link_rack, own, partners, members, rank)

    def links(self, h: int) -> tuple[int, ...]:
        if not self.host_links:
            self.host_links = [tuple(x for x in (self.link_nic[g], self.link_rack[g]) if x >= 0)
                               for g in range(len(self.link_nic))]
        return self.host_links[h]

    def contrib(self, host_of: list[int], j: int, h: int) -> dict[int, int]:
        """What VM j on host h adds to the links, its partners staying where they are (unplaced ones add nothing)."""
        out: dict[int, int] = {}
        if self.own[j] and self.link_nic[h] >= 0:
            out[self.link_nic[h]] = self.own[j]
        mine = self.links(h)
        host_links = self.host_links
        for k, r in self.partners[j]:
            g = host_of[k]
            if g < 0 or g == h:
                continue
            theirs = host_links[g]
            for link in mine:
                if link not in theirs:
                    out[link] = out.get(link, 0) + r
            for link in theirs:
                if link not in mine:
                    out[link] = out.get(link, 0) + r
        return out

    def state_loads(self, st: Any) -> list[int]:
        """The link loads a search state carries (kept up to date by Network.track)."""
        key = id(st)
        entry = self._per_state.get(key)
        if entry is None or entry[0] is not st:
            load = [0] * len(self.cap)
            self._per_state[key] = entry = (st, load)
            # the state may already hold VMs (created before this data was seen): count them once
            seen: set[int] = set()
            for j in range(len(st.host_of)):
                h = st.host_of[j]
                if h < 0:
                    continue
                for link, amount in self._contrib_once(st.host_of, j, h, seen).items():
                    load[link] += amount
                seen.add(j)
        return entry[1]

    def _contrib_once(self, host_of: list[int], j: int, h: int, seen: set[int]) -> dict[int, int]:
        """contrib() counting each pair once: only partners already in `seen`."""
        masked = list(host_of)
        for k, _r in self.partners[j]:
            if k not in seen:
                masked[k] = -1
        return self.contrib(masked, j, h)

    # --- CP-SAT ---------------------------------------------------------------------------------
    def encode(self, enc: Any) -> None:
        st, model, x = enc.st, enc.model, enc.x
        free = enc.free_set
        hosts = enc.hosts
        load = self.state_loads(st)
        # fixed load: take the free VMs off one by one (each pair counted once)
        fixed = list(load)
        masked = list(st.host_of)
        for j in sorted(free):
            a = masked[j]
            if a >= 0:
                for link, amount in self.contrib(masked, j, a).items():
                    fixed[link] -= amount
                masked[j] = -1
        hset = set(hosts)
        in_sub = {link for h in hosts for link in self.links(h)}
        terms: dict[int, list] = {}
        const: dict[int, int] = {}
        zcache: dict[tuple[int, int], Any] = {}

        def z(j: int, link: int) -> Any:
            """1 when free VM j ends on a host of `link` (a linear expression; 0 when it cannot)."""
            key = (j, link)
            if key not in zcache:
                vs = [x[j, h] for h in self.link_hosts[link] if h in hset and (j, h) in x]
                zcache[key] = sum(vs) if vs else 0
            return zcache[key]

        def cand_links(j: int) -> set[int]:
            return {link for h in hosts if (j, h) in x for link in self.links(h)}

        for j in sorted(free):
            if self.own[j]:
                for h in hosts:
                    if (j, h) in x and self.link_nic[h] >= 0:
                        terms.setdefault(self.link_nic[h], []).append(self.own[j] * x[j, h])
            for k, r in self.partners[j]:
                if k in free:
                    if k < j:
                        continue
                    for link in cand_links(j) | cand_links(k):
                        zj, zk = z(j, link), z(k, link)
                        if isinstance(zj, int) or isinstance(zk, int):
                            terms.setdefault(link, []).append(r * (zj + zk))
                            continue
                        both = model.NewBoolVar("")
                        model.Add(both <= zj)
                        model.Add(both <= zk)
                        terms.setdefault(link, []).append(r * (zj + zk - 2 * both))
                    continue
                g = masked[k]
                if g < 0:
                    continue   # an unplaced partner: whoever places it later checks the pair
                theirs = self.links(g)
                for link in theirs:
                    if link in in_sub:
                        terms.setdefault(link, []).append(r * (1 - z(j, link)))
                    else:
                        const[link] = const.get(link, 0) + r   # j ends in the sub-problem, outside this link
                for link in cand_links(j):
                    if link not in theirs:
                        terms.setdefault(link, []).append(r * z(j, link))
        for link, ts in terms.items():
            model.Add(sum(ts) <= self.cap[link] - fixed[link] - const.get(link, 0))
        for link, c in const.items():
            if link not in terms and fixed[link] + c > max(self.cap[link], load[link]):
                model.AddBoolOr([])   # the free VMs would overload a link outside the sub-problem

    # --- planner (the bound of Network.loads: each VM the worst of its positions) ---------------------
    def _pair_links(self, p: int, q: int) -> tuple[int, ...]:
        if p == q:
            return ()
        out = [x for x in (self.link_nic[p], self.link_nic[q]) if x >= 0]
        rp, rq = self.link_rack[p], self.link_rack[q]
        if rp != rq:
            out.extend(x for x in (rp, rq) if x >= 0)
        return tuple(out)

    def _term(self, occ: list[set[int]], j: int) -> dict[int, int]:
        """VM j's share of the link loads: its own rate and the pairs it owns, the worst of its positions."""
        worst: dict[int, int] = {}
        rank = self.rank
        for p in occ[j]:
            term: dict[int, int] = {}
            if self.own[j] and self.link_nic[p] >= 0:
                term[self.link_nic[p]] = self.own[j]
            for k, r in self.partners[j]:
                if not occ[k] or (len(occ[j]) > 1, rank[j]) < (len(occ[k]) > 1, rank[k]):
                    continue   # k owns the pair (see Network.loads)
                hit: set[int] = set()
                for q in occ[k]:
                    hit.update(self._pair_links(p, q))
                for link in hit:
                    term[link] = term.get(link, 0) + r
            for link, val in term.items():
                if val > worst.get(link, 0):
                    worst[link] = val
        return worst

    def _planner_view(self, planner: Any, step: Any) -> dict:
        view = self._planners.get(id(planner))
        if view is None or view["planner"] is not planner:
            occ0 = [{h} if h >= 0 else set() for h in planner.prob.init]
            load0 = self._loads_of(occ0)
            limit = [max(c, x) for c, x in zip(self.cap, load0)]
            view = {"planner": planner, "step": None, "limit": limit}
            self._planners[id(planner)] = view
        if view["step"] is not step:
            if view["step"] is None:
                occ = [{h} if h >= 0 else set() for h in planner.cur]
                terms: dict[int, dict[int, int]] = {}
                view.update(occ=occ, load=self._loads_of(occ, terms), terms=terms)
            else:   # the previous step is committed: each VM that moved now occupies its new host only
                occ, cur = view["occ"], planner.cur
                for j in self.members:
                    want = {cur[j]} if cur[j] >= 0 else set()
                    if occ[j] != want:
                        self._apply(view, j, want)
            view.update(step=step, applied=0)
        for act in step.actions[view["applied"]:]:
            if act["action"] in ("migrate", "resume"):
                self._extend(view, act["_j"], act["_to"])
        view["applied"] = len(step.actions)
        return view

    def _loads_of(self, occ: list[set[int]], terms: dict[int, dict[int, int]] | None = None) -> list[int]:
        load = [0] * len(self.cap)
        for j in self.members:
            term = self._term(occ, j)
            if terms is not None:
                terms[j] = term
            for link, amount in term.items():
                load[link] += amount
        return load

    def _delta(self, occ: list[set[int]], j: int, new: set[int], terms: dict[int, dict[int, int]]
               ) -> tuple[dict[int, int], dict[int, dict[int, int]]]:
        """Change of the link loads when VM j's occupied hosts become `new`, and the new terms of the VMs
        it touches (j and its partners; `terms` holds the current ones)."""
        affected = [j] + [k for k, _r in self.partners[j]]
        out: dict[int, int] = {}
        for k in affected:
            for link, amount in terms.get(k, {}).items():   # VMs with no rate and no pair have no term
                out[link] = out.get(link, 0) - amount
        fresh: dict[int, dict[int, int]] = {}
        old, occ[j] = occ[j], new
        try:
            for k in affected:
                fresh[k] = term = self._term(occ, k)
                for link, amount in term.items():
                    out[link] = out.get(link, 0) + amount
        finally:
            occ[j] = old
        return out, fresh

    def _apply(self, view: dict, j: int, new: set[int]) -> None:
        delta, fresh = self._delta(view["occ"], j, new, view["terms"])
        for link, amount in delta.items():
            view["load"][link] += amount
        view["terms"].update(fresh)
        view["occ"][j] = new

    def _extend(self, view: dict, j: int, d: int) -> None:
        self._apply(view, j, view["occ"][j] | {d})

    def guard(self, planner: Any, step: Any, j: int, d: int) -> bool:
        if not self.own[j] and not self.partners[j]:
            return True
        view = self._planner_view(planner, step)
        occ = view["occ"]
        load, limit = view["load"], view["limit"]
        if not self.partners[j]:   # its own rate only: it adds to the destination's NIC
            nic = self.link_nic[d]
            return nic < 0 or d in occ[j] or load[nic] + self.own[j] <= limit[nic]
        delta, _fresh = self._delta(occ, j, occ[j] | {d}, view["terms"])
        return all(amount <= 0 or load[link] + amount <= limit[link] for link, amount in delta.items())


# --- cross-rack reduction (after the hosts are minimised) ---------------------------------------
def _cross(data: NetData, host_of: list[int], j: int, h: int) -> int:
    """Cross-rack traffic (kbit/s) of VM j's pairs if j were on host h."""
    rack = data.link_rack[h]
    total = 0
    for k, r in data.partners[j]:
        g = host_of[k]
        if g < 0 or g == h:
            continue
        if rack < 0 or data.link_rack[g] != rack:
            total += r
    return total


def reduce_cross_rack(ctx: Any, data: NetData) -> int:
    """Move (or swap) VMs so their traffic stays inside racks, on hosts already in use; with the option
    cross_rack_mbps_per_host, a VM may also switch on an empty host of a rack when that alone saves at
    least that much cross-rack traffic. Every move passes the search state's fits (capacities, the
    network and every other rule). Returns the traffic saved (kbit/s)."""
    st, prob = ctx.st, ctx.prob
    weight = getattr(ctx.opts, "cross_rack_mbps_per_host", None)
    open_at = None if weight is None else int(weight * NET_SCALE)
    deadline = ctx.deadline
    rack_hosts: dict[int, list[int]] = {}
    for h in range(prob.n_hosts):
        if data.link_rack[h] >= 0 and prob.usable[h]:
            rack_hosts.setdefault(data.link_rack[h], []).append(h)
    movers = [j for j in data.members if data.partners[j] and prob.movable[j] and len(st.units[st.unit_of[j]]) == 1]
    # with a migration budget, never relocate a VM that the plan leaves in place (the budget was met before)
    frozen = {j for j in range(prob.n_vms) if st.host_of[j] == prob.init[j]} if ctx.budgeted else set()
    movers = [j for j in movers if j not in frozen]
    saved_total = 0
    for _round in range(4):
        saved_round = 0
        movers.sort(key=lambda j: (-_cross(data, st.host_of, j, st.host_of[j]), j))
        for j in movers:
            if time.monotonic() > deadline:
                return saved_total + saved_round
            a = st.host_of[j]
            if a < 0:
                continue
            now = _cross(data, st.host_of, j, a)
            if not now:
                continue
            weights: dict[int, int] = {}
            for k, r in data.partners[j]:
                g = st.host_of[k]
                if g >= 0 and data.link_rack[g] >= 0:
                    weights[data.link_rack[g]] = weights.get(data.link_rack[g], 0) + r
            for rack in sorted(weights, key=lambda x: (-weights[x], x)):
                if rack == data.link_rack[a]:
                    continue
                gain = _try_rack(st, data, j, a, now, rack_hosts.get(rack, []), open_at, frozen)
                if gain > 0:
                    saved_round += gain
                    break
        saved_total += saved_round
        if not saved_round:
            break
    return saved_total


def _try_rack(st: Any, data: NetData, j: int, a: int, now: int, hosts: list[int], open_at: int | None,
              frozen: set[int]) -> int:
    """Put j on a host of the rack (direct move, else a swap with a VM that loses less); returns the gain."""
    prob = st.prob
    used = [h for h in hosts if st.members[h] and h != a]
    st.remove(j)
    best, best_gain = -1, 0
    for h in used:
        gain = now - _cross(data, st.host_of, j, h)
        if gain > best_gain and st.fits([j], h):
            best, best_gain = h, gain
    if best >= 0:
        st.add(j, best)
        return best_gain
    # swaps: k leaves h for a
    for h in used:
        gain_j = now - _cross(data, st.host_of, j, h)
        if gain_j <= 0:
            continue
        for k in sorted(st.members[h], key=lambda k: (len(data.partners[k]), k))[:12]:
            if not prob.movable[k] or len(st.units[st.unit_of[k]]) != 1 or k in frozen:
                continue
            loss_k = _cross(data, st.host_of, k, a) - _cross(data, st.host_of, k, h)
            if gain_j - loss_k <= 0:
                continue
            st.remove(k)
            if st.fits([j], h):
                st.add(j, h)
                # j's gain was computed with k on h; recompute with k on a for the pair (j, k)
                if st.fits([k], a):
                    st.add(k, a)
                    return gain_j - loss_k
                st.remove(j)
            st.add(k, h)
    if open_at is not None and now >= open_at:
        for h in hosts:
            if not st.members[h] and h != a and st.fits([j], h):
                st.add(j, h)
                return now - _cross(data, st.host_of, j, h)
    st.add(j, a)
    return 0
