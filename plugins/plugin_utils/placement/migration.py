"""How long a live migration takes, and how much bandwidth each migration of a step gets.

The one place for the duration model (the planner, the plan's stats and tools/migration_fit.py use it):

- pre-copy: the first pass sends ``memory_share`` of the VM's memory (QEMU sends a page that was never
  written as a flag, so an idle VM sends much less than its size); every later pass resends what the
  guest dirtied during the previous pass (``dirty_mib_s`` x its time, at most the whole memory); the
  migration switches over when what is left fits in ``max_downtime_ms`` at the migration's bandwidth;
  a migration that has not switched over after ``MAX_PASSES`` passes does not converge;
- plus a fixed ``setup_s`` per migration (connections, device state, starting the destination);
- the bandwidth is what the migration gets (``efficiency`` x its allotment: libvirt caps the stream at
  the allotment, and the stream reaches only part of it).

Links: each host's migration link (``bandwidth_mib_s``, and ``link_share`` of its NIC when the model
gives ``net_mbps``) and, for a migration between two racks, both racks' uplinks (``link_share`` of
``uplink_mbps``). Migrations of one step share the links they cross: ``allot`` gives them a max-min
fair share (progressive filling), weighted by the memory each sends so that the migrations sharing a
link end together, so no link carries more than its cap.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Any, Iterable

MIB_PER_MBIT = 1e6 / 8 / 1048576   # 1 Mbit/s in MiB/s
MAX_PASSES = 30                     # pre-copy passes before a migration counts as not converging
NON_CONVERGING = ("postcopy", "keep")


@dataclass(frozen=True)
class DurationModel:
    setup_s: float = 1.0          # fixed cost of one migration
    memory_share: float = 1.0     # share of the memory the first pass sends
    efficiency: float = 1.0       # share of the allotted bandwidth the stream reaches
    max_downtime_ms: float = 300  # libvirt's default maximum downtime

    @classmethod
    def of(cls, options: Any) -> "DurationModel":
        return cls(options.migration_setup_s, options.migration_memory_share, options.migration_efficiency,
                   options.migration_max_downtime_ms)

    def seconds(self, memory_mib: float, dirty_mib_s: float, bandwidth_mib_s: float) -> float | None:
        """Estimated duration of a pre-copy migration, None when it does not converge."""
        b = bandwidth_mib_s * self.efficiency
        if b <= 0:
            return None
        dirty = dirty_mib_s or 0.0
        left = memory_mib * self.memory_share
        total = self.setup_s
        stop = b * self.max_downtime_ms / 1000.0
        for _unused in range(MAX_PASSES):
            t = left / b
            total += t
            left = min(memory_mib, dirty * t)
            if left <= stop:
                return total + left / b
        return None

    def postcopy_seconds(self, memory_mib: float, dirty_mib_s: float, bandwidth_mib_s: float) -> float:
        """One pre-copy pass, then post-copy pulls what the guest dirtied during it (an estimate)."""
        b = max(bandwidth_mib_s * self.efficiency, 1e-9)
        first = memory_mib * self.memory_share / b
        return self.setup_s + first + min(memory_mib, (dirty_mib_s or 0.0) * first) / b

    def required_bandwidth(self, memory_mib: float, dirty_mib_s: float) -> float:
        """The least allotment (MiB/s, within 1 %) with which the migration converges."""
        if not dirty_mib_s:
            return 0.0
        lo, hi = 0.0, max(1.0, dirty_mib_s)
        while self.seconds(memory_mib, dirty_mib_s, hi) is None:
            lo, hi = hi, hi * 2
        while hi - lo > 0.01 * hi:
            mid = (lo + hi) / 2
            if self.seconds(memory_mib, dirty_mib_s, mid) is None:
                lo = mid
            else:
                hi = mid
        return hi


Link = tuple  # ("host", name) or ("uplink", rack)


class Links:
    """The migration links of a model and their caps (MiB/s)."""

    def __init__(self, model: Any) -> None:
        opt = model.options
        net = next((c for c in model.constraints if c.kind == "network"), None)
        share = opt.migration_link_share
        self.cap: dict[Link, float] = {}
        self.rack_of: dict[str, str] = dict(net.rack_of) if net is not None else {}
        for h in model.hosts:
            cap = opt.bandwidth_mib_s
            if h.net_mbps is not None:
                cap = min(cap, h.net_mbps * share * MIB_PER_MBIT)
            self.cap["host", h.name] = cap
        if net is not None:
            for rack, mbps in net.uplink.items():
                self.cap["uplink", rack] = mbps * share * MIB_PER_MBIT

    def of(self, src: str, dst: str) -> tuple[Link, ...]:
        out: list[Link] = [("host", src), ("host", dst)]
        rs, rd = self.rack_of.get(src), self.rack_of.get(dst)
        if rs != rd:
            out.extend(("uplink", r) for r in (rs, rd) if r is not None)
        return tuple(out)

    def alone(self, src: str, dst: str) -> float:
        """The bandwidth a migration gets when it is the only one on its links."""
        return min(self.cap[link] for link in self.of(src, dst))


def allot(paths: list[tuple[Link, ...]], cap: dict[Link, float], weights: list[float] | None = None) -> list[float]:
    """Weighted max-min fair shares (progressive filling): raise every unfixed migration's share together, in
    proportion to its weight, until a link is full; fix the migrations on it, repeat. The shares on a link never
    sum above its cap. Equal weights (the default) give the plain max-min fair shares."""
    w = weights or [1.0] * len(paths)
    share = [0.0] * len(paths)
    left = {link: cap[link] for p in paths for link in p}
    users: dict[Link, set[int]] = {}
    for i, p in enumerate(paths):
        for link in p:
            users.setdefault(link, set()).add(i)
    weight = {lk: sum(w[i] for i in us) for lk, us in users.items()}
    heap = [(max(left[lk], 0.0) / weight[lk], lk) for lk in users]
    heapq.heapify(heap)
    while heap:
        level, link = heapq.heappop(heap)
        us = users[link]
        if not us or level != max(left[link], 0.0) / weight[link]:
            continue   # stale entry: the link changed since it was pushed
        touched = set()
        for i in sorted(us):
            share[i] = level * w[i]
            for lk in paths[i]:
                left[lk] -= share[i]
                if lk != link:
                    users[lk].discard(i)
                    weight[lk] -= w[i]
                    touched.add(lk)
        users[link] = set()
        for lk in touched:
            if users[lk]:
                heapq.heappush(heap, (max(left[lk], 0.0) / weight[lk], lk))
    return share


def floor_mib_s(value: float) -> int:
    """The allotment libvirt receives: whole MiB/s, rounded down (never above the share), at least 1."""
    return max(1, int(math.floor(value + 1e-9)))


def plan_step_seconds(durations: Iterable[float]) -> float:
    """A step ends with its slowest action."""
    return max(durations, default=0.0)
