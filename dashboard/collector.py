# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The dashboard's data: the collection's inventory code, run in a loop, plus libvirt's domain events.

* Every ``refresh`` seconds: ``fetch`` + ``summarize`` + ``merge_copies`` of plugins/inventory/libvirt_cluster.py
  (the same two samples ``sampling_interval`` apart as the inventory) and ``build_model`` of
  plugins/plugin_utils/cluster_model.py on the result: the figures the inventory and the solver see.
* Between two refreshes, libvirt's lifecycle events (one read-only connection per hypervisor, libvirt's default
  event loop in a thread) update the state of the VM they name at once; a VM with a job in flight (a migration)
  has its job statistics re-read every second, for the progress bar.
* The last hour of figures is kept in memory (``history``).

Readers take ``snapshot()`` (an immutable view) and watch ``version``, which grows on every change.
"""

from __future__ import annotations

import threading
import time
import typing as t
from collections import deque

from . import collections_path

collections_path()

# pylint: disable=wrong-import-position
from ansible.plugins.loader import init_plugin_loader  # noqa: E402
from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder  # noqa: E402

import sys  # noqa: E402

if not any(isinstance(f, _AnsibleCollectionFinder) for f in sys.meta_path):
    init_plugin_loader([collections_path()])

from ansible_collections.entropy.cluster.plugins.inventory import libvirt_cluster as inventory  # noqa: E402
from ansible_collections.entropy.cluster.plugins.module_utils.domain_jobs import domain_job  # noqa: E402
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import close_quietly, open_connection  # noqa: E402
from ansible_collections.entropy.cluster.plugins.module_utils.vm_states import is_active_word, state_word  # noqa: E402
from ansible_collections.entropy.cluster.plugins.plugin_utils import inventory_file, prometheus_load  # noqa: E402
from ansible_collections.entropy.cluster.plugins.plugin_utils.cluster_model import build_model  # noqa: E402

try:
    import libvirt
except ImportError:  # pragma: no cover - the inventory itself needs it
    libvirt = None

HISTORY_SECONDS = 3600


def load_inventory_file(path: str) -> inventory_file.ClusterFile:
    """The hypervisors and reading options of a ``*.libvirt_cluster.yml`` inventory file, resolved and checked as the inventory
    plugin does (plugins/plugin_utils/inventory_file.py); ValueError with a one-line message naming the file and the fix."""
    return inventory_file.load(path)


def _vm_rows(hypervisors: dict, copies: list) -> dict:
    """host -> {vm: vars} for every copy (a VM defined on two hosts shows on both while it migrates)."""
    rows: dict = {name: {} for name in hypervisors}
    for name, vm in copies:
        rows.setdefault(vm["entropy_hypervisor"], {})[name] = vm
    return rows


class Collector:
    """The cluster as the inventory reads it, kept fresh by events; thread-safe."""

    def __init__(self, settings: inventory_file.ClusterFile, refresh: float = 10.0, events: bool = True) -> None:
        self.settings = settings
        self.refresh_seconds = refresh
        self.use_events = events and libvirt is not None
        self.lock = threading.RLock()
        self.version = 0
        self.hypervisors: dict = {}
        self.copies: dict = {}  # host -> vm -> vars
        self.model: dict = {"hosts": [], "vms": [], "warnings": []}
        self.taken_at = 0.0
        self.read_error: str | None = None   # why the last read gave no figures (load from Prometheus)
        self.refresh_duration = 0.0
        self.refresh_count = 0
        self.event_count = 0
        self.history: deque = deque()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._event_conns: dict = {}
        self._specs = {s["name"]: s for s in settings.specs}
        self._view: dict | None = None

    # ------------------------------------------------------------------ the inventory's read
    def refresh(self) -> None:
        """One read of every hypervisor through the inventory's code (two samples, one wait)."""
        started = time.monotonic()
        try:
            _raw, hypervisors, copies = inventory_file.read(self.settings)
        except prometheus_load.PrometheusError as exc:   # load_source: prometheus, and Prometheus cannot say: keep the last figures
            with self.lock:
                self.read_error = str(exc)
                self.version += 1
            return
        merged = inventory.merge_copies(copies)
        try:
            model = build_model({**merged, **hypervisors})
        except ValueError as exc:
            model = {"hosts": [], "vms": [], "warnings": ["model: %s" % exc]}
        with self.lock:
            self.hypervisors = hypervisors
            self.copies = _vm_rows(hypervisors, copies)
            self.model = model
            self.read_error = None
            self.taken_at = time.time()
            self.refresh_duration = time.monotonic() - started
            self.refresh_count += 1
            self._remember()
            self.version += 1

    def _remember(self) -> None:
        now = time.time()
        hosts = {name: (hv.get("entropy_cpu_used_cores"), hv.get("entropy_vm_memory_mib")) for name, hv in self.hypervisors.items()}
        vms = {name: (vm.get("entropy_cpu_demand_cores"), vm.get("entropy_memory_mib"), vm.get("entropy_net_rx_bytes_s"),
                      vm.get("entropy_net_tx_bytes_s"))
               for row in self.copies.values() for name, vm in row.items() if is_active_word(vm.get("entropy_state"))}
        self.history.append((now, hosts, vms))
        while self.history and self.history[0][0] < now - HISTORY_SECONDS:
            self.history.popleft()

    # ------------------------------------------------------------------ views
    def snapshot(self) -> dict:
        """The current view: hosts (config order) each with its VMs, VMs by name, totals. Built once per version
        (readers must not change it)."""
        with self.lock:
            cached = self._view
            if cached is not None and cached["version"] == self.version:
                return cached
            hypervisors = {name: dict(hv) for name, hv in self.hypervisors.items()}
            copies = {host: {name: dict(vm) for name, vm in row.items()} for host, row in self.copies.items()}
            model = {"warnings": list(self.model.get("warnings", []))}
            taken_at, version = self.taken_at, self.version
        view = self._build_view(hypervisors, copies, model, taken_at, version)
        with self.lock:
            self._view = view
        return view

    def _build_view(self, hypervisors: dict, copies: dict, model: dict, taken_at: float, version: int) -> dict:
        hosts, vms = [], {}
        migrating_in = {}
        for host, row in copies.items():
            for name, vm in row.items():
                job = vm.get("entropy_job") or {}
                if job.get("operation") == "migration_in":
                    migrating_in[name] = host
        for spec in self.settings.specs:
            hv = hypervisors.get(spec["name"], {"entropy_reachable": False, "entropy_error": "not read yet"})
            row = []
            for name, vm in sorted(copies.get(spec["name"], {}).items()):
                job = vm.get("entropy_job") or {}
                if job.get("operation") == "migration_in":
                    continue  # shown once, on its source, with the progress bar
                view = dict(vm, name=name, host=spec["name"])
                view["badge"] = _badge(vm, migrating_in.get(name))
                view["progress"] = _progress(job)
                view["destination"] = migrating_in.get(name)
                row.append(view)
                if name not in vms or is_active_word(vm.get("entropy_state")):
                    vms[name] = view
            hosts.append(dict(hv, name=spec["name"], uri=spec["uri"], vms=row))
        reachable = [h for h in hosts if h.get("entropy_reachable")]
        totals = {
            "hosts": len(hosts),
            "hosts_reachable": len(reachable),
            "hosts_used": sum(1 for h in reachable if any(is_active_word(v.get("entropy_state")) for v in h["vms"])),
            "vms": len(vms),
            "vms_active": sum(1 for v in vms.values() if is_active_word(v.get("entropy_state"))),
            "cpu_cores": round(sum(h.get("entropy_cpu_cores") or 0 for h in reachable), 2),
            "cpu_used_cores": round(sum(h.get("entropy_vm_cpu_demand_cores") or 0 for h in reachable), 2),
            "memory_mib": sum((h.get("entropy_memory_mib") or 0) - (h.get("entropy_reserved_memory_mib") or 0) for h in reachable),
            "memory_used_mib": sum(h.get("entropy_vm_memory_mib") or 0 for h in reachable),
        }
        totals["cpu_free_cores"] = round(totals["cpu_cores"] - totals["cpu_used_cores"], 2)
        totals["memory_free_mib"] = totals["memory_mib"] - totals["memory_used_mib"]
        stale = ["figures of %s kept: the last read failed: %s" % (time.strftime("%H:%M:%S", time.localtime(taken_at)), self.read_error)
                 ] if self.read_error else []
        return {"hosts": hosts, "vms": vms, "totals": totals, "warnings": stale + model.get("warnings", []), "taken_at": taken_at,
                "version": version}

    def host_history(self, host: str) -> list:
        with self.lock:
            return [(ts, hosts.get(host)) for ts, hosts, _vms in self.history if host in hosts]

    def vm_history(self, vm: str) -> list:
        with self.lock:
            return [(ts, vms.get(vm)) for ts, _hosts, vms in self.history if vm in vms]

    # ------------------------------------------------------------------ events and job polling
    def _update_copy(self, host: str, dom: t.Any) -> None:
        """Re-read one domain on one host (after an event, or while it has a job) and store what changed."""
        name = dom.name()
        try:
            state, reason = dom.state()
        except libvirt.libvirtError:
            with self.lock:
                self.copies.get(host, {}).pop(name, None)  # gone (undefined after a migration)
                self.version += 1
            return
        try:
            job = domain_job(dom, state, reason)
        except libvirt.libvirtError:
            job = None
        spec = self._specs[host]
        with self.lock:
            row = self.copies.setdefault(host, {})
            vm = row.get(name)
            if vm is None:
                # a VM that arrived (migration, define): take its sizes from its info until the next refresh
                try:
                    info = dom.info()
                    memory, vcpus = info[2] // 1024, info[3]
                except libvirt.libvirtError:
                    memory, vcpus = None, None
                vm = {"entropy_kind": "vm", "entropy_hypervisor": host, "entropy_hypervisor_uri": spec["uri"], "entropy_uuid": None,
                      "entropy_vcpus": vcpus, "entropy_memory_mib": memory, "entropy_cpu_demand_cores": 0.0}
                row[name] = vm
            vm["entropy_state"] = state_word(state)
            vm["entropy_job"] = job
            self.version += 1

    def _on_lifecycle(self, conn: t.Any, dom: t.Any, event: int, detail: int, host: str) -> None:  # pylint: disable=unused-argument
        self.event_count += 1
        if event == getattr(libvirt, "VIR_DOMAIN_EVENT_UNDEFINED", 1):
            with self.lock:
                self.copies.get(host, {}).pop(dom.name(), None)
                self.version += 1
            return
        self._update_copy(host, dom)
        # the other hosts' copies of the same VM (the source of a migration) may have changed too
        self._poll_jobs(only=dom.name())

    def _connect_events(self) -> None:
        """A read-only event connection to every reachable hypervisor that has none (or lost it)."""
        for spec in self.settings.specs:
            conn = self._event_conns.get(spec["name"])
            if conn is not None:
                try:
                    if conn.isAlive():
                        continue
                except libvirt.libvirtError:
                    pass
                close_quietly(conn)
                self._event_conns.pop(spec["name"], None)
            try:
                conn = open_connection(spec["uri"], self.settings.username, self.settings.password, readonly=True)
                conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, spec["name"])
                conn.setKeepAlive(5, 3)
            except Exception:  # pylint: disable=broad-except
                continue  # unreachable: the refresh marks it; retried on the next round
            self._event_conns[spec["name"]] = conn

    def _poll_jobs(self, only: str | None = None) -> None:
        """Re-read the job of every copy of a VM that has (or had) a job in flight: the migration progress."""
        with self.lock:
            busy = sorted({(host, name) for host, row in self.copies.items() for name, vm in row.items()
                           if (only is None and vm.get("entropy_job")) or name == only})
            if only is None:
                names = {name for _host, name in busy}
                busy = sorted({(host, name) for host, row in self.copies.items() for name in row if name in names})
        for host, name in busy:
            conn = self._event_conns.get(host)
            if conn is None:
                continue
            try:
                dom = conn.lookupByName(name)
            except libvirt.libvirtError:
                with self.lock:
                    if self.copies.get(host, {}).pop(name, None) is not None:
                        self.version += 1
                continue
            self._update_copy(host, dom)

    def _event_loop(self) -> None:
        while not self._stop.is_set():
            libvirt.virEventRunDefaultImpl()

    def _refresh_loop(self) -> None:
        next_jobs = 0.0
        next_refresh = time.monotonic() + self.refresh_seconds
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_refresh:
                try:
                    self.refresh()
                except Exception:  # pylint: disable=broad-except
                    pass  # one failed round: the next one tries again
                next_refresh = time.monotonic() + self.refresh_seconds
                if self.use_events:
                    self._connect_events()
            if self.use_events and now >= next_jobs:
                self._poll_jobs()
                next_jobs = now + 1.0
            self._stop.wait(0.2)

    def start(self) -> None:
        """First read now (the first page has data), then the loops in daemon threads."""
        if self.use_events:
            register_event_loop()
        self.refresh()
        if self.use_events:
            self._connect_events()
            self._threads.append(threading.Thread(target=self._event_loop, name="libvirt-events", daemon=True))
        self._threads.append(threading.Thread(target=self._refresh_loop, name="refresh", daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for conn in self._event_conns.values():
            close_quietly(conn)
        self._event_conns.clear()


_EVENT_IMPL = []


def register_event_loop() -> None:
    """libvirt's default event loop, registered once per process before the first event connection."""
    if not _EVENT_IMPL:
        libvirt.virEventRegisterDefaultImpl()
        _EVENT_IMPL.append(True)


def _badge(vm: dict, destination: str | None) -> str:
    job = vm.get("entropy_job") or {}
    if destination or job.get("operation") == "migration_out":
        return "migrating"
    state = vm.get("entropy_state")
    if state == "shutoff" and vm.get("entropy_has_managed_save"):
        return "saved"
    return state or "unknown"


def _progress(job: dict) -> int | None:
    """Percent of the memory sent, from the migration job statistics (None when the driver gives none)."""
    total, remaining = job.get("memory_total_bytes"), job.get("memory_remaining_bytes")
    if not total or remaining is None:
        return None
    return max(0, min(100, int(round(100.0 * (total - remaining) / total))))
