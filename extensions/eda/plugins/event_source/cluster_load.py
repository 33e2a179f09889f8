# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An ansible-rulebook event source: the load of a libvirt cluster, sampled with the collection's own inventory code.

Every ``interval`` seconds it reads the hypervisors of a ``*.libvirt_cluster.yml`` inventory file exactly as the
inventory plugin does (``fetch`` + ``summarize`` + ``merge_copies`` of plugins/inventory/libvirt_cluster.py, then
``build_model`` of plugins/plugin_utils/cluster_model.py, the inventory file's ``model_constraints`` and
``model_options`` included), and judges three conditions:

* ``host_overloaded``: the demand of a hypervisor's active VMs above ``overload_threshold`` of its capacity (cpu or
  memory, the solver's capacity: overbook and capacity constraints applied);
* ``cluster_underused``: a cluster (the inventory's ``clusters`` option; one cluster without it) uses at least
  ``underused_min_gain`` hosts more than the solver's lower bound on the hosts its VMs need;
* ``host_unreachable``: a hypervisor that does not answer.

Hysteresis: a condition must hold on ``raise_after`` samples in a row before its event is put on the queue, and is
cleared only after ``clear_after`` samples in a row below ``clear_threshold`` (a host between the two thresholds
stays as it is). Cool-down: while a condition stays raised, its event is put again only every ``cooldown`` seconds
(the repair did not fix it: try again later, never in a loop). The events carry hypervisor and cluster names and
figures, never VM names (tenant data stays out of the rulebook's and the playbook's templating).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

DOCUMENTATION = r"""
---
short_description: Sample a libvirt cluster's load and emit host_overloaded, cluster_underused, host_unreachable
description:
  - An ansible-rulebook event source that reads the hypervisors of an entropy.cluster.libvirt_cluster inventory file
    with the collection's own inventory code every O(interval) seconds.
  - Events are dictionaries with C(type) (V(host_overloaded), V(cluster_underused), V(host_unreachable)), C(host) or
    C(cluster), and the figures that raised them.
  - A condition is reported after O(raise_after) samples in a row, cleared after O(clear_after) samples in a row below
    O(clear_threshold), and reported again while it lasts only every O(cooldown) seconds.
options:
  inventory:
    description: Path of the C(*.libvirt_cluster.yml) inventory file (its hypervisors or clusters, sampling options,
      model constraints and options), read again whenever it changes. Credentials come from ENTROPY_LIBVIRT_USERNAME /
      ENTROPY_LIBVIRT_PASSWORD.
    type: str
    required: true
  interval:
    description: Seconds between the starts of two samples.
    type: float
    default: 30
  sampling_interval:
    description: Seconds between the two reads of one sample (CPU rates); defaults to the inventory file's.
    type: float
  raise_after:
    description: Samples in a row a condition must hold before its event.
    type: int
    default: 2
  clear_after:
    description: Samples in a row below O(clear_threshold) (or without the condition) before it is cleared.
    type: int
    default: 2
  cooldown:
    description: Seconds before a condition still raised is reported again.
    type: float
    default: 600
  overload_threshold:
    description: Share of a host's capacity above which it is overloaded.
    type: float
    default: 1.0
  clear_threshold:
    description: Share of a host's capacity below which an overload is over.
    type: float
    default: 0.95
  underused_min_gain:
    description: Hosts above the lower bound a cluster must use to be reported under-used.
    type: int
    default: 1
"""

EXAMPLES = r"""
- entropy.cluster.cluster_load:
    inventory: /etc/entropy/prod.libvirt_cluster.yml
    interval: 30
    raise_after: 2
    cooldown: 600
"""

OVERLOADED, UNDERUSED, UNREACHABLE = "host_overloaded", "cluster_underused", "host_unreachable"
DEFAULTS = {"interval": 30.0, "sampling_interval": None, "raise_after": 2, "clear_after": 2, "cooldown": 600.0,
            "overload_threshold": 1.0, "clear_threshold": 0.95, "underused_min_gain": 1}


class SettingsError(ValueError):
    """A bad argument or inventory file: one line naming it and the fix."""


def settings(args: dict[str, Any]) -> dict[str, Any]:
    """The source's arguments checked, with defaults; SettingsError naming the argument otherwise."""
    if not isinstance(args, dict):
        raise SettingsError("cluster_load: the source's arguments must be a dictionary with at least 'inventory'")
    unknown = sorted(str(k) for k in args if k not in DEFAULTS and k != "inventory")
    if unknown:
        raise SettingsError("cluster_load: unknown argument(s) %s; the arguments are inventory, %s"
                            % (", ".join(unknown), ", ".join(DEFAULTS)))
    inventory = args.get("inventory")
    if not isinstance(inventory, str) or not inventory.strip():
        raise SettingsError("cluster_load: 'inventory' is required: the path of a *.libvirt_cluster.yml inventory file")
    out: dict[str, Any] = {"inventory": inventory}
    for key, default in DEFAULTS.items():
        value = args.get(key, default)
        if value is None and default is None:
            out[key] = None
            continue
        integer = isinstance(default, int) and not isinstance(default, float)
        try:
            if isinstance(value, bool):
                raise ValueError
            value = int(value) if integer else float(value)
        except (TypeError, ValueError):
            raise SettingsError("cluster_load: %r must be %s, got %r" % (key, "an integer" if integer else "a number", value)) from None
        low = 1 if key in ("raise_after", "clear_after") else 0
        if value < low or (key in ("interval", "overload_threshold", "clear_threshold") and value <= 0):
            raise SettingsError("cluster_load: %r must be %s, got %r" % (key, "at least 1" if low else "positive", value))
        out[key] = value
    if out["clear_threshold"] > out["overload_threshold"]:
        raise SettingsError("cluster_load: 'clear_threshold' (%g) must not be above 'overload_threshold' (%g): the band between "
                            "them is the hysteresis" % (out["clear_threshold"], out["overload_threshold"]))
    return out


class Detector:
    """Hysteresis and cool-down over a stream of samples (pure: the clock is given).

    Each sample maps a key (event type, subject) to a level: ``"over"`` (the condition holds), ``"band"`` (between
    the thresholds: no change) or ``"under"``; a key missing from a sample is ``"under"``."""

    def __init__(self, raise_after: int, clear_after: int, cooldown: float) -> None:
        self.raise_after, self.clear_after, self.cooldown = raise_after, clear_after, cooldown
        self.state: dict[tuple[str, str], dict[str, Any]] = {}

    def update(self, now: float, levels: dict[tuple[str, str], tuple[str, dict]]) -> list[dict]:
        """The events this sample raises: ``dict(payload, type=..)`` for each key that (re)fires."""
        events = []
        for key in sorted(set(levels) | set(self.state)):
            level, payload = levels.get(key, ("under", {}))
            st = self.state.setdefault(key, {"raised": False, "over": 0, "under": 0, "fired_at": None})
            st["over"] = st["over"] + 1 if level == "over" else 0
            st["under"] = st["under"] + 1 if level == "under" else 0
            if not st["raised"]:
                if st["over"] >= self.raise_after:
                    st.update(raised=True, fired_at=now)
                    events.append(dict(payload, type=key[0]))
            elif st["under"] >= self.clear_after:
                st.update(raised=False, over=0, fired_at=None)
            elif level == "over" and now - st["fired_at"] >= self.cooldown:
                st["fired_at"] = now
                events.append(dict(payload, type=key[0], repeated=True))
            if not st["raised"] and st["over"] == 0 and key not in levels:
                del self.state[key]
        return events


def judge(model: dict, unreachable: list[str], overload: float, clear: float, min_gain: int) -> dict:
    """One sample's levels: key (type, subject) -> (level, payload), from the model dict (build_model's) and the
    hypervisors that did not answer."""
    from ansible_collections.entropy.cluster.plugins.plugin_utils.placement.bounds import hosts_lower_bound  # pylint: disable=import-outside-toplevel
    from ansible_collections.entropy.cluster.plugins.plugin_utils.placement.model import load_model  # pylint: disable=import-outside-toplevel
    from ansible_collections.entropy.cluster.plugins.plugin_utils.placement.problem import build_problem  # pylint: disable=import-outside-toplevel

    levels: dict = {}
    for host in unreachable:
        levels[(UNREACHABLE, host)] = ("over", {"host": host})
    raw = {k: v for k, v in model.items() if k != "warnings"}
    if not raw.get("hosts"):
        return levels
    parsed = load_model(raw)
    used: dict[str, list[float]] = {h.name: [0.0, 0.0] for h in parsed.hosts}
    for vm in parsed.vms:
        if vm.active and vm.host is not None:
            used[vm.host][0] += parsed.demand(vm.name, "cpu")
            used[vm.host][1] += parsed.demand(vm.name, "memory")
    clusters: dict[str, list[str]] = {}
    for host in parsed.hosts:
        clusters.setdefault(host.cluster or "", []).append(host.name)
        if host.state != "online":
            continue
        cap = [parsed.capacity(host.name, "cpu"), parsed.capacity(host.name, "memory")]
        fill = [used[host.name][r] / cap[r] if cap[r] > 0 else (float("inf") if used[host.name][r] > 0 else 0.0) for r in (0, 1)]
        worst = max(fill)
        level = "over" if worst > overload else ("under" if worst < clear else "band")
        levels[(OVERLOADED, host.name)] = (level, {
            "host": host.name, "cluster": host.cluster, "resource": "cpu" if fill[0] >= fill[1] else "memory",
            "fill": round(worst, 3), "cpu_demand_cores": round(used[host.name][0], 3), "cpu_capacity_cores": round(cap[0], 3),
            "memory_demand_mib": round(used[host.name][1]), "memory_capacity_mib": round(cap[1])})
    for name, hosts in sorted(clusters.items()):
        members = set(hosts)
        sub = dict(raw, hosts=[h for h in raw["hosts"] if h["name"] in members],
                   vms=[v for v in raw["vms"] if v.get("host") in members])
        sub["constraints"] = [c for c in raw.get("constraints") or [] if _only_names(c, members, sub)]
        in_use = len({v["host"] for v in sub["vms"] if v.get("state") in ("running", "paused")})
        try:
            bound = hosts_lower_bound(build_problem(load_model(sub)))
        except Exception:  # pylint: disable=broad-except  # a cluster the solver refuses is not judged under-used
            continue
        level = "over" if in_use - bound >= min_gain else "under"
        levels[(UNDERUSED, name)] = (level, {"cluster": name or None, "hosts_used": in_use, "hosts_lower_bound": bound})
    return levels


def _only_names(constraint: dict, hosts: set[str], sub: dict) -> bool:
    """A constraint that names only this cluster's hosts and VMs (or nothing)."""
    vms = {v["name"] for v in sub["vms"]}
    names: set[str] = set()
    stack: list[Any] = [{k: v for k, v in constraint.items() if k != "type"}]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            names.add(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return names <= (hosts | vms) or not names


def _collections_root(path: str) -> str | None:
    """The directory holding ansible_collections/ for this file (a collection run by FQCN), else one of
    ANSIBLE_COLLECTIONS_PATH that holds entropy.cluster."""
    parts = os.path.abspath(path).split(os.sep)
    if "ansible_collections" in parts:
        return os.sep.join(parts[:len(parts) - 1 - parts[::-1].index("ansible_collections")]) or os.sep
    for entry in (os.environ.get("ANSIBLE_COLLECTIONS_PATH") or os.environ.get("ANSIBLE_COLLECTIONS_PATHS") or "").split(os.pathsep):
        if entry and os.path.isdir(os.path.join(entry, "ansible_collections", "entropy", "cluster")):
            return entry
    return None


def _import_inventory() -> Any:
    """The collection's inventory plugin module, imported through Ansible's collection loader."""
    from ansible.plugins.loader import init_plugin_loader  # pylint: disable=import-outside-toplevel
    from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder  # pylint: disable=import-outside-toplevel

    if not any(isinstance(f, _AnsibleCollectionFinder) for f in sys.meta_path):
        root = _collections_root(__file__)
        if root is None:
            raise SettingsError("cluster_load: cannot find the entropy.cluster collection: run the source by its name "
                                "(entropy.cluster.cluster_load) or set ANSIBLE_COLLECTIONS_PATH")
        init_plugin_loader([root])
    from ansible_collections.entropy.cluster.plugins.inventory import libvirt_cluster  # pylint: disable=import-outside-toplevel

    return libvirt_cluster


class Sampler:
    """Reads the cluster of an inventory file as the inventory does (plugins/plugin_utils/inventory_file.py: its options,
    libvirt sampling or the load from Prometheus)."""

    def __init__(self, options: dict[str, Any]) -> None:
        _import_inventory()
        from ansible_collections.entropy.cluster.plugins.plugin_utils import inventory_file  # pylint: disable=import-outside-toplevel

        self.inventory_file = inventory_file
        self.path, self.sampling_option, self.mtime = options["inventory"], options["sampling_interval"], None
        self.cluster = None
        self.load()

    @property
    def specs(self) -> list:
        return self.cluster.specs

    def reload(self) -> None:
        """Read the inventory file again when it changed (hosts added, capacities declared); a file that became bad is
        reported and the last good one is kept."""
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except OSError:
            return
        if mtime != self.mtime:
            try:
                self.load()
            except SettingsError as exc:
                self.mtime = mtime
                print("%s; sampling with the inventory file as it was" % exc, file=sys.stderr, flush=True)

    def load(self) -> None:
        try:
            mtime = os.stat(self.path).st_mtime_ns
            cluster = self.inventory_file.load(self.path, self.sampling_option)
        except OSError as exc:
            raise SettingsError("cluster_load: %s: cannot read the inventory file: %s" % (self.path, exc.strerror)) from None
        except ValueError as exc:
            raise SettingsError("cluster_load: %s" % exc) from None
        self.cluster, self.mtime = cluster, mtime

    def read(self) -> tuple[dict, list[str]]:
        """(the model dict, the hypervisors that did not answer)."""
        from ansible_collections.entropy.cluster.plugins.inventory import libvirt_cluster  # pylint: disable=import-outside-toplevel
        from ansible_collections.entropy.cluster.plugins.plugin_utils.cluster_model import build_model  # pylint: disable=import-outside-toplevel

        from ansible_collections.entropy.cluster.plugins.plugin_utils.prometheus_load import PrometheusError  # pylint: disable=import-outside-toplevel

        self.reload()
        try:
            raw, hypervisors, copies = self.inventory_file.read(self.cluster)
        except PrometheusError as exc:   # load_source: prometheus: this sample is skipped, with the reason
            raise ValueError(str(exc)) from None
        merged = libvirt_cluster.merge_copies(copies)
        unreachable = [h["name"] for h in raw["hypervisors"] if not h.get("reachable")]
        return build_model({**merged, **hypervisors}, self.cluster.constraints, self.cluster.options), unreachable


async def main(queue: asyncio.Queue, args: dict[str, Any]) -> None:
    """Sample the cluster every `interval` seconds and put the events hysteresis and cool-down let through."""
    options = settings(args)
    sampler = Sampler(options)
    detector = Detector(options["raise_after"], options["clear_after"], options["cooldown"])
    first = True
    while True:
        started = time.monotonic()
        try:
            model, unreachable = await asyncio.to_thread(sampler.read)
            levels = judge(model, unreachable, options["overload_threshold"], options["clear_threshold"],
                           options["underused_min_gain"])
        except (ValueError, OSError) as exc:  # a model the builder refuses: say so, keep sampling
            print("cluster_load: sample skipped: %s" % exc, file=sys.stderr, flush=True)
            levels = None
        if levels is not None:
            if first:   # once: the loop is live (the inventory file is read again whenever it changes)
                print("cluster_load: sampling %d hypervisor(s) of %s every %g s" % (len(sampler.specs), sampler.path, options["interval"]),
                      file=sys.stderr, flush=True)
                first = False
            for event in detector.update(time.monotonic(), levels):
                await queue.put(event)
        await asyncio.sleep(max(0.0, options["interval"] - (time.monotonic() - started)))


if __name__ == "__main__":
    # python cluster_load.py INVENTORY: print the events of a few samples (no rulebook needed).

    class _PrintQueue(asyncio.Queue):
        async def put(self, item: Any) -> None:
            print(item, flush=True)

    asyncio.run(main(_PrintQueue(), {"inventory": sys.argv[1], "interval": 5, "raise_after": 1}))
